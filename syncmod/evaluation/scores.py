"""Task scores, their uncertainty, and the baselines they are read against.

classify: accuracy and macro-F1; generate: exact match and token F1. `--metric` picks the one that is the
cell's `score` (default accuracy / exact match); every cell carries all of its kind's metrics.
Intervals: percentile bootstrap over items (1000 resamples).
Baselines: *chance* (a uniform guess over the labels; 0 for generate) and the *majority* answer (the most
frequent label or answer of the training split, predicted for every item): a module that only learned the
label prior scores the majority baseline, not more.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

METRICS = {"classify": ("accuracy", "macro_f1"), "generate": ("exact_match", "token_f1")}


def check_metric(kind: str, metric: str | None) -> str:
    """The metric to report for a task kind (its first when None); InputError when the kind has no such metric."""
    from syncmod.errors import InputError

    if metric is None:
        return METRICS[kind][0]
    if metric not in METRICS[kind]:
        raise InputError.at("--metric", f"{metric!r} is not a metric of a {kind} task",
                            f"use one of {', '.join(METRICS[kind])}")
    return metric


def _norm(s: str) -> str:
    return " ".join(s.lower().strip().strip(".?!").split())


def item_scores(kind: str, predictions: list[str], targets: list[str], metric: str | None = None) -> np.ndarray:
    """Per-item score: correct label (classify; also for macro-F1, which is not a sum over items), exact match
    or token F1 (generate)."""
    pairs = list(zip(predictions, targets, strict=True))
    if kind == "classify":
        return np.array([p == t for p, t in pairs], dtype=float)
    if metric == "token_f1":
        return np.array([token_f1(p, t) for p, t in pairs], dtype=float)
    return np.array([_norm(p) == _norm(t) for p, t in pairs], dtype=float)


def token_f1(p: str, t: str) -> float:
    pt, tt = _norm(p).split(), _norm(t).split()
    common = sum((Counter(pt) & Counter(tt)).values())
    if not pt or not tt or not common:
        return float(pt == tt)
    precision, recall = common / len(pt), common / len(tt)
    return 2 * precision * recall / (precision + recall)


def macro_f1(predictions: list[str], targets: list[str]) -> float:
    f1s = []
    for label in sorted(set(targets)):
        tp = sum(p == t == label for p, t in zip(predictions, targets, strict=True))
        fp = sum(p == label != t for p, t in zip(predictions, targets, strict=True))
        fn = sum(t == label != p for p, t in zip(predictions, targets, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def score(kind: str, predictions: list[str], targets: list[str], metric: str | None = None) -> dict[str, float]:
    """All metrics of the kind; `score` is the chosen one."""
    if kind == "classify":
        acc = float(item_scores(kind, predictions, targets).mean()) if targets else 0.0
        out = {"accuracy": acc, "macro_f1": macro_f1(predictions, targets)}
    else:
        out = {"exact_match": float(item_scores(kind, predictions, targets).mean()) if targets else 0.0,
               "token_f1": float(np.mean([token_f1(p, t) for p, t in zip(predictions, targets, strict=True)]))
               if targets else 0.0}
    return {"score": out[check_metric(kind, metric)], "n": len(targets), **out}


def resample(rng: np.random.Generator, n: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Bootstrap indices: `shape` resamples of n indices drawn with replacement from range(n) — the one
    resampling every interval in syncmod uses (items here, seeds and items in the study)."""
    return rng.integers(0, n, (*shape, n))


def percentile_interval(draws: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap draws."""
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def bootstrap_ci(items: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of `items` over `resamples` resamples."""
    if len(items) == 0:
        return (0.0, 0.0)
    return percentile_interval(items[resample(np.random.default_rng(seed), len(items), (resamples,))].mean(1))


def bootstrap_macro_f1(predictions: list[str], targets: list[str], resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of macro-F1 over item resamples (the same resamples as `bootstrap_ci`)."""
    if not targets:
        return (0.0, 0.0)
    labels = sorted(set(targets))
    code = {label: i for i, label in enumerate(labels)}
    p = np.array([code.get(x, -1) for x in predictions])
    t = np.array([code[x] for x in targets])
    idx = resample(np.random.default_rng(seed), len(t), (resamples,))
    ps, ts = p[idx], t[idx]
    f1 = np.zeros((resamples, len(labels)))
    for c in range(len(labels)):
        tp = ((ps == c) & (ts == c)).sum(1)
        wrong = ((ps == c) != (ts == c)).sum(1)  # false positives + false negatives
        f1[:, c] = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)
    return percentile_interval(f1.mean(1))


def confusion(predictions: list[str], targets: list[str], labels: list[str]) -> dict:
    """Counts by gold label (rows) and predicted label (columns), in `labels` order."""
    code = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for p, t in zip(predictions, targets, strict=True):
        if p in code and t in code:
            matrix[code[t], code[p]] += 1
    return {"labels": list(labels), "matrix": matrix.tolist()}


def chance(kind: str, metric: str, targets: list[str], labels: list[str] | None) -> float:
    """Expected score of a uniform guess over the labels: 1/K for accuracy; for macro-F1 the mean over gold
    labels of 2·p·(1/K) / (p + 1/K) (precision = the label's frequency p, recall = 1/K); 0 for generate."""
    if kind != "classify" or not labels or not targets:
        return 0.0
    k = len(labels)
    if metric == "accuracy":
        return 1.0 / k
    freq = Counter(targets)
    return float(np.mean([2 * (n / len(targets)) / k / (n / len(targets) + 1 / k) for n in freq.values()]))


def majority(targets: list[str]) -> str:
    """The most frequent answer (ties: the first in sorted order, so it does not depend on item order)."""
    counts = Counter(targets)
    return min(counts, key=lambda x: (-counts[x], x))


def corrected(value: float, reference: float, baseline_value: float, baseline_reference: float) -> float | None:
    """(value - baseline) / (reference - baseline): a ratio read above a baseline; None when the reference is
    not above its baseline (the ratio would divide noise by noise)."""
    denominator = reference - baseline_reference
    return (value - baseline_value) / denominator if denominator > 1e-9 else None
