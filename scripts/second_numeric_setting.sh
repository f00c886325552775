#!/usr/bin/env bash
# The numerics-sensitive tests under another numeric setting than the default suite's.
# CI runs it as
#     NUMBA_DISABLE_JIT=1 BAYES_IRL_TEST_THREADS=2 bash scripts/second_numeric_setting.sh
# (the NumPy loops instead of the Numba kernels: another summation order; two torch
# threads instead of one). Any other setting can be passed the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest \
  tests/test_lean_kernels.py tests/test_lean_path.py tests/test_lean_svi.py \
  tests/test_fast_defaults.py tests/test_exact.py tests/test_maxent.py \
  tests/test_backends.py tests/test_fit.py tests/test_convergence.py \
  tests/test_preference_potential.py tests/test_importance_svi.py \
  tests/test_user_commands.py "$@"
