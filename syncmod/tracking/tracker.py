"""Experiment tracking: a no-op on every rank but global rank 0, MLflow on rank 0.

- Default store: a SQLite database in the run's output directory (`<out>/mlflow.db`, artifacts in
  `<out>/mlartifacts`) — no server, works offline. `tracking.uri` / `--tracking-uri` / MLFLOW_TRACKING_URI
  point at a server instead.
- Run tree: one experiment per study, one parent run per pre-training job, nested runs (tag
  `mlflow.parentRunId`) for modules and evaluations; lineage in tags; params logged once; metrics with step.
- Faults: an unreachable server never stops training. Whatever cannot be sent goes to
  `<out>/tracking_fallback.jsonl`; `syncmod tracking sync <out>` uploads it later to the same run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncmod.config import positive
from syncmod.distributed import rank

log = logging.getLogger(__name__)
FALLBACK = "tracking_fallback.jsonl"


@dataclass
class TrackingConfig:
    """Where and how runs are tracked."""

    enabled: bool = True
    """Track this run in MLflow (rank 0 only)."""
    uri: str | None = None
    """Tracking server URI; default MLFLOW_TRACKING_URI, else a SQLite store in the output directory."""
    experiment: str | None = None
    """Experiment name; default `syncmod`, and `syncmod-study` for a study and everything it runs."""
    run_name: str | None = None
    """Run name; default the output directory's name."""
    parent_run_id: str | None = None
    """Nest this run under a parent (a study's run, or the base's pre-training run)."""
    system_metrics: bool = True
    """Log CPU/GPU/memory metrics (MLflow system metrics) every `system_metrics_interval` seconds."""
    system_metrics_interval: float = 10.0
    """Seconds between system-metric samples."""

    def __post_init__(self) -> None:
        positive(self, "system_metrics_interval")


def resolve_uri(config: TrackingConfig, out: Path) -> str:
    return config.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out.resolve() / 'mlflow.db'}"


def shares_store(config: TrackingConfig) -> bool:
    """True when runs log to a store other than their own directory's (a server, or an explicit URI), so a
    module's run can nest under its base's run."""
    return bool(config.uri or os.environ.get("MLFLOW_TRACKING_URI"))


def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class Tracker:
    """The no-op tracker: what every rank but 0 gets, and what a disabled run gets.

    Used as a context manager, a run ends FINISHED, or FAILED when an exception (Ctrl-C too) leaves the block:

        with make_tracker(...) as tracker:
            ...
    """

    run_id: str | None = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.finish("FINISHED" if exc_type is None else "FAILED")

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def register_model(self, name: str, artifact_path: str, alias: str) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


