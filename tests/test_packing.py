"""Packed synchronous batches (several units a row, each attending only to itself) compute what one unit a row
computes: the same states, CLM and sync losses and gradients, on real shards and a real tiny base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from syncmod.data.loader import ParallelStream
from syncmod.data.packing import pack
from syncmod.data.shards import Shards
from syncmod.pretrain.model import Bases, ModelConfig
from syncmod.pretrain.objectives import OBJECTIVES, StepContext
from syncmod.pretrain.objectives.sync import SyncConfig


def test_pack_fills_rows_in_order_and_maps_every_token_back():
    rows = [np.arange(1, n + 1) for n in (3, 4, 2, 5, 1)]
    p = pack(rows, pad_id=0, width=8, unit_width=5)
    assert p.ids.tolist() == [[1, 2, 3, 1, 2, 3, 4, 0], [1, 2, 1, 2, 3, 4, 5, 1]]
    assert p.segments.tolist() == [[0, 0, 0, 1, 1, 1, 1, -1], [0, 0, 1, 1, 1, 1, 1, 2]]
    assert p.positions.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 0, 1, 2, 3, 4, 0]]
    assert p.targets.tolist() == [[False, True, True, False, True, True, True, False],
                                  [False, True, False, True, True, True, True, False]]
    unpacked = p.ids.reshape(-1)[p.index]
    for u, r in enumerate(rows):
        assert unpacked[u, :len(r)].tolist() == r.tolist()
    mask = p.attention_mask()[1, 0]
    assert mask[3].tolist() == [False, False, True, True, False, False, False, False]  # unit 2 sees itself only


@pytest.mark.parametrize("kind", ["eos", "cut", "mean"])
def test_packed_and_unpacked_batches_give_the_same_losses_and_gradients(data_root: Path, kind: str):
    shards = Shards.open(data_root / "train")
    langs = ["en", "xa", "xb"]
    units = np.arange(24)
    plain = ParallelStream(shards, langs, 0, 63, shards.meta["pad_id"]).batch(units)
    packed = ParallelStream(shards, langs, 0, 63, shards.meta["pad_id"], pack=64).batch(units)
    assert packed.packed["en"].ids.shape[0] < len(units) // 2  # several units a row
    torch.manual_seed(0)
    model = Bases(ModelConfig(preset="tiny", max_seq_len=64), langs, shards.meta["vocab_size"], shards.meta["pad_id"],
                  1, 2, seed=0)
    objective = OBJECTIVES["sync"](SyncConfig(kind=kind, layers=[1]))
    results = []
    for batch in (plain, packed):
        model.zero_grad()
        ctx = StepContext(forward=model, sync_layers=[1], lam=1.0, special={"sync": 3, "pad": 0})
        loss = objective.loss(batch, ctx)
        loss.backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        results.append((loss.detach(), {k: float(v) for k, v in ctx.metrics.items()}, grads, int(ctx.tokens)))
    (l1, m1, g1, t1), (l2, m2, g2, t2) = results
    assert t1 == t2 and m1.keys() == m2.keys() and {"clm/en", "sync/loss", "sync/acc"} <= m1.keys()
    assert torch.allclose(l1, l2, rtol=1e-5), (l1, l2)
    for k in m1:
        assert abs(m1[k] - m2[k]) <= 1e-5 * max(1.0, abs(m1[k])), (k, m1[k], m2[k])
    assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-6)


def _old_add_sync_token(batch, sync_id, pad_id):  # the per-row version this session replaced, as the reference
    ids, mask = {}, {}
    for lang, x in batch.ids.items():
        out = torch.full((x.shape[0], x.shape[1] + 1), pad_id, dtype=x.dtype)
        om = torch.zeros(out.shape, dtype=torch.bool)
        for r, n in enumerate(batch.mask[lang].sum(1).tolist()):
            out[r, : n - 1], out[r, n - 1], out[r, n] = x[r, : n - 1], sync_id, x[r, n - 1]
            om[r, : n + 1] = True
        ids[lang], mask[lang] = out, om
    return ids, mask


def test_vectorised_sync_token_and_concat_match_the_per_row_versions(data_root: Path):
    from syncmod.data.task_inputs import pad as pad_rows
    from syncmod.pretrain.objectives.parallel_text import concat
    from syncmod.pretrain.sync_points import add_sync_token, select

    shards = Shards.open(data_root / "train")
    batch = ParallelStream(shards, ["en", "xa"], 0, 63, shards.meta["pad_id"], pack=64).batch(np.arange(40))
    new = add_sync_token(batch, 3, 0)
    ids, mask = _old_add_sync_token(batch, 3, 0)
    for lang in ids:
        assert torch.equal(new.ids[lang], ids[lang]) and torch.equal(new.mask[lang], mask[lang])
    c = select(new, "en", "xa", "token")
    assert len(c) == 40 and (new.ids["en"][c[:, 0], c[:, 1]] == 3).all() and (new.ids["xa"][c[:, 0], c[:, 2]] == 3).all()
    x, m = concat(batch.ids["en"], batch.mask["en"], batch.ids["xa"], batch.mask["xa"], 5, 0)
    rows = [torch.cat([batch.ids["en"][r][batch.mask["en"][r]][:-1], torch.tensor([5]),
                       batch.ids["xa"][r][batch.mask["xa"][r]]]) for r in range(40)]
    old_x, old_m = pad_rows(rows, 0)
    assert torch.equal(x[:, :old_x.shape[1]], old_x) and torch.equal(m[:, :old_m.shape[1]], old_m)
    assert not m[:, old_m.shape[1]:].any()
