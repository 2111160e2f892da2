"""Every bad input gives its `file:line` message and exit status 2, and writes no output."""

import gzip
import json

import pytest

from syncmod.cli import main

PAR = '{"en": "the dog", "de": "der Hund"}\n'


def _task(d, kind="classify", labels=("a", "b"), rows=None):
    d.mkdir()
    (d / "task.json").write_text(json.dumps({"name": "t", "kind": kind, "labels": list(labels)}))
    for (split, lang), lines in (rows or {}).items():
        (d / f"{split}.{lang}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return d


def _row(i, lang, label="a"):
    return {"id": str(i), "lang": lang, "text": f"text {i}", "label": label}


CASES = {
    "missing file": (lambda d: d / "nope.jsonl", "nope.jsonl: file does not exist"),
    "empty file": (lambda d: (d / "e.jsonl").write_text("") and None or d / "e.jsonl", "e.jsonl: file is empty"),
    "invalid json": (lambda d: _w(d / "p.jsonl", PAR + '{"en": oops}\n'), "p.jsonl:2: invalid JSON"),
    "invalid utf-8": (lambda d: _w(d / "p.jsonl", PAR.encode() + b'{"en": "\xff", "de": "x"}\n'), "p.jsonl:2: invalid UTF-8"),
    "missing language": (lambda d: _w(d / "p.jsonl", PAR + '{"en": "a cat"}\n'), "p.jsonl:2: missing language 'de'"),
    "bad language code": (lambda d: _w(d / "p.jsonl", '{"en": "a", "German": "b"}\n'),
                          "p.jsonl:1: unknown language code format 'German'"),
    "tsv columns": (lambda d: _w(d / "p.tsv", "en\tde\na\tb\nc\n"), "p.tsv:3: 1 columns, the header has 2"),
    "moses line counts": (lambda d: (_w(d / "c.en", "a\nb\nc\n"), _w(d / "c.de", "x\ny\n"))[0], "c.de:3: file ends at line 2"),
    "cut out of range": (lambda d: _w(d / "p.jsonl", '{"en": "a b", "de": "x y", "sync": {"en-de": [[3, 1]]}}\n'),
                         "p.jsonl:1: sync cut (3, 1) for en-de is out of range"),
    "cut crosses alignment": (lambda d: _w(d / "p.jsonl", '{"en": "a b", "de": "x y", "sync": {"en-de": [[1, 1], [2, 2]]}, '
                                           '"align": {"en-de": "0-1 1-0"}}\n'),
                              "p.jsonl:1: sync cut (1, 1) for en-de crosses alignment link 0-1"),
    "gzip truncated": (lambda d: _w(d / "p.jsonl.gz", gzip.compress(PAR.encode() * 50)[:40]), "p.jsonl.gz: cannot read file"),
    "label outside set": (lambda d: _task(d / "t", rows={("test", "en"): [_row(1, "en", "zzz")]}),
                          "test.en.jsonl:1: label 'zzz' is not in the label set"),
    "duplicate id": (lambda d: _task(d / "t", rows={("train", "en"): [_row(1, "en"), _row(1, "en")]}),
                     "train.en.jsonl:2: duplicate id '1' in language 'en'"),
    "test ids differ": (lambda d: _task(d / "t", rows={("test", "en"): [_row(1, "en")], ("test", "de"): [_row(2, "de")]}),
                        "test.de.jsonl: test ids differ from en"),
    "language the corpus lacks": (lambda d: _w(d / "p.jsonl", PAR + '{"en": "a cat", "de": "eine Katze", "fr": "un chat"}\n'),
                                  "p.jsonl:2: language 'fr' is not one of this corpus's languages ['en', 'de']"),
    "cuts out of order": (lambda d: _w(d / "p.jsonl", '{"en": "a b c", "de": "x y z", "sync": {"en-de": [[2, 2], [1, 1]]}}\n'),
                          "p.jsonl:1: sync cut (1, 1) for en-de does not come after (2, 2)"),
    "cuts not increasing": (lambda d: _w(d / "p.jsonl", '{"en": "a b c", "de": "x y z", "sync": {"en-de": [[1, 2], [2, 2]]}}\n'),
                            "p.jsonl:1: sync cut (2, 2) for en-de does not come after (1, 2)"),
    "cut not integers": (lambda d: _w(d / "p.jsonl", '{"en": "a b", "de": "x y", "sync": {"en-de": [[1.5, 1]]}}\n'),
                         "p.jsonl:1: sync['en-de'] is malformed"),
    "labels of mixed types": (lambda d: _w(d / "t.jsonl", json.dumps(_row(1, "en", "1")) + "\n" + json.dumps(_row(2, "en", 1)) + "\n"),
                              "t.jsonl:2: 'label' is 1, not a string"),
    "label type in a task dir": (lambda d: _task(d / "t", labels=("1", "2"), rows={("test", "en"): [_row(1, "en", 1)]}),
                                 "test.en.jsonl:1: 'label' is 1, not a string"),
    "task.json labels mixed": (lambda d: _task(d / "t", labels=(1, "1"), rows={("test", "en"): [_row(1, "en", "1")]}),
                               "task.json:1: a classify task needs 'labels': a list of two or more strings"),
    "task.json not an object": (lambda d: (_task(d / "t", rows={("test", "en"): [_row(1, "en")]}),
                                           _w(d / "t/task.json", "[]"))[0], "task.json:1: task card must be a JSON object"),
    "no corpus in directory": (lambda d: (d / "c").mkdir() or _w(d / "c/notes.csv", "a,b\n").parent,
                               "c: no corpus in this directory (expected NAME.jsonl(.gz)"),
    "only blank lines": (lambda d: _w(d / "p.jsonl", "\n\n"), "p.jsonl: holds no examples"),
    "empty file in a directory": (lambda d: (d / "c").mkdir() or _w(d / "c/a.en.txt", "").parent, "a.en.txt: file is empty"),
    "json line not an object": (lambda d: _w(d / "p.jsonl", PAR + '["en", "de"]\n'), "p.jsonl:2: expected a JSON object, got list"),
    "invalid utf-8 in a text file": (lambda d: _w(d / "m.en.txt", b"fine\n\xc3\x28 broken\n"), "m.en.txt:2: invalid UTF-8"),
    "tsv header repeats a language": (lambda d: _w(d / "p.tsv", "en\ten\na\tb\n"), "p.tsv:1: header must name two or more distinct"),
}


def _w(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_exit_2(case, tmp_path, capsys):
    make, expected = CASES[case]
    path = make(tmp_path)
    assert main(["data", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("case", ["invalid json", "missing language", "cut out of range", "moses line counts"])
def test_bad_parallel_input_writes_no_shards(case, tmp_path, capsys, tokenizer_dir):
    make, expected = CASES[case]
    path = make(tmp_path)
    out = tmp_path / "shards"
    assert main(["data", "shards", "--tokenizer", str(tokenizer_dir), "--parallel", str(path), "--out", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists() and not any(p.name.startswith(".shards") for p in tmp_path.iterdir())


def test_many_problems_are_listed_one_per_line(tmp_path, capsys):
    path = _w(tmp_path / "p.jsonl", PAR + "{bad\n" + '{"en": "x"}\n' + "[1]\n")
    assert main(["data", "validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split(": ")[1].rsplit(":", 1)[1] for ln in lines] == ["2", "3", "4"]


def test_every_problem_of_a_directory_is_listed(tmp_path, capsys):
    _w(tmp_path / "p.jsonl", PAR + '{"en": "a", "de": "b", "fr": "c"}\n' + '{"en": "a b", "de": "x y", "sync": {"en-de": [[2, 2], [1, 1]]}}\n')
    _w(tmp_path / "e.en.txt", "")
    _task(tmp_path / "t", rows={("test", "en"): [_row(1, "en", 2)]})
    assert main(["data", "validate", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    where = sorted(ln.split(": ")[1].replace(str(tmp_path) + "/", "") for ln in lines)
    assert where == ["e.en.txt", "p.jsonl:2", "p.jsonl:3", "t/test.en.jsonl:1"], lines


def test_valid_world_passes(world, capsys):
    assert main(["data", "validate", str(world)]) == 0
    assert "ok" in capsys.readouterr().out


def test_formats_load(tmp_path, capsys):
    from syncmod.data.lines import Problems
    from syncmod.data.parallel import read_parallel

    _w(tmp_path / "p.tsv", "en\tde\nthe dog\tder Hund\n")
    _w(tmp_path / "m.en", "the dog\n")
    _w(tmp_path / "m.de", "der Hund\n")
    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as f:
        f.write(PAR)
    import datasets

    datasets.Dataset.from_list([{"translation": {"en": "the dog", "de": "der Hund"}}]).save_to_disk(tmp_path / "hf")
    for p in ["p.tsv", "m.en", "p.jsonl.gz", "hf"]:
        problems = Problems()
        [ex] = list(read_parallel(tmp_path / p, problems))
        assert not problems and ex.texts == {"en": "the dog", "de": "der Hund"}, p
        assert ex.cuts("en", "de") == [(2, 2)]  # eos only without annotation
