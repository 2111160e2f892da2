"""Right-padded synchronous sides run without their padding mask (SDPA's causal fast path) and compute exactly
what they computed with it: the same losses, metrics and gradients, on real shards and a real tiny base, for
every sync kind and for `parallel-text` (whose x <sep> y rows are right-padded too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from syncmod.data.loader import ParallelStream
from syncmod.data.shards import Shards
from syncmod.pretrain.model import Bases, ModelConfig
from syncmod.pretrain.objectives import OBJECTIVES, StepContext
from syncmod.pretrain.objectives.sync import SyncConfig

PAD, SEP, SYNC = 3, 4, 5  # the shards' pad id; <sep> and <sync> stand-ins (ids of the vocabulary)


@pytest.mark.parametrize("objective,kind", [("sync", "eos"), ("sync", "cut"), ("sync", "mean"), ("sync", "token"),
                                            ("parallel-text", "eos")])
def test_right_padded_sides_run_unmasked_and_give_the_same_loss_and_gradients(data_root: Path, objective, kind):
    shards = Shards.open(data_root / "train")
    assert shards.meta["pad_id"] == PAD
    langs = ["en", "xa", "xb"]
    batch = ParallelStream(shards, langs, 0, 63, PAD).batch(np.arange(24))
    assert all((~m).any() and torch.equal(batch.ids[lang] != PAD, m) for lang, m in batch.mask.items())  # padded
    torch.manual_seed(0)
    model = Bases(ModelConfig(preset="tiny", max_seq_len=128), langs, shards.meta["vocab_size"], PAD, 1, 2, seed=0)
    seen = []

    def as_run(lang, ids, mask, layers, positions=None):  # what the step passes to the bases
        seen.append(mask)
        return model(lang, ids, mask, layers, positions)

    def padding_masked(lang, ids, mask, layers, positions=None):  # the step before: the padding mask passed on
        return model(lang, ids, ids != PAD, layers, positions)

    results = []
    for forward in (padding_masked, as_run):
        model.zero_grad()
        ctx = StepContext(forward=forward, sync_layers=[1], lam=1.0, special={"sync": SYNC, "pad": PAD, "sep": SEP})
        loss = OBJECTIVES[objective](SyncConfig(objective=objective, kind=kind, layers=[1])).loss(batch, ctx)
        loss.backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        results.append((loss.detach(), {k: float(v) for k, v in ctx.metrics.items()}, grads, int(ctx.tokens)))
    assert seen and all(m is None for m in seen)  # SDPA's is_causal path: no 4-D mask, no host-side mask check
    (l1, m1, g1, t1), (l2, m2, g2, t2) = results
    assert t1 == t2 and m1 == m2 and m1, (m1, m2)
    assert torch.equal(l1, l2), (l1, l2)  # bitwise on CPU SDPA: padding after a real token never reaches it
    assert torch.equal(g1, g2), (g1 - g2).abs().max()
