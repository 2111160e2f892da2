"""The study's numbers: headline metrics per (condition, task, module) with paired bootstrap intervals, the
comparison of every condition against the first, and the cost of syncing at equal training tokens.

Intervals resample seeds and, inside them, test items — the same item indices for every language, module and
condition (test sets are parallel: the same ids everywhere), so differences are paired. Ratios are computed
inside each resample (ratio of means per seed, then the mean over seeds), not from the interval ends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from syncmod.evaluation.scores import percentile_interval, resample

RESAMPLES = 1000


def _items(cell: dict) -> np.ndarray | None:
    items = cell.get("items")
    return np.asarray(items, dtype=float) if items is not None else None


class Unit:
    """One (condition, seed, task, module) evaluation: item scores of the source module in every language,
    and of the natively trained modules in their own languages."""

    def __init__(self, results: dict, source: str, targets: list[str]):
        src = next(m for m in results["modules"] if m["lang"] == source)
        self.src = {t: _items(src["scores"][t]) for t in [source, *targets]}
        natives = {m["lang"]: m for m in results["modules"] if m["lang"] != source}
        self.native = {t: _items(natives[t]["scores"][t]) for t in targets if t in natives}
        self.plain = {"source": src["scores"][source]["score"], **{t: src["scores"][t]["score"] for t in targets},
                      **{f"native_{t}": natives[t]["scores"][t]["score"] for t in targets if t in natives}}
        self.chance = {t: float(results.get("chance", {}).get(t, 0.0)) for t in [source, *targets]}
        self.source, self.targets = source, targets
        self.paired = all(v is not None for v in [*self.src.values(), *self.native.values()])

    def stats(self, idx: np.ndarray | None) -> dict[str, float]:
        """Headline numbers on the items `idx` (None = all items)."""
        if idx is None or not self.paired:
            m = dict(self.plain)
        else:
            m = {"source": float(self.src[self.source][idx].mean()),
                 **{t: float(self.src[t][idx].mean()) for t in self.targets},
                 **{f"native_{t}": float(self.native[t][idx].mean()) for t in self.native}}
        out = {"source": m["source"], "target": float(np.mean([m[t] for t in self.targets]))}
        out["transfer_ratio"] = float(np.mean([m[t] / m["source"] if m["source"] else 0.0 for t in self.targets]))
        kept = [m[t] / m[f"native_{t}"] for t in self.targets if m.get(f"native_{t}")]
        if kept:
            out["retained"] = float(np.mean(kept))
        # chance-corrected (DESIGN §3): (score − chance) / (reference − chance); a near-chance ratio is noise
        c, src = self.chance, m["source"] - self.chance[self.source]
        out["transfer_ratio_chance"] = float(np.mean([(m[t] - c[t]) / src if src else 0.0 for t in self.targets]))
        kept = [(m[t] - c[t]) / (m[f"native_{t}"] - c[t]) for t in self.targets if m.get(f"native_{t}", c[t]) != c[t]]
        if kept:
            out["retained_chance"] = float(np.mean(kept))
        return out

    @property
    def n_items(self) -> int:
        return len(self.src[self.source]) if self.paired else 0


def summarise(units: dict[int, Unit], rng: np.random.Generator) -> dict[str, dict]:
    """mean ± sd over seeds and a paired 95% interval (seeds x items) for every headline number."""
    seeds = sorted(units)
    per_seed = [units[s].stats(None) for s in seeds]
    out = {}
    for key in per_seed[0]:
        xs = [p[key] for p in per_seed if key in p]
        out[key] = {"mean": float(np.mean(xs)), "sd": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
                    "ci": _interval(lambda idx, sel, k=key: _mean_over(units, sel, idx, k), units, rng)}
    return out


HEADLINE = ("source", "target", "retained_chance", "transfer_ratio_chance", "transfer_ratio", "retained")


def compare(a: dict[int, Unit], b: dict[int, Unit], rng: np.random.Generator,
            keys: tuple[str, ...] = HEADLINE) -> dict[str, dict]:
    """a − b for every headline number (`keys`), over the seeds both have, with a paired interval."""
    common = {s: (a[s], b[s]) for s in sorted(set(a) & set(b))}
    out = {}
    for key in keys:
        def diff(idx, sel, k=key):
            da = _mean_over({s: common[s][0] for s in common}, sel, idx, k)
            db = _mean_over({s: common[s][1] for s in common}, sel, idx, k)
            return da - db
        if any(key not in u.stats(None) for pair in common.values() for u in pair):
            continue
        point = diff(None, sorted(common))
        out[key] = {"diff": point, "ci": _interval(diff, {s: p[0] for s, p in common.items()}, rng)}
    return out


def _mean_over(units: dict[int, Unit], seeds: list[int], idx, key: str) -> float:
    vals = [units[s].stats(idx.get(s) if isinstance(idx, dict) else idx).get(key) for s in seeds]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def _interval(stat, units: dict[int, Unit], rng: np.random.Generator) -> list[float]:
    """Percentile interval of `stat(item indices per seed, seeds)` over resampled seeds and items."""
    seeds = sorted(units)
    n = {s: units[s].n_items for s in seeds}
    draws = []
    for _ in range(RESAMPLES):
        sel = [seeds[i] for i in resample(rng, len(seeds))]
        idx = {s: resample(rng, n[s]) if n[s] else None for s in set(sel)}
        draws.append(stat(idx, sel))
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return [float("nan"), float("nan")]
    return list(percentile_interval(draws))


# -- the cost of syncing ------------------------------------------------------------------------------------
def bpb_curve(metrics: Path, langs: list[str]) -> list[tuple[float, float]]:
    """(training tokens, mean bits per byte over `langs`) at every evaluation of a pre-training run."""
    from syncmod.pretrain.metrics import read_metrics

    return [(r.get("train/tokens", float("nan")), float(np.mean([r[f"bpb/{t}"] for t in langs])))
            for r in read_metrics(metrics, "eval")]


def delta_bpb(run: list[tuple[float, float]], reference: list[tuple[float, float]]) -> tuple[float, bool]:
    """Final mean BPB of `run` minus the reference's at the same number of training tokens (interpolated
    between its evaluations). Returns (ΔBPB, at_equal_tokens); without token counts, or when the reference
    saw fewer tokens than the run, the reference's final value is used and the flag is False."""
    tokens, bpb = run[-1]
    ref_tokens = np.array([t for t, _ in reference])
    ref_bpb = np.array([b for _, b in reference])
    if not np.isfinite(tokens) or not np.all(np.isfinite(ref_tokens)) or ref_tokens[-1] < tokens:
        return bpb - float(ref_bpb[-1]), False
    return bpb - float(np.interp(tokens, ref_tokens, ref_bpb)), True
