"""Writing an evaluation: results.json, a Markdown table, and a heatmap PNG of the transfer matrix."""

from __future__ import annotations

from pathlib import Path

from syncmod.io import atomic_write, write_json


def markdown(results: dict) -> str:
    langs = results["langs"]
    metric = "accuracy" if results["kind"] == "classify" else "exact match"
    lines = [f"### {results['task']} ({metric}, {results['split']} split; 95% bootstrap intervals)", "",
             "| module | trained in | " + " | ".join(langs) + " | gap | " + " | ".join(f"TR→{t}" for t in langs)
             + " | " + " | ".join(f"retained {t}" for t in langs) + " |",
             "|" + "---|" * (3 + 3 * len(langs))]
    floor = results["floor"]
    lines.append("| no module (floor) | - | " + " | ".join(_fmt(floor[t]) for t in langs) + " | | "
                 + " | ".join("" for _ in langs) + " | " + " | ".join("" for _ in langs) + " |")
    for m in results["modules"]:
        tr = " | ".join(f"{m['transfer_ratio'][t]:.2f}" if m["transfer_ratio"][t] is not None else "-" for t in langs)
        ret = " | ".join(f"{m['retained'][t]:.2f}" if t in m["retained"] else "-" for t in langs)
        gap = f"{m['gap']:.3f}" if m["gap"] is not None else "-"
        lines.append(f"| {m['type']} | {m['lang']} | " + " | ".join(_fmt(m["scores"][t]) for t in langs)
                     + f" | {gap} | {tr} | {ret} |")
    return "\n".join(lines) + "\n"


def _fmt(cell: dict) -> str:
    lo, hi = cell["ci"]
    return f"{cell['score']:.3f} [{lo:.2f}, {hi:.2f}]"


def heatmap(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs, modules = results["langs"], results["modules"]
    rows = [[m["scores"][t]["score"] for t in langs] for m in modules] + [[results["floor"][t]["score"] for t in langs]]
    labels = [f"{m['type']} ({m['lang']})" for m in modules] + ["no module"]
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(langs), 0.9 + 0.45 * len(rows)))
    im = ax.imshow(rows, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("evaluated in (language / base)")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_title(f"{results['task']}: transfer matrix")
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
