"""Task modules and the eval CLI, on tiny per-language bases trained by the engine."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, syncmod

FT = ["--train.steps=30", "--train.eval_every=15", "--train.batch_size=16", "--tracking.enabled=false",
      "--train.dev_examples=40"]


@pytest.fixture(scope="module")
def modules(tiny_export, world, tmp_path_factory):
    root = tmp_path_factory.mktemp("mods")
    out = {}
    for kind in ("lora", "adapter", "sparse"):
        for lang in ("en", "xa"):
            d = root / f"{kind}-{lang}"
            syncmod("finetune", f"--base={tiny_export}", f"--task={world / 'tasks/event-class'}", f"--lang={lang}",
                    f"--out={d}", f"--module.type={kind}", *FT, cwd=ROOT, check=True)
            out[(kind, lang)] = d
    return out


def test_module_files_and_card(modules):
    card = json.loads((modules[("adapter", "en")] / "card.json").read_text())
    assert card["type"] == "adapter" and card["lang"] == "en" and card["task"] == "event-class"
    assert card["layer_map"] == {"model_layers": "model.layers", "blocks": [1], "positions": ["block"]}
    assert card["head_layer"] == 1 and card["base"]["architecture"]["num_hidden_layers"] == 2
    assert "plug into any base" in card["claim"]
    assert set(load_file(modules[("sparse", "en")] / "module.safetensors")) >= {"head.proj.weight"}


def test_lora_loads_with_peft_and_gives_the_same_logits(modules, tiny_export):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.files import read_card, read_weights
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import TaskModel

    d = modules[("lora", "en")]
    card = read_card(d)
    ids = AutoTokenizer.from_pretrained(tiny_export / "en")("The dog saw Maria.", return_tensors="pt").input_ids
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_export / "en"), d / "peft").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_export / "en").eval()
    ours = TaskModel(base, AutoTokenizer.from_pretrained(tiny_export / "en"), ModuleConfig(**card["module"]),
                     HeadConfig(**card["head"]), card["kind"], card["labels"], card["sync_layers"])
    ours.load(read_weights(d, card))
    with torch.no_grad():
        a, b = peft(input_ids=ids).logits, ours.model(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_export / "en")(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, plain, atol=1e-4)  # the LoRA weights are trained, not zero


def test_finetune_is_deterministic(tiny_export, world, tmp_path):
    runs = []
    for name in ("a", "b"):
        syncmod("finetune", f"--base={tiny_export}", f"--task={world / 'tasks/event-class'}", "--lang=en",
                f"--out={tmp_path / name}", "--module.type=adapter", *FT, cwd=ROOT, check=True)
        runs.append(load_file(tmp_path / name / "module.safetensors"))
    assert runs[0].keys() == runs[1].keys() and all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_eval_writes_matrix_ratios_retained_and_plots(modules, tiny_export, world, tmp_path):
    out = tmp_path / "eval"
    proc = syncmod("eval", "--base", str(tiny_export), "--module", str(modules[("adapter", "en")]),
                   str(modules[("adapter", "xa")]), "--task", str(world / "tasks/event-class"), "--langs", "en,xa",
                   "--out", str(out), "--no-tracking", check=True)
    assert "| adapter | en |" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    en = next(m for m in res["modules"] if m["lang"] == "en")
    assert en["scores"]["xa"]["transfer"] is True and en["scores"]["en"]["transfer"] is False
    lo, hi = en["scores"]["en"]["ci"]
    assert lo <= en["scores"]["en"]["score"] <= hi and en["scores"]["en"]["n"] == 60
    assert en["transfer_ratio"]["xa"] == pytest.approx(en["scores"]["xa"]["score"] / en["scores"]["en"]["score"])
    native_xa = next(m for m in res["modules"] if m["lang"] == "xa")["scores"]["xa"]["score"]
    assert en["retained"]["xa"] == pytest.approx(en["scores"]["xa"]["score"] / native_xa)
    assert set(res["floor"]) == {"en", "xa"}
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG" and (out / "table.md").exists()


def test_generate_task_and_a_plain_hf_model(world, tmp_path, tiny_export):
    """`syncmod eval` on an HF causal LM directory that syncmod did not train."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_export / "en")
    hf = tmp_path / "plain"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(hf)
    tok.save_pretrained(hf)
    mod = tmp_path / "qa-lora"
    syncmod("finetune", f"--base={hf}", f"--task={world / 'tasks/qa'}", "--lang=en", f"--out={mod}",
            "--module.type=lora", "--module.layers=all", *FT, cwd=ROOT, check=True)
    proc = syncmod("eval", "--base", str(hf), "--module", str(mod), "--task", str(world / "tasks/qa"), "--langs",
                   "en,xb", "--out", str(tmp_path / "ev"), "--no-tracking", check=True)
    res = json.loads((tmp_path / "ev/results.json").read_text())
    assert res["kind"] == "generate" and "token_f1" in res["modules"][0]["scores"]["en"]
    assert "exact match" in proc.stdout


