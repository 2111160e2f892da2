"""Writing an evaluation: results.json, a Markdown table, and a heatmap PNG of the transfer matrix.

The table shows scores beside their baselines (the no-module floor, the majority class, chance), then the
transfer ratios and retained fractions with the chance-corrected figure first: a raw ratio of two scores
near chance is noise and must not lead (DESIGN §3)."""

from __future__ import annotations

from pathlib import Path

from syncmod.io import atomic_write, write_json

METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "exact_match": "exact match", "token_f1": "token F1"}


def markdown(results: dict) -> str:
    langs = results["langs"]
    metric = METRIC_NAMES[results.get("metric") or ("accuracy" if results["kind"] == "classify" else "exact_match")]
    lines = [f"### {results['task']} ({metric}, {results['split']} split; 95% bootstrap intervals)", "",
             "| module | trained in | " + " | ".join(langs) + " | gap |", "|" + "---|" * (3 + len(langs))]
    lines.append("| no module (floor) | - | " + " | ".join(_fmt(results["floor"][t]) for t in langs) + " | |")
    if "majority" in results:
        answers = sorted({a["answer"] for a in results["majority_answer"].values()})
        lines.append(f"| majority class ({', '.join(answers)}) | - | "
                     + " | ".join(_fmt(results["majority"][t]) for t in langs) + " | |")
        lines.append("| chance | - | " + " | ".join(f"{results['chance'][t]:.3f}" for t in langs) + " | |")
    for m in results["modules"]:
        gap = f"{m['gap']:.3f}" if m["gap"] is not None else "-"
        lines.append(f"| {m['type']} | {m['lang']} | " + " | ".join(_fmt(m["scores"][t]) for t in langs)
                     + f" | {gap} |")
    if "majority" in results:
        lines += ["", "Transfer ratio TR(s→t) and retained fraction (moved / native in t), each as "
                  "**chance-corrected** / majority-corrected / raw; corrected = (x − baseline) / (reference − "
                  "baseline), '-' where the reference is not above the baseline.", "",
                  "| module | trained in | " + " | ".join(f"TR→{t}" for t in langs) + " | "
                  + " | ".join(f"retained {t}" for t in langs) + " |", "|" + "---|" * (2 + 2 * len(langs))]
        for m in results["modules"]:
            tr = [_triple(m["transfer_ratio_chance"][t], m["transfer_ratio_majority"][t], m["transfer_ratio"][t])
                  for t in langs]
            ret = [_triple(m["retained_chance"].get(t), m["retained_majority"].get(t), m["retained"].get(t))
                   if t in m["retained"] or t in m["retained_chance"] else "-" for t in langs]
            lines.append(f"| {m['type']} | {m['lang']} | " + " | ".join(tr) + " | " + " | ".join(ret) + " |")
    return "\n".join(lines) + "\n"


def _fmt(cell: dict) -> str:
    lo, hi = cell["ci"]
    return f"{cell['score']:.3f} [{lo:.2f}, {hi:.2f}]"


def _triple(chance: float | None, majority: float | None, raw: float | None) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    return f"**{f(chance)}** / {f(majority)} / {f(raw)}"


def heatmap(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs, modules = results["langs"], results["modules"]
    baselines = [("no module (floor)", results["floor"])]
    if "majority" in results:
        answers = ", ".join(sorted({a["answer"] for a in results["majority_answer"].values()}))
        baselines.append((f"majority ({answers})", results["majority"]))
    rows = [[m["scores"][t]["score"] for t in langs] for m in modules] + \
           [[cells[t]["score"] for t in langs] for _, cells in baselines]
    labels = [f"{m['type']} ({m['lang']})" for m in modules] + [name for name, _ in baselines]
    fig, ax = plt.subplots(figsize=(2.0 + 1.1 * len(langs), 1.1 + 0.45 * len(rows)))
    im = ax.imshow(rows, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(labels)), labels)
    for tick in ax.get_yticklabels()[len(modules):]:
        tick.set_fontstyle("italic")  # baselines, not modules
    ax.axhline(len(modules) - 0.5, color="white", linewidth=3)
    ax.set_xlabel("evaluated in (language / base)")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    metric = METRIC_NAMES.get(results.get("metric", ""), "score")
    chance = sorted({round(v, 3) for v in results.get("chance", {}).values()})
    note = f"; chance {', '.join(f'{c:.2f}' for c in chance)}" if chance else ""
    ax.set_title(f"{results['task']}: transfer matrix ({metric}{note})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def write(results: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "md": out / "table.md", "png": out / "heatmap.png"}
    write_json(paths["json"], results)
    with atomic_write(paths["md"]) as f:
        f.write(markdown(results))
    heatmap(results, paths["png"])
    return paths
