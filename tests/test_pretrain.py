"""The pre-training engine, run as users run it: the CLI, the DeepSpeed launcher, SIGKILL and resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, pretrain_killed_at, syncmod
from conftest import TINY_PRETRAIN as TINY


def _metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return {f"{b}/{k}": v for b in json.loads((out / "export/bases.json").read_text())["bases"]
            for k, v in load_file(out / "export" / b / "model.safetensors").items()}


def test_sync_run_aligns_the_synced_layer_only(data_root, tmp_path):
    out = tmp_path / "run"
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={out}", *TINY,
            "--train.steps=120", "--train.batch_size=16", "--schedule.pattern=S", "--train.lr=3e-3",
            "--sync.layers=[1]", "--eval.every=0", "--checkpoint.every=0", cwd=ROOT, check=True)
    final = [m for m in _metrics(out) if m["kind"] == "eval"][-1]
    assert final["retrieval/top1_layer1"] > 0.9 > 0.2 > final["retrieval/top1_layer2"]
    assert [m for m in _metrics(out) if m["kind"] == "sync"][-1]["sync/acc"] > 0.9
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out / "export/xa")
    tok = AutoTokenizer.from_pretrained(out / "export/xa")
    assert model.config.num_hidden_layers == 2 and len(tok) == model.config.vocab_size


def test_sigkill_then_resume_is_bitwise_identical(data_root, tmp_path):
    args = [f"--data.root={data_root}", *TINY, "--train.steps=60", "--train.batch_size=8", "--schedule.pattern=SAA",
            "--checkpoint.every=10", "--checkpoint.keep=2", "--eval.every=0"]
    straight = tmp_path / "straight"
    syncmod("pretrain", "pretrain/sync.yaml", f"--out={straight}", *args, cwd=ROOT, check=True)

    killed = tmp_path / "killed"
    pretrain_killed_at(killed, args, 20, timeout=300)
    assert not (killed / "export").exists()
    syncmod("pretrain", "pretrain/sync.yaml", f"--out={killed}", *args, cwd=ROOT, check=True)
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpts = sorted(p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert ckpts == ["step-00000050", "step-00000060"]  # keep the last 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_under_the_deepspeed_launcher_match_one_rank(data_root, tmp_path):
    args = ["pretrain/sync.yaml", f"--data.root={data_root}", *TINY, "--train.steps=20", "--train.batch_size=8",
            "--schedule.pattern=SA", "--eval.every=0", "--checkpoint.every=0"]
    one = tmp_path / "one"
    syncmod("pretrain", *args, f"--out={one}", cwd=ROOT, check=True)
    two = tmp_path / "two"
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port",
                str(_free_port()), "--module", "syncmod.pretrain", *args, f"--out={two}"]
    proc = subprocess.run(launcher, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"},
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((two / "config.json").read_text())
    assert cfg["_resolved"]["world_size"] == 2
    m1 = [m for m in _metrics(one) if m["kind"] != "eval"]
    m2 = [m for m in _metrics(two) if m["kind"] != "eval"]
    assert len(m1) == len(m2) == 20
    keys = [k for k in m1[0] if k.startswith(("clm/", "sync/loss"))]
    for a, b in zip(m1, m2, strict=True):
        for k in keys + [k for k in a if k.startswith("sync/loss")]:
            assert abs(a[k] - b[k]) <= 1e-4 * abs(a[k]), (a["step"], k, a[k], b[k])


@pytest.mark.slow
def test_zero3_export_reproduces_engine_logits(data_root, tmp_path):
    out = tmp_path / "z3"
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={out}", *TINY, "--train.steps=6",
            "--train.batch_size=4", "--train.zero_stage=3", "--eval.every=0", "--checkpoint.every=0", cwd=ROOT, check=True)
    assert json.loads((out / "ds_config.json").read_text())["zero_optimization"]["stage"] == 3
    from transformers import AutoModelForCausalLM

    for base in ("en", "xa", "xb", "xc"):
        probe = load_file(out / "export" / base / "probe.safetensors")
        model = AutoModelForCausalLM.from_pretrained(out / "export" / base)
        with torch.no_grad():
            logits = model(input_ids=probe["input_ids"]).logits
        assert torch.allclose(logits, probe["logits"], atol=1e-5), base
        assert probe["logits"].abs().sum() > 0  # real weights, not ZeRO-3 placeholders


BAD = {
    "unknown objective": (["--sync.objective=magic"], "--sync.objective=magic: unknown value 'magic'"),
    "unknown loss": (["--sync.loss=hinge"], "--sync.loss=hinge: unknown value 'hinge'"),
    "layer out of range": (["--sync.layers=[5]"], "--sync.layers=[5]: sync layer 5 is out of range for a 2-layer base"),
    "batch vs world": (["--train.batch_size=5", "--train.micro_batch_size=2"],
                       "train.batch_size: global batch 5 is not a multiple of micro batch 2 x world size 1"),
    "missing data": (["--data.root=/nonexistent"], "/nonexistent/tokenizer/tokenizer_config.json: missing prepared data"),
    "unknown key": (["--train.stepz=3"], "unknown option --train.stepz (did you mean --train.steps?)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configs_fail_at_start_with_one_line(case, data_root, tmp_path):
    extra, expected = BAD[case]
    proc = syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={tmp_path / 'o'}", *TINY,
                   *extra, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_unresolved_auto_in_deepspeed_json(data_root, tmp_path):
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 0,
                                                                                             "reduce_bucket_size": "auto"}}))
    proc = syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={tmp_path / 'o'}", *TINY,
                   "--deepspeed", str(ds), cwd=ROOT)
    assert proc.returncode == 2 and 'unresolved "auto" value for zero_optimization.reduce_bucket_size' in proc.stderr


def test_resume_dir_of_another_config_is_refused(data_root, tmp_path):
    out = tmp_path / "o"
    args = ["pretrain/sync.yaml", f"--data.root={data_root}", f"--out={out}", *TINY, "--train.batch_size=4",
            "--eval.every=0"]
    syncmod("pretrain", *args, "--train.steps=2", cwd=ROOT, check=True)
    proc = syncmod("pretrain", *args, "--train.steps=2", "--sync.lam=0.5", cwd=ROOT)
    assert proc.returncode == 2 and "checkpoints belong to another config" in proc.stderr
