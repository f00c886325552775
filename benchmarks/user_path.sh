#!/usr/bin/env bash
# "User path" timing: imitation's MCEIRL vs `bayes-irl fit` with default options on the
# same .npz files (make_example.py: N x N gridworld, causal soft-optimal demos, seed 0).
#   bash benchmarks/user_path.sh N DEMOS [methods...]     e.g. 10 50 laplace svi nuts
#   KIND=global bash benchmarks/user_path.sh ...           the global model (default causal)
#   BAYES_IRL=/path/to/bayes-irl bash benchmarks/user_path.sh ...   another version's command
#     (e.g. a wrapper running a checkout of an earlier commit), to time two versions side by side
# Prints, per run: wall s, user+sys CPU s (of the process and its children), load average.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N=$1; D=$2; shift 2
KIND=${KIND:-causal}
OUT="$HERE/work/user_path"; mkdir -p "$OUT"
python3 "$HERE/imitation/make_example.py" --n "$N" --demos "$D" --seed 0 --out-dir "$OUT" >/dev/null
MDP="$OUT/mdp_n${N}_s0.npz"; DEMOS="$OUT/demos_n${N}_d${D}_s0.npz"
t() { /usr/bin/time -f "  wall %e s, cpu %U+%S s" "$@"; }
echo "N=$N demos=$D load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -x "$HERE/.venv-imitation/bin/python" ]; then
    echo "imitation MCEIRL (lr 0.01, max-iter 1000):"
    t "$HERE/.venv-imitation/bin/python" "$HERE/imitation/run_mce.py" --mdp "$MDP" --demos "$DEMOS" \
        --out "$OUT/imitation_n${N}_d${D}.json" --max-iter 1000 --lr 0.01 --seed 0 2>&1 | tail -2
else
    echo "imitation MCEIRL: skipped (no benchmarks/.venv-imitation; see imitation/setup.sh)"
fi
for m in "$@"; do
    echo "bayes-irl fit --method $m --kind $KIND (load $(cut -d' ' -f1 /proc/loadavg)):"
    t "${BAYES_IRL:-$HERE/../.venv/bin/bayes-irl}" fit --mdp "$MDP" --demos "$DEMOS" --kind "$KIND" --method "$m" \
        --out "$OUT/bayes_${m}_n${N}_d${D}" --overwrite --no-progress 2>&1 | grep -E "fitted in|wall|weights|r_hat" || true
done
