#!/usr/bin/env bash
# Reproduce the README's timing table: generate seeded gridworlds with make_example.py
# and run run_mce.py on each, one job at a time (the machine has 2 cores).
#   bash benchmarks/imitation/bench_examples.sh [--with-n30]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$HERE/../.venv-imitation/bin/python"
OUT="${OUT:-$HERE/../work/imitation}"
bash "$HERE/setup.sh"
mkdir -p "$OUT"
run() {  # n demos lr occupancy
    local n=$1 d=$2 lr=$3 occ=$4
    python3 "$HERE/make_example.py" --n "$n" --demos "$d" --seed 0 --out-dir "$OUT" >/dev/null
    "$PY" "$HERE/run_mce.py" --mdp "$OUT/mdp_n${n}_s0.npz" --demos "$OUT/demos_n${n}_d${d}_s0.npz" \
        --out "$OUT/res_n${n}_d${d}_lr${lr}_${occ}.json" --max-iter 1000 --lr "$lr" \
        --seed 0 --occupancy "$occ"
}
for n in 10 20; do
    for d in 50 500; do
        for lr in 0.01 0.1; do run "$n" "$d" "$lr" imitation; done
        run "$n" "$d" 0.1 aligned
    done
done
if [[ "${1:-}" == "--with-n30" ]]; then
    run 30 500 0.01 imitation
    run 30 500 0.1 imitation
fi
python3 "$HERE/summarize.py" "$OUT"/res_n*.json | tee "$OUT/summary.md"
