"""The pre-training loop's parts on their own: checkpointer cadence and keep, metrics averaging, the train state,
run identity (a moved run resumes, another tokenizer is refused) and a disk-full checkpoint save."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_PRETRAIN, syncmod
from syncmod.errors import InputError
from syncmod.pretrain.checkpoint import DONE, Checkpointer, saved_identity, tags
from syncmod.pretrain.config import CheckpointConfig, PretrainConfig
from syncmod.pretrain.identity import RunIdentity
from syncmod.pretrain.metrics import Metrics, MetricsLogger
from syncmod.pretrain.state import TrainState
from syncmod.pretrain.throughput import Meter, flops_per_token
from syncmod.tracking.tracker import Tracker


class Position:
    """A data position, as the streams keep one."""

    def __init__(self) -> None:
        self.pos = 0

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = state["pos"]


@pytest.fixture(scope="module")
def engine():
    """A real single-rank DeepSpeed engine (gloo) over a small linear model."""
    import deepspeed

    from syncmod.distributed import ensure_env

    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    before = {k: os.environ.get(k) for k in keys}
    ensure_env()
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config={
        "train_batch_size": 1, "train_micro_batch_size_per_gpu": 1, "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9})
    for k, v in before.items():  # the CLI runs of later tests must not inherit this process's rank and port
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    return engine


@pytest.fixture(scope="module")
def identity(data_root) -> RunIdentity:
    return RunIdentity.of(PretrainConfig(out="/x", data=_data(data_root)))


def _data(root: Path):
    from syncmod.pretrain.config import DataConfig

    return DataConfig(root=str(root))


def test_checkpointer_saves_when_due_and_keeps_the_newest(engine, identity, tmp_path):
    state, data = TrainState(), Position()
    ckpt = Checkpointer(engine, tmp_path, CheckpointConfig(every=3, keep=2), identity, state, data)
    saved = []
    for step in range(1, 8):
        state.step, data.pos = step, step * 10
        if ckpt.save(step, last_step=step == 7):
            saved.append(step)
    assert saved == [3, 6, 7]
    assert [s for s, _ in tags(tmp_path)] == [6, 7]
    assert not (tmp_path / "step-00000003").exists()
    assert saved_identity(tmp_path / "step-00000007")["hash"] == identity.hash
    assert not Checkpointer(engine, tmp_path, CheckpointConfig(every=0), identity, state, data).due(5, False)


def test_train_state_round_trips_through_a_checkpoint(engine, identity, tmp_path):
    state, data = TrainState(step=4, run_id="abc"), Position()
    state.add_tokens(100)
    state.add_tokens(torch.tensor(23))  # a count still on the device
    data.pos = 7
    weights = {k: v.clone() for k, v in engine.module.state_dict().items()}
    Checkpointer(engine, tmp_path, CheckpointConfig(every=1), identity, state, data).save(4)
    with torch.no_grad():
        for p in engine.module.parameters():
            p.add_(1.0)
    fresh, fresh_data = TrainState(), Position()
    assert Checkpointer(engine, tmp_path, CheckpointConfig(), identity, fresh, fresh_data).load()
    assert (fresh.step, fresh.tokens, fresh.run_id, fresh_data.pos) == (4, 123, "abc", 7)
    assert all(torch.equal(v, engine.module.state_dict()[k]) for k, v in weights.items())
    assert not Checkpointer(engine, tmp_path / "none", CheckpointConfig(), identity, fresh, fresh_data).load()


def test_metrics_logger_averages_each_metric_over_the_steps_that_had_it(tmp_path):
    meter = Meter(flops_per_token((2, 64, 4, 4, 172), 600, 32), 1e12, 1)
    logger = MetricsLogger(tmp_path, 2, 0, 5, Tracker(), meter, lambda: {"lr": 0.5})
    logger.step(1, "sync", {"clm/en": torch.tensor(2.0), "sync/acc": 0.5}, torch.tensor(10))
    logger.step(2, "async", {"clm/en": torch.tensor(4.0)}, 10)
    logger.step(3, "sync", {"clm/en": 1.0}, 10)
    logger.log(3, "eval", {"bpb/en": 1.5})
    logger.step(4, "async", {"clm/en": 3.0}, 10)
    logger.step(5, "sync", {"clm/en": 7.0}, 10)  # the last step always logs
    logger.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["kind"]) for m in lines] == [(2, "async"), (3, "eval"), (4, "async"), (5, "sync")]
    assert lines[0]["clm/en"] == 3.0 and lines[0]["sync/acc"] == 0.5 and lines[0]["lr"] == 0.5
    assert lines[2]["clm/en"] == 2.0 and "sync/acc" not in lines[2]
    assert lines[3]["clm/en"] == 7.0 and lines[1]["bpb/en"] == 1.5
    assert lines[0]["perf/tokens_per_s"] > 0 and 0 < lines[0]["perf/mfu"]


def test_the_off_logger_has_the_same_calls():
    public = {n for n in dir(MetricsLogger) if not n.startswith("_")}
    assert public == {n for n in dir(Metrics) if not n.startswith("_")} == {"step", "log", "close"}
    Metrics().step(1, "sync", {"a": 1.0}, 3)


def test_flops_per_token_counts_matmuls_and_attention():
    # 1 layer, hidden 4, 2 heads of 2, 1 kv head, MLP 8, vocab 10, context 3
    matmul = 4 * 4 + 4 * 2 + 4 * 2 + 4 * 4 + 3 * 4 * 8 + 4 * 10
    assert flops_per_token((1, 4, 2, 1, 8), 10, 3) == 6 * matmul + 12 * 1 * 4 * 3


def test_identity_ignores_where_the_run_and_data_live(data_root, tmp_path):
    moved = tmp_path / "copy"
    shutil.copytree(data_root, moved)
    a = RunIdentity.of(PretrainConfig(out="/a", data=_data(data_root)))
    b = RunIdentity.of(PretrainConfig(out="/b", data=_data(moved)))
    assert a.hash == b.hash
    c = PretrainConfig(out="/a", data=_data(data_root))
    c.train.lr = 0.5
    with pytest.raises(InputError, match=r"another config \(train.lr: 0.001 -> 0.5\)"):
        RunIdentity.of(c).check(a.to_json(), "ckpts")
    (moved / "tokenizer" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(InputError, match="another tokenizer than data.root's .tokenizer files"):
        RunIdentity.of(PretrainConfig(out="/b", data=_data(moved))).check(a.to_json(), "ckpts")


ARGS = ["pretrain/sync.yaml", *TINY_PRETRAIN, "--train.batch_size=4", "--eval.every=0", "--checkpoint.every=2",
        "--schedule.pattern=SA", "--train.steps=4"]


@pytest.fixture(scope="module")
def two_steps(data_root, tmp_path_factory) -> tuple[Path, Path]:
    """A data root of its own and a 4-step run that stopped after its step-2 checkpoint (tests copy both):
    the run went to the end, then its step-4 checkpoint, export and log lines were taken away."""
    base = tmp_path_factory.mktemp("parts")
    data, run = base / "data", base / "run"
    shutil.copytree(data_root, data)
    syncmod("pretrain", *ARGS, f"--data.root={data}", f"--out={run}", cwd=ROOT, check=True)
    shutil.rmtree(run / "checkpoints/step-00000004")
    shutil.rmtree(run / "export")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("".join(x + "\n" for x in lines if json.loads(x)["step"] <= 2))
    return data, run


def _steps(out: Path) -> list[int]:
    """The steps of the training lines (not evaluations) in the run's metrics.jsonl."""
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [m["step"] for m in lines if m["kind"] != "eval"]


