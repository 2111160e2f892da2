"""The shared helpers, each once: pooling, the shifted cross-entropy, padding, the bootstrap, config
flattening, the metrics.jsonl reader. Outputs are pinned (the numbers they gave before they were shared)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from syncmod.config import flatten
from syncmod.data import task_inputs
from syncmod.data.task_inputs import pad
from syncmod.evaluation.scores import bootstrap_ci, bootstrap_macro_f1, percentile_interval, resample
from syncmod.pretrain.metrics import MetricsLogger, read_metrics
from syncmod.pretrain.objectives.base import causal_lm_loss
from syncmod.pretrain.objectives.losses import shifted_nll
from syncmod.pretrain.sync_points import mean_pool, sentence_end
from syncmod.pretrain.throughput import Meter
from syncmod.study.runner import _seed_ci
from syncmod.tracking.tracker import Tracker


def test_shifted_nll_scores_each_next_token():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    nll = shifted_nll(logits.to(torch.bfloat16), ids)
    assert nll.shape == (2, 4) and nll.dtype == torch.float32
    logp = torch.log_softmax(logits.to(torch.bfloat16).float(), -1)
    expected = torch.stack([torch.stack([-logp[b, t, ids[b, t + 1]] for t in range(4)]) for b in range(2)])
    torch.testing.assert_close(nll, expected)
    # uniform logits: every position costs log(vocabulary)
    torch.testing.assert_close(shifted_nll(torch.zeros(1, 3, 7), ids[:1, :3]), torch.full((1, 2), math.log(7)))


def test_causal_lm_loss_is_the_masked_mean_of_shifted_nll():
    g = torch.Generator().manual_seed(1)
    logits, ids = torch.randn(2, 6, 5, generator=g), torch.randint(0, 5, (2, 6), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    loss, mean = causal_lm_loss(logits, ids, mask)
    nll = shifted_nll(logits, ids)
    want = nll[mask[:, 1:]].mean()
    torch.testing.assert_close(loss, want)
    assert float(mean) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("has_padding_side", [True, False])
def test_pad_right_and_left(monkeypatch, has_padding_side):
    # False: the flip path older torch versions (no `padding_side`) take
    monkeypatch.setattr(task_inputs, "_LEFT", has_padding_side and task_inputs._LEFT)
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[True] * 3, [True, False, False]]
    ids, mask = pad([[5, 6, 7], [8]], pad_id=9, left=True)
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]] and mask.tolist() == [[True] * 3, [False, False, True]]
    assert ids.dtype == torch.long and mask.dtype == torch.bool


def test_pad_takes_arrays_and_tensors():
    ids, mask = pad([np.array([4, 5], np.int64), torch.tensor([6])], pad_id=1)
    assert ids.tolist() == [[4, 5], [6, 1]] and mask.tolist() == [[True, True], [True, False]]
    assert ids.dtype == torch.long


def test_pooling_at_sentence_ends_and_means():
    states = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)  # [tag] w w w </s> / [tag] w </s>
    assert sentence_end(states, mask).tolist() == [[6.0, 7.0], [12.0, 13.0]]  # the token before </s>
    # the mean leaves out the language tag at position 0 and the padding
    assert mean_pool(states, mask).tolist() == [[5.0, 6.0], [13.0, 14.0]]


def test_bootstrap_numbers_are_pinned():
    items = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1], float)
    assert bootstrap_ci(items, 200, 3) == pytest.approx((0.3, 0.8))
    assert bootstrap_ci(np.array([]), 200) == (0.0, 0.0)
    assert bootstrap_macro_f1(list("aabbcabcab"), list("abbbcaccab"), 200, 1) == pytest.approx((0.41238095238, 1.0))
    assert _seed_ci([0.5, 0.7, 0.2], 500) == pytest.approx([0.2, 0.7])
    assert _seed_ci([0.4]) == [0.4, 0.4]
    idx = resample(np.random.default_rng(0), 4, (3,))
    assert idx.shape == (3, 4) and idx.min() >= 0 and idx.max() < 4
    assert resample(np.random.default_rng(0), 4).shape == (4,)
    assert percentile_interval(np.arange(201.0)) == (5.0, 195.0)


def test_flatten_nests_with_dots():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": [3]}}, "f": {}}) == {"a": 1, "b.c": 2, "b.d.e": [3], "f": {}}


def test_metrics_reader_reads_what_the_logger_writes(tmp_path):
    logger = MetricsLogger(tmp_path, 1, 0, 2, Tracker(), Meter(1.0, 1.0, 1), dict)
    logger.log(1, "sync", {"clm/en": 2.5})
    logger.log(2, "eval", {"bpb/en": 1.25})
    logger.close()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["kind"]) for r in rows] == [(1, "sync"), (2, "eval")]
    assert read_metrics(tmp_path / "metrics.jsonl", "eval")[0]["bpb/en"] == 1.25
