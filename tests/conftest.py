"""Shared fixtures: a tiny synthetic world, its tokenizer and shards, built once per test session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A suite started in the background by a shell without job control (`cmd &` in a script) inherits SIGINT ignored,
# and so would every process it starts (Python keeps an ignored SIGINT ignored): the Ctrl-C tests need it delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_WORLD = ["--parallel_train=600", "--parallel_valid=100", "--mono_train=600", "--mono_valid=100",
              "--task_train=200", "--task_dev=40", "--task_test=60"]


def syncmod(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = False,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "syncmod.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"syncmod {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def pretrain_killed_at(out: Path, args: list[str], step: int, timeout: float = 600) -> None:
    """Start `syncmod pretrain` into `out`, SIGKILL it once checkpoint `step` is complete (a real crash)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "syncmod.cli", "pretrain", "pretrain/sync.yaml", f"--out={out}",
                             *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / f"checkpoints/step-{step:08d}/syncmod_complete"
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    syncmod("data", "synth", "--out", str(out), "--seed=7", *TINY_WORLD, check=True)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tok"
    syncmod("data", "tokenizer", str(world), "--out", str(out), "--vocab-size", "800", check=True)
    return out


@pytest.fixture(scope="session")
def shards_dir(world, tokenizer_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "sh"
    mono = sorted(str(p) for p in (world / "mono").glob("train.*.txt"))
    syncmod("data", "shards", "--tokenizer", str(tokenizer_dir), "--parallel", str(world / "parallel/train.jsonl"),
            "--mono", *mono, "--out", str(out), check=True)
    return out


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (a user's clone has none)")
    return SHARED_DATA


def random_export(root: Path, tokenizer_dir: Path) -> Path:
    """Two tiny per-language bases of one architecture (random weights, other seeds) as a syncmod export."""
    import json

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    for seed, lang in enumerate(["en", "xa"]):
        torch.manual_seed(seed)
        LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=2)).save_pretrained(root / lang)
        tok.save_pretrained(root / lang)
    (root / "bases.json").write_text(json.dumps({"bases": ["en", "xa"], "languages": ["en", "xa"],
                                                 "topology": "per-language", "sync_layers": [1]}))
    return root


@pytest.fixture(scope="session")
def data_root(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "root"
    syncmod("data", "prepare", "--world", str(world), "--out", str(out), "--vocab-size", "600", check=True)
    return out


TINY_PRETRAIN = ["--model.preset=tiny", "--model.max_seq_len=64", "--train.seq_len=32", "--train.warmup_steps=5",
                 "--eval.max_docs=20", "--eval.units=40", "--train.log_every=1", "--tracking.enabled=false"]


@pytest.fixture(scope="session")
def tiny_export(data_root, tmp_path_factory) -> Path:
    """Per-language tiny bases, synchronised at layer 1 (a short run: enough to make modules learnable)."""
    out = tmp_path_factory.mktemp("pre") / "sync"
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={out}", *TINY_PRETRAIN,
            "--train.steps=80", "--train.batch_size=16", "--schedule.pattern=SSA", "--train.lr=3e-3",
            "--sync.layers=[1]", "--eval.every=0", "--checkpoint.every=0", cwd=ROOT, check=True)
    return out / "export"
