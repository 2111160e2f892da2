"""Task scores and their uncertainty.

classify: accuracy (the score) and macro-F1; generate: exact match (the score) and token F1.
Intervals: percentile bootstrap over items (1000 resamples).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def _norm(s: str) -> str:
    return " ".join(s.lower().strip().strip(".?!").split())


def item_scores(kind: str, predictions: list[str], targets: list[str]) -> np.ndarray:
    """Per-item main score: correct label (classify) or exact match (generate)."""
    if kind == "classify":
        return np.array([p == t for p, t in zip(predictions, targets, strict=True)], dtype=float)
    return np.array([_norm(p) == _norm(t) for p, t in zip(predictions, targets, strict=True)], dtype=float)


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


def score(kind: str, predictions: list[str], targets: list[str]) -> dict[str, float]:
    items = item_scores(kind, predictions, targets)
    out = {"score": float(items.mean()) if len(items) else 0.0, "n": len(items)}
    if kind == "classify":
        out.update(accuracy=out["score"], macro_f1=macro_f1(predictions, targets))
    else:
        out.update(exact_match=out["score"], token_f1=float(np.mean([token_f1(p, t) for p, t in
                                                                     zip(predictions, targets, strict=True)])))
    return out


def bootstrap_ci(items: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    if len(items) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = items[rng.integers(0, len(items), (resamples, len(items)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
