#!/usr/bin/env bash
# Create benchmarks/.venv-imitation with torch 2.13.0 (CPU build) and imitation 1.0.1.
#
# torch is installed FIRST and pinned through a constraints file for every later
# pip call, so resolving imitation's dependencies can never pull another torch
# (any other version would be a multi-GB CUDA build from PyPI).
#
# Idempotent: if the venv already imports imitation 1.0.1 with torch 2.13.0 it
# exits at once. Pass --force to rebuild from scratch.
#
# Environment:
#   PYTHON        interpreter used to create the venv (default: python3)
#   VENV          venv path (default: <repo>/benchmarks/.venv-imitation)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/../.venv-imitation}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
IMITATION_VERSION="1.0.1"

check() {
    "$VENV/bin/python" - "$TORCH_VERSION" "$IMITATION_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import torch, imitation, seals
from imitation.algorithms import mce_irl  # noqa: F401
from seals import base_envs  # noqa: F401
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
assert imitation.__version__ == sys.argv[2], imitation.__version__
EOF
}

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$VENV"
elif [[ -x "$VENV/bin/python" ]] && check; then
    echo "setup.sh: $VENV already set up (torch $TORCH_VERSION, imitation $IMITATION_VERSION)"
    exit 0
fi

echo "setup.sh: creating $VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# 1. torch first. Prefer the local CPU wheel explicitly when it is there.
TORCH_WHEEL=""
for d in ${PIP_FIND_LINKS:-} /opt/wheels; do
    for w in "$d"/torch-"$TORCH_VERSION"+cpu-*.whl; do
        [[ -f "$w" ]] && TORCH_WHEEL="$w" && break 2
    done
done
if [[ -n "$TORCH_WHEEL" ]]; then
    "${PIP[@]}" install "$TORCH_WHEEL"
else
    # No local wheel: use PyTorch's CPU index so no CUDA build is fetched.
    "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi

# 2. Pin whatever torch got installed for every later resolution.
INSTALLED_TORCH="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
CONSTRAINTS="$VENV/torch-constraint.txt"
echo "torch==$INSTALLED_TORCH" > "$CONSTRAINTS"

# 3. imitation and its dependencies (seals, stable-baselines3, gymnasium, ...).
"${PIP[@]}" install -c "$CONSTRAINTS" "imitation==$IMITATION_VERSION"

# 4. Verify.
if ! check; then
    echo "setup.sh: verification FAILED; running it loudly:" >&2
    "$VENV/bin/python" -c 'import torch, imitation, seals; from imitation.algorithms import mce_irl; print(torch.__version__, imitation.__version__)'
    exit 1
fi
"$VENV/bin/python" -c 'import torch, imitation, seals, numpy; print("setup.sh: OK torch", torch.__version__, "imitation", imitation.__version__, "seals", seals.__version__, "numpy", numpy.__version__)'
