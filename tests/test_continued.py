"""Continued pre-training from Hugging Face checkpoints (`model.init_from`), on Llama-, Qwen2- and GPT-2-style
checkpoints this file builds and saves itself (a tokenizer trained here, a few hundred thousand parameters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, syncmod
from conftest import TINY_PRETRAIN as TINY

ARCHS = ("llama", "qwen2", "gpt2")
LANGS = "--data.languages=[en,xa]"
RUN = [*TINY, LANGS, "--train.batch_size=8", "--schedule.pattern=SA", "--sync.layers=[1]", "--eval.every=0",
       "--checkpoint.every=0", "--train.lr=3e-3", "--train.warmup_steps=1"]
FT = ["--train.steps=10", "--train.eval_every=10", "--train.batch_size=16", "--tracking.enabled=false",
      "--train.dev_examples=40"]


def _config(arch: str, vocab: int, eos: int):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    if arch == "gpt2":  # fused c_attn / c_proj Conv1D projections, blocks under transformer.h, tied embeddings
        return GPT2Config(vocab_size=vocab, n_positions=128, n_embd=64, n_layer=2, n_head=4, bos_token_id=eos,
                          eos_token_id=eos)
    cls = LlamaConfig if arch == "llama" else Qwen2Config
    return cls(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=128, eos_token_id=eos, bos_token_id=eos,
               tie_word_embeddings=False)


@pytest.fixture(scope="session")
def checkpoints(world, tmp_path_factory) -> dict[str, Path]:
    """One byte-level BPE tokenizer (no padding token, as GPT-2's) and a checkpoint of each architecture."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    texts = [line for p in sorted((world / "mono").glob("train.*.txt"))
             for line in p.read_text(encoding="utf-8").splitlines()[:300]]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer, core.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(arch, len(tok), tok.eos_token_id))
        model.save_pretrained(root / arch)
        tok.save_pretrained(root / arch)
        out[arch] = root / arch
    return out


@pytest.fixture(scope="session")
def ckpt_data(world, checkpoints, tmp_path_factory) -> Path:
    """The world prepared with the checkpoints' tokenizer (all three share it)."""
    out = tmp_path_factory.mktemp("ckdata") / "root"
    syncmod("data", "prepare", "--world", str(world), "--out", str(out), "--tokenizer", str(checkpoints["llama"]),
            check=True)
    return out


def test_data_prepare_keeps_the_checkpoint_tokenizer(ckpt_data, checkpoints):
    from transformers import AutoTokenizer

    base, tok = AutoTokenizer.from_pretrained(checkpoints["llama"]), AutoTokenizer.from_pretrained(ckpt_data / "tokenizer")
    text = "the cat sat"
    assert tok.encode(text, add_special_tokens=False) == base.encode(text, add_special_tokens=False)
    record = json.loads((ckpt_data / "tokenizer/syncmod_tokenizer.json").read_text())
    assert record["added"] == ["<lang_en>", "<lang_xa>", "<lang_xb>", "<lang_xc>"] and record["pad"] == "eos"
    assert len(tok) == len(base) + 4 and "<sync>" not in tok.get_vocab()  # only what the shards carry
    assert json.loads((ckpt_data / "train/meta.json").read_text())["vocab_size"] == len(tok)


@pytest.mark.parametrize("arch", ARCHS)
def test_per_language_copies_start_bitwise_identical(arch, checkpoints, ckpt_data):
    from transformers import AutoModelForCausalLM

    from syncmod.pretrain.model import Bases, ModelConfig

    vocab = len(json.loads((ckpt_data / "tokenizer/tokenizer.json").read_text())["model"]["vocab"]) + 4
    bases = Bases(ModelConfig(init_from=str(checkpoints[arch])), ["en", "xa", "xb"], vocab, 0, 0, 0, seed=0)
    states = [b.state_dict() for b in bases.bases.values()]
    assert len(states) == 3 and all(s.keys() == states[0].keys() for s in states)
    assert all(torch.equal(s[k], states[0][k]) for s in states[1:] for k in s)
    assert bases.num_layers == 2 and bases.init_record["checkpoint_vocab"] == vocab - 4
    original = AutoModelForCausalLM.from_pretrained(checkpoints[arch]).state_dict()
    for k, v in original.items():  # the checkpoint's own weights; embeddings grew by the 4 language tags
        assert torch.equal(states[0][k][:v.shape[0]], v), k


def _export_weights(export: Path, base: str) -> dict[str, torch.Tensor]:
    return load_file(export / base / "model.safetensors")


@pytest.mark.parametrize("arch", ["llama", pytest.param("qwen2", marks=pytest.mark.slow), "gpt2"])
def test_continued_with_sync_exports_and_carries_a_lora_module(arch, checkpoints, ckpt_data, world, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={ckpt_data}", f"--out={out}", *RUN, "--train.steps=6",
            f"--model.init_from={checkpoints[arch]}", cwd=ROOT, check=True)
    resolved = json.loads((out / "config.json").read_text())["_resolved"]
    assert resolved["init"]["model_type"] == arch and resolved["init"]["tokens_added"] == []  # eos sync points
    bases = json.loads((out / "export/bases.json").read_text())
    assert bases["bases"] == ["en", "xa"] and bases["init"]["vocab"] == bases["init"]["checkpoint_vocab"] + 4
    assert max(bases["probe_max_abs_diff"].values()) < 1e-4
    en, xa = _export_weights(out / "export", "en"), _export_weights(out / "export", "xa")
    assert any(not torch.equal(en[k], xa[k]) for k in en)  # each copy continued on its own language
    model = AutoModelForCausalLM.from_pretrained(out / "export/xa")
    assert model.config.model_type == arch
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"sync", "eval"} <= {m["kind"] for m in metrics}

    mod = tmp_path / "lora-en"
    syncmod("finetune", f"--base={out / 'export'}", f"--task={world / 'tasks/event-class'}", "--lang=en",
            f"--out={mod}", "--module.type=lora", *FT, cwd=ROOT, check=True)
    card = json.loads((mod / "card.json").read_text())
    assert card["layer_map"]["model_layers"] == ("transformer.h" if arch == "gpt2" else "model.layers")
    syncmod("eval", "--base", str(out / "export"), "--module", str(mod), "--task", str(world / "tasks/event-class"),
            "--langs", "en,xa", "--out", str(tmp_path / "ev"), "--no-tracking", check=True)
    res = json.loads((tmp_path / "ev/results.json").read_text())
    scores = res["modules"][0]["scores"]
    assert set(scores) == {"en", "xa"} and all(0 <= s["score"] <= 1 for s in scores.values())


