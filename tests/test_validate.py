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
