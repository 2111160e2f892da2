"""Pre-tokenized, memory-mapped shards.

Layout of a shard directory::

    meta.json                    tokenizer, dtype, languages, counts, sync kind
    mono.{lang}.tokens / .index  documents as [<lang_xx>] tokens [</s>], concatenated; index = starts (n+1)
    mono.{lang}.bytes            UTF-8 bytes of each document (int64; bits per byte)
    par.{lang}.tokens / .index   one parallel side per unit, same layout; unit i is row i of every language
    par.{a}~{b}.cuts / .cindex   sync cuts as token positions (int32 pairs); cindex = start of each unit's cuts

Tokens are uint16 when the vocabulary fits, else uint32; every array is a raw little-endian file read
with `numpy.memmap`, so memory stays flat however large the corpus. A cut (a, b) in words maps to the
last sub-token of word a and of word b. Shards are built into a temporary directory and renamed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from syncmod.data.lines import Problems
from syncmod.data.mono import read_mono
from syncmod.data.parallel import ParallelExample, read_parallel
from syncmod.data.tokenizer import lang_tag
from syncmod.io import atomic_dir, write_json

log = logging.getLogger(__name__)
CHUNK = 4096


class _Appender:
    """Appends arrays to a raw binary file, keeping count."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.f, self.dtype, self.n = open(path, "wb"), np.dtype(dtype), 0

    def write(self, arr: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())
        self.n += len(arr)

    def close(self) -> None:
        self.f.close()


class _SeqWriter:
    """Writes sequences (tokens + start index) for one language."""

    def __init__(self, directory: Path, stem: str, dtype: np.dtype):
        self.tokens = _Appender(directory / f"{stem}.tokens", dtype)
        self.index = _Appender(directory / f"{stem}.index", np.int64)
        self.index.write(np.zeros(1, np.int64))

    def add(self, seqs: list[list[int]]) -> None:
        if not seqs:
            return
        lengths = np.fromiter((len(s) for s in seqs), np.int64, len(seqs))
        self.tokens.write(np.fromiter((t for s in seqs for t in s), np.int64, int(lengths.sum())))
        self.index.write(self.tokens.n - lengths.sum() + np.cumsum(lengths))

    def close(self) -> None:
        self.tokens.close()
        self.index.close()


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size < 2**16 else np.uint32)


