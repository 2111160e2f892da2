"""Mapped transfer (`syncmod transfer`): a module moved onto an exactly rotated copy of its base by maps fitted on
parallel text predicts exactly what it predicts on its own base."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT, syncmod

FT = ["--train.steps=30", "--train.eval_every=15", "--train.batch_size=16", "--tracking.enabled=false",
      "--train.dev_examples=40"]


def _rotated_pair(tiny_export, tmp_path):
    """The en base with unit RMSNorm gains (A), and A with its residual stream rotated by a random orthogonal Q
    (B): every residual state of B is Q times A's, everything inside the blocks is the same."""
    from syncmod.modules.bases import load_base, open_bases

    model, tok = load_base(open_bases(str(tiny_export)).path("en"))
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.data.fill_(1.0)  # RMSNorm commutes with rotations once its gain is 1
    a, b = tmp_path / "A", tmp_path / "B"
    model.save_pretrained(a)
    tok.save_pretrained(a)
    _rotate(model, torch.linalg.qr(torch.randn(model.config.hidden_size, model.config.hidden_size,
                                               generator=torch.Generator().manual_seed(0)))[0])
    model.save_pretrained(b)
    tok.save_pretrained(b)
    return a, b


@torch.no_grad()
def _rotate(model, q):
    """Rotate a Llama's residual stream by the orthogonal q (exact when its RMSNorm gains are uniform)."""
    from syncmod.pretrain.model import decoder_layers

    model.get_input_embeddings().weight.copy_(model.get_input_embeddings().weight @ q.T)
    model.lm_head.weight.copy_(model.lm_head.weight @ q.T)
    for block in decoder_layers(model):
        for lin in (block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj, block.mlp.gate_proj,
                    block.mlp.up_proj):
            lin.weight.copy_(lin.weight @ q.T)  # reads the residual stream
        for lin in (block.self_attn.o_proj, block.mlp.down_proj):
            lin.weight.copy_(q @ lin.weight)  # writes it


def _scores(base_dir, module_dir, task, lang):
    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.bases import load_base
    from syncmod.modules.files import read_card, read_weights
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build

    card = read_card(module_dir)
    base, tok = load_base(base_dir)
    model = build(base, tok, ModuleConfig(**card["module"]), HeadConfig(**card["head"]), task, card["sync_layers"])
    model.load(read_weights(module_dir, card))
    rows = task.split("test", lang)[:64]
    with torch.no_grad():
        return model._head_logits(rows), model.predict(rows)


@pytest.mark.parametrize("kind", ["adapter", "lora"])
def test_mapped_module_on_a_rotated_copy_predicts_the_same(tiny_export, world, tmp_path, kind):
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task

    a, b = _rotated_pair(tiny_export, tmp_path)
    task_dir = world / "tasks/event-class"
    module, mapped = tmp_path / "m", tmp_path / "m_b"
    syncmod("finetune", f"--base={a}", f"--task={task_dir}", "--lang=en", f"--out={module}", f"--module.type={kind}",
            "--module.targets=[q_proj,v_proj,o_proj,up_proj,down_proj]", *FT, cwd=ROOT, check=True)
    proc = syncmod("transfer", "--module", str(module), "--base", str(b), "--lang", "en", "--parallel",
                   str(world / "parallel/valid.jsonl"), "--units", "60", "--out", str(mapped), cwd=ROOT, check=True)
    assert "mapped" in proc.stdout
    card = json.loads((mapped / "card.json").read_text())
    assert card["claim"].startswith("mapped") and card["mapped"]["from_lang"] == "en"
    assert all(fit["cos_mapped"] > 0.9999 for fit in card["mapped"]["sites"].values())
    task = load_task(task_dir, Problems())
    native_logits, native = _scores(a, module, task, "en")
    moved_logits, moved = _scores(b, mapped, task, "en")
    _, unmapped = _scores(b, module, task, "en")
    assert moved == native
    torch.testing.assert_close(moved_logits, native_logits, atol=1e-3, rtol=1e-3)
    assert unmapped != native  # without the maps the rotated base reads the module's weights in other coordinates

    if kind == "adapter":  # a sparse diff is refused in one line, before any work (its conjugate would be dense)
        sparse = tmp_path / "sparse"
        sparse.mkdir()
        for f in module.iterdir():
            if f.is_file():
                (sparse / f.name).write_bytes(f.read_bytes())
        card = json.loads((module / "card.json").read_text())
        card["type"] = card["module"]["type"] = "sparse"
        (sparse / "card.json").write_text(json.dumps(card))
        proc = syncmod("transfer", "--module", str(sparse), "--base", str(b), "--lang", "en", "--parallel",
                       str(world / "parallel/valid.jsonl"), "--out", str(tmp_path / "none"), cwd=ROOT)
        assert proc.returncode == 2 and "adapter and lora" in proc.stderr
        assert not (tmp_path / "none" / "card.json").exists()


