"""Upload what a run could not send while its tracking server was down (`<out>/tracking_fallback.jsonl`).

Records are replayed in order to the same run id (metrics keep their steps and timestamps). A run that
never reached the server (id `offline-...`) is created first; the mapping is kept in `tracking_ids.json`
so a later resume of that run logs to the created run. The file is renamed once everything is sent.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from syncmod.errors import InputError
from syncmod.io import write_json
from syncmod.tracking.tracker import FALLBACK

log = logging.getLogger(__name__)


def sync_fallback(out: str | Path, uri: str | None = None) -> dict[str, int]:
    """Replay `<out>/tracking_fallback.jsonl`; returns counts of what was sent."""
    from mlflow.entities import Metric, Param, RunTag

    from mlflow import MlflowClient

    out = Path(out)
    path = out / FALLBACK
    if not path.exists():
        raise InputError.at(str(path), "no fallback file: nothing to sync", "give the output directory of a run")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids_path = out / "tracking_ids.json"
    ids: dict[str, str] = json.loads(ids_path.read_text()) if ids_path.exists() else {}
    counts = {"metrics": 0, "params": 0, "tags": 0, "artifacts": 0, "runs_created": 0}
    clients: dict[str, MlflowClient] = {}
    for rec in records:
        target = uri or rec["uri"]
        client = clients.setdefault(target, MlflowClient(tracking_uri=target))
        if "create" in rec:
            if rec["run_id"] not in ids:
                c = rec["create"]
                exp = client.get_experiment_by_name(c["experiment"])
                exp_id = exp.experiment_id if exp else client.create_experiment(c["experiment"])
                tags = dict(c["tags"])
                if c.get("parent"):
                    tags["mlflow.parentRunId"] = c["parent"]
                ids[rec["run_id"]] = client.create_run(exp_id, tags=tags, run_name=c["run_name"]).info.run_id
                counts["runs_created"] += 1
            continue
        run_id = ids.get(rec["run_id"], rec["run_id"])
        if "metrics" in rec:
            client.log_batch(run_id, metrics=[Metric(k, v, rec["timestamp"], rec["step"]) for k, v in rec["metrics"].items()])
            counts["metrics"] += len(rec["metrics"])
        elif "params" in rec:
            client.log_batch(run_id, params=[Param(k, v) for k, v in rec["params"].items()])
            counts["params"] += len(rec["params"])
        elif "tags" in rec:
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in rec["tags"].items()])
            counts["tags"] += len(rec["tags"])
        elif "artifact" in rec:
            p = Path(rec["artifact"])
            if p.is_dir():
                client.log_artifacts(run_id, str(p), rec.get("artifact_path"))
            else:
                client.log_artifact(run_id, str(p), rec.get("artifact_path"))
            counts["artifacts"] += 1
        elif "register" in rec:
            from syncmod.tracking.tracker import MlflowTracker

            MlflowTracker.register_on(client, run_id, **rec["register"])
        elif "status" in rec:
            client.set_terminated(run_id, status=rec["status"])
    if ids:
        write_json(ids_path, ids)
    os.replace(path, out / f"{FALLBACK}.synced")
    log.info("synced %s to %s: %s", path, uri or "the recorded server", counts)
    return counts