def _encode(tok, lang: str, texts: list[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Token ids as [<lang>] ... [</s>] and each token's character span (for word -> token mapping)."""
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    tag, eos = tok.convert_tokens_to_ids(lang_tag(lang)), tok.eos_token_id
    if tag is None or tag == tok.unk_token_id:
        from syncmod.errors import InputError

        raise InputError.at("tokenizer", f"has no tag for language {lang!r}",
                            "train the tokenizer on every language of the study")
    return [[tag, *ids, eos] for ids in enc["input_ids"]], enc["offset_mapping"]


def word_ends_to_tokens(text: str, offsets: list[tuple[int, int]], words: Iterable[int]) -> list[int]:
    """Token position (in [<lang>] + tokens) of the last sub-token of each word count in `words`."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]  # words as `str.split()` sees them
    starts = np.fromiter((s for s, _ in offsets), np.int64, len(offsets))
    # +1 for the language tag at position 0; the last token that starts before the word's end.
    return [int(np.searchsorted(starts, ends[a - 1], side="left")) for a in words]


def build_shards(tok, out_dir: str | Path, parallel: list[str] = (), mono: list[str] = (),
                 limit: int | None = None) -> Path:
    """Validate every input, then tokenize it into `out_dir`. Returns the directory."""
    problems = Problems()
    for spec in parallel:
        for _ in read_parallel(spec, problems):
            pass
    for spec in mono:
        for _ in read_mono(spec, problems):
            pass
    problems.raise_if_any()
    dtype = _dtype(len(tok))
    meta: dict = {"dtype": dtype.name, "vocab_size": len(tok), "eos_id": tok.eos_token_id,
                  "pad_id": tok.pad_token_id, "mono": {}, "parallel": None}
    with atomic_dir(out_dir) as tmp:
        if parallel:
            meta["parallel"] = _build_parallel(tok, tmp, parallel, dtype, limit, problems)
        writers: dict[str, _SeqWriter] = {}
        byte_writers: dict[str, _Appender] = {}
        counts: dict[str, dict[str, int]] = {}
        for spec in mono:
            for chunk in _chunks(read_mono(spec, problems), limit):
                by_lang: dict[str, list[str]] = {}
                for lang, text in chunk:
                    by_lang.setdefault(lang, []).append(text)
                for lang, texts in by_lang.items():
                    if lang not in writers:
                        writers[lang] = _SeqWriter(tmp, f"mono.{lang}", dtype)
                        byte_writers[lang] = _Appender(tmp / f"mono.{lang}.bytes", np.int64)
                        counts[lang] = {"docs": 0, "bytes": 0}
                    writers[lang].add(_encode(tok, lang, texts)[0])
                    sizes = np.array([len(t.encode()) for t in texts], np.int64)
                    byte_writers[lang].write(sizes)
                    counts[lang]["docs"] += len(texts)
                    counts[lang]["bytes"] += int(sizes.sum())
        for lang, w in writers.items():
            w.close()
            byte_writers[lang].close()
            meta["mono"][lang] = {**counts[lang], "tokens": w.tokens.n}
        write_json(tmp / "meta.json", meta)
    log.info("built shards in %s", out_dir)
    return Path(out_dir)


def _chunks(it: Iterator, limit: int | None) -> Iterator[list]:
    it = islice(it, limit) if limit else it
    while chunk := list(islice(it, CHUNK)):
        yield chunk


def _build_parallel(tok, tmp: Path, specs: list[str], dtype: np.dtype, limit: int | None,
                    problems: Problems) -> dict:
    langs: list[str] | None = None
    writers: dict[str, _SeqWriter] = {}
    cut_writers: dict[tuple[str, str], tuple[_Appender, _Appender]] = {}
    n_units, annotated = 0, 0
    for spec in specs:
        for chunk in _chunks(read_parallel(spec, problems), limit):
            chunk_langs = list(chunk[0].texts)
            if langs is None:
                langs = chunk_langs
                writers = {lang: _SeqWriter(tmp, f"par.{lang}", dtype) for lang in langs}
                for i, a in enumerate(langs):
                    for b in langs[i + 1:]:
                        cut_writers[(a, b)] = (_Appender(tmp / f"par.{a}~{b}.cuts", np.int32),
                                               _Appender(tmp / f"par.{a}~{b}.cindex", np.int64))
                        cut_writers[(a, b)][1].write(np.zeros(1, np.int64))
            elif set(chunk_langs) != set(langs):
                from syncmod.errors import InputError

                raise InputError.at(spec, f"languages {chunk_langs} differ from the first corpus' {langs}",
                                    "shard corpora with the same languages together")
            encoded = {lang: _encode(tok, lang, [ex.texts[lang] for ex in chunk]) for lang in langs}
            for lang in langs:
                writers[lang].add(encoded[lang][0])
            annotated += sum(bool(ex.sync) for ex in chunk)
            for (a, b), (cuts_w, index_w) in cut_writers.items():
                rows = []
                for k, ex in enumerate(chunk):
                    rows.append(_token_cuts(ex, a, b, encoded[a][1][k], encoded[b][1][k]))
                index_w.write(cuts_w.n // 2 + np.cumsum([len(r) for r in rows]))
                cuts_w.write(np.asarray([p for r in rows for c in r for p in c], np.int32))
            n_units += len(chunk)
    for w in writers.values():
        w.close()
    for c, i in cut_writers.values():
        c.close()
        i.close()
    return {"languages": langs or [], "units": n_units, "annotated": annotated > 0,
            "tokens": {lang: w.tokens.n for lang, w in writers.items()}}


def _token_cuts(ex: ParallelExample, a: str, b: str, off_a, off_b) -> list[tuple[int, int]]:
    cuts = ex.cuts(a, b)
    pa = word_ends_to_tokens(ex.texts[a], off_a, [x for x, _ in cuts])
    pb = word_ends_to_tokens(ex.texts[b], off_b, [y for _, y in cuts])
    return list(zip(pa, pb, strict=True))


@dataclass
class Shards:
    """Read-only view of a shard directory (memory-mapped)."""

    path: Path
    meta: dict

    @classmethod
    def open(cls, path: str | Path) -> Shards:
        from syncmod.errors import InputError

        path = Path(path)
        if not (path / "meta.json").exists():
            raise InputError.at(str(path), "not a shard directory (no meta.json)", "build it with `syncmod data shards`")
        return cls(path, json.loads((path / "meta.json").read_text()))

    def _arr(self, name: str, dtype) -> np.ndarray:
        p = self.path / name
        return np.memmap(p, dtype=dtype, mode="r") if p.stat().st_size else np.zeros(0, dtype)

    def sequences(self, kind: str, lang: str) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, index) for `kind` in ("mono", "par")."""
        return self._arr(f"{kind}.{lang}.tokens", self.meta["dtype"]), self._arr(f"{kind}.{lang}.index", np.int64)

    def doc_bytes(self, lang: str) -> np.ndarray:
        return self._arr(f"mono.{lang}.bytes", np.int64)

    def cuts(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """(cuts as int32 pairs, index, swapped): `swapped` when stored as (b, a)."""
        if (self.path / f"par.{a}~{b}.cuts").exists():
            return self._arr(f"par.{a}~{b}.cuts", np.int32).reshape(-1, 2), self._arr(f"par.{a}~{b}.cindex", np.int64), False
        cuts, index, _ = self.cuts(b, a)
        return cuts, index, True

    @property
    def mono_languages(self) -> list[str]:
        return sorted(self.meta["mono"])

    @property
    def parallel_languages(self) -> list[str]:
        return list((self.meta.get("parallel") or {}).get("languages", []))
