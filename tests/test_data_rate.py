"""The fast paths of data preparation give what the ordinary paths give: JSONL parsed by workers in raw chunks and
repeated texts encoded once (the same shards, byte for byte, as units read by `read_parallel`, every text encoded),
and the files validated at once (the same problems in the same order)."""

import gzip
import json

import pytest

import syncmod.data.repeats as repeats
import syncmod.data.shard_build as shard_build
from syncmod.data.lines import MAX_PROBLEMS, Problems
from syncmod.data.parallel import read_parallel
from syncmod.data.raw_jsonl import raw_chunks, units
from syncmod.data.repeats import shared_languages
from syncmod.data.scan import scan_corpora
from syncmod.data.shard_build import build_shards
from syncmod.data.tokenizer import load_tokenizer


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def tricky(world, tmp_path_factory):
    """JSONL corpora with what a reader can get wrong: a BOM, CRLF, blank and whitespace-only lines, no newline at
    the end, ids of several types and missing ids, reserved keys, sync annotations, gzip; more than one chunk."""
    tmp = tmp_path_factory.mktemp("tricky")
    rows = [json.loads(x) for x in (world / "parallel/train.jsonl").read_text().splitlines()]
    lines = []
    for i, r in enumerate(rows * 8):
        row = {"xa": r["xa"], "en": r["en"] + (" " if i % 11 == 0 else "")}  # key order: xa first
        if i % 3:
            row["id"] = [f"u{i}", i, 1.5 * i][i % 3]
        if i % 5 == 0:
            row["source"] = "pkg/x"
        if "sync" in r and i % 2:
            row["sync"] = {"en-xa": r["sync"]["en-xa"]} if "en-xa" in r["sync"] else None
        lines.append(json.dumps(row, ensure_ascii=i % 2 == 0))
        if i % 97 == 0:
            lines.append(["", "   ", "\t", "\u00a0"][i % 4])
    text = "\ufeff" + "\r\n".join(lines)  # no newline after the last line
    plain = tmp / "en-xa.jsonl"
    plain.write_text(text, encoding="utf-8")
    packed = tmp / "xa-en.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write(text.replace("\r\n", "\n") + "\n\n")
    return [str(plain), str(packed)]


def test_units_are_those_of_read_parallel(tricky):
    for spec in tricky:
        want = [(ex.id, ex.texts) for ex in read_parallel(spec, Problems())]
        assert list(units(spec)) == want
        assert [list(t) for _, t in want[:1]] == [["xa", "en"]]
        assert [len(c.lines.splitlines()) for c in raw_chunks(spec, 500, limit=1234)] == [500, 500, 234]


def test_raw_chunks_and_repeats_build_the_bytes_of_units_read_by_read_parallel(tricky, world, tokenizer_dir, tmp_path,
                                                                               monkeypatch):
    """Fast: raw chunks, and the texts of languages in both corpora (en, xa) encoded once, in a memory bound small
    enough to be reached. Slow: `read_parallel`, every text encoded."""
    tok = load_tokenizer(tokenizer_dir)
    mono = sorted(str(p) for p in (world / "mono").glob("train.*.txt"))
    assert shared_languages([["en", "xa"], ["xa", "en"], ["en", "xb"]]) == {"en", "xa"}
    monkeypatch.setattr(repeats, "MAX_TEXTS", 300)
    fast = build_shards(tok, tmp_path / "fast", parallel=tricky, mono=mono, workers=2)
    limited = build_shards(tok, tmp_path / "limited", parallel=tricky, workers=1, limit=999)
    monkeypatch.setattr(shard_build, "is_raw_jsonl", lambda spec: False)  # every corpus through read_parallel
    monkeypatch.setattr(shard_build, "shared_languages", lambda langs: frozenset())  # every text encoded
    assert _files(build_shards(tok, tmp_path / "slow", parallel=tricky, mono=mono, workers=2)) == _files(fast)
    assert _files(build_shards(tok, tmp_path / "slow1", parallel=tricky, workers=1, limit=999)) == _files(limited)
    meta = json.loads((fast / "meta.json").read_text())
    assert meta["parallel"]["annotated"] and meta["parallel"]["units"] == 2 * len(list(units(tricky[0])))


def test_files_validated_at_once_give_the_problems_of_one_after_the_other(tmp_path):
    good = '{"en": "the dog", "de": "der Hund"}\n'
    specs = []
    for i in range(5):
        path = tmp_path / f"c{i}.jsonl"
        path.write_text(good * 3 + "".join(f'{{"en": "x", "de": ""}}\n{{"en": oops{k}}}\n' for k in range(i * 4)) + good)
        specs.append(("parallel", str(path)))
    (tmp_path / "m.en.txt").write_bytes(b"fine\n\xff\n")
    specs.append(("mono", str(tmp_path / "m.en.txt")))
    one, two = Problems(), Problems()
    scans = scan_corpora(specs, one, workers=1)
    assert [s.units for s in scan_corpora(specs, two, workers=2)] == [s.units for s in scans] == [4] * 5 + [1]
    assert one.total == two.total == 2 * 4 * (0 + 1 + 2 + 3 + 4) + 1 and len(two.items) == MAX_PROBLEMS
    assert two.items == one.items and two.items[0].where == f"{specs[1][1]}:4"
