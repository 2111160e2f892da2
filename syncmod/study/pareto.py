"""The recipe view of a study: every condition (a variant of the pre-training recipe) by what it costs and what
it buys — ΔBPB in % of the reference's bits per byte at equal tokens against the chance-corrected retained
fraction of each module type — as a table of variants and a Pareto plot (`pareto.png`), one panel per task.

A variant is on the Pareto front of its module type when no other variant both costs less and retains more.
"""

from __future__ import annotations

from pathlib import Path

# the issue-13 goals drawn on the plot: cost at most +2 %, adapter >= 0.95, plain LoRA >= 0.8 (chance-corrected)
COST_GOAL = 2.0
RETAINED_GOAL = {"adapter": 0.95, "lora": 0.8}


def front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The Pareto front of (cost, retained, name) points: lower cost and higher retained are better."""
    out = []
    for p in points:
        if not any(q[0] <= p[0] and q[1] >= p[1] and (q[0], q[1]) != (p[0], p[1]) for q in points):
            out.append(p)
    return sorted(out)


def _val(row: dict, key: str) -> float | None:
    return row[key]["mean"] if key in row else None


def variants_markdown(summary: dict) -> str:
    """One row per condition: ΔBPB (% and absolute), then per module type the chance-corrected retained
    fraction [95% interval] and the target score; `†` marks a variant on its module type's Pareto front."""
    lines = []
    for task in sorted({r["task"] for r in summary["rows"]}):
        rows = [r for r in summary["rows"] if r["task"] == task]
        modules = list(dict.fromkeys(r["module"] for r in rows))
        conds = list(dict.fromkeys(r["condition"] for r in rows))
        on_front = {m: {p[2] for p in front(_points(rows, m))} for m in modules}
        lines += [f"## Variants: {task} (cost against retained, chance-corrected; † = on the Pareto front)", "",
                  "| variant | ΔBPB % | ΔBPB | " + " | ".join(f"{m}: retained, chance-corr. [95%] / target"
                                                          for m in modules) + " |",
                  "|---|---|---|" + "---|" * len(modules)]
        for cond in conds:
            by = {r["module"]: r for r in rows if r["condition"] == cond}
            any_row = next(iter(by.values()))
            pct, d = _val(any_row, "delta_bpb_pct"), _val(any_row, "delta_bpb")
            cells = []
            for m in modules:
                r = by.get(m)
                if r is None or "retained_chance" not in r:
                    cells.append("-")
                    continue
                lo, hi = r["retained_chance"]["ci"]
                mark = " †" if cond in on_front[m] else ""
                cells.append(f"{r['retained_chance']['mean']:.2f} [{lo:.2f}, {hi:.2f}] / {r['target']['mean']:.2f}{mark}")
            lines.append(f"| {cond} | {'-' if pct is None else f'{pct:+.1f} %'} | "
                         f"{'-' if d is None else f'{d:+.4f}'} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _points(rows: list[dict], module: str) -> list[tuple[float, float, str]]:
    return [(r["delta_bpb_pct"]["mean"], r["retained_chance"]["mean"], r["condition"]) for r in rows
            if r["module"] == module and "delta_bpb_pct" in r and "retained_chance" in r]


def pareto_plot(summary: dict, out: Path) -> Path:
    """ΔBPB % (x) against the chance-corrected retained fraction (y), a colour per module type, each variant
    labelled, its module type's Pareto front drawn, and the goals as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from syncmod.study.report import _save

    tasks = sorted({r["task"] for r in summary["rows"]})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = [r for r in summary["rows"] if r["task"] == task]
        for i, module in enumerate(dict.fromkeys(r["module"] for r in rows)):
            pts = _points(rows, module)
            if not pts:
                continue
            color = f"C{i}"
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color, label=module, s=22)
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points", color=color)
            f = front(pts)
            ax.plot([p[0] for p in f], [p[1] for p in f], color=color, lw=0.8, alpha=0.6)
            if module in RETAINED_GOAL:
                ax.axhline(RETAINED_GOAL[module], color=color, lw=0.7, ls="--")
        ax.axvline(COST_GOAL, color="gray", lw=0.7, ls="--")
        ax.axhline(0.0, color="gray", lw=0.5)
        ax.set_xlabel("ΔBPB % vs reference at equal tokens (cost)")
        ax.set_ylabel("retained, chance-corrected")
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "pareto.png")
