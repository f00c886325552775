"""Print a markdown table from run_mce.py result JSONs: python summarize.py R1.json ..."""

import json
import sys


def first_time(times, corrs, level):
    for t, c in zip(times, corrs, strict=True):
        if c is not None and c >= level:
            return f"{t:.2f}"
    return "-"


def main(paths):
    print(
        "| N | S | H | demos | lr | occupancy | iters | converged | train s | train CPU s "
        "| ms/iter | t(r>=0.95) s | t(r>=0.99) s | setup s | peak RSS MB | final r |"
    )
    print("|" + "---|" * 16)
    for p in paths:
        r = json.load(open(p))
        c = r["config"]
        n = int(round(c["n_states"] ** 0.5))
        fc = r["final_correlation"]
        print(
            f"| {n} | {c['n_states']} | {c['horizon']} | {c['n_demos']} | {c['lr']} "
            f"| {c['occupancy']} | {r['iterations']} | {'yes' if r['converged'] else 'no'} "
            f"| {r['wall_time_s']:.2f} | {r.get('train_cpu_time_s', float('nan')):.2f} "
            f"| {1000 * r['wall_time_s'] / max(r['iterations'], 1):.1f} "
            f"| {first_time(r['times'], r['correlations'], 0.95)} "
            f"| {first_time(r['times'], r['correlations'], 0.99)} "
            f"| {r['setup_time_s']:.2f} | {r['peak_rss_mb']:.0f} "
            f"| {'-' if fc is None else f'{fc:.4f}'} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
