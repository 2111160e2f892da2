"""Numbers of the module-algebra cells: chance-corrected scores and ratios with paired bootstrap intervals over
the test items (one seed: the items are the unit that varies), and the markdown tables of `algebra.md`."""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000


def _draws(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))


def corrected(items: np.ndarray, chance: float) -> float:
    """Chance-corrected score: (score - chance) / (1 - chance); 0 = chance, 1 = every item right."""
    return float((items.mean() - chance) / (1 - chance))


def ratio(num: np.ndarray, den: np.ndarray, chance: float) -> dict:
    """(num - chance) / (den - chance) over the same items, with a paired 95% interval: the chance-corrected
    fraction of `den`'s score that `num` keeps."""
    def stat(a, b):
        d = b - chance
        return (a - chance) / np.where(np.abs(d) < 1e-9, np.nan, d)

    idx = _draws(len(num))
    draws = stat(num[idx].mean(1), den[idx].mean(1))
    return {"value": float(stat(num.mean(), den.mean())), "ci": _interval(draws)}


def delta(a: np.ndarray, b: np.ndarray, chance: float) -> dict:
    """Chance-corrected a minus b on the same items, paired 95% interval."""
    idx = _draws(len(a))
    draws = (a[idx].mean(1) - b[idx].mean(1)) / (1 - chance)
    return {"value": float((a.mean() - b.mean()) / (1 - chance)), "ci": _interval(draws)}


def score(items: np.ndarray, chance: float) -> dict:
    idx = _draws(len(items))
    return {"raw": float(items.mean()), "value": corrected(items, chance),
            "ci": _interval((items[idx].mean(1) - chance) / (1 - chance))}


def _interval(draws: np.ndarray) -> list[float]:
    draws = draws[np.isfinite(draws)]
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))] if len(draws) else [np.nan, np.nan]


def fmt(x: dict | None, signed: bool = False) -> str:
    if not x:
        return "-"
    s = "+.2f" if signed else ".2f"
    return f"{x['value']:{s}} [{x['ci'][0]:{s}}, {x['ci'][1]:{s}}]"


def tables(rows: dict) -> str:
    """algebra.md: one table per cell kind, chance-corrected figures first, raw accuracy beside."""
    parts = ["# Module algebra\n",
             "Chance-corrected scores ((acc - chance) / (1 - chance)) and ratios ((acc - chance) / (reference - "
             "chance)); [95% paired bootstrap interval over test items, one seed]. Raw accuracy in parentheses.\n"]
    from syncmod.study.algebra_tune import table as _multi_task_tuned

    for kind, render in (("multi-source", _multi_source), ("cross-base", _cross_base), ("multi-task", _multi_task),
                         ("multi-task-tuned", _multi_task_tuned), ("negation", _negation),
                         ("module-types", _module_types)):
        if rows.get(kind):
            parts.append(render(rows[kind]))
    return "\n".join(parts)


def _multi_source(rows: list[dict]) -> str:
    out = ["## Multi-source transfer: the other languages' native modules merged, applied on the target's base\n",
           "| condition | method | target | merged | best single source | Δ merged − best single | merged / native |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['condition']} | {r['method']} | {r['target']} | {fmt(r['merged'])} ({r['merged']['raw']:.3f}) "
                   f"| {r['best_source']} {fmt(r['best'])} ({r['best']['raw']:.3f}) | {fmt(r['delta'], True)} "
                   f"| {fmt(r['kept'])} |")
    return "\n".join(out) + "\n"


def _cross_base(rows: list[dict]) -> str:
    out = ["## Cross-base merge: the four native modules (each trained on its own base) merged into one, on every base\n",
           "| condition | method | base | merged | native | merged / native |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['condition']} | {r['method']} | {r['lang']} | {fmt(r['merged'])} ({r['merged']['raw']:.3f}) "
                   f"| {fmt(r['native'])} ({r['native']['raw']:.3f}) | {fmt(r['kept'])} |")
    return "\n".join(out) + "\n"


def _multi_task(rows: list[dict]) -> str:
    out = ["## Multi-task merge: event-class + agent-kind bodies merged, each task read by its own head (source base)\n",
           "| condition | module | method | task | merged | single-task module | kept (merged / single) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['condition']} | {r.get('module', 'adapter')} | {r['method']} | {r['task']} "
                   f"| {_with_raw(r['merged'])} | {_with_raw(r['single'])} | {fmt(r['kept'])} |")
    return "\n".join(out) + "\n"


def _negation(rows: list[dict]) -> str:
    out = ["## Negation: a multi-task merge minus the event-class module (task arithmetic, weight −1)\n",
           "`head only`: the task's own head on the base with its module's body removed (the module minus itself) — "
           "what the head alone reads off the base; `floor`: no module (label tokens on the bare base); "
           "`after − head only` < 0: the negation took away all the body added (and more).\n",
           "| condition | module | merged by | task | single-task module | before (merged) | after negation | head only "
           "| floor (no module) | after / before | after − head only |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['condition']} | {r.get('module', 'adapter')} | {r['method']} | {r['task']} "
                   f"| {_with_raw(r.get('single'))} | {_with_raw(r['before'])} | {_with_raw(r['after'])} "
                   f"| {_with_raw(r.get('head_only'))} | {_with_raw(r['floor'])} | {fmt(r['kept'])} "
                   f"| {fmt(r.get('below_head'), True)} |")
    return "\n".join(out) + "\n"


def _with_raw(x: dict | None) -> str:
    return f"{fmt(x)} ({x['raw']:.3f})" if x else "-"


def _module_types(rows: list[dict]) -> str:
    out = ["## Module types with cost (event-class, trained in en, moved to xa/xb/xc)\n",
           "| condition | module | source | target (mean) | retained (vs native adapter) | retained (vs native of "
           "its type) | trainable parameters | training s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["module"] + (f"; Δ no swap − swap {fmt(r['vs_swap'], True)}" if r.get("vs_swap") else "")
        out.append(f"| {r['condition']} | {name} | {_with_raw(r['source'])} | {_with_raw(r['target'])} "
                   f"| {fmt(r['retained'])} | {fmt(r.get('retained_own'))} | {r['params']:,} | {r['seconds']:.0f} |")
    return "\n".join(out) + "\n"
