"""The command line: bad config and option input is one line naming where (file:line, or the command line),
exit status 2, no traceback, nothing written; every documented command line parses; every `--help` works."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, syncmod
from syncmod.cli import COMMANDS, arguments, main

# (id, YAML text written to cfg.yaml or None, argv with CFG/OUT placeholders, substrings of the one stderr line)
BAD = [
    ("yaml-typo-key", "train:\n  stpes: 3\n", ["pretrain", "CFG", "--out=OUT"],
     ["cfg.yaml:2", "unknown key `train.stpes`", "did you mean `steps`?"]),
    ("yaml-typo-section", "include: BASE\ntrian:\n  steps: 3\n", ["pretrain", "CFG", "--out=OUT"],
     ["cfg.yaml:2", "did you mean `train`?"]),
    ("cli-typo", None, ["pretrain", "pretrain/sync.yaml", "--train.stpes=3", "--out=OUT"],
     ["command line", "--train.stpes", "did you mean --train.steps?"]),
    ("cli-typo-eval", None, ["eval", "--base", "b", "--task", "t", "--max-itmes", "3", "--out", "OUT"],
     ["command line", "--max-itmes", "did you mean --max-items?"]),
    ("negative-lr-cli", None, ["pretrain", "pretrain/sync.yaml", "--train.lr=-1e-3", "--out=OUT"],
     ["command line", "--train.lr=-0.001", "must be > 0"]),
    ("negative-lr-yaml", "include: BASE\ntrain:\n  lr: -0.1\n", ["pretrain", "CFG", "--out=OUT"],
     ["cfg.yaml:3", "train.lr", "must be > 0"]),
    ("zero-steps", None, ["pretrain", "pretrain/sync.yaml", "--train.steps=0", "--out=OUT"],
     ["command line", "--train.steps=0", "must be >= 1"]),
    ("negative-steps-yaml", "train:\n  steps: -5\n", ["pretrain", "CFG", "--out=OUT"], ["cfg.yaml:2", "train.steps"]),
    ("zero-batch", None, ["pretrain", "pretrain/sync.yaml", "--train.batch_size=0", "--out=OUT"],
     ["command line", "--train.batch_size=0"]),
    ("seq-len-above-max", None, ["pretrain", "pretrain/sync.yaml", "--train.seq_len=256", "--out=OUT"],
     ["command line", "--train.seq_len=256", "model.max_seq_len 128"]),
    ("seq-len-above-max-yaml", "model:\n  max_seq_len: 32\ntrain:\n  seq_len: 64\n", ["pretrain", "CFG", "--out=OUT"],
     ["cfg.yaml:4", "train.seq_len", "above model.max_seq_len 32"]),
    ("literal-choice", None, ["pretrain", "pretrain/sync.yaml", "--model.topology=both", "--out=OUT"],
     ["command line", "--model.topology", "both"]),
    ("registry-choice-yaml", "include: BASE\nsync:\n  objective: synk\n", ["pretrain", "CFG", "--out=OUT"],
     ["cfg.yaml:3", "sync.objective", "'synk'", "sync"]),
    ("yaml-wrong-type", "train:\n  steps: many\n", ["pretrain", "CFG", "--out=OUT"],
     ["cfg.yaml:2", "train.steps", "'many'"]),
    ("yaml-syntax", "train:\n  steps: [1,\n", ["pretrain", "CFG", "--out=OUT"], ["cfg.yaml:", "invalid YAML"]),
    ("yaml-not-mapping", "- a\n- b\n", ["pretrain", "CFG", "--out=OUT"], ["cfg.yaml:1", "mapping"]),
    ("missing-config", None, ["pretrain", "no-such.yaml", "--out=OUT"], ["no-such.yaml", "does not exist"]),
    ("finetune-zero-lr", None, ["finetune", "finetune/adapter.yaml", "--train.lr=0", "--out=OUT"],
     ["command line", "--train.lr=0"]),
    ("finetune-module-type", None, ["finetune", "finetune/adapter.yaml", "--module.type=lorra", "--out=OUT"],
     ["command line", "'lorra'", "lora"]),
    ("finetune-yaml-typo", "modul:\n  type: lora\n", ["finetune", "CFG", "--out=OUT"],
     ["cfg.yaml:1", "did you mean `module`?"]),
    ("eval-max-items-zero", None, ["eval", "--base", "b", "--task", "t", "--max-items", "0", "--out", "OUT"],
     ["command line", "--max-items", ">= 1"]),
    ("eval-max-items-negative", None, ["eval", "--base", "b", "--task", "t", "--max-items=-3", "--out", "OUT"],
     ["command line", "--max-items", ">= 1"]),
    ("study-yaml-typo", "out: OUT\nseedz: [0]\n", ["study", "CFG"], ["cfg.yaml:2", "did you mean `seeds`?"]),
    ("study-reference", "out: OUT\nreference: nope\n", ["study", "CFG"], ["cfg.yaml:2", "reference", "'nope'"]),
    ("study-condition-typo", "out: OUT\nconditions:\n  - {name: sync, config: pretrain/sync.yaml, overrides: [--train.stpes=3]}"
     "\n  - {name: independent, config: pretrain/nope.yaml}\n", ["study", "CFG"],
     ["conditions.0 (sync): overrides", "--train.stpes", "did you mean --train.steps?"]),
    ("study-condition-missing-config", "out: OUT\nconditions:\n  - {name: sync, config: pretrain/sync.yaml}"
     "\n  - {name: independent, config: pretrain/nope.yaml}\n", ["study", "CFG"],
     ["conditions.1 (independent)", "pretrain/nope.yaml", "does not exist"]),
    ("synth-wrong-type", None, ["data", "synth", "--out", "OUT", "--seed=x"], ["command line", "--seed", "'x'"]),
    ("prepare-vocab-zero", None, ["data", "prepare", "--world", "w", "--out", "OUT", "--vocab-size", "0"],
     ["command line", "--vocab-size", ">= 1"]),
    ("demo-zero-steps", None, ["demo", "--steps=0", "--out=OUT"], ["command line", "--steps=0"]),
    ("unknown-command", None, ["pretrian", "pretrain/sync.yaml", "--out=OUT"], ["command line", "pretrian"]),
]


@pytest.mark.parametrize("name,yaml_text,argv,expect", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, name, yaml_text, argv, expect):
    out, cfg = tmp_path / "out", tmp_path / "cfg.yaml"
    if yaml_text is not None:
        cfg.write_text(yaml_text.replace("BASE", str(ROOT / "pretrain/base.yaml")).replace("OUT", str(out)))
    args = [str(cfg) if a == "CFG" else a.replace("OUT", str(out)) for a in argv]
    proc = syncmod(*args, cwd=ROOT)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    for part in expect:
        assert part in lines[0], lines[0]
    if "command line" in expect:
        assert ".yaml:" not in lines[0]  # a command-line mistake is not blamed on the config file
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = syncmod("--debug", "pretrain", "pretrain/sync.yaml", "--train.steps=0", f"--out={tmp_path / 'o'}", cwd=ROOT)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_ctrl_c_is_one_line_exit_130_nothing_left(tmp_path):
    parent = tmp_path / "p"
    parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "syncmod.cli", "data", "synth", "--out", str(parent / "world"),
                             "--parallel_train=5000000"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    while not list(parent.glob(".world.*")) and proc.poll() is None:  # wait until the world is being written
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1]
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert proc.returncode == 130, stderr
    assert lines == ["syncmod data synth: interrupted; nothing half-written was left"]
    assert not (parent / "world").exists() and not list(parent.glob(".world.*tmp"))


def _leaves(table=COMMANDS, path=()):
    for name, command in table.items():
        yield (*path, name)
        yield from _leaves(command.subcommands, (*path, name))


@pytest.mark.parametrize("path", [" ".join(p) for p in [(), *_leaves()]])
def test_every_help_works(path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*path.split(), "--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def _parsed(*argv: str):
    fn, kwargs = arguments(list(argv))
    return fn.__name__, kwargs


def test_readme_command_lines_parse(monkeypatch):
    monkeypatch.chdir(ROOT)
    name, a = _parsed("data", "synth", "--out", "runs/world", "--seed=0")
    assert name == "synth" and a["args"].out == "runs/world" and a["config"].seed == 0
    assert _parsed("data", "validate", "runs/world")[1]["args"].paths == ["runs/world"]
    assert _parsed("data", "inspect", "runs/world/parallel/valid.jsonl")[0] == "inspect"
    a = _parsed("data", "prepare", "--world", "runs/world", "--out", "runs/data", "--vocab-size", "2000")[1]["args"]
    assert (a.world, a.out, a.vocab_size) == ("runs/world", "runs/data", 2000)
    a = _parsed("data", "prepare", "--parallel", "bible.jsonl.gz", "--mono-parallel", "en-es.jsonl.gz", "en-fr.jsonl.gz",
                "--languages", "en,es,fr", "--out", "o")[1]["args"]
    assert a.languages == ["en", "es", "fr"] and a.mono_parallel == ["en-es.jsonl.gz", "en-fr.jsonl.gz"]
    a = _parsed("data", "import-gettext", "/usr/share/locale", "--lang", "de", "--out", "en-de.jsonl")[1]["args"]
    assert (a.roots, a.lang) == (["/usr/share/locale"], "de")
    cfg = _parsed("pretrain", "pretrain/sync.yaml", "--data.root=runs/data", "--out=runs/pretrain/sync")[1]["config"]
    assert (cfg.data.root, cfg.out, cfg.sync.objective, cfg.sync.lam) == ("runs/data", "runs/pretrain/sync", "sync", 4.0)
    assert _parsed("pretrain", "pretrain/independent.yaml", "--data.root=runs/data")[1]["config"].sync.objective == "none"
    launch = _parsed("pretrain", "pretrain/sync.yaml", "--tracking-uri", "http://127.0.0.1:5000")[1]["launch"]
    assert launch.tracking_uri == "http://127.0.0.1:5000"
    # what `deepspeed --module syncmod.pretrain CONFIG --deepspeed X` and torchrun pass on
    for argv in (["--local_rank=1", "pretrain/sync.yaml"], ["pretrain/sync.yaml", "--local-rank", "1"]):
        launch = _parsed("pretrain", *argv, "--deepspeed", "pretrain/ds/zero2.json")[1]["launch"]
        assert (launch.local_rank, launch.deepspeed) == (1, "pretrain/ds/zero2.json")
    cfg = _parsed("finetune", "finetune/adapter.yaml", "--base=runs/pretrain/sync/export", "--lang=xa",
                  "--out=runs/modules/adapter-xa")[1]["config"]
    assert (cfg.lang, cfg.module.type, cfg.module.rank) == ("xa", "adapter", 32)
    a = _parsed("eval", "--base", "runs/pretrain/sync/export", "--module", "runs/modules/adapter-en",
                "runs/modules/adapter-xa", "--task", "runs/world/tasks/event-class", "--langs", "en,xa,xb,xc",
                "--out", "runs/eval/adapter")[1]["args"]
    assert a.module == ["runs/modules/adapter-en", "runs/modules/adapter-xa"] and a.langs == ["en", "xa", "xb", "xc"]
    assert _parsed("tracking", "sync", "runs/pretrain/sync")[1]["args"].out == "runs/pretrain/sync"
    assert _parsed("tracking", "serve", "--port", "5001")[1]["args"].port == 5001
    assert _parsed("demo")[1]["config"].steps == 600
    assert _parsed("demo", "--steps", "100", "--out", "runs/d")[1]["config"].steps == 100


def test_comma_lists_wherever_a_list_is_taken(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert _parsed("data", "synth", "--languages", "en,xa")[1]["config"].languages == ["en", "xa"]
    assert _parsed("data", "synth", "--languages=[en, xb]")[1]["config"].languages == ["en", "xb"]
    cfg = _parsed("pretrain", "pretrain/sync.yaml", "--data.languages=en,xa", "--sync.layers=1,2")[1]["config"]
    assert cfg.data.languages == ["en", "xa"] and cfg.sync.layers == [1, 2]
    assert _parsed("eval", "--base", "b", "--task", "t", "--langs", "en", "xa,xb")[1]["args"].langs == ["en", "xa", "xb"]
    a = _parsed("data", "task-from-parallel", "c.jsonl", "--label", "genre", "--languages", "en,es", "--out", "t")[1]
    assert a["args"].languages == ["en", "es"]


def test_a_single_value_is_a_one_item_list(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert _parsed("finetune", "--module.targets=q_proj")[1]["config"].module.targets == ["q_proj"]
    assert _parsed("finetune", "--module.targets", "v_proj")[1]["config"].module.targets == ["v_proj"]
    assert _parsed("pretrain", "pretrain/sync.yaml", "--sync.layers=3")[1]["config"].sync.layers == [3]
    assert _parsed("data", "synth", "--languages=en")[1]["config"].languages == ["en"]
    # a union of choices and a list keeps a choice as given, and takes a number as a one-item list
    assert _parsed("finetune", "--module.layers=above")[1]["config"].module.layers == "above"
    assert _parsed("finetune", "--module.layers=2")[1]["config"].module.layers == [2]
    with pytest.raises(Exception, match="expected one of at, below, above, all, or a list of int"):
        _parsed("finetune", "--module.layers=sideways")


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for d in ("pretrain", "finetune", "studies")
                                        for p in (ROOT / d).glob("*.yaml")))
def test_every_shipped_yaml_parses(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    command = {"pretrain": "pretrain", "finetune": "finetune", "studies": "study"}[Path(path).parts[0]]
    assert _parsed(command, path)[1]["config"] is not None


def test_a_study_tracks_into_its_own_experiment_unless_told(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    plain = tmp_path / "s.yaml"
    plain.write_text("include: " + str(ROOT / "studies/synthetic.yaml") + "\ntracking: {enabled: false}\n")
    assert _parsed("study", str(plain))[1]["config"].tracking.experiment == "syncmod-study"
    assert _parsed("study", str(plain), "--tracking.experiment=mine")[1]["config"].tracking.experiment == "mine"


def test_yaml_include_overridden_by_the_file_then_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"include: {ROOT / 'pretrain/base.yaml'}\ntrain:\n  steps: 7\n  lr: 0.5\n")
    c = _parsed("pretrain", str(cfg), "--train.lr=0.25")[1]["config"]
    assert (c.train.steps, c.train.lr, c.train.batch_size, c.sync.lam) == (7, 0.25, 16, 4.0)


def test_dataclasses_in_dicts_and_lists_are_built_and_checked(tmp_path, monkeypatch):
    from syncmod.data.synth.grammar import Typology
    from syncmod.errors import InputError

    monkeypatch.chdir(ROOT)
    cfg = tmp_path / "world.yaml"
    cfg.write_text("typology:\n  xa:\n    order: SOV\n")
    assert isinstance(_parsed("data", "synth", str(cfg))[1]["config"].typology["xa"], Typology)
    cfg.write_text("typology:\n  xa:\n    ordr: SOV\n")
    with pytest.raises(InputError) as e:
        _parsed("data", "synth", str(cfg))
    assert str(e.value) == f"{cfg}:3: unknown key `typology.xa.ordr` (did you mean `order`?)"
    study = _parsed("study", "studies/lambda.yaml")[1]["config"]
    assert all(type(c).__name__ == "Condition" for c in study.conditions)