class MlflowTracker(Tracker):
    """Logs to MLflow through `MlflowClient`; on the first failure it switches to the fallback file."""

    def __init__(self, config: TrackingConfig, out: Path, run_id: str | None = None, tags: dict | None = None):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a dead server must not stall training
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        from mlflow import MlflowClient

        self.out, self.config = out, config
        self.experiment = config.experiment or "syncmod"
        self.uri = resolve_uri(config, out)
        self.fallback_path = out / FALLBACK
        self.offline = False
        self.client = MlflowClient(tracking_uri=self.uri)
        self.monitor = None
        ids = out / "tracking_ids.json"
        if run_id and ids.exists():
            run_id = json.loads(ids.read_text()).get(run_id, run_id)
        self.run_id = run_id
        try:
            if run_id is None:
                self.run_id = self._create_run(tags or {})
            else:
                self.client.update_run(run_id, status="RUNNING")
            if config.system_metrics:
                self._start_monitor(resume=run_id is not None)
        except Exception as e:  # noqa: BLE001 — any transport or server error: keep training, log locally
            self._go_offline(e)
            if self.run_id is None:
                self.run_id = f"offline-{int(time.time() * 1000)}"
                self._fallback({"create": {"experiment": self.experiment, "run_name": self._run_name(),
                                           "tags": _stringify(tags or {}), "parent": config.parent_run_id,
                                           "artifact_root": str(out.resolve() / "mlartifacts")}})
        log.info("tracking run %s at %s", self.run_id, self.uri)

    def _run_name(self) -> str:
        return self.config.run_name or self.out.name

    def _create_run(self, tags: dict) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            artifacts = None if "://" in self.uri and not self.uri.startswith("sqlite") else \
                (self.out.resolve() / "mlartifacts").as_uri()
            exp_id = self.client.create_experiment(self.experiment, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
        all_tags = _stringify(tags)
        if self.config.parent_run_id:
            all_tags["mlflow.parentRunId"] = self.config.parent_run_id
        return self.client.create_run(exp_id, tags=all_tags, run_name=self._run_name()).info.run_id

    def _start_monitor(self, resume: bool) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.monitor = SystemMetricsMonitor(self.run_id, sampling_interval=self.config.system_metrics_interval,
                                            samples_before_logging=1, resume_logging=resume, tracking_uri=self.uri)
        self.monitor.start()

    def _go_offline(self, error: Exception) -> None:
        if not self.offline:
            log.warning("tracking server %s unreachable (%s); metrics go to %s — upload them later with "
                        "`syncmod tracking sync %s`", self.uri, str(error).splitlines()[0][:200], self.fallback_path,
                        self.out)
        self.offline = True
        if self.monitor is not None:
            try:
                self.monitor.finish()
            except Exception:  # noqa: BLE001
                pass
            self.monitor = None

    def _fallback(self, record: dict) -> None:
        with open(self.fallback_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"run_id": self.run_id, "uri": self.uri, "time": time.time(), **record}) + "\n")

    def _send(self, record: dict, call) -> None:
        if not self.offline:
            from mlflow.exceptions import RestException

            try:
                call()
                return
            except RestException as e:  # the server answered and refused this one call: it is not down
                log.warning("tracking server refused %s: %s (kept in %s)", next(iter(record)), e, self.fallback_path)
            except Exception as e:  # noqa: BLE001 — unreachable, timed out, 5xx: go offline for the rest of the run
                self._go_offline(e)
        self._fallback(record)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = {k: str(v)[:6000] for k, v in params.items()}
        self._send({"params": items}, lambda: self.client.log_batch(
            self.run_id, params=[Param(k, v) for k, v in items.items()]))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        clean = {_key(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self._send({"metrics": clean, "step": step, "timestamp": ts}, lambda: self.client.log_batch(
            self.run_id, metrics=[Metric(k, v, ts, step) for k, v in clean.items()]))

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = _stringify(tags)
        self._send({"tags": items}, lambda: self.client.log_batch(
            self.run_id, tags=[RunTag(k, v) for k, v in items.items()]))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        call = (lambda: self.client.log_artifacts(self.run_id, str(path), artifact_path)) if path.is_dir() else \
            (lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))
        self._send({"artifact": str(path.resolve()), "artifact_path": artifact_path}, call)

    def register_model(self, name: str, artifact_path: str, alias: str) -> None:
        self._send({"register": {"name": name, "artifact_path": artifact_path, "alias": alias}},
                   lambda: self.register_on(self.client, self.run_id, name, artifact_path, alias))

    @staticmethod
    def register_on(client, run_id: str, name: str, artifact_path: str, alias: str) -> None:
        """A new version of registered model `name` from the run's artifacts, pointed to by `alias`."""
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(name)
        except MlflowException as e:
            if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
                raise
        version = client.create_model_version(name, f"runs:/{run_id}/{artifact_path}", run_id=run_id)
        client.set_registered_model_alias(name, alias, version.version)

    def finish(self, status: str = "FINISHED") -> None:
        if self.monitor is not None:
            try:
                self.monitor.finish()
            except Exception:  # noqa: BLE001
                pass
        self._send({"status": status}, lambda: self.client.set_terminated(self.run_id, status=status))


def _key(k: str) -> str:
    """MLflow metric names: letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in k)


def _stringify(d: dict) -> dict[str, str]:
    return {k: str(v) for k, v in d.items() if v is not None}


def make_tracker(config: TrackingConfig, out: Path, run_id: str | None = None, tags: dict | None = None) -> Tracker:
    """The tracker for this process: MLflow on global rank 0 when enabled, the no-op elsewhere."""
    if rank() != 0 or not config.enabled:
        return Tracker()
    out.mkdir(parents=True, exist_ok=True)
    return MlflowTracker(config, out, run_id, tags)
