"""The issue-13 recipe options, each on its own: shared initialisation, λ decay, the pivot that is not pulled,
a synced subspace, chance-corrected study figures and the Pareto front."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY_PRETRAIN, syncmod
from syncmod.config import parse
from syncmod.data.loader import ParallelBatch
from syncmod.errors import InputError
from syncmod.pretrain.config import PretrainConfig
from syncmod.pretrain.model import Bases, ModelConfig
from syncmod.pretrain.objectives.base import StepContext
from syncmod.pretrain.objectives.sync import Sync, SyncConfig
from syncmod.pretrain.schedule import Schedule, ScheduleConfig


@pytest.mark.parametrize("init", ["independent", "shared"])
def test_shared_init_starts_every_base_identical(init):
    bases = Bases(ModelConfig(preset="tiny", init=init), ["en", "xa"], 50, 0, 1, 2, seed=3)
    same = [torch.equal(a, b) for a, b in zip(bases.bases["en"].parameters(), bases.bases["xa"].parameters(),
                                              strict=True) if a.dim() > 1]  # norm gains start at 1 either way
    assert all(same) if init == "shared" else not any(same)
    again = Bases(ModelConfig(preset="tiny", init=init), ["en", "xa"], 50, 0, 1, 2, seed=3)
    assert torch.equal(again.bases["xa"].model.embed_tokens.weight, bases.bases["xa"].model.embed_tokens.weight)


def test_lam_decays_after_the_warmup_to_lam_end():
    s = Schedule(ScheduleConfig(sync_warmup=100), "sync", 4.0, 0, 0, lam_end=0.5, steps=301)
    assert s.lam_at(0) == s.lam_at(100) == 4.0
    assert s.lam_at(200) == pytest.approx(2.25) and s.lam_at(300) == pytest.approx(0.5)
    assert all(a >= b for a, b in zip([s.lam_at(i) for i in range(301)], [s.lam_at(i) for i in range(1, 301)],
                                      strict=False))
    ramp = Schedule(ScheduleConfig(), "sync", 4.0, 10, 0, steps=100)
    assert ramp.lam_at(4) == pytest.approx(2.0) and ramp.lam_at(50) == 4.0  # no lam_end: as before


def _pair_grads(pivot, dims=None):
    torch.manual_seed(0)
    za = torch.randn(6, 3, 8, requires_grad=True)
    zb = torch.randn(6, 3, 8, requires_grad=True)
    cuts = torch.tensor([[r, 1, 1] for r in range(6)])
    batch = ParallelBatch({"en": torch.zeros(6, 3, dtype=torch.long), "xa": torch.zeros(6, 3, dtype=torch.long)},
                          {"en": torch.ones(6, 3, dtype=torch.bool), "xa": torch.ones(6, 3, dtype=torch.bool)},
                          {("en", "xa"): cuts})
    ctx = StepContext(forward=None, sync_layers=[1], lam=1.0, special={})
    obj = Sync(SyncConfig(pivot=pivot, dims=dims))
    ((loss, _),) = obj._pairs(batch, {"en": {1: za}, "xa": {1: zb}}, ctx)
    loss.backward()
    return za.grad, zb.grad


def test_mixed_steps_train_on_a_parallel_and_a_monolingual_batch(data_root, tmp_path):
    """Pattern M: every step consumes one batch of each kind (its tokens are an S run's plus an A run's, the same
    units and windows) and logs the sync loss beside the monolingual CLM."""
    assert [Schedule(ScheduleConfig(pattern="SM", sync_warmup=1), "sync", 1.0, 0, 0).kind(i) for i in range(4)] == \
        ["sync", "mixed", "sync", "mixed"]
    tokens = {}
    for pattern in ("S", "A", "M"):
        out = tmp_path / pattern
        syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={out}", *TINY_PRETRAIN,
                "--train.steps=3", "--train.batch_size=4", f"--schedule.pattern={pattern}", "--schedule.sync_warmup=0",
                "--eval.every=0", "--checkpoint.every=0", cwd=ROOT, check=True)
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        tokens[pattern] = lines[-1]["train/tokens"]
        assert ("sync/loss" in lines[0]) == (pattern != "A") and "clm/en" in lines[0]
    assert tokens["M"] == tokens["S"] + tokens["A"]


def test_pivot_is_not_pulled_and_dims_sync_a_subspace():
    ga, gb = _pair_grads(None)
    assert ga.abs().sum() > 0 and gb.abs().sum() > 0
    ga, gb = _pair_grads("en")
    assert ga is None and gb.abs().sum() > 0  # en: a stop-gradient target; xa moves toward it
    ga, gb = _pair_grads(None, dims=3)
    assert ga[:, :, 3:].abs().sum() == 0 and ga[:, :, :3].abs().sum() > 0


@pytest.mark.parametrize(("layers", "depth", "want"), [
    ("dense", 4, [1, 2, 3]), ("dense", 2, [1]), ("dense", 12, list(range(1, 12))), ("dense", 1, [1]),
    ("middle", 4, [2]), ("middle", 2, [1]), (None, 12, [6]), ([1, 3], 4, [1, 3])])
def test_sync_layers_by_name_follow_the_depth(layers, depth, want):
    assert SyncConfig(layers=layers).resolved_layers(depth) == want


def test_options_are_checked_in_one_line():
    with pytest.raises(InputError, match="sync.layers.*one of middle, dense"):
        parse(PretrainConfig, ["pretrain/sync.yaml", "--sync.layers=all"], "t")
    with pytest.raises(InputError, match="sync.dims"):
        parse(PretrainConfig, ["pretrain/sync.yaml", "--model.hidden=64", "--sync.dims=65"], "t")
    with pytest.raises(InputError, match="model.init"):
        parse(PretrainConfig, ["pretrain/clm-only.yaml", "--model.init=shared"], "t")


def test_chance_corrected_figures_and_the_pareto_front():
    from syncmod.study.pareto import front, variants_markdown
    from syncmod.study.stats import Unit

    n = 100
    res = {"chance": {"en": 0.2, "xa": 0.2},
           "modules": [{"lang": "en", "scores": {"en": {"score": 0.6, "items": [1.0] * 60 + [0.0] * 40},
                                                 "xa": {"score": 0.4, "items": [1.0] * 40 + [0.0] * 60}}},
                       {"lang": "xa", "scores": {"xa": {"score": 0.7, "items": [1.0] * 70 + [0.0] * 30}}}]}
    stats = Unit(res, "en", ["xa"]).stats(np.arange(n))
    assert stats["retained"] == pytest.approx(0.4 / 0.7)
    assert stats["retained_chance"] == pytest.approx(0.2 / 0.5)  # (0.4 - 0.2) / (0.7 - 0.2)
    assert stats["transfer_ratio_chance"] == pytest.approx(0.5)  # (0.4 - 0.2) / (0.6 - 0.2)
    pts = [(0.0, 0.1, "independent"), (6.8, 0.9, "sync"), (3.0, 0.95, "better"), (7.0, 0.5, "worse")]
    assert [p[2] for p in front(pts)] == ["independent", "better"]
    row = {"task": "t", "module": "lora", "condition": "better", "seeds": 1, "target": {"mean": 0.5},
           "delta_bpb_pct": {"mean": 3.0}, "delta_bpb": {"mean": 0.02},
           "retained_chance": {"mean": 0.95, "ci": [0.9, 1.0]}}
    assert "| better | +3.0 % | +0.0200 | 0.95 [0.90, 1.00] / 0.50 † |" in variants_markdown({"rows": [row]})
