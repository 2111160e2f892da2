"""`syncmod eval` at scale: fast scoring agrees with the plain full forward, a base serves every module in
turn, tasks come from `datasets`, and an evaluation killed midway resumes to the same results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, syncmod

FT = ["--train.steps=20", "--train.eval_every=10", "--train.batch_size=16", "--tracking.enabled=false",
      "--train.dev_examples=20"]


def _tiny_llama(tok, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=4,
                                        pad_token_id=tok.pad_token_id)).eval()


@pytest.fixture(scope="module")
def hf_base(tokenizer_dir, tmp_path_factory):
    """A plain Hugging Face model directory (random weights) that syncmod did not train, with a tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    d = tmp_path_factory.mktemp("hf") / "llama"
    _tiny_llama(tok).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def task(world):
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task

    return load_task(world / "tasks/event-class", Problems())


def test_label_scores_from_the_shared_prompt_equal_the_full_forward(tokenizer_dir, task):
    from transformers import AutoTokenizer

    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build(_tiny_llama(tok), tok, None, HeadConfig(kind="label-tokens"), task, [2]).eval()
    rows = task.split("test", "xa")[:24] + task.split("test", "en")[:24]  # prompts of many lengths in one batch
    with torch.no_grad():
        full, shared = model._label_scores(rows), model._label_scores_shared(rows)
    assert full.shape == shared.shape == (48, len(task.labels))
    assert torch.allclose(full, shared, atol=1e-4), (full - shared).abs().max()
    assert model.predict(rows, batch_size=5) == [task.labels[j] for j in full.argmax(-1).tolist()]


def test_labels_sharing_tokens_share_tree_nodes_and_score_as_in_full(tokenizer_dir, task):
    """Labels whose tokens share a prefix share nodes of the label tree; every score is still the full
    forward's (prompts of many lengths, left-padded, in one batch)."""
    from transformers import AutoTokenizer

    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.label_tree import LabelTree
    from syncmod.modules.runtime import build

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build(_tiny_llama(tok, seed=1), tok, None, HeadConfig(kind="label-tokens"), task, [2]).eval()
    model.labels = ["the old", "the old man", "the ox", "a", "then"]
    answers = [[*model.enc.text(" " + label), model.enc.eos] for label in model.labels]
    tree = LabelTree(answers)
    assert len(tree) < sum(len(a) - 1 for a in answers)  # shared prefixes are one node
    rows = task.split("test", "xc")[:20] + task.split("test", "en")[:20]
    with torch.no_grad():
        full, shared = model._label_scores(rows), model._label_scores_shared(rows)
    assert torch.allclose(full, shared, atol=1e-4), (full - shared).abs().max()


@pytest.mark.parametrize("kind", ["lora", "adapter", "sparse"])
def test_blocks_below_a_module_run_once_for_every_module(tokenizer_dir, task, kind):
    """With a PrefixCache, the second model on the same base and items replays the states below its module:
    bit-identical head logits, and block 1 does not run again."""
    from transformers import AutoTokenizer

    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.prefix import PrefixCache
    from syncmod.modules.runtime import build
    from syncmod.pretrain.model import decoder_layers

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = _tiny_llama(tok)
    rows = task.split("test", "xa")[:30]
    runs, block1 = [], decoder_layers(base)[0]
    block1.register_forward_hook(lambda *_: runs.append(1))
    cache, logits, ran = PrefixCache(), [], []
    for use in (None, cache, cache):  # plain; records; replays
        torch.manual_seed(0)  # the same head, so sparse picks the same entries
        model = build(base, tok, ModuleConfig(type=kind, layers=[2]), HeadConfig(kind="linear", layer=3), task, [2])
        if kind == "sparse":
            model.module_type.prepare(model.model, lambda m=model: [m.loss(task.split("train", "en")[:8])])
        with torch.no_grad():
            for p in [*model.module_type.parameters(), *model.head.parameters()]:
                p.normal_(std=0.5)
        model.prefix, before = use, len(runs)
        with torch.no_grad():
            logits.append(model._head_logits(rows))
        ran.append(len(runs) - before)
        model.module_type.detach()
    assert ran == [1, 1, 0]  # block 1 ran, ran (recorded), was replayed
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])
    assert decoder_layers(base)[0] is block1  # the base has its own blocks back


def test_head_reads_its_layer_without_the_layers_above(tokenizer_dir, task):
    """A linear head on layer 2 of 3: the same logits as a full forward, in the examples' order, and the block
    above it never runs."""
    from transformers import AutoTokenizer

    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build
    from syncmod.pretrain.model import capture, decoder_layers

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build(_tiny_llama(tok), tok, None, HeadConfig(kind="linear", layer=2), task, [2]).eval()
    torch.nn.init.normal_(model.head.proj.weight, std=2.0)  # varied predictions, so the order is tested
    rows = task.split("test", "xb")
    ids, mask = model.enc.classify(rows)
    with torch.no_grad(), capture(model.model, [2]) as states:
        model.model(input_ids=ids, attention_mask=mask)
        reference = model.head(states[2], mask, "eos")
    ran = []
    decoder_layers(model.model)[2].register_forward_hook(lambda *_: ran.append(1))
    with torch.no_grad():
        assert torch.allclose(model._head_logits(rows), reference, atol=1e-5)
    predictions = model.predict(rows, batch_size=7)
    assert predictions == [task.labels[j] for j in reference.argmax(-1).tolist()]
    assert len(set(predictions)) > 1 and not ran


