"""The study report: report.md + report.json + plots (transfer ratio per condition with 95% intervals, the
cost of syncing against the transfer gain, loss curves; transfer heatmaps are written per evaluation)."""

from __future__ import annotations

from pathlib import Path

from syncmod.io import atomic_write, write_json
from syncmod.pretrain.metrics import read_metrics


def _fmt(row: dict, key: str, digits: int = 3) -> str:
    if key not in row:
        return "-"
    v = row[key]
    lo, hi = v["ci"]
    sd = f" ± {v['sd']:.{digits}f}" if row["seeds"] > 1 else ""
    return f"{v['mean']:.{digits}f}{sd} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _diff(c: dict, key: str) -> str:
    if key not in c:
        return "-"
    lo, hi = c[key]["ci"]
    mark = " ✓" if lo > 0 else (" ✗" if hi < 0 else "")
    return f"{c[key]['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}"


def markdown(summary: dict, cfg) -> str:
    lines = [f"# syncmod study: modules trained in {summary['source']}, moved to {', '.join(summary['targets'])}", "",
             f"Seeds: {', '.join(map(str, cfg.seeds))}. Cells: mean ± sd over seeds [95% interval: bootstrap over "
             f"seeds and test items, paired]. Target = mean over target languages (each on its own base in "
             f"per-language conditions). Transfer ratio = target / source. Retained = target score / score of the "
             f"same module type trained natively in the target. ΔBPB = mean bits per byte minus `{cfg.reference}`'s "
             f"at the same number of training tokens (* = at its final value: it saw fewer tokens). Floor = the "
             f"base with no module.", ""]
    for task in sorted({r["task"] for r in summary["rows"]}):
        lines += [f"## {task}", "", "| condition | module | source | target | per target | **retained, chance-"
                  "corrected** | transfer ratio, chance-corrected | ΔBPB | ΔBPB % | retained (raw) | transfer ratio (raw) "
                  "| retrieval@sync | floor |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in [r for r in summary["rows"] if r["task"] == task]:
            per = " / ".join(f"{t} {r[f'to_{t}']['mean']:.2f}" for t in summary["targets"] if f"to_{t}" in r)
            star = "" if r.get("equal_tokens", True) else "*"
            lines.append(f"| {r['condition']} | {r['module']} | {_fmt(r, 'source')} | {_fmt(r, 'target')} | {per} | "
                         f"**{_fmt(r, 'retained_chance', 2)}** | {_fmt(r, 'transfer_ratio_chance', 2)} | "
                         f"{_fmt(r, 'delta_bpb', 4)}{star} | {_fmt(r, 'delta_bpb_pct', 1)} | {_fmt(r, 'retained', 2)} | "
                         f"{_fmt(r, 'transfer_ratio', 2)} | {_fmt(r, 'retrieval', 2)} | {_fmt(r, 'floor', 2)} |")
        lines.append("")
        comps = [c for c in summary.get("comparisons", []) if c["task"] == task]
        if comps:
            lines += [f"Against every other condition (`{comps[0]['condition']}` minus it; paired 95% interval):", "",
                      "| module | against | Δ source | Δ target | Δ retained, chance-corrected | Δ transfer ratio, "
                      "chance-corrected | Δ transfer ratio | Δ retained |", "|---|---|---|---|---|---|---|---|"]
            for c in comps:
                cols = [_diff(c, k) for k in ("source", "target", "retained_chance", "transfer_ratio_chance",
                                              "transfer_ratio", "retained")]
                lines.append(f"| {c['module']} | {c['against']} | " + " | ".join(cols) + " |")
            lines.append("")
    return "\n".join(lines)


def plots(summary: dict, cells: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    rows = summary["rows"]
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(rows), 3.2))
    labels = [f"{r['condition']}\n{r['module']}\n{r['task']}" for r in rows]
    key = "transfer_ratio_chance"  # chance-corrected leads (DESIGN §3): raw ratios of near-chance scores look good
    means = [r[key]["mean"] for r in rows]
    errs = [[max(0.0, m - r[key]["ci"][0]) for m, r in zip(means, rows, strict=True)],
            [max(0.0, r[key]["ci"][1] - m) for m, r in zip(means, rows, strict=True)]]
    ax.bar(range(len(rows)), means, yerr=errs, capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("transfer ratio, chance-corrected\n(target − chance) / (source − chance)", fontsize=8)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.axhline(0.0, color="gray", lw=0.8)
    fig.tight_layout()
    paths.append(_save(fig, out / "transfer_ratio.png"))

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for r in rows:
        if "delta_bpb" in r and "retained_chance" in r:
            ax.scatter(r["delta_bpb"]["mean"], r["retained_chance"]["mean"], label=f"{r['condition']}/{r['module']}")
    ax.set_xlabel("ΔBPB (cost of syncing)")
    ax.set_ylabel("retained, chance-corrected")
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(_save(fig, out / "cost_vs_transfer.png"))

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for pre in sorted({(c["condition"], c["seed"]) for c in cells}):
        metrics = out / "pretrain" / f"{pre[0]}-s{pre[1]}" / "metrics.jsonl"
        if metrics.exists():
            rows_ = read_metrics(metrics)
            pts = [(r["step"], sum(v for k, v in r.items() if k.startswith("clm/")) / max(1, sum(k.startswith("clm/") for k in r)))
                   for r in rows_ if r["kind"] != "eval" and any(k.startswith("clm/") for k in r)]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=f"{pre[0]} s{pre[1]}", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("CLM loss (mean over languages)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(_save(fig, out / "loss_curves.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path


def write_report(summary: dict, cells: list[dict], cfg, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    from syncmod.study.pareto import pareto_plot, variants_markdown
    from syncmod.study.per_language import markdown as per_language_md
    from syncmod.study.per_language import per_language

    summary["per_language"] = per_language(cells, cfg, out)
    md = "\n".join([markdown(summary, cfg), variants_markdown(summary), *per_language_md(summary["per_language"], cfg)])
    with atomic_write(out / "report.md") as f:
        f.write(md)
    write_json(out / "report.json", {"summary": summary, "cells": [{k: v for k, v in c.items()} for c in cells]})
    plots(summary, cells, out)
    pareto_plot(summary, out)
