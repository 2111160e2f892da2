"""The module-algebra numbers as pure functions of per-item scores (no model, no files)."""

from __future__ import annotations

import numpy as np

from syncmod.study import algebra_stats as A


def _items(right: int, n: int = 200) -> np.ndarray:
    return np.array([1.0] * right + [0.0] * (n - right))


def test_removed_is_the_fraction_of_the_score_above_the_reference_taken_away():
    before, reference = _items(150), _items(50)
    assert A.removed(before, reference, reference)["value"] == 1.0  # down to the reference
    assert A.removed(before, before, reference)["value"] == 0.0  # nothing taken
    half = A.removed(before, _items(100), reference)
    assert half["value"] == 0.5 and half["ci"][0] < 0.5 < half["ci"][1]
    below = A.removed(before, _items(20), reference)  # below the reference: more than all of it
    assert below["value"] == 1.3 and below["ci"][0] > 1.0  # paired draws: the same items, so the interval is tight
    assert np.isnan(A.removed(before, _items(100), before)["value"])  # no score above the reference: undefined


def test_negation_table_shows_head_only_floor_and_removed():
    s = A.score(_items(150), 0.2)
    row = {"condition": "sync", "module": "lora", "method": "ties", "task": "event-class", "before": s, "after": s,
           "head_only": s, "floor": s, "kept": A.ratio(_items(150), _items(150), 0.2),
           "removed": A.removed(_items(150), _items(100), _items(50))}
    md = A.tables({"negation": [row]})
    assert "| sync | lora | ties | event-class | 0.69 [" in md and "| 0.50 [" in md and "head only" in md
