"""Human-readable view of a corpus: counts per language, lengths, examples, sync points on a pair."""

from __future__ import annotations

from syncmod.data.parallel import ParallelExample
from syncmod.data.validate import Summary


def mark_cuts(text: str, cuts: list[int]) -> str:
    """'a b c d' with cuts [2, 4] -> 'a b ‖ c d ‖'."""
    words = text.split()
    out = []
    for i, w in enumerate(words, 1):
        out.append(w)
        if i in cuts:
            out.append("‖")
    return " ".join(out)


def render(summary: Summary, indent: str = "") -> list[str]:
    lines = [f"{indent}{summary.path}  [{summary.kind}]"]
    for lang in sorted(summary.units):
        s = summary.stats(lang)
        lines.append(f"{indent}  {lang:>8}: {summary.units[lang]:>9,} units  words mean {s['mean']:.1f} "
                     f"median {s['median']:.0f} max {s['max']}")
    if summary.example is not None:
        lines += [indent + "  " + line for line in sync_view(summary.example)]
    elif summary.examples:
        lang = sorted(summary.examples)[0]
        lines.append(f"{indent}  example ({lang}): {summary.examples[lang][:200]}")
    for part in summary.parts:
        lines += render(part, indent + "  ")
    return lines


def sync_view(ex: ParallelExample) -> list[str]:
    """The example's language pair with the most sync points, marked (‖)."""
    langs = list(ex.texts)
    pairs = [(x, y) for i, x in enumerate(langs) for y in langs[i + 1:]]
    a, b = max(pairs, key=lambda p: len(ex.cuts(*p)))
    cuts = ex.cuts(a, b)
    kind = "annotated cuts" if (a, b) in ex.sync or (b, a) in ex.sync else "eos only (no annotation)"
    return [f"sync points {a}-{b} ({kind}): {cuts}",
            f"  {a}: {mark_cuts(ex.texts[a], [x for x, _ in cuts])}",
            f"  {b}: {mark_cuts(ex.texts[b], [y for _, y in cuts])}"]
