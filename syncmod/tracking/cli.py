"""`syncmod tracking serve|sync`: run a local MLflow server; upload a run's fallback file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from syncmod.config import require


def serve(root: Path, host: str, port: int, wait: float = 60.0) -> subprocess.Popen:
    """Start `mlflow server` (SQLite backend + artifact directory under `root`, one worker); wait for /health."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "artifacts").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{(root / 'store.db').resolve()}",
           "--artifacts-destination", str((root / "artifacts").resolve()), "--host", host, "--port", str(port),
           "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "ab")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + wait
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; see {root / 'server.log'}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"mlflow server did not answer /health within {wait:.0f}s; see {root / 'server.log'}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (gunicorn/uvicorn workers included)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class ServeArgs:
    """Where the local MLflow server keeps its data and listens."""

    root: str = "mlflow"
    """Holds store.db, artifacts/ and server.log."""
    host: str = "127.0.0.1"
    """Bind address (loopback unless told otherwise)."""
    port: int = 5000
    """Port."""

    def __post_init__(self) -> None:
        require(0 < self.port < 65536, "port", f"{self.port} is not a port number", "use 1..65535")


def serve_command(args: ServeArgs) -> int:
    """Start a local MLflow tracking server (Ctrl-C stops it)."""
    proc = serve(Path(args.root), args.host, args.port)
    print(f"http://{args.host}:{args.port}  (MLFLOW_TRACKING_URI; pid {proc.pid}; Ctrl-C stops it)", flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        stop(proc)
    return 0


@dataclass
class SyncArgs:
    """The run to upload."""

    out: str = field(metadata={"positional": True})
    """The run's output directory."""
    tracking_uri: str | None = None
    """Server to upload to (default: the one the run used)."""


def sync_command(args: SyncArgs) -> int:
    """Upload a run's tracking_fallback.jsonl (what it logged while the server was down)."""
    from syncmod.tracking.replay import sync_fallback

    counts = sync_fallback(args.out, args.tracking_uri)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0
