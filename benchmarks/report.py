"""Render ``benchmarks/results.json`` as the markdown tables of ``benchmarks/README.md``.

Usage: ``.venv/bin/python benchmarks/report.py [results.json]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, fmt=".3g"):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    return format(x, fmt)


def render(results: dict) -> str:
    """Return markdown tables for every benchmark present in ``results``."""
    out = []
    m = results.get("machine", {})
    out.append(f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, "
               f"{m.get('torch_threads')} torch thread; load average at start "
               f"{_f((m.get('loadavg_at_start') or [None])[0], '.2f')}.\n")
    rows = results.get("imitation")
    if rows:
        out.append("### bayes_irl vs imitation MCE IRL (causal model, H = 2N)\n")
        out.append("| N | S | demos | imitation iters | imitation wall s (CPU s) | imitation "
                   "t→own final r s | imitation final r | bayes_irl MAP wall s (CPU s) | "
                   "bayes_irl t→imitation's r s | speed-up to r | speed-up converged (CPU) | "
                   "MAP r | SVI mean r | return imit / MAP / SVI / true | SVI 300 steps s | "
                   "peak RSS MB imit / bayes_irl | load |")
        out.append("|" + "---|" * 17)
        for r in rows:
            i, b = r.get("imitation", {}), r.get("bayes_irl", {})
            if "error" in b:
                b = {}
            ret = " / ".join(_f(x, ".1f") for x in (i.get("return"), b.get("map_return"),
                                                     b.get("svi_return"), b.get("true_return")))
            imit_iters = i.get("iterations")
            if i.get("note"):
                imit_iters = (f"{imit_iters} (timing only; ~230 iters ≈ "
                              f"{_f(i.get('projected_cpu_s_230_iters'))} CPU s)")
            out.append(
                f"| {r['N']} | {r['S']} | {r['demos']} | {_f(imit_iters)} | "
                f"{_f(i.get('wall_s'))} ({_f(i.get('cpu_s'))}) | "
                f"{_f(i.get('time_to_own_final_corr_s'))} | "
                f"{_f(i.get('final_correlation'), '.4f')} | "
                f"{_f(b.get('map_wall_s'))} ({_f(b.get('map_cpu_s'))}) | "
                f"{_f(b.get('time_to_target_s'))} | {_f(r.get('speedup_to_target_wall'))}× | "
                f"{_f(r.get('speedup_converged_wall'))}× "
                f"({_f(r.get('speedup_converged_cpu'))}×) | "
                f"{_f(b.get('map_correlation'), '.4f')} | "
                f"{_f(b.get('svi_mean_correlation'), '.4f')} | "
                f"{ret} | {_f(b.get('svi_wall_s'))} | "
                f"{_f(i.get('peak_rss_mb'), '.0f')} / {_f(b.get('peak_rss_mb'), '.0f')} | "
                f"{_f((b.get('loadavg') or [None])[0], '.1f')} |"
            )
        out.append("")
    rows = results.get("overhead")
    if rows:
        out.append("### Pyro overhead: one SVI step (AutoDelta, Adam) ÷ bare torch "
                   "forward+backward+Adam\n")
        out.append("| N | S | H | demos | SVI step ms wall (CPU) | bare ms wall (CPU) | "
                   "ratio wall | ratio CPU | load |")
        out.append("|" + "---|" * 9)
        for r in rows:
            out.append(f"| {r['N']} | {r['S']} | {r['H']} | {r['demos']} | "
                       f"{_f(r['svi_step_ms_wall'])} ({_f(r['svi_step_ms_cpu'])}) | "
                       f"{_f(r['bare_ms_wall'])} ({_f(r['bare_ms_cpu'])}) | "
                       f"{_f(r['ratio_wall'], '.2f')} | {_f(r['ratio_cpu'], '.2f')} | "
                       f"{_f(r['loadavg'][0], '.1f')} |")
        out.append("")
    rows = results.get("nuts")
    if rows:
        rows = rows if isinstance(rows, list) else [rows]
        out.append("### NUTS, 10×10 grid, H = 20, 200 demos, 2 chains, max tree depth 6\n")
        out.append("| potential | warmup + draws | wall s | CPU s | min bulk ESS | max r_hat | "
                   "ESS/s wall | ESS/s CPU | divergences | load |")
        out.append("|" + "---|" * 10)
        for r in rows:
            out.append(f"| {r.get('potential', 'model')} | {r['warmup']} + {r['draws']} | "
                       f"{_f(r['wall_s'])} | {_f(r['cpu_s'])} | {_f(r['min_bulk_ess'], '.0f')} | "
                       f"{_f(r['max_rhat'], '.3f')} | {_f(r['ess_per_s_wall'])} | "
                       f"{_f(r['ess_per_s_cpu'])} | {r['divergences']} | "
                       f"{_f(r['loadavg'][0], '.1f')} |")
        out.append("")
    sc = results.get("scaling")
    if sc:
        out.append("### Scaling (one gradient, exact global normaliser; best of repeats; fresh "
                   "process per point)\n")
        out.append("| curve | S | H | demos | subsample | wall s | CPU s | peak RSS MB | load |")
        out.append("|" + "---|" * 9)
        for curve in ("states", "horizon", "demos"):
            for p in sc.get(curve, []):
                if "error" in p:
                    out.append(f"| {curve} | {p.get('S')} | {p.get('H')} | error | | | | | |")
                    continue
                out.append(f"| {curve} | {p['S']} | {p['H']} | {p.get('demos', '–')} | "
                           f"{_f(p.get('subsample'))} | {_f(p['wall_s'])} | {_f(p['cpu_s'])} | "
                           f"{_f(p['peak_rss_mb'], '.0f')} | {_f(p['loadavg'], '.1f')} |")
        out.append("")
    large = results.get("large")
    if large:
        out.append("### Large grid, SVI (AutoMultivariateNormal, 200 demos)\n")
    for lg in large if isinstance(large, list) else [large] if large else []:
        if "error" in lg:
            out.append(f"error: {lg['error'][-300:]}\n")
        else:
            out.append(f"S = {lg['S']}, H = {lg['H']}: {_f(lg['wall_s_per_step'])} s wall "
                       f"({_f(lg['cpu_s_per_step'])} s CPU) per SVI step over "
                       f"{lg['svi_steps']} steps, peak RSS {_f(lg['peak_rss_mb'], '.0f')} MB "
                       f"(load {_f(lg['loadavg'], '.1f')}).\n")
    return "\n".join(out)


def main(argv=None) -> int:
    """Print the tables."""
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).with_name("results.json")
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
