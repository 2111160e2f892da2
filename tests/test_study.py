"""`syncmod study`: conditions x seeds x modules end to end on tiny bases; resumable; one report."""

from __future__ import annotations

import json

import yaml

from conftest import ROOT, TINY_PRETRAIN, syncmod


def test_tiny_study_reports_and_resumes(world, data_root, tmp_path):
    tiny = [x for x in TINY_PRETRAIN if not x.startswith("--tracking")]
    cfg = {"out": str(tmp_path / "study"), "data": str(data_root), "tasks": [str(world / "tasks/event-class")],
           "seeds": [0, 1], "langs": ["en", "xa"], "module_types": ["adapter"], "mapped": ["adapter"],
           "finetune_steps": 20,
           "module_overrides": ["--train.eval_every=10", "--train.dev_examples=40"],
           "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "syncmod-study",
                        "system_metrics": False},
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
    rows = {r["condition"]: r for r in summary["rows"] if r["module"] == "adapter"}
    assert rows["sync"]["seeds"] == 2 and rows["independent"]["delta_bpb"]["mean"] == 0.0
    lo, hi = rows["sync"]["transfer_ratio"]["ci"]
    assert lo <= rows["sync"]["transfer_ratio"]["mean"] <= hi
    (comp,) = [c for c in summary["comparisons"] if c["module"] == "adapter"]
    assert (comp["condition"], comp["against"]) == ("sync", "independent")
    lo, hi = comp["target"]["ci"]
    assert lo <= comp["target"]["diff"] <= hi
    assert "Against every other condition" in report
    mapped = {r["condition"]: r for r in summary["rows"] if r["module"] == "adapter-mapped"}
    assert set(mapped) == {"sync", "independent"} and "retained_chance" in mapped["sync"]
    assert "| sync | adapter-mapped |" in report and "## Variants: event-class" in report
    for png in ("transfer_ratio.png", "cost_vs_transfer.png", "loss_curves.png", "pareto.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "eval/sync-s1/event-class/adapter/heatmap.png").exists()
    _assert_tree(f"sqlite:///{tmp_path / 'mlflow.db'}")
    stamp = (out / "eval/sync-s0/event-class/adapter/results.json").stat().st_mtime_ns
    proc = syncmod("study", str(path), cwd=ROOT, check=True)  # everything finished: nothing re-runs
    assert (out / "eval/sync-s0/event-class/adapter/results.json").stat().st_mtime_ns == stamp
    assert "pre-training" not in proc.stderr


def _assert_tree(uri: str) -> None:
    """Study > pre-training run per condition and seed > its modules > the evaluation of the source module;
    registered models named after condition and seed, with the alias set."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("syncmod-study")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=1000)}
    parent = {name: r.data.tags.get("mlflow.parentRunId") for name, r in runs.items()}
    (study,) = [r.info.run_id for r in runs.values() if r.data.tags.get("syncmod.kind") == "study"]
    for cond in ("sync", "independent"):
        for seed in (0, 1):
            pre = f"{cond}-s{seed}"
            assert parent[pre] == study
            for lang in ("en", "xa"):
                assert parent[f"{pre}/adapter-{lang}"] == runs[pre].info.run_id
            assert parent[f"{pre}/adapter/eval"] == runs[f"{pre}/adapter-en"].info.run_id
            assert client.list_artifacts(runs[f"{pre}/adapter/eval"].info.run_id)
    assert len(runs) == 1 + 4 * (1 + 2 + 1)
    version = client.get_model_version_by_alias("syncmod-sync-s1-event-class-adapter-xa", "current")
    assert version.run_id == runs["sync-s1/adapter-xa"].info.run_id


def _results(source: list[float], target: list[float], native: list[float]) -> dict:
    cell = lambda xs: {"score": sum(xs) / len(xs), "items": xs}  # noqa: E731
    return {"modules": [{"lang": "en", "scores": {"en": cell(source), "xa": cell(target)}},
                        {"lang": "xa", "scores": {"en": cell(native), "xa": cell(native)}}]}


def test_paired_intervals_and_equal_token_cost():
    import numpy as np

    from syncmod.study.stats import Unit, compare, delta_bpb, summarise

    rng = np.random.default_rng(0)
    items = [float(x) for x in rng.integers(0, 2, 200)]
    good = {s: Unit(_results(items, items, items), "en", ["xa"]) for s in (0, 1, 2)}
    half = {s: Unit(_results(items, [x * (i % 2) for i, x in enumerate(items)], items), "en", ["xa"]) for s in (0, 1, 2)}
    row = summarise(good, rng)
    assert row["transfer_ratio"]["mean"] == 1.0 and row["transfer_ratio"]["ci"] == [1.0, 1.0]
    same = compare(good, good, rng)
    assert same["target"]["diff"] == 0.0 and same["target"]["ci"] == [0.0, 0.0]  # paired: identical -> no spread
    d = compare(good, half, rng)
    assert d["retained"]["diff"] > 0.3 and d["retained"]["ci"][0] > 0.3
    # the reference saw tokens 0..3000; the run ends at 1500 tokens: compare with the reference at 1500
    ref = [(1000.0, 2.0), (2000.0, 1.0), (3000.0, 0.5)]
    assert delta_bpb([(500.0, 3.0), (1500.0, 1.7)], ref) == (1.7 - 1.5, True)
    assert delta_bpb([(4000.0, 0.4)], ref) == (0.4 - 0.5, False)  # the reference is shorter: its final value


def test_module_variants_expand_per_language(tmp_path):
    from pathlib import Path

    from syncmod.study.runner import StudyConfig, _recipe

    cfg = StudyConfig(langs=["en", "xa", "xb"], module_variants={
        "lora-ta": ["--module.type=lora", "--transfer_aware.langs={others}", "--transfer_aware.parallel={parallel}"]})
    world = tmp_path / "world"
    (world / "parallel").mkdir(parents=True)
    assert _recipe(cfg, "adapter", "en", world, tmp_path) == ["--module.type=adapter"]
    assert _recipe(cfg, "lora-ta", "xa", world, tmp_path) == [
        "--module.type=lora", "--transfer_aware.langs=[en,xb]",
        f"--transfer_aware.parallel={Path(world / 'parallel' / 'train.jsonl')}"]