def test_a_moved_run_directory_resumes(two_steps, tmp_path):
    data, run = two_steps
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    syncmod("pretrain", *ARGS, f"--data.root={data}", f"--out={moved}", cwd=ROOT, check=True)
    assert _steps(moved) == [1, 2, 3, 4]  # continued from step 2, not started over
    assert [s for s, _ in tags(moved / "checkpoints")] == [2, 4]


def test_data_re_prepared_with_another_tokenizer_is_refused_at_start(two_steps, world, tmp_path):
    data, run = two_steps
    run = shutil.copytree(run, tmp_path / "run")
    other = tmp_path / "data"
    syncmod("data", "prepare", "--world", str(world), "--out", str(other), "--vocab-size", "500", check=True)
    proc = syncmod("pretrain", *ARGS, f"--data.root={other}", f"--out={run}", cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another tokenizer" in lines[0] and "vocabulary 600 -> 500" in lines[0], proc.stderr
    assert _steps(run) == [1, 2]


def _file_size_limit(limit: int):
    def apply() -> None:  # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_during_a_checkpoint_save_keeps_the_previous_one(two_steps, tmp_path):
    data, run = two_steps
    run = shutil.copytree(run, tmp_path / "run")
    ckpt_file = max((run / "checkpoints/step-00000002").rglob("*.pt"), key=lambda p: p.stat().st_size)
    limit = ckpt_file.stat().st_size // 2  # room for everything but a checkpoint file
    proc = subprocess.run([sys.executable, "-m", "syncmod.cli", "pretrain", *ARGS, f"--data.root={data}",
                           f"--out={run}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          preexec_fn=_file_size_limit(limit))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "step-00000004: checkpoint not saved" in last and "continues from step-00000002" in last, last
    assert [s for s, _ in tags(run / "checkpoints")] == [2] and not (run / "checkpoints/step-00000004").exists()
    assert (run / "checkpoints/step-00000002" / DONE).exists()
    syncmod("pretrain", *ARGS, f"--data.root={data}", f"--out={run}", cwd=ROOT, check=True)
    assert _steps(run) == [1, 2, 3, 4, 3, 4]  # `resume: auto` went back to step 2, then saved step 4
    assert [s for s, _ in tags(run / "checkpoints")] == [2, 4]


def test_the_tracker_context_marks_a_crashed_run_failed_and_a_finished_one_finished(tmp_path):
    from mlflow import MlflowClient
    from syncmod.tracking.tracker import TrackingConfig, make_tracker

    config = TrackingConfig(system_metrics=False)
    with make_tracker(config, tmp_path / "ok") as tracker:
        tracker.log_metrics({"a": 1.0}, 1)
    with pytest.raises(KeyboardInterrupt), make_tracker(config, tmp_path / "crash") as crashed:
        raise KeyboardInterrupt
    for out, run_id, status in ((tmp_path / "ok", tracker.run_id, "FINISHED"),
                                (tmp_path / "crash", crashed.run_id, "FAILED")):
        client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
        assert client.get_run(run_id).info.status == status