def test_wrong_shape_base_is_refused(modules, tmp_path, world, tiny_export):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_export / "en")
    other = tmp_path / "other"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(other)
    tok.save_pretrained(other)
    proc = syncmod("eval", "--base", str(other), "--module", str(modules[("adapter", "en")]), "--task",
                   str(world / "tasks/event-class"), "--langs", "en", "--out", str(tmp_path / "e"), "--no-tracking")
    assert proc.returncode == 2
    assert "module was trained for a base of another shape: hidden_size 64 vs 48" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "card"])
def test_damaged_module_files_are_refused(modules, tmp_path, world, tiny_export, damage):
    d = tmp_path / "m"
    shutil.copytree(modules[("lora", "en")], d)
    w = d / "module.safetensors"
    if damage == "truncate":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif damage == "flip":
        data = bytearray(w.read_bytes())
        data[-10] ^= 0xFF
        w.write_bytes(bytes(data))
    else:
        (d / "card.json").write_text('{"type": "lora", ')
    proc = syncmod("eval", "--base", str(tiny_export), "--module", str(d), "--task", str(world / "tasks/event-class"),
                   "--langs", "en", "--out", str(tmp_path / "e"), "--no-tracking")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    expected = "module card is not valid JSON" if damage == "card" else "truncated or corrupted"
    assert expected in proc.stderr


def test_task_with_other_ids_in_another_language_is_refused(world, tmp_path, tiny_export, modules):
    task = tmp_path / "task"
    shutil.copytree(world / "tasks/event-class", task)
    rows = [json.loads(x) for x in (task / "test.xa.jsonl").read_text().splitlines()]
    rows[0]["id"] = "something-else"
    (task / "test.xa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = syncmod("eval", "--base", str(tiny_export), "--module", str(modules[("adapter", "en")]), "--task",
                   str(task), "--out", str(tmp_path / "e"), "--no-tracking")
    assert proc.returncode == 2 and "test ids differ from en" in proc.stderr


def test_transfer_aware_training_records_its_claim(tiny_export, world, tmp_path):
    d = tmp_path / "ta"
    syncmod("finetune", f"--base={tiny_export}", f"--task={world / 'tasks/event-class'}", "--lang=en", f"--out={d}",
            "--module.type=lora", "--transfer_aware.langs=[xa]",
            f"--transfer_aware.parallel={world / 'parallel/train.jsonl'}", *FT, cwd=ROOT, check=True)
    card = json.loads((d / "card.json").read_text())
    assert "transfer-aware" in card["claim"] and card["transfer_aware"]["langs"] == ["xa"]


def test_adapter_on_a_generate_task_trains(tiny_export, world, tmp_path):
    """An adapter's parameters live outside the base; the engine must still see (clip, step) them."""
    d = tmp_path / "qa-adapter"
    syncmod("finetune", f"--base={tiny_export}", f"--task={world / 'tasks/qa'}", "--lang=en", f"--out={d}",
            "--module.type=adapter", *FT, cwd=ROOT, check=True)
    weights = load_file(d / "module.safetensors")
    assert weights["module.1_block.up.weight"].abs().sum() > 0  # moved away from its zero initialisation
