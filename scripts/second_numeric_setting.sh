#!/usr/bin/env bash
# The default suite under another numeric setting than README's test command's.
# CI runs it as
#     NUMBA_DISABLE_JIT=1 BAYES_IRL_TEST_THREADS=2 bash scripts/second_numeric_setting.sh
# (the soft-Bellman kernel's NumPy primitives instead of its compiled loops, another
# summation order; two torch threads instead of one). Any other setting can be passed the
# same way; extra arguments go to pytest (e.g. a test file).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
