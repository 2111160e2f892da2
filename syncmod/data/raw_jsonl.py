"""Validated JSONL parallel corpora in chunks of raw lines: the main process only decompresses and splits lines
(cheap), worker processes parse them (the costly part), so reading a corpus scales with the workers.

Only for corpora that `read_parallel` has validated (nothing recorded as a problem): every line is then blank or a
unit whose languages are those of the first unit, so a line is a unit exactly when it holds "{", and a chunk of
unit lines joined by commas is one JSON array of its units. What a worker gets from a chunk is what
`read_parallel` gives for those units (texts by language, in the first unit's key order; `sync` annotations).
"""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syncmod.data.lines import Problems
from syncmod.data.parallel import RESERVED, ParallelExample, _annotations, kind_of, read_parallel


@dataclass(frozen=True)
class RawChunk:
    """Consecutive units of one corpus as raw lines (plain data: it is sent to worker processes)."""

    languages: tuple[str, ...]
    lines: bytes
    """The units' lines, each ending in a newline."""


def is_raw_jsonl(spec: str) -> bool:
    """True for a JSONL file (plain or .gz), the format these chunks read."""
    return not spec.startswith("hf:") and kind_of(Path(spec)) == "jsonl"


def raw_chunks(spec: str, size: int, limit: int | None = None) -> Iterator[RawChunk]:
    """Chunks of `size` units (the first `limit` units only, when given) of a validated JSONL corpus."""
    langs: tuple[str, ...] | None = None
    buf: list[bytes] = []
    n = 0
    for k, raw in enumerate(_lines(Path(spec))):
        if b"{" not in raw:
            continue  # blank: a validated corpus has no other lines without an object
        if k == 0 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        if langs is None:
            langs = tuple(key for key in json.loads(raw) if key not in RESERVED)
        buf.append(raw)
        n += 1
        if len(buf) == size or n == limit:
            yield RawChunk(langs, b"\n".join(buf) + b"\n")
            buf = []
            if n == limit:
                return
    if buf:
        yield RawChunk(langs, b"\n".join(buf) + b"\n")


def _lines(path: Path, block: int = 1 << 22) -> Iterator[bytes]:
    """The file's lines without their newlines, read (and decompressed) in large blocks."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        rest = b""
        while data := f.read(block):
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            yield from lines
    if rest:
        yield rest


def parse_units(chunk: RawChunk) -> list[dict]:
    """The chunk's units as JSON objects, parsed in one call."""
    text = chunk.lines.decode("utf-8")
    return json.loads("[" + text[:-1].replace("\n", ",") + "]")


def payload(chunk: RawChunk) -> dict:
    """What `syncmod.data.shard_build` encodes for a chunk: texts by language, and the units with `sync` cuts."""
    langs = list(chunk.languages)
    units = parse_units(chunk)
    texts = {lang: [u[lang] for u in units] for lang in langs}
    annotated = {}
    for k, unit in enumerate(units):
        if "sync" in unit and unit["sync"] is not None:
            ex = ParallelExample("", {lang: unit[lang] for lang in langs})
            _annotations("", unit, ex, Problems())
            if ex.sync:
                annotated[k] = ex
    return {"languages": langs, "texts": texts, "annotated": annotated}


def units(spec: str | Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(id, texts) of every unit of a validated parallel corpus, as `read_parallel` gives them: JSONL files in
    raw chunks (one parse per chunk), other formats through `read_parallel`."""
    if not is_raw_jsonl(str(spec)):
        for ex in read_parallel(spec, Problems()):
            yield ex.id, ex.texts
        return
    name, n = Path(spec).name, 0
    for chunk in raw_chunks(str(spec), 4096):
        for unit in parse_units(chunk):
            n += 1
            yield (str(unit["id"]) if "id" in unit else f"{name}:{n}"), {lang: unit[lang] for lang in chunk.languages}
