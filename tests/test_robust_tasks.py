"""The robustness tasks of the synthetic world: genres as domains, the injected shortcut, the test subsets."""

from __future__ import annotations

import json

import pytest

from syncmod.data.lines import Problems
from syncmod.data.shortcut import BiasModel, shortcut_split
from syncmod.data.synth.lexicon import VERB_CLASSES
from syncmod.data.synth.robust import GENRES, MARKERS, RobustTasksArgs, genre_names, write_tasks
from syncmod.data.synth.world import World, WorldConfig
from syncmod.data.tasks import TaskExample, load_task

SMALL = WorldConfig(task_train=300, task_dev=30, task_test=90)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return write_tasks(SMALL, RobustTasksArgs(out=str(tmp_path_factory.mktemp("rt") / "tasks")))


def test_shortcut_split_puts_every_shortcut_solvable_test_item_on_the_right_side(tasks):
    task = load_task(tasks / "event-class-sc", Problems())
    groups = json.loads((tasks / "event-class-sc" / "subsets.json").read_text())["groups"]
    classes = sorted(VERB_CLASSES)
    for lang in task.languages:  # the markers are the same in every language, so is the split
        rows = task.split("test", lang)
        solvable = {r.id for r in rows if r.text.split()[0] == MARKERS[classes.index(r.target)]}
        assert 0 < len(solvable) < len(rows)
        assert set(groups["shortcut"]) == solvable
        assert set(groups["no_shortcut"]) == {r.id for r in rows} - solvable
    train = task.split("train", "en")
    share = sum(r.text.split()[0] == MARKERS[classes.index(r.target)] for r in train) / len(train)
    assert 0.8 < share < 0.97  # the shortcut holds on ~90% of training items


def test_a_weak_bag_of_words_bias_model_splits_by_what_it_gets_right():
    rows = [TaskExample(str(i), "en", t, y) for i, (t, y) in enumerate(
        [("red fox runs", "a"), ("red dog runs", "a"), ("blue fox sits", "b"), ("blue cat sits", "b")])]
    bias = BiasModel(rows, ["a", "b"])  # no features: every word
    test = [TaskExample("x", "en", "red cat", "a"), TaskExample("y", "en", "red cat", "b"),
            TaskExample("z", "en", "unseen words", "a")]
    assert shortcut_split(test, bias) == {"shortcut": ["x"], "no_shortcut": ["y", "z"]}


def test_domains_train_on_one_genre_and_test_on_all(tasks):
    for name in ("agent", "event-class-sc"):
        task = load_task(tasks / name, Problems())
        groups = json.loads((tasks / name / "subsets.json").read_text())["groups"]
        ids = {r.id for r in task.split("test", "en")}
        assert set(groups["in_domain"]) | set(groups["out_of_domain"]) == ids
        assert set(groups["in_domain"]) == set(groups["genre:farm"]) and len(groups["out_of_domain"]) == 60
        assert all({r.id for r in task.split("test", lang)} == ids for lang in task.languages)
    agent = load_task(tasks / "agent", Problems())
    en = agent.split("train", "en")
    farm_words = {w.lower() for w in GENRES["farm"]["agents"] + genre_names(World(SMALL), "farm")}
    assert sum(r.target.lower() in farm_words for r in en) / len(en) > 0.7
    assert all(1 <= len(r.target.split()) <= 3 for lang in agent.languages for r in agent.split("test", lang))
