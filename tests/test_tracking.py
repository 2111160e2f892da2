"""Tracking against a real `mlflow server` on a free loopback port, started and stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, syncmod
from syncmod.tracking.cli import serve, stop

pytestmark = pytest.mark.slow
TINY = ["--model.preset=tiny", "--model.max_seq_len=64", "--train.seq_len=32", "--train.warmup_steps=2",
        "--eval.max_docs=10", "--eval.units=20", "--train.batch_size=4", "--train.log_every=1",
        "--tracking.system_metrics_interval=1"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _port()
    root = tmp_path / "mlflow"
    proc = serve(root, "127.0.0.1", port, wait=300)  # a loaded machine starts it slowly
    box = {"proc": proc, "uri": f"http://127.0.0.1:{port}", "root": root, "port": port}
    yield box
    stop(box["proc"])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from conftest import TINY_WORLD

    base = tmp_path_factory.mktemp("trk")
    syncmod("data", "synth", "--out", str(base / "w"), "--seed=3", *TINY_WORLD, check=True)
    syncmod("data", "prepare", "--world", str(base / "w"), "--out", str(base / "d"), "--vocab-size", "500", check=True)
    return base / "d"


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _run(client, name):
    exp = client.get_experiment_by_name("syncmod")
    return next(r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == name)


def _start(out: Path, data_root: Path, *extra: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "syncmod.cli", "pretrain", "pretrain/sync.yaml",
                             f"--data.root={data_root}", f"--out={out}", *TINY, *extra], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def test_pretrain_logs_run_tree_params_metrics_artifacts(server, data_root, tmp_path):
    out = tmp_path / "pre"
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={out}", *TINY, "--train.steps=8",
            "--tracking-uri", server["uri"], cwd=ROOT, check=True)
    c = _client(server["uri"])
    run = _run(c, "pre")
    assert run.info.status == "FINISHED"
    assert run.data.params["sync.loss"] == "infonce" and run.data.params["train.steps"] == "8"
    tags = run.data.tags
    assert tags["syncmod.kind"] == "pretrain" and tags["deepspeed_stage"] == "0" and tags["world_size"] == "1"
    assert len(tags["config_hash"]) == 16
    assert [m.step for m in c.get_metric_history(run.info.run_id, "clm/en")] == list(range(1, 9))
    assert c.get_metric_history(run.info.run_id, "retrieval/top1_layer1")[-1].step == 8
    assert {"config.json", "ds_config.json", "metrics.jsonl", "export"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
    assert not (out / "mlflow.db").exists()  # a server was given: no local store

    # the chain: a module trained on those bases, then its evaluation — nested runs under one tree
    world = data_root.parent / "w"
    mod = tmp_path / "mod"
    env = {"MLFLOW_TRACKING_URI": server["uri"]}
    syncmod("finetune", f"--base={out / 'export'}", f"--task={world / 'tasks/event-class'}", "--lang=en", f"--out={mod}",
            "--module.type=adapter", "--train.steps=10", "--train.eval_every=5", "--train.dev_examples=20",
            "--tracking.system_metrics_interval=1", env=env, cwd=ROOT, check=True)
    syncmod("eval", "--base", str(out / "export"), "--module", str(mod), "--task", str(world / "tasks/event-class"),
            "--langs", "en,xa", "--max-items", "20", "--out", str(tmp_path / "ev"), env=env, check=True)
    module_run = _run(c, "mod")
    eval_run = _run(c, "ev")
    assert module_run.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert module_run.data.tags["base_run_id"] == run.info.run_id
    assert eval_run.data.tags["mlflow.parentRunId"] == module_run.info.run_id
    assert eval_run.info.status == module_run.info.status == "FINISHED"
    assert [m.step for m in c.get_metric_history(module_run.info.run_id, "dev/score")] == [5, 10]
    assert {"results.json", "table.md", "heatmap.png"} <= {a.path for a in c.list_artifacts(eval_run.info.run_id)}
    assert "module/card.json" in {a.path for a in c.list_artifacts(module_run.info.run_id, "module")}
    card = json.loads((mod / "card.json").read_text())
    version = c.get_model_version_by_alias(card["name"], "current")
    assert version.run_id == module_run.info.run_id
    # bases and modules can be read back through MLflow URIs
    from syncmod.modules.bases import resolve_uri

    os.environ["MLFLOW_TRACKING_URI"] = server["uri"]
    try:
        assert (resolve_uri(f"models:/{card['name']}@current") / "card.json").exists()
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]


def test_server_killed_mid_run_training_finishes_and_sync_completes_history(server, data_root, tmp_path):
    out = tmp_path / "cut"
    # 200 tiny steps (~10 s with per-step logging) leave a wide margin over the ~1 s the server takes to stop
    proc = _start(out, data_root, "--train.steps=200", "--eval.every=0", "--checkpoint.every=0",
                  env={"MLFLOW_TRACKING_URI": server["uri"]})
    _wait_for(out / "metrics.jsonl", proc)
    stop(server["proc"])  # the server dies mid-run
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    assert "syncmod tracking sync" in output  # the warning says how to recover
    fallback = out / "tracking_fallback.jsonl"
    assert fallback.exists() and any('"metrics"' in line for line in fallback.read_text().splitlines())
    server["proc"] = serve(server["root"], "127.0.0.1", server["port"], wait=300)  # restart on the same store
    syncmod("tracking", "sync", str(out), check=True)
    c = _client(server["uri"])
    run = _run(c, "cut")
    assert [m.step for m in c.get_metric_history(run.info.run_id, "clm/en")] == list(range(1, 201))
    assert run.info.status == "FINISHED"
    assert not fallback.exists() and (out / "tracking_fallback.jsonl.synced").exists()


def test_sigkill_and_resume_continue_the_same_run(server, data_root, tmp_path):
    out = tmp_path / "res"
    args = ["--train.steps=30", "--checkpoint.every=10", "--eval.every=0"]
    proc = _start(out, data_root, *args, env={"MLFLOW_TRACKING_URI": server["uri"]})
    _wait_for(out / "checkpoints/step-00000010/syncmod_complete", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    syncmod("pretrain", "pretrain/sync.yaml", f"--data.root={data_root}", f"--out={out}", *TINY, *args,
            env={"MLFLOW_TRACKING_URI": server["uri"]}, cwd=ROOT, check=True)
    c = _client(server["uri"])
    runs = [r for r in c.search_runs([c.get_experiment_by_name("syncmod").experiment_id]) if r.info.run_name == "res"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = {m.step for m in c.get_metric_history(runs[0].info.run_id, "clm/en")}
    assert set(range(1, 31)) <= steps


def test_an_exception_ends_the_run_failed(server, data_root, tmp_path):
    out = tmp_path / "boom"
    proc = _start(out, data_root, "--train.steps=400", env={"MLFLOW_TRACKING_URI": server["uri"]})
    _wait_for(out / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT)  # KeyboardInterrupt inside the loop
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert _run(_client(server["uri"]), "boom").info.status == "FAILED"


def test_default_store_is_sqlite_in_the_output_directory_only(data_root, tmp_path):
    cwd, home, out = tmp_path / "cwd", tmp_path / "home", tmp_path / "out"
    cwd.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "syncmod.cli", "pretrain", str(ROOT / "pretrain/sync.yaml"),
                           f"--data.root={data_root}", f"--out={out}", *TINY, "--train.steps=3"], cwd=cwd,
                          env={**env, "HOME": str(home)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []
    assert (out / "mlflow.db").exists() and (out / "mlartifacts").is_dir()
    run = _run(_client(f"sqlite:///{out / 'mlflow.db'}"), "out")
    assert run.info.status == "FINISHED" and json.loads((out / "config.json").read_text())["train"]["steps"] == 3
