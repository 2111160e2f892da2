"""`syncmod study`: conditions x seeds x modules end to end on tiny bases; resumable; one report."""

from __future__ import annotations

import json

import yaml

from conftest import ROOT, TINY_PRETRAIN, syncmod


def test_tiny_study_reports_and_resumes(world, data_root, tmp_path):
    tiny = [x for x in TINY_PRETRAIN if not x.startswith("--tracking")]
    cfg = {"out": str(tmp_path / "study"), "data": str(data_root), "tasks": [str(world / "tasks/event-class")],
           "seeds": [0, 1], "langs": ["en", "xa"], "module_types": ["adapter"], "finetune_steps": 20,
           "module_overrides": ["--train.eval_every=10", "--train.dev_examples=40"],
           "tracking": {"enabled": False},
           "conditions": [{"name": "sync", "config": "pretrain/sync.yaml",
                           "overrides": [*tiny, "--train.steps=30", "--train.batch_size=8", "--schedule.sync_warmup=10",
                                         "--sync.layers=[1]"]},
                          {"name": "independent", "config": "pretrain/independent.yaml",
                           "overrides": [*tiny, "--train.steps=10", "--train.batch_size=8"]}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    syncmod("study", str(path), cwd=ROOT, check=True)
    out = tmp_path / "study"
    report = (out / "report.md").read_text()
    assert "| sync | adapter |" in report and "| independent | adapter |" in report
    summary = json.loads((out / "report.json").read_text())["summary"]
    rows = {r["condition"]: r for r in summary["rows"]}
    assert rows["sync"]["seeds"] == 2 and rows["independent"]["delta_bpb"]["mean"] == 0.0
    lo, hi = rows["sync"]["transfer_ratio"]["ci"]
    assert lo <= rows["sync"]["transfer_ratio"]["mean"] <= hi
    for png in ("transfer_ratio.png", "cost_vs_transfer.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "eval/sync-s1/event-class/adapter/heatmap.png").exists()
    stamp = (out / "eval/sync-s0/event-class/adapter/results.json").stat().st_mtime_ns
    proc = syncmod("study", str(path), cwd=ROOT, check=True)  # everything finished: nothing re-runs
    assert (out / "eval/sync-s0/event-class/adapter/results.json").stat().st_mtime_ns == stamp
    assert "pre-training" not in proc.stderr
