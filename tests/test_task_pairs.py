"""`syncmod data task-from-pairs`: a classify task from pairwise corpora joined on the pivot text — the same ids
and labels in every language, only units with one label everywhere — and the corpora without the task's units."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import syncmod


def _write(path: Path, rows: list[dict]) -> str:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture
def pairs(tmp_path) -> list[str]:
    """en-xa and en-xb catalogs: 60 shared messages of 3 packages (one with a different package in xb), 10
    short ones, and 20 only in xa."""
    xa, xb = [], []
    for i in range(60):
        pkg = ("gimp", "gnupg", "dpkg")[i % 3]
        en = f"message number {i} of the package {pkg}"
        xa.append({"en": en, "xa": f"xa {i} {pkg}", "source": f"{pkg}/domain-a"})
        xb.append({"en": en, "xb": f"xb {i} {pkg}", "source": f"{'tar' if i == 0 else pkg}/domain-b"})
    for i in range(10):
        xa.append({"en": f"Open {i}", "xa": f"xa open {i}", "source": "gimp/d"})
        xb.append({"en": f"Open {i}", "xb": f"xb open {i}", "source": "gimp/d"})
    xa += [{"en": f"only in xa {i} here", "xa": f"xa only {i}", "source": "wget/w"} for i in range(20)]
    return [_write(tmp_path / "en-xa.jsonl.gz", xa), _write(tmp_path / "en-xb.jsonl.gz", xb)]


def _read(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_task_has_one_label_per_unit_in_every_language_and_rest_leaves_it_out(pairs, tmp_path):
    out, rest = tmp_path / "task", tmp_path / "rest"
    args = ["data", "task-from-pairs", *pairs, "--label", "source", "--label-pattern", "^[^/]+", "--min-words", "4",
            "--train", "30", "--dev", "5", "--test", "20", "--out", str(out), "--rest", str(rest)]
    syncmod(*args, check=True)
    card = json.loads((out / "task.json").read_text())
    assert card["labels"] == ["dpkg", "gimp", "gnupg"]  # the package, not the domain; tar (xb only) is dropped
    test = {lang: _read(out / f"test.{lang}.jsonl") for lang in ("en", "xa", "xb")}
    assert [r["id"] for r in test["en"]] == [r["id"] for r in test["xa"]] == [r["id"] for r in test["xb"]]
    assert [r["label"] for r in test["en"]] == [r["label"] for r in test["xa"]] == [r["label"] for r in test["xb"]]
    used = {r["text"] for split in ("train", "dev", "test") for r in _read(out / f"{split}.en.jsonl")}
    assert len(used) == 55 and not any(t.startswith(("Open", "only in", "message number 0 ")) for t in used)
    for spec in pairs:
        before, after = _read(Path(spec)), _read(rest / Path(spec).name)
        assert Counter(json.dumps(r, sort_keys=True) for r in before if r["en"] not in used) == \
            Counter(json.dumps(r, sort_keys=True) for r in after)  # everything else, once, in another order
    again = tmp_path / "again"
    syncmod(*args[:-4], "--out", str(tmp_path / "task2"), "--rest", str(again), check=True)
    assert (again / "en-xa.jsonl.gz").read_bytes() == (rest / "en-xa.jsonl.gz").read_bytes()


def test_top_labels_keeps_the_most_frequent(pairs, tmp_path):
    syncmod("data", "task-from-pairs", *pairs, "--label", "source", "--label-pattern", "^[^/]+", "--top-labels", "1",
            "--min-words", "2", "--train", "10", "--dev", "2", "--test", "5", "--out", str(tmp_path / "t"), check=True)
    assert json.loads((tmp_path / "t" / "task.json").read_text())["labels"] == ["gimp"]


@pytest.mark.parametrize("extra, pieces", [
    (["--label-pattern", "(["], ["--label-pattern", "not a regular expression"]),
    (["--label", "genre"], ["en-xa.jsonl.gz:1", "no label field 'genre'"]),
    (["--train", "500"], ["asked for 505 examples", "10 pivot texts are in every corpus with one label"]),
])
def test_bad_input_is_one_line_per_problem_and_writes_nothing(pairs, tmp_path, extra, pieces):
    base = {"--label": "source", "--train": "20", "--dev": "2", "--test": "3"}
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        base[k] = v
    proc = syncmod("data", "task-from-pairs", *pairs, *[x for kv in base.items() for x in kv],
                   "--out", str(tmp_path / "t"), "--rest", str(tmp_path / "r"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert all(p in lines[0] for p in pieces) and len(lines) <= len(pairs), proc.stderr  # one line per problem
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()
