"""The module-algebra numbers as pure functions of per-item scores (no model, no files)."""

from __future__ import annotations

import numpy as np

from syncmod.study import algebra_stats as A


def _items(right: int, n: int = 200) -> np.ndarray:
    return np.array([1.0] * right + [0.0] * (n - right))


def test_delta_is_paired_and_chance_corrected():
    a, b = _items(100), _items(50)
    d = A.delta(a, b, 0.2)
    assert d["value"] == (0.5 - 0.25) / 0.8 and d["ci"][0] < d["value"] < d["ci"][1]
    assert A.delta(a, a, 0.2) == {"value": 0.0, "ci": [0.0, 0.0]}  # the same items: no spread


def test_negation_table_shows_the_head_only_reference_and_the_floor():
    s = A.score(_items(150), 0.2)
    row = {"condition": "sync", "module": "lora", "method": "ties", "task": "event-class", "before": s, "after": s,
           "head_only": s, "floor": s, "single": s, "kept": A.ratio(_items(150), _items(150), 0.2),
           "below_head": A.delta(_items(100), _items(150), 0.2)}
    md = A.tables({"negation": [row]})
    assert "| sync | lora | ties | event-class | 0.69 [" in md and "| -0.31 [" in md and "head only" in md


def test_tuning_grid_and_choice():
    from syncmod.study.algebra_tune import choose, grid

    assert grid("linear", [0.5, 1.0], [0.3, 0.5]) == [(1.0, 0.5), (1.0, 1.0)]  # no density without sparsifying
    assert grid("ties", [1.0], [0.3, 0.5]) == [(0.3, 1.0), (0.5, 1.0)]
    # the goal is every task kept: the larger smallest fraction wins over the larger mean
    assert choose({(1.0, 1.0): [0.99, 0.70], (1.0, 2.0): [0.88, 0.86]}) == (1.0, 2.0)


def test_bad_algebra_knobs_are_refused_in_one_line():
    import pytest

    from syncmod.config import FieldError
    from syncmod.study.algebra_cells import AlgebraConfig

    for bad, key in (({"merge_types": ["prefix"]}, "merge_types"), ({"densities": [0.0]}, "densities"),
                     ({"lams": []}, "lams"), ({"rank": 0}, "rank")):
        with pytest.raises(FieldError, match=key):
            AlgebraConfig(**bad)
