"""Right-padded synchronous sides run without their padding mask (SDPA's causal fast path) and compute exactly
what they computed with it: the same losses, metrics and gradients, on real shards and a real tiny base, for
every sync kind and for `parallel-text` (whose x <sep> y rows are right-padded too), and for continued bases
whose positions are learned (GPT-2) or counted from the mask (OPT)."""

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
LANGS = ["en", "xa", "xb"]


def _batch(data_root: Path):
    shards = Shards.open(data_root / "train")
    assert shards.meta["pad_id"] == PAD
    batch = ParallelStream(shards, LANGS, 0, 63, PAD).batch(np.arange(24))
    assert all((~m).any() and torch.equal(batch.ids[lang] != PAD, m) for lang, m in batch.mask.items())  # padded
    return batch, shards.meta["vocab_size"]


def _assert_same_without_mask(model: Bases, batch, objective: str, kind: str) -> None:
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
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
        results.append((loss.detach(), {k: float(v) for k, v in ctx.metrics.items()}, grads, int(ctx.tokens)))
    assert seen and all(m is None for m in seen)  # SDPA's is_causal path: no 4-D mask, no host-side mask check
    (l1, m1, g1, t1), (l2, m2, g2, t2) = results
    assert t1 == t2 and m1 == m2 and m1, (m1, m2)
    assert torch.equal(l1, l2), (l1, l2)  # bitwise on CPU SDPA: padding after a real token never reaches it
    assert torch.equal(g1, g2), (g1 - g2).abs().max()


@pytest.mark.parametrize("objective,kind", [("sync", "eos"), ("sync", "cut"), ("sync", "mean"), ("sync", "token"),
                                            ("parallel-text", "eos")])
def test_right_padded_sides_run_unmasked_and_give_the_same_loss_and_gradients(data_root: Path, objective, kind):
    batch, vocab = _batch(data_root)
    torch.manual_seed(0)
    model = Bases(ModelConfig(preset="tiny", max_seq_len=128), LANGS, vocab, PAD, 1, 2, seed=0)
    _assert_same_without_mask(model, batch, objective, kind)


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_continued_bases_with_learned_positions_run_unmasked_alike(data_root: Path, tmp_path: Path, arch):
    from transformers import AutoModelForCausalLM, GPT2Config, OPTConfig

    batch, vocab = _batch(data_root)
    config = (GPT2Config(vocab_size=vocab, n_positions=128, n_embd=64, n_layer=2, n_head=4) if arch == "gpt2" else
              OPTConfig(vocab_size=vocab, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=128, word_embed_proj_dim=64, pad_token_id=PAD))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / arch)
    model = Bases(ModelConfig(init_from=str(tmp_path / arch), max_seq_len=128), LANGS, vocab, PAD, 1, 2, seed=0)
    _assert_same_without_mask(model, batch, "sync", "mean")