def test_procrustes_recovers_a_scaled_rotation_and_keeps_unreached_directions():
    from syncmod.modules.mapping import procrustes

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    s, fit = procrustes(x, 2 * x @ q.T)  # target = 2·Q·source: source ≈ 0.5·Qᵀ·target
    assert s == pytest.approx(0.5, rel=1e-5)
    torch.testing.assert_close(fit, q.T.double(), atol=1e-5, rtol=0)
    wide = x @ torch.randn(40, 16, generator=g).T  # 40-d states spanning only 16 directions (an up projection)
    _, same = procrustes(wide, wide)
    torch.testing.assert_close(same, torch.eye(40, dtype=same.dtype), atol=1e-6, rtol=0)


def _low_rank_rotated_pair(g):
    """A random 2-layer Llama (unit RMSNorm gains) whose o_proj outputs reach 40 and down_proj outputs 30 of the
    stream's 64 directions (as trained ones do), its rotated copy, and token ids."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=200, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    a, b = LlamaForCausalLM(config).eval(), LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in a.parameters():
            if p.dim() == 2:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for block in a.model.layers:
            block.self_attn.o_proj.weight[:, 40:] = 0
            block.mlp.down_proj.weight[:, 30:] = 0
    b.load_state_dict(a.state_dict())
    _rotate(b, torch.linalg.qr(torch.randn(64, 64, generator=g))[0])
    return a, b, torch.randint(0, 200, (24, 32), generator=g)


def _fitted_maps(card, a, b, ids, inside="fitted"):
    from syncmod.modules.mapping import _record, _sites, fit_maps

    seen = []
    for model in (a, b):
        with torch.no_grad(), _record(_sites(card, model)) as states:
            model(input_ids=ids)
        seen.append({k: v.flatten(0, 1) for k, v in states.items()})
    where = {k: site.where for k, site in _sites(card, a).items()}
    return fit_maps({k: (seen[0][k], seen[1][k]) for k in seen[0]}, where, inside)


@pytest.mark.parametrize("inside", ["fitted", "identity"])
def test_a_lora_writing_fewer_directions_than_the_stream_maps_exactly(inside):
    """The math of a mapped LoRA, without training: on a rotated copy whose o/down_proj outputs span fewer
    directions than the stream, a random LoRA on every kind of projection, conjugated with maps fitted on the
    residual stream (inside the blocks: fitted, or the identity), gives the source's logits."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from syncmod.modules.mapping import conjugate

    g = torch.Generator().manual_seed(0)
    a, b, ids = _low_rank_rotated_pair(g)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    card = {"type": "lora", "layer_map": {"blocks": [1, 2]}, "module": {"targets": targets}}
    maps, fit = _fitted_maps(card, a, b, ids, inside)
    assert fit["0.self_attn.o_proj:out"]["fitted_on"] == "after attention"
    assert fit["1.mlp.up_proj:out"]["map"] == ("procrustes" if inside == "fitted" else "identity (kept)")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, bias="none")
    with torch.no_grad():
        plain = a(input_ids=ids).logits
    source = get_peft_model(a, lora)
    with torch.no_grad():
        for name, p in source.named_parameters():
            if "lora_" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        moved = get_peft_model(b, lora)
        set_peft_model_state_dict(moved, {k: v.float() for k, v in conjugate(
            card, get_peft_model_state_dict(source), maps).items()})
        want, got = source(input_ids=ids).logits, moved(input_ids=ids).logits
    assert (want - plain).abs().max() > 0.1  # the LoRA matters
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def test_adapters_after_attention_and_ffn_map_exactly():
    """Adapters after the attention, the MLP and the block read and write the stream there: mapped with the
    stream's maps (not with the attention's or MLP's own, narrower outputs) they give the source's logits."""
    from syncmod.modules.adapter import Adapter
    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.mapping import conjugate

    g = torch.Generator().manual_seed(1)
    a, b, ids = _low_rank_rotated_pair(g)
    config = ModuleConfig(type="adapter", position=["attn", "ffn", "block"])
    card = {"type": "adapter", "layer_map": {"blocks": [1, 2], "positions": config.position}}
    maps, _ = _fitted_maps(card, a, b, ids)
    with torch.no_grad():
        plain = a(input_ids=ids).logits
        source, moved = Adapter(config, [1, 2]), Adapter(config, [1, 2])
        source.attach(a)
        moved.attach(b)
        for p in source.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
        state = conjugate(card, {f"module.{k}": v for k, v in source.state_dict().items()}, maps)
        moved.load_state_dict({k.removeprefix("module."): v.float() for k, v in state.items()})
        want, got = a(input_ids=ids).logits, b(input_ids=ids).logits
    assert (want - plain).abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