@pytest.mark.parametrize("kind", ["lora", "adapter", "sparse"])
def test_a_detached_module_leaves_the_base_as_it_was(tokenizer_dir, task, kind):
    """The matrix loads a base once per language and attaches every module to it in turn."""
    from transformers import AutoTokenizer

    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = _tiny_llama(tok)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
    for _ in range(2):
        model = build(base, tok, ModuleConfig(type=kind, layers="all"), HeadConfig(), task, [2])
        if kind == "sparse":  # picks its entries by gradient
            model.module_type.prepare(model.model, lambda m=model: [m.loss(task.split("train", "en")[:8])])
        with torch.no_grad():
            for p in model.module_type.parameters():
                p.normal_(std=0.5)
            assert not torch.allclose(model.model(input_ids=ids).logits, before, atol=1e-3)
            model.module_type.detach()
            assert torch.equal(base(input_ids=ids).logits, before)


def _dataset_fixture(world, path, langs):
    """The world's event-class test set as a `datasets` DatasetDict saved to disk: columns sentence / label
    (a ClassLabel) / language, without ids (the row index within a language is the id)."""
    import datasets

    labels = json.loads((world / "tasks/event-class/task.json").read_text())["labels"]
    cols = {"sentence": [], "label": [], "language": []}
    for lang in langs:
        for line in (world / f"tasks/event-class/test.{lang}.jsonl").read_text().splitlines()[:40]:
            row = json.loads(line)
            cols["sentence"].append(row["text"])
            cols["label"].append(labels.index(row["label"]))
            cols["language"].append(lang)
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=labels),
                                  "language": datasets.Value("string")})
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(cols, features=features)}).save_to_disk(str(path))
    return path


def test_a_datasets_task_on_a_plain_hf_model(world, hf_base, tmp_path):
    """`--task` a load_from_disk directory with a column mapping, `--base` a plain HF model directory."""
    from syncmod.data.hf_tasks import TaskColumns, load_hf_task
    from syncmod.data.lines import Problems

    ds = _dataset_fixture(world, tmp_path / "event-class", ["en", "xa"])
    problems = Problems()
    loaded = load_hf_task(str(ds), TaskColumns(text=["sentence"], lang="language"), problems)
    assert not problems and loaded.kind == "classify" and loaded.languages == ["en", "xa"]
    assert loaded.split("test", "xa")[3].target == json.loads(
        (world / "tasks/event-class/test.xa.jsonl").read_text().splitlines()[3])["label"]
    out = tmp_path / "ev"
    syncmod("eval", "--base", str(hf_base), "--task", str(ds), "--text-columns", "sentence", "--lang-column", "language",
            "--metric=macro_f1", "--out", str(out), "--no-tracking", check=True)
    res = json.loads((out / "results.json").read_text())
    assert res["metric"] == "macro_f1" and res["langs"] == ["en", "xa"]
    floor = res["floor"]["xa"]
    assert floor["n"] == 40 and floor["score"] == floor["macro_f1"]
    assert sum(map(sum, floor["confusion"]["matrix"])) == 40 and floor["confusion"]["labels"] == res["labels"]
    majority = res["majority"]["en"]
    assert res["majority_answer"]["en"]["from"] == "test"  # the fixture has no training split
    assert majority["accuracy"] == max(sum(r) for r in majority["confusion"]["matrix"]) / 40
    assert 0 < res["chance"]["en"] < 1
    assert "majority class" in (out / "table.md").read_text()


def test_a_missing_column_is_one_clear_line(world, hf_base, tmp_path):
    ds = _dataset_fixture(world, tmp_path / "event-class", ["en"])
    proc = syncmod("eval", "--base", str(hf_base), "--task", str(ds), "--out", str(tmp_path / "e"), "--no-tracking")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no language column 'lang'" in proc.stderr and "--lang-column" in proc.stderr


@pytest.fixture(scope="module")
def big_task(world, tmp_path_factory):
    """event-class with 20x the test items (new ids), so a cell takes long enough to be killed between cells."""
    d = tmp_path_factory.mktemp("big") / "event-class"
    d.mkdir()
    (d / "task.json").write_text((world / "tasks/event-class/task.json").read_text())
    for lang in ("en", "xa"):
        rows = [json.loads(x) for x in (world / f"tasks/event-class/test.{lang}.jsonl").read_text().splitlines()]
        big = [{**r, "id": f"{r['id']}-{k}"} for k in range(20) for r in rows]
        (d / f"test.{lang}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in big))
        (d / f"train.{lang}.jsonl").write_text((world / f"tasks/event-class/train.{lang}.jsonl").read_text())
    return d


@pytest.fixture(scope="module")
def adapters(hf_base, big_task, tmp_path_factory):
    out = []
    for lang in ("en", "xa"):
        d = tmp_path_factory.mktemp("mod") / f"adapter-{lang}"
        syncmod("finetune", f"--base={hf_base}", f"--task={big_task}", f"--lang={lang}", f"--out={d}",
                "--module.type=adapter", *FT, cwd=ROOT, check=True)
        out.append(str(d))
    return out


def test_a_killed_evaluation_resumes_to_the_same_results(hf_base, big_task, adapters, tmp_path):
    args = ["eval", "--base", str(hf_base), "--module", *adapters, "--task", str(big_task), "--langs", "en,xa",
            "--no-tracking"]
    syncmod(*args, "--out", str(tmp_path / "whole"), check=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "syncmod.cli", *args, "--out", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    cells = killed / "cells"
    while proc.poll() is None and len(list(cells.glob("*.json"))) < 2:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    assert 2 <= len(done) < 6 and not (killed / "results.json").exists(), "killed after some cells, before the end"
    syncmod(*args, "--out", str(killed), "--resume", check=True)
    assert all(p.stat().st_mtime_ns == done[p.name] for p in cells.glob("*.json") if p.name in done)  # reused
    assert len(list(cells.glob("*.json"))) == 6
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert json.loads((killed / "results.json").read_text()) == whole
    assert whole["modules"][0]["scores"]["xa"]["n"] == 1200
