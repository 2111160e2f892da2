"""Scores on named subsets of the test items, and the gaps between them.

A task directory may hold `subsets.json`: {"groups": {name: [item ids]}, "gaps": [[a, b], ...]} — e.g.
in_domain / out_of_domain (train on one domain, evaluate on the others) and the Think-Twice shortcut split,
shortcut / no_shortcut (`syncmod data robust-tasks` writes both). Every cell of the results (floor, majority,
every module in every language) then gets `subsets`: the mean item score on each group, its item count, and
each gap a - b. A model that learned the task shows a small shortcut gap; one that rides the shortcut, a large one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from syncmod.data.tasks import Task


def read_subsets(task_dir: str | Path) -> dict | None:
    """The task's subsets.json, checked; None when it has none."""
    from syncmod.errors import InputError

    path = Path(task_dir) / "subsets.json"
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
        groups, gaps = spec["groups"], spec.get("gaps", [])
        ok = all(isinstance(v, list) for v in groups.values()) and all(a in groups and b in groups for a, b in gaps)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError.at(str(path), f"not a subsets file ({e})", 'write {"groups": {name: [ids]}, "gaps": [[a, b]]}') from e
    if not ok:
        raise InputError.at(str(path), "every group must be a list of ids and every gap name two groups", "fix it")
    return {"groups": {k: set(map(str, v)) for k, v in groups.items()}, "gaps": [tuple(g) for g in gaps]}


def cell_subsets(items: list[float], ids: list[str], spec: dict) -> dict:
    """{group: {score, n}, gaps: {"a-b": score_a - score_b}} for one cell's per-item scores (in `ids` order)."""
    scores = np.asarray(items, dtype=float)
    out: dict = {}
    for name, members in spec["groups"].items():
        idx = [i for i, x in enumerate(ids) if x in members]
        out[name] = {"score": float(scores[idx].mean()) if idx else None, "n": len(idx)}
    out["gaps"] = {f"{a}-{b}": (out[a]["score"] - out[b]["score"]
                                if out[a]["score"] is not None and out[b]["score"] is not None else None)
                   for a, b in spec["gaps"]}
    return out


def add_subsets(results: dict, task: Task, task_dir: str | Path, max_items: int | None = None) -> bool:
    """Add `subsets` to every cell of a results document (items in id order, as transfer_matrix scores them);
    returns whether the task has subsets."""
    spec = read_subsets(task_dir)
    if spec is None:
        return False
    split = results["split"]
    ids = {lang: sorted(r.id for r in task.split(split, lang))[:max_items] for lang in results["langs"]}
    cells = [(lang, cell) for kind in ("floor", "majority") for lang, cell in results[kind].items()]
    cells += [(lang, cell) for m in results["modules"] for lang, cell in m["scores"].items()]
    for lang, cell in cells:
        if cell.get("items") is not None:
            cell["subsets"] = cell_subsets(cell["items"], ids[lang], spec)
    results["subsets"] = {"groups": {k: len(v) for k, v in spec["groups"].items()},
                          "gaps": [list(g) for g in spec["gaps"]]}
    return True


def markdown(results: dict) -> str:
    """One row per module x language: the score on each group and each gap."""
    if "subsets" not in results:
        return ""
    paired = [g for gap in results["subsets"]["gaps"] for g in gap]  # each gap's two groups side by side
    groups = list(dict.fromkeys(paired + [g for g in results["subsets"]["groups"] if not g.startswith("genre:")]))
    gaps = [f"{a}-{b}" for a, b in results["subsets"]["gaps"]]
    head = ["module", "lang", *groups, *(f"gap {g}" for g in gaps)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(x):
        return "—" if x is None else f"{x:.3f}"

    rows = [("floor", lang, cell) for lang, cell in results["floor"].items()]
    rows += [(f"{m['type']}-{m['lang']}", lang, cell) for m in results["modules"] for lang, cell in m["scores"].items()]
    for name, lang, cell in rows:
        s = cell.get("subsets")
        if s:
            lines.append("| " + " | ".join([name, lang, *(fmt(s[g]["score"]) for g in groups),
                                             *(fmt(s["gaps"][g]) for g in gaps)]) + " |")
    return "\n".join(lines) + "\n"