def test_lora_continued_pretraining_merges_each_language_at_export(checkpoints, ckpt_data, tmp_path):
    out = tmp_path / "lora"
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={ckpt_data}", f"--out={out}", *RUN, "--train.steps=6",
            f"--model.init_from={checkpoints['qwen2']}", "--model.lora_rank=4", "--sync.kind=token", cwd=ROOT,
            check=True)
    bases = json.loads((out / "export/bases.json").read_text())
    assert bases["init"]["tokens_added"] == ["<sync>"] and bases["init"]["lora_rank"] == 4
    assert max(bases["probe_max_abs_diff"].values()) < 1e-4  # merged weights reproduce the adapted model
    original = load_file(checkpoints["qwen2"] / "model.safetensors")
    en, xa = _export_weights(out / "export", "en"), _export_weights(out / "export", "xa")
    assert en.keys() == original.keys() and not any("lora" in k for k in en)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(en[q], xa[q])
    for w in (en, xa):  # every language's LoRA trained (not only the merge / unmerge rounding of another's)
        assert float((w[q] - original[q]).abs().max()) > 1e-4
    norm = "model.layers.0.input_layernorm.weight"  # not a LoRA target: the checkpoint's, in both
    assert torch.equal(en[norm], original[norm]) and torch.equal(xa[norm], original[norm])
    from transformers import AutoTokenizer

    assert "<sync>" in AutoTokenizer.from_pretrained(out / "export/en").get_vocab()


def test_frozen_parts_stay_the_checkpoints(checkpoints, ckpt_data, tmp_path):
    out = tmp_path / "frozen"
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={ckpt_data}", f"--out={out}", *RUN, "--train.steps=4",
            f"--model.init_from={checkpoints['gpt2']}", "--model.topology=shared", "--model.freeze=[embeddings,layers<2]",
            "--model.gradient_checkpointing=true", cwd=ROOT, check=True)
    original = load_file(checkpoints["gpt2"] / "model.safetensors")
    shared = _export_weights(out / "export", "shared")
    for k, v in original.items():
        same = torch.equal(shared[k][:v.shape[0]], v)
        assert same == (k.startswith(("transformer.wte", "transformer.wpe", "transformer.h.0."))), k


def test_offline_hub_name_fails_at_start_with_one_line(ckpt_data, tmp_path):
    proc = syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={ckpt_data}", f"--out={tmp_path / 'o'}", *RUN,
                   "--model.init_from=hf:nobody/no-such-model", cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "model.init_from=hf:nobody/no-such-model: cannot fetch 'nobody/no-such-model' from the Hugging Face Hub" \
        in line and "give model.init_from=DIR" in line and "Traceback" not in proc.stderr


BAD = {
    "missing dir": (["--model.init_from=/nonexistent/ckpt"], "model.init_from=/nonexistent/ckpt: no such checkpoint directory"),
    "freeze part": (["--model.freeze=[attention]"], "model.freeze: unknown part 'attention'"),
    "lora + freeze": (["--model.lora_rank=4", "--model.freeze=[embeddings]"], "has no effect with model.lora_rank > 0"),
    "lora + checkpointing": (["--model.lora_rank=4", "--model.gradient_checkpointing=true"],
                             "model.gradient_checkpointing: per-language LoRA bases switch adapters"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_continued_configs_are_refused_before_any_model_is_built(case, checkpoints, ckpt_data, tmp_path):
    from syncmod.config import parse
    from syncmod.errors import InputError
    from syncmod.pretrain.checks import check_config
    from syncmod.pretrain.config import PretrainConfig

    extra, expected = BAD[case]
    first = [] if "init_from" in extra[0] else [f"--model.init_from={checkpoints['llama']}"]
    with pytest.raises(InputError) as err:
        cfg = parse(PretrainConfig, [str(ROOT / "pretrain/sync.yaml"), f"--data.root={ckpt_data}", *RUN, *first, *extra],
                    "syncmod pretrain")
        check_config(cfg, 1)
    assert len(err.value.problems) == 1 and expected in str(err.value)


def test_unaddressable_architecture_and_foreign_data_are_refused(checkpoints, ckpt_data, data_root, tmp_path):
    from transformers import MambaConfig

    mamba = tmp_path / "mamba"
    MambaConfig(vocab_size=500, hidden_size=16, num_hidden_layers=2).save_pretrained(mamba)
    proc = syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={ckpt_data}", f"--out={tmp_path / 'o'}", *RUN,
                   f"--model.init_from={mamba}", cwd=ROOT)
    assert proc.returncode == 2 and "cannot find the decoder blocks of this architecture (model_type 'mamba')" in \
        proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
    proc = syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={tmp_path / 'p'}", *RUN,
                   f"--model.init_from={checkpoints['llama']}", cwd=ROOT)
    assert proc.returncode == 2 and "data root was not tokenized with" in proc.stderr.strip().splitlines()[-1]
