"""Bad input, tried as a user would through the real CLI: every case is exit 2, one line per problem naming the
file, no traceback, and nothing written where the output would have gone."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import ROOT, syncmod

LANGS = ("en", "xa")


@pytest.fixture(scope="module")
def export(tokenizer_dir, tmp_path_factory) -> Path:
    """A syncmod export of two tiny per-language bases (untrained: these tests need files, not skill)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    root = tmp_path_factory.mktemp("export") / "export"
    for seed, lang in enumerate(LANGS):
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        LlamaForCausalLM(config).save_pretrained(root / lang)
        tok.save_pretrained(root / lang)
    (root / "bases.json").write_text(json.dumps({"bases": list(LANGS), "languages": list(LANGS),
                                                 "topology": "per-language", "sync_layers": [1]}))
    return root


@pytest.fixture(scope="module")
def module(export, world, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("module") / "adapter-en"
    syncmod("finetune", f"--base={export}", f"--task={world / 'tasks/event-class'}", "--lang=en", f"--out={d}",
            "--module.type=adapter", "--train.steps=2", "--train.eval_every=2", "--train.batch_size=4",
            "--train.dev_examples=8", "--tracking.enabled=false", cwd=ROOT, check=True)
    return d


# -- damage done to a copy of a good input -------------------------------------------------------------------
def _copy(src: Path, tmp: Path, name: str | None = None) -> Path:
    dst = tmp / (name or src.name)
    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _edit_card(d: Path, **changes) -> None:
    card = json.loads((d / "card.json").read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key)
        else:
            card[key] = value
    (d / "card.json").write_text(json.dumps(card))


def _rewrite_weights(d: Path, change) -> None:
    """Change the tensors and re-sign the card, so the file's *content* is what is wrong, not its checksum."""
    tensors = load_file(d / "module.safetensors")
    change(tensors)
    save_file(tensors, str(d / "module.safetensors"))
    _edit_card(d, weights_sha256=hashlib.sha256((d / "module.safetensors").read_bytes()).hexdigest())


def _first_tensor(tensors: dict) -> str:
    return sorted(tensors)[0]


def _run_dir(export: Path, tmp: Path) -> Path:
    run = tmp / "run"
    run.mkdir()
    shutil.copytree(export, run / "export")
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text("{}")
    return run


# -- the cases: (arguments, text each stderr line must hold) -----------------------------------------------------
def _eval(base, task, modules=(), out="OUT"):
    return ["eval", f"--base={base}", f"--task={task}", "--langs=en,xa", f"--out={out}", "--no-tracking",
            *(["--module", *map(str, modules)] if modules else [])]


def _finetune(base, task, out="OUT"):
    return ["finetune", f"--base={base}", f"--task={task}", "--lang=en", f"--out={out}", "--train.steps=2",
            "--tracking.enabled=false"]


def case_tokenizer_without_model_file(t, world, tok, export, module):
    d = _copy(tok, t, "tok")
    (d / "tokenizer.json").unlink()
    return ["data", "shards", f"--tokenizer={d}", "--parallel", str(world / "parallel/train.jsonl"), "--out=OUT"], \
        [f"{d / 'tokenizer.json'}: the tokenizer's model file is missing"]


def case_bases_json_truncated(t, world, tok, export, module):
    d = _copy(export, t)
    _truncate(d / "bases.json", 25)
    return _eval(d, world / "tasks/event-class"), [f"{d / 'bases.json'}:1: invalid JSON"]


def case_bases_json_not_json(t, world, tok, export, module):
    d = _copy(export, t)
    (d / "bases.json").write_text("bases: en, xa\n")
    return _eval(d, world / "tasks/event-class"), [f"{d / 'bases.json'}:1: invalid JSON"]


def case_run_directory_for_export(t, world, tok, export, module):
    run = _run_dir(export, t)
    return _eval(run, world / "tasks/event-class"), [f"{run}: this is a pre-training run directory",
                                                     f"use {run / 'export'}"]


def case_truncated_base_weights_of_another_language(t, world, tok, export, module):
    d = _copy(export, t)
    _truncate(d / "xa/model.safetensors", 4000)  # eval opens every base before it scores the first
    return _eval(d, world / "tasks/event-class", [module]), \
        [f"{d / 'xa/model.safetensors'}: weights file is truncated or corrupt"]


def case_base_missing_config(t, world, tok, export, module):
    d = _copy(export, t)
    (d / "xa/config.json").unlink()
    return _eval(d, world / "tasks/event-class"), [f"{d / 'xa/config.json'}: base config is missing"]


def case_base_missing_a_tensor(t, world, tok, export, module):
    d = _copy(export, t)
    weights = load_file(d / "en/model.safetensors")
    weights.pop("model.layers.1.mlp.up_proj.weight")
    save_file(weights, str(d / "en/model.safetensors"), metadata={"format": "pt"})
    return _eval(d, world / "tasks/event-class"), [f"{d / 'en'}: weights lack 1 tensors of the model"]


def case_finetune_on_truncated_base(t, world, tok, export, module):
    d = _copy(export, t)
    _truncate(d / "en/model.safetensors", 4000)
    return _finetune(d, world / "tasks/event-class"), [f"{d / 'en/model.safetensors'}: weights file is truncated"]


def case_card_field_of_wrong_type(t, world, tok, export, module):
    d = _copy(module, t)
    _edit_card(d, lang=1)
    return _eval(export, world / "tasks/event-class", [d]), \
        [f"{d / 'card.json'}: module card field 'lang' is 1, expected a string"]


def case_card_module_config_of_wrong_type(t, world, tok, export, module):
    d = _copy(module, t)
    card = json.loads((d / "card.json").read_text())
    _edit_card(d, module={**card["module"], "rank": "8"})
    return _eval(export, world / "tasks/event-class", [d]), [f"{d / 'card.json'}: module card field 'module.rank'"]


def case_card_field_missing(t, world, tok, export, module):
    d = _copy(module, t)
    _edit_card(d, task=None)
    return _eval(export, world / "tasks/event-class", [d]), [f"{d / 'card.json'}: module card has no 'task'"]


def case_module_missing_a_tensor(t, world, tok, export, module):
    d = _copy(module, t)
    _rewrite_weights(d, lambda w: w.pop(_first_tensor(w)))
    return _eval(export, world / "tasks/event-class", [d]), [f"{d / 'module.safetensors'}: module weights lack tensor"]


def case_module_tensor_of_wrong_shape(t, world, tok, export, module):
    d = _copy(module, t)
    _rewrite_weights(d, lambda w: w.__setitem__(_first_tensor(w), torch.zeros(3)))
    return _eval(export, world / "tasks/event-class", [d]), [f"{d / 'module.safetensors'}: module tensor"]


def case_task_json_invalid(t, world, tok, export, module):
    d = _copy(world / "tasks/event-class", t)
    (d / "task.json").write_text('{"name": "event-class", "kind": ')
    return _eval(export, d), [f"{d / 'task.json'}:1: invalid JSON"]


def case_task_json_labels_not_strings(t, world, tok, export, module):
    d = _copy(world / "tasks/event-class", t)
    card = json.loads((d / "task.json").read_text())
    (d / "task.json").write_text(json.dumps({**card, "labels": [1, 2]}))
    return _finetune(export, d), [f"{d / 'task.json'}:1: a classify task needs 'labels': a list of two or more strings"]


def case_out_under_a_file(t, world, tok, export, module):
    (t / "file").write_text("mine\n")
    return ["data", "tokenizer", str(world), f"--out={t / 'file/tok'}"], [f"{t / 'file/tok'}: cannot be created: "
                                                                         f"{t / 'file'} is a file"]


def case_out_is_another_kind_of_output(t, world, tok, export, module):
    d = _copy(module, t)
    return _eval(export, world / "tasks/event-class", out=d), [f"{d}: holds files and is not a previous eval output "
                                                               "(it is a module output)"]


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, world, tokenizer_dir, export, module):
    args, expected = CASES[case](tmp_path, world, tokenizer_dir, export, module)
    args = [a.replace("--out=OUT", f"--out={tmp_path / 'OUT'}") for a in args]
    before = _snapshot(tmp_path)
    proc = syncmod(*args, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert all(text in lines[0] for text in expected), (expected, lines[0])
    assert _snapshot(tmp_path) == before  # no output, no .tmp or lock beside it, no input touched


def test_an_existing_file_at_out_is_kept_byte_for_byte(tmp_path, world):
    out = tmp_path / "tok"
    data = os.urandom(1000)
    out.write_bytes(data)
    proc = syncmod("data", "tokenizer", str(world), f"--out={out}", "--vocab-size=800")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{out}: exists and is not a directory (it is left as it is)" in proc.stderr
    assert out.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_atomic_dir_never_replaces_a_file_or_a_directory_of_another_kind(tmp_path):
    from syncmod.errors import InputError
    from syncmod.io import atomic_dir

    (tmp_path / "f").write_text("mine")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for path in (tmp_path / "f", other):
        with pytest.raises(InputError), atomic_dir(path, "module") as tmp:
            (tmp / "card.json").write_text("{}")
    assert (tmp_path / "f").read_text() == "mine" and (other / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "other"]
    with atomic_dir(tmp_path / "m", "module") as tmp:  # a previous output of the same kind is replaced
        (tmp / "card.json").write_text("1")
    with atomic_dir(tmp_path / "m", "module") as tmp:
        (tmp / "card.json").write_text("2")
    assert (tmp_path / "m/card.json").read_text() == "2"


def test_an_out_in_use_is_refused(tmp_path, world):
    from syncmod.io import claim_output

    out = tmp_path / "tok"
    with claim_output(out, "tokenizer"):
        proc = syncmod("data", "tokenizer", str(world), f"--out={out}", "--vocab-size=800")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"syncmod data tokenizer: {out}: is in use by another syncmod process "
                                   f"(pid {os.getpid()}) (wait for it to finish, or choose another output path)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the lock went with its holder
    proc = syncmod("data", "tokenizer", str(world), f"--out={out}", "--vocab-size=800")
    assert proc.returncode == 0, proc.stderr


def test_a_read_only_out_is_refused_at_start(tmp_path, world):
    place = tmp_path / "ro"
    place.mkdir()
    place.chmod(0o555)
    try:
        if _writable(place):  # root writes anywhere: use a place the kernel refuses even to root
            place = Path("/sys/fs")
            if not place.is_dir() or _writable(place):
                pytest.skip("no read-only directory available to this user")
        out = place / "tok"
        proc = syncmod("data", "tokenizer", str(world), f"--out={out}", "--vocab-size=800")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().endswith(f"{out}: cannot write in {place}: Permission denied "
                                            "(choose a writable output path)"), proc.stderr
        assert not out.exists()
    finally:
        (tmp_path / "ro").chmod(0o755)


def _writable(place: Path) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=place):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("same_launch", [True, False])
def test_other_ranks_check_the_lock_without_waiting_on_their_own_rank_0(tmp_path, monkeypatch, same_launch):
    """Rank 0 holds the lock; rank 1 of the same launch goes on, rank 1 of another launch is refused at once."""
    import subprocess
    import sys

    from syncmod.io import claim_output

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    out = tmp_path / "run"
    rank1 = {**os.environ, "RANK": "1", "MASTER_PORT": "29500" if same_launch else "29501"}
    code = f"from syncmod.io import claim_output\nwith claim_output({str(out)!r}, 'pretrain'): print('claimed')"
    with claim_output(out, "pretrain"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=rank1, timeout=60)
    if same_launch:
        assert proc.returncode == 0 and proc.stdout.strip() == "claimed", proc.stderr
    else:
        assert proc.returncode == 1 and f"is in use by another syncmod process (pid {os.getpid()})" in proc.stderr
