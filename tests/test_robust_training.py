"""Robust module training from the CLI, end to end on the tiny bases: the options train real modules, the card
records them, and `syncmod eval` reports the in/out-of-domain and shortcut subsets with their gaps."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, TINY_WORLD, syncmod

FT = ["--train.steps=6", "--train.eval_every=6", "--train.batch_size=8", "--train.dev_examples=16",
      "--tracking.enabled=false"]


@pytest.fixture(scope="module")
def robust_tasks(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "tasks"
    syncmod("data", "robust-tasks", f"--out={out}", "--seed=7", *TINY_WORLD, check=True, cwd=ROOT)
    return out


def test_debiased_sam_uda_module_trains_and_eval_reports_subsets(tiny_export, robust_tasks, tmp_path):
    mod, task = tmp_path / "m", robust_tasks / "event-class-sc"
    syncmod("finetune", f"--base={tiny_export}", f"--task={task}", "--lang=en", f"--out={mod}", "--module.type=adapter",
            "--debias.method=poe", "--sam.rho=0.05", "--uda.weight=1", "--uda.augment=[dropout,swap,translate]",
            "--uda.langs=[xa]", *FT, cwd=ROOT, check=True)
    card = json.loads((mod / "card.json").read_text())
    assert card["robust"]["debias"]["method"] == "poe" and card["robust"]["sam"]["rho"] == 0.05
    out = tmp_path / "eval"
    proc = syncmod("eval", "--base", str(tiny_export), "--module", str(mod), "--task", str(task), "--langs", "en,xa",
                   "--out", str(out), "--no-tracking", cwd=ROOT, check=True)
    assert "gap shortcut-no_shortcut" in proc.stdout and "gap in_domain-out_of_domain" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    cell = res["modules"][0]["scores"]["xa"]
    sub = cell["subsets"]
    assert sub["shortcut"]["n"] + sub["no_shortcut"]["n"] == cell["n"] == sub["in_domain"]["n"] + sub["out_of_domain"]["n"]
    assert sub["gaps"]["shortcut-no_shortcut"] == pytest.approx(sub["shortcut"]["score"] - sub["no_shortcut"]["score"])
    mean = (sub["shortcut"]["score"] * sub["shortcut"]["n"] + sub["no_shortcut"]["score"] * sub["no_shortcut"]["n"]) / cell["n"]
    assert mean == pytest.approx(cell["score"])


@pytest.mark.parametrize("objective", ["token-align", "seq-align", "srand", "scheduled-sampling"])
def test_generation_objectives_train_a_module(tiny_export, robust_tasks, tmp_path, objective):
    mod = tmp_path / objective
    proc = syncmod("finetune", f"--base={tiny_export}", f"--task={robust_tasks / 'agent'}", "--lang=en", f"--out={mod}",
                   "--module.type=lora", "--head.kind=label-tokens", f"--objective.name={objective}", *FT,
                   cwd=ROOT, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["best_step"] == 6
    assert json.loads((mod / "card.json").read_text())["robust"]["objective"]["name"] == objective


def test_a_generation_objective_on_a_classify_task_is_refused(tiny_export, robust_tasks, tmp_path):
    proc = syncmod("finetune", f"--base={tiny_export}", f"--task={robust_tasks / 'event-class-sc'}", "--lang=en",
                   f"--out={tmp_path / 'x'}", "--objective.name=token-align", *FT, cwd=ROOT)
    assert proc.returncode == 2 and "objective.name" in proc.stderr and "classify" in proc.stderr
