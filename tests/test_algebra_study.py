"""The study's module-algebra section end to end on tiny bases: every cell lands in algebra.json / algebra.md."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import ROOT, TINY_PRETRAIN, syncmod


@pytest.mark.slow
def test_algebra_cells_on_a_tiny_study(world, data_root, tmp_path):
    tiny = [x for x in TINY_PRETRAIN if not x.startswith("--tracking")]
    own = world
    few = ["--train.eval_every=5", "--train.dev_examples=20", "--train.batch_size=16"]
    cfg = {"out": str(tmp_path / "study"), "data": str(data_root), "tasks": [str(own / "tasks/event-class")],
           "seeds": [0], "langs": ["en", "xa"], "module_types": ["adapter"], "finetune_steps": 10,
           "module_overrides": few, "max_items": 40, "reference": "sync", "tracking": {"enabled": False},
           "conditions": [{"name": "sync", "config": "pretrain/sync.yaml",
                           "overrides": [*tiny, "--train.steps=20", "--train.batch_size=8", "--schedule.sync_warmup=10",
                                         "--sync.layers=[1]", "--eval.every=0"]}],
           "algebra": {"methods": ["linear", "ties"], "types": ["adapter", "mad-x"], "language_steps": 10,
                       "cells": ["multi-source", "cross-base", "multi-task", "multi-task-tuned", "negation",
                                 "module-types"], "merge_types": ["adapter", "lora"], "lams": [0.5, 1.0],
                       "densities": [0.5],
                       "second_task": str(own / "tasks/agent-kind"), "text": str(own / "mono/train.{lang}.txt"),
                       "language_module": ["--module.type=adapter", "--module.layers=all", "--train.max_len=48"]}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    syncmod("study", str(path), cwd=ROOT, check=True, timeout=1800)  # ~1 min idle; the shared CI machine is slower
    out = tmp_path / "study"
    rows = json.loads((out / "algebra.json").read_text())
    assert set(rows) == {"multi-source", "cross-base", "multi-task", "multi-task-tuned", "negation", "module-types"}
    for kind in rows:
        for r in rows[kind]:
            for x in r.values():
                if isinstance(x, dict) and "ci" in x and x["value"] == x["value"]:  # NaN: a reference at chance
                    assert x["ci"][0] - 1e-9 <= x["value"] <= x["ci"][1] + 1e-9, (kind, r)
    one = [r for r in rows["multi-source"] if r["method"] == "linear"]
    assert all(r["delta"]["value"] == 0.0 for r in one)  # a linear merge of one source module is that module
    assert {(r["module"], r["method"], r["task"]) for r in rows["multi-task"]} == {
        (x, m, t) for x in ("adapter", "lora") for m in ("linear", "ties") for t in ("event-class", "agent-kind")}
    assert {(r["module"], r["method"], r["lambda"], r["density"]) for r in rows["multi-task-tuned"]} <= {
        (x, m, lam, d) for x in ("adapter", "lora") for m in ("linear", "ties") for lam in (0.5, 1.0) for d in (0.5, 1.0)}
    assert {(r["module"], r["task"]) for r in rows["negation"]} == {
        (x, t) for x in ("adapter", "lora") for t in ("event-class", "agent-kind")}
    # LoRA deltas are exact task vectors (merged at the summed rank): (event-class + agent-kind) − event-class is
    # the agent-kind module again, so it scores what the single agent-kind module scores (up to SVD round-off)
    exact = next(r for r in rows["negation"] if (r["module"], r["method"], r["task"]) ==
                 ("lora", "task-arithmetic", "agent-kind"))
    assert abs(exact["after"]["raw"] - exact["single"]["raw"]) <= 1 / 40 + 1e-9
    assert all(r["head_only"]["raw"] >= 0 and r["floor"]["raw"] >= 0 for r in rows["negation"])
    types = {r["module"]: r for r in rows["module-types"]}
    assert types["adapter"]["params"] > 0 and types["adapter"]["seconds"] > 0 and types["mad-x"]["seconds"] > 0
    card = json.loads((out / "algebra/sync-s0/modules/mad-x-en/card.json").read_text())
    assert card["stack"][0]["lang"] == "en"
    report = (out / "algebra.md").read_text()
    assert "## Multi-task merge" in report and "## Negation" in report and "| sync | mad-x |" in report
