"""`rosa` (LoRA + a sparse diff, trained jointly): a few training steps move both parts and lower the loss; saved
and loaded onto a fresh copy of the base it gives the same logits."""

from __future__ import annotations

import pytest
import torch

from syncmod.modules.base import ModuleConfig
from syncmod.modules.heads import HeadConfig
from syncmod.modules.runtime import TaskModel


@pytest.fixture(scope="module")
def setup(world, tokenizer_dir, tmp_path_factory):
    """A tiny random Llama base (saved), its tokenizer, and the event-class task."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = tmp_path_factory.mktemp("rosa-base") / "base"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(base)
    problems = Problems()
    task = load_task(world / "tasks/event-class", problems)
    problems.raise_if_any()
    return base, tok, task


def _model(setup) -> TaskModel:
    from transformers import AutoModelForCausalLM

    base, tok, task = setup
    lm = AutoModelForCausalLM.from_pretrained(base).eval()
    for p in lm.parameters():
        p.requires_grad_(False)
    cfg = ModuleConfig(type="rosa", layers=[1], rank=4, density=0.05)  # the block the head reads
    return TaskModel(lm, tok, cfg, HeadConfig(), task.kind, task.labels, [1], max_len=64)


def _trained(setup, steps: int = 8) -> tuple[TaskModel, list, list[float]]:
    torch.manual_seed(0)
    model = _model(setup)
    batch = setup[2].split("train", "en")[:16]
    model.module_type.prepare(model.model, lambda: (model.loss(batch) for _ in range(2)))
    optimizer = torch.optim.AdamW(model.trainable(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, batch, losses


def test_rosa_trains_both_parts_jointly(setup):
    model, _, losses = _trained(setup)
    rosa = model.module_type
    state = rosa.state_dict()
    assert losses[-1] < losses[0]
    assert any(k.startswith("lora.") and "lora_B" in k for k in state)
    values = [v for k, v in state.items() if k.startswith("sparse.") and k.endswith(".values")]
    lora_b = [v for k, v in state.items() if k.startswith("lora.") and "lora_B" in k]
    assert values and all(v.abs().sum() > 0 for v in values)  # the sparse diff moved from zero
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # and so did the low-rank update
    # 1 block x 4 targets, 5% of each 64x64 matrix
    assert len(values) == 4 and all(v.numel() == int(0.05 * 64 * 64) for v in values)
    # only the module's parameters are trained: the base's own weights stay frozen
    assert {id(p) for p in model.trainable()} >= {id(p) for p in rosa.parameters()}
    assert not any(p.requires_grad for n, p in model.model.named_parameters()
                   if "lora_" not in n and "parametrizations.weight.0" not in n)


def test_rosa_round_trip_gives_the_same_logits(setup, tmp_path):
    from transformers import AutoModelForCausalLM

    from syncmod.modules.bases import fingerprint
    from syncmod.modules.files import read_card, read_weights, save_module

    model, batch, _ = _trained(setup, steps=4)
    card = {"type": "rosa", "module": {"type": "rosa", "layers": [1], "rank": 4, "density": 0.05}, "task": "t",
            "lang": "en", "base": fingerprint(AutoModelForCausalLM.from_pretrained(setup[0]))}
    save_module(tmp_path / "m", card, model.state())
    again = _model(setup)
    again.load(read_weights(tmp_path / "m", read_card(tmp_path / "m")))
    model.eval()
    again.eval()
    ids, mask = again.enc.classify(batch)
    with torch.no_grad():
        assert torch.allclose(model.model(input_ids=ids, attention_mask=mask).logits,
                              again.model(input_ids=ids, attention_mask=mask).logits, atol=1e-5)
        assert torch.allclose(model._head_logits(batch), again._head_logits(batch), atol=1e-5)
        # both parts count: without the sparse diff the logits are not the same
        again.module_type.sparse.detach()
        assert not torch.allclose(model.model(input_ids=ids).logits, again.model(input_ids=ids).logits, atol=1e-4)
