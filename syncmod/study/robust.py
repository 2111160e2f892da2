"""The robustness table of a study (`robust.md`, `robust.json`): for every module recipe, in-domain and
out-of-domain score, the shortcut gap and the cross-lingual numbers — and every method against plain training
of the same module type, with paired 95% intervals (bootstrap over seeds and, inside them, test items; the same
items for both recipes, so the differences are paired).

Measures (the source-language module unless it says otherwise; groups from the task's subsets.json), all
chance-corrected as DESIGN §3 asks — a score s becomes (s − chance) / (1 − chance), chance being the task's
(0 for generation, so exact match stays as it is):
  id        score on the in_domain items in the source language
  ood       score on the out_of_domain items in the source language
  gap       shortcut minus no_shortcut items in the source language (smaller = less shortcut reliance)
  target    mean score over the target languages (zero-shot cross-lingual transfer)
  retained  (target − chance) / (native − chance): the natively trained module of the same recipe, mean over targets
and, beside them, the raw `id` and `target` scores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from syncmod.evaluation.scores import percentile_interval, resample
from syncmod.evaluation.subsets import read_subsets

RESAMPLES = 1000
MEASURES = ("id", "ood", "gap", "target", "retained")  # chance-corrected
RAW = ("id_raw", "target_raw")


class RobustUnit:
    """One (condition, seed, task, module recipe) evaluation, read for the robustness measures."""

    def __init__(self, results: dict, source: str, targets: list[str], ids: list[str], spec: dict):
        src = next(m for m in results["modules"] if m["lang"] == source)
        self.src = {t: np.asarray(src["scores"][t]["items"], dtype=float) for t in [source, *targets]}
        natives = {m["lang"]: m for m in results["modules"] if m["lang"] != source}
        self.native = {t: np.asarray(natives[t]["scores"][t]["items"], dtype=float) for t in targets if t in natives}
        self.masks = {g: np.array([i in members for i in ids]) for g, members in spec["groups"].items()}
        self.source, self.targets, self.n = source, targets, len(ids)
        self.chance = {t: float((results.get("chance") or {}).get(t, 0.0)) for t in [source, *targets]}

    def stats(self, idx: np.ndarray | None = None) -> dict[str, float]:
        idx = np.arange(self.n) if idx is None else idx

        def mean(x, group=None):
            sel = x[idx] if group is None else x[idx][self.masks[group][idx]]
            return float(sel.mean()) if len(sel) else float("nan")

        s, c = self.src[self.source], self.chance

        def cc(x: float, lang: str) -> float:
            return (x - c[lang]) / (1 - c[lang])

        target_raw = float(np.mean([mean(self.src[t]) for t in self.targets]))
        out = {"target": float(np.mean([cc(mean(self.src[t]), t) for t in self.targets])), "target_raw": target_raw}
        if "in_domain" in self.masks:
            out["id"], out["ood"] = cc(mean(s, "in_domain"), self.source), cc(mean(s, "out_of_domain"), self.source)
            out["id_raw"] = mean(s, "in_domain")
        if "shortcut" in self.masks:
            out["gap"] = (mean(s, "shortcut") - mean(s, "no_shortcut")) / (1 - c[self.source])
        kept = [(mean(self.src[t]) - c[t]) / (mean(self.native[t]) - c[t]) for t in self.native
                if mean(self.native[t]) > c[t]]
        if kept:
            out["retained"] = float(np.mean(kept))
        return out


def _interval(stat, units: dict[int, RobustUnit], rng: np.random.Generator) -> dict[str, list[float]]:
    seeds = sorted(units)
    draws: dict[str, list[float]] = {}
    for _ in range(RESAMPLES):
        sel = [seeds[i] for i in resample(rng, len(seeds))]
        idx = {s: resample(rng, units[s].n) for s in set(sel)}
        for k, v in stat(idx, sel).items():
            draws.setdefault(k, []).append(v)
    return {k: list(percentile_interval(np.asarray(v)[~np.isnan(v)])) if not np.isnan(v).all() else [None, None]
            for k, v in draws.items()}


def _over_seeds(units: dict[int, RobustUnit], idx: dict | None, seeds: list[int]) -> dict[str, float]:
    per = [units[s].stats(None if idx is None else idx[s]) for s in seeds]
    out = {}
    for k in per[0]:
        vals = [p[k] for p in per if p[k] == p[k]]  # a resample may hold no item of a group: nan, left out
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def plain_of(recipe: list[str]) -> str | None:
    """The module type a recipe trains (`--module.type=X` among its overrides)."""
    found = [m.group(1) for o in recipe for m in [re.match(r"--module\.type=(\S+)$", o)] if m]
    return found[-1] if found else None


def robust_summary(cells: list[dict], cfg, task_dirs: dict[str, Path]) -> dict:
    """Rows per (condition, task, recipe) and comparisons of every variant with its plain module type."""
    rng = np.random.default_rng(0)
    targets = [t for t in cfg.langs if t != cfg.source]
    groups: dict[tuple, dict[int, RobustUnit]] = {}
    for c in cells:
        spec = read_subsets(task_dirs[c["task"]])
        if spec is None:
            continue
        ids = sorted(i for i in _test_ids(task_dirs[c["task"]], cfg.source))[: cfg.max_items]
        groups.setdefault((c["condition"], c["task"], c["module"]), {})[c["seed"]] = RobustUnit(
            c["results"], cfg.source, targets, ids, spec)
    rows = []
    for (cond, task, module), units in groups.items():
        seeds = sorted(units)
        rows.append({"condition": cond, "task": task, "module": module, "seeds": len(seeds),
                     "mean": _over_seeds(units, None, seeds),
                     "ci": _interval(lambda idx, sel, u=units: _over_seeds(u, idx, sel), units, rng)})
    comparisons = []
    for (cond, task, module), units in groups.items():
        plain = plain_of(cfg.module_variants.get(module, []))
        if plain is None or (cond, task, plain) not in groups:
            continue
        base = groups[(cond, task, plain)]
        common = {s: units[s] for s in units if s in base}

        def diff(idx, sel, a=common, b=base):
            da, db = _over_seeds(a, idx, sel), _over_seeds(b, idx, sel)
            return {k: da[k] - db[k] for k in da if k in db}

        comparisons.append({"condition": cond, "task": task, "module": module, "against": plain,
                            "diff": diff(None, sorted(common)), "ci": _interval(diff, common, rng)})
    return {"rows": rows, "comparisons": comparisons}


def _test_ids(task_dir: Path, lang: str) -> list[str]:
    with open(task_dir / f"test.{lang}.jsonl", encoding="utf-8") as f:
        return [str(json.loads(line)["id"]) for line in f if line.strip()]


def markdown(summary: dict) -> str:
    def fmt(m, ci, k):
        if k not in m or m[k] != m[k]:
            return "—"
        lo, hi = ci.get(k, [None, None])
        return f"{m[k]:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")

    cols = [*MEASURES, *RAW]
    head = ("| condition | task | module | " + " | ".join(k.replace("_raw", " (raw)") for k in cols) + " |\n|"
            + "---|" * (3 + len(cols)) + "\n")
    out = ["## Robustness (source-language module; chance-corrected: (score − chance) / (1 − chance), retained "
           "(target − chance) / (native − chance), chance 0 for generation; raw id and target last; 95% intervals "
           "over seeds x items)\n\n", head]
    for r in summary["rows"]:
        out.append(f"| {r['condition']} | {r['task']} | {r['module']} | "
                   + " | ".join(fmt(r["mean"], r["ci"], k) for k in cols) + " |\n")
    out.append("\n## Each method against plain training of its module type (paired; ✓ = interval excludes 0)\n\n")
    out.append("| condition | task | method | against | " + " | ".join(f"Δ{k}" for k in MEASURES) + " |\n|"
               + "---|" * (4 + len(MEASURES)) + "\n")
    for c in summary["comparisons"]:
        cells = []
        for k in MEASURES:
            lo, hi = c["ci"].get(k, [None, None])
            mark = "" if lo is None else (" ✓" if lo > 0 or hi < 0 else " ✗")
            cells.append(fmt(c["diff"], c["ci"], k) + mark)
        out.append(f"| {c['condition']} | {c['task']} | {c['module']} | {c['against']} | " + " | ".join(cells) + " |\n")
    return "".join(out)


def write_robust(cells: list[dict], cfg, out: Path, task_dirs: dict[str, Path]) -> bool:
    """robust.md and robust.json beside the study report; False (nothing written) without subsets."""
    from syncmod.io import atomic_write, write_json

    summary = robust_summary(cells, cfg, task_dirs)
    if not summary["rows"]:
        return False
    write_json(out / "robust.json", summary)
    with atomic_write(out / "robust.md") as f:
        f.write(markdown(summary))
    return True
