"""Subset scores in eval results and the study's robustness table, on hand-made results documents."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from syncmod.data.tasks import Task, TaskExample
from syncmod.errors import InputError
from syncmod.evaluation.subsets import add_subsets, cell_subsets, markdown
from syncmod.study.robust import markdown as robust_markdown
from syncmod.study.robust import plain_of, robust_summary

IDS = ["a", "b", "c", "d"]
SPEC = {"groups": {"in_domain": ["a", "b"], "out_of_domain": ["c", "d"], "shortcut": ["a", "c"],
                   "no_shortcut": ["b", "d"]},
        "gaps": [["in_domain", "out_of_domain"], ["shortcut", "no_shortcut"]]}


def _task_dir(tmp_path):
    d = tmp_path / "task"
    d.mkdir()
    (d / "subsets.json").write_text(json.dumps(SPEC))
    for lang in ("en", "xa"):
        (d / f"test.{lang}.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in IDS))
    return d


def _results(src_en, src_xa, nat_xa):
    cell = lambda items: {"score": sum(items) / len(items), "items": items}  # noqa: E731
    return {"split": "test", "langs": ["en", "xa"], "floor": {"en": cell([0, 0, 0, 0]), "xa": cell([0, 0, 0, 0])},
            "majority": {"en": cell([1, 0, 0, 0]), "xa": cell([1, 0, 0, 0])}, "subsets": None,
            "modules": [{"type": "adapter", "lang": "en", "scores": {"en": cell(src_en), "xa": cell(src_xa)}},
                        {"type": "adapter", "lang": "xa", "scores": {"xa": cell(nat_xa)}}]}


def test_cell_subsets_scores_each_group_and_the_gaps():
    spec = {"groups": {k: set(v) for k, v in SPEC["groups"].items()}, "gaps": SPEC["gaps"]}
    s = cell_subsets([1, 1, 0, 1], ["d", "a", "b", "c"], spec)  # item order is the ids' order
    assert s["in_domain"] == {"score": 0.5, "n": 2} and s["out_of_domain"] == {"score": 1.0, "n": 2}
    assert s["gaps"] == {"in_domain-out_of_domain": -0.5, "shortcut-no_shortcut": 0.5}


def test_add_subsets_marks_every_cell_and_refuses_a_broken_file(tmp_path):
    d = _task_dir(tmp_path)
    rows = {lang: [TaskExample(i, lang, "t", "y") for i in reversed(IDS)] for lang in ("en", "xa")}
    task = Task("t", "classify", ["y", "n"], {"test": rows})
    res = _results([1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0])
    assert add_subsets(res, task, d)
    assert res["modules"][0]["scores"]["en"]["subsets"]["gaps"]["shortcut-no_shortcut"] == pytest.approx(0.5)
    assert res["floor"]["xa"]["subsets"]["in_domain"]["n"] == 2
    assert "| adapter-en | xa | 0.500 | 0.000 |" in markdown(res)
    (d / "subsets.json").write_text('{"groups": {"x": ["a"]}, "gaps": [["x", "y"]]}')
    with pytest.raises(InputError):
        add_subsets(res, task, d)


def test_robust_summary_compares_each_method_with_its_plain_type(tmp_path):
    d = _task_dir(tmp_path)
    cfg = SimpleNamespace(langs=["en", "xa"], source="en", max_items=None,
                          module_variants={"adapter-poe": ["--module.type=adapter", "--debias.method=poe"]})
    plain = _results([1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0])  # rides the shortcut: a, c right; b half
    poe = _results([1, 0, 0, 1], [1, 1, 0, 0], [1, 1, 0, 0])
    cells = [{"condition": "sync", "seed": 0, "task": "t", "module": m, "results": r}
             for m, r in [("adapter", plain), ("adapter-poe", poe)]]
    summary = robust_summary(cells, cfg, {"t": d})
    row = {r["module"]: r["mean"] for r in summary["rows"]}
    assert row["adapter"] == {"target": 0.25, "id": 1.0, "ood": 0.5, "gap": 0.5, "retained": 0.5,
                              "target_raw": 0.25, "id_raw": 1.0}
    assert row["adapter-poe"]["gap"] == 0.0 and row["adapter-poe"]["retained"] == 1.0
    (cmp,) = summary["comparisons"]
    assert cmp["against"] == "adapter" and cmp["diff"]["gap"] == -0.5 and cmp["diff"]["target"] == 0.25
    lo, hi = cmp["ci"]["target"]
    assert lo <= 0.25 <= hi
    assert plain_of(["--module.type=lora", "--sam.rho=0.05"]) == "lora" and plain_of(["--sam.rho=1"]) is None


def test_robust_measures_are_chance_corrected(tmp_path):
    """With chance 0.25, a raw 0.25 is 0 and a raw 1.0 is 1; retained divides above chance on both sides."""
    d = _task_dir(tmp_path)
    cfg = SimpleNamespace(langs=["en", "xa"], source="en", max_items=None, module_variants={})
    res = {**_results([1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0]), "chance": {"en": 0.25, "xa": 0.25}}
    (row,) = robust_summary([{"condition": "sync", "seed": 0, "task": "t", "module": "adapter", "results": res}],
                            cfg, {"t": d})["rows"]
    m = row["mean"]
    assert m["id_raw"] == 1.0 and m["id"] == 1.0 and m["ood"] == pytest.approx((0.5 - 0.25) / 0.75)
    assert m["target_raw"] == 0.5 and m["target"] == pytest.approx(1 / 3)
    assert m["gap"] == pytest.approx(0.5 / 0.75)
    assert m["retained"] == pytest.approx((0.5 - 0.25) / (0.75 - 0.25))
    assert "retained" in robust_markdown({"rows": [row], "comparisons": []}).splitlines()[2]
