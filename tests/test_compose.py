"""Composition (MAD-X): language modules trained with the clm objective, a task module stacked on one, the
language module swapped at evaluation; stacks that cannot work are refused in one line."""

import json

import pytest
import torch

from conftest import ROOT, syncmod
from conftest import random_export as write_random_export

FAST = ["--train.batch_size=16", "--train.dev_examples=20", "--tracking.enabled=false", "--train.max_len=48"]


@pytest.fixture(scope="module")
def export(tokenizer_dir, tmp_path_factory):
    """Two tiny per-language bases of one architecture (random weights, other seeds): a syncmod export."""
    return write_random_export(tmp_path_factory.mktemp("compose-bases") / "export", tokenizer_dir)


@pytest.fixture(scope="module")
def modules(export, world, tmp_path_factory):
    """lang-en, lang-xa (clm adapters on each language's text) and an event-class adapter trained on lang-en."""
    root = tmp_path_factory.mktemp("compose-mods")
    for lang in ("en", "xa"):
        syncmod("finetune", f"--base={export}", f"--task={world / f'mono/train.{lang}.txt'}", f"--lang={lang}",
                f"--out={root / f'lang-{lang}'}", "--module.type=adapter", "--module.layers=all", "--train.steps=12",
                "--train.eval_every=6", "--train.lr=1e-2", *FAST, cwd=ROOT, check=True)
    syncmod("finetune", f"--base={export}", f"--task={world / 'tasks/event-class'}", "--lang=en",
            f"--out={root / 'task'}", f"--stack=[{root / 'lang-en'}]", "--train.steps=6", "--train.eval_every=3", *FAST,
            cwd=ROOT, check=True)
    return root


def _task(world, name: str):
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task

    return load_task(world / "tasks" / name, Problems())


def test_a_language_module_learns_its_language_and_the_task_module_records_it(export, world, modules):
    from syncmod.data.lines import Problems
    from syncmod.modules.bases import load_base
    from syncmod.modules.compose import Under, clm_dev, text_task
    from syncmod.modules.files import read_card
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import TaskModel

    lang = read_card(modules / "lang-xa")
    assert lang["kind"] == "clm" and lang["lang"] == "xa" and lang["labels"] is None and lang["dev_score"] < 0
    base, tok = load_base(export / "xa")
    dev = text_task(str(world / "mono/train.xa.txt"), "xa", Problems()).split("dev", "xa")
    bare = clm_dev(TaskModel(base, tok, None, HeadConfig(), "clm", None, [1]), dev)
    under = Under(base, tok, str(modules / "lang-xa"), lang, [1])
    assert clm_dev(under.lm, dev)["nll"] < bare["nll"] - 0.1  # it learned xa text (12 steps on a random base)
    task = read_card(modules / "task")
    assert task["stack"][0]["module"] == str(modules / "lang-en") and task["stack"][0]["lang"] == "en"
    assert task["stack"][0]["weights_sha256"] == read_card(modules / "lang-en")["weights_sha256"]


def _head_logits(export, lang: str, task_dir, under_dir, world):
    """Head logits of the task module on `lang`'s base with `under_dir` under it (None: the task module alone),
    and whether the base came back as it was."""
    from syncmod.data.tasks import TaskExample
    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.bases import fingerprint, load_base
    from syncmod.modules.compose import Under
    from syncmod.modules.files import read_card, read_weights
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import TaskModel

    base, tok = load_base(export / lang)
    before = fingerprint(base)
    under = Under(base, tok, str(under_dir), read_card(under_dir), [1]) if under_dir else None
    card = read_card(task_dir)
    model = TaskModel(base, tok, ModuleConfig(**card["module"]), HeadConfig(**card["head"]), "classify", card["labels"],
                      [1])
    model.load(read_weights(task_dir, card))
    rows = [TaskExample(str(i), lang, r.text, r.target) for i, r in enumerate(_task(world, "event-class").split("test", lang)[:16])]
    with torch.no_grad():
        logits = model._head_logits(rows)
    model.module_type.detach()
    if under:
        under.detach()
    return logits, fingerprint(base) == before


def test_eval_swaps_the_language_module_for_the_targets(export, world, modules, tmp_path):
    out = tmp_path / "eval"
    syncmod("eval", "--base", str(export), "--module", str(modules / "task"), "--task", str(world / "tasks/event-class"),
            "--langs", "en,xa", "--out", str(out), "--no-tracking", "--max-items=16",
            f"--language-modules={modules}/lang-{{lang}}", cwd=ROOT, check=True)
    cells = {lang: json.loads((out / f"cells/task__{lang}.json").read_text()) for lang in ("en", "xa")}
    assert cells["xa"]["key"]["under"][0] == f"{modules}/lang-xa" and cells["en"]["key"]["under"][0] == f"{modules}/lang-en"
    swapped, same = _head_logits(export, "xa", modules / "task", modules / "lang-xa", world)
    kept, _ = _head_logits(export, "xa", modules / "task", modules / "lang-en", world)
    alone, _ = _head_logits(export, "xa", modules / "task", None, world)
    assert same  # the base comes back as it was loaded
    assert not torch.allclose(swapped, kept) and not torch.allclose(swapped, alone)  # the language module is used
    labels = json.loads((modules / "task/card.json").read_text())["labels"]
    assert cells["xa"]["predictions"] == [labels[j] for j in swapped.argmax(-1).tolist()]


@pytest.mark.parametrize("case", ["not-a-language-module", "other-language", "clm-on-clm", "no-lang-in-pattern"])
def test_bad_stacks_are_refused_in_one_line(case, export, world, modules, tmp_path):
    task = str(world / "tasks/event-class")
    common = [f"--base={export}", f"--out={tmp_path / 'out'}", "--train.steps=2", *FAST]
    args, expected = {
        "not-a-language-module": (["finetune", f"--task={task}", "--lang=en", f"--stack=[{modules / 'task'}]", *common],
                                  "not a language module"),
        "other-language": (["finetune", f"--task={task}", "--lang=en", f"--stack=[{modules / 'lang-xa'}]", *common],
                           "language module for 'xa', not 'en'"),
        "clm-on-clm": (["finetune", f"--task={world / 'mono/train.en.txt'}", "--lang=en",
                        f"--stack=[{modules / 'lang-en'}]", *common], "cannot be stacked on another language module"),
        "no-lang-in-pattern": (["eval", "--base", str(export), "--module", str(modules / "task"), "--task", task,
                                "--langs", "en,xa", "--out", str(tmp_path / "out"), "--no-tracking",
                                f"--language-modules={modules}/lang-en"], "has no {lang}"),
    }[case]
    proc = syncmod(*args, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
