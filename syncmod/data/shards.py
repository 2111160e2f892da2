"""Pre-tokenized, memory-mapped shards.

Layout of a shard directory::

    meta.json                    tokenizer, dtype, languages, counts, sync kind
    mono.{lang}.tokens / .index  documents as [<lang_xx>] tokens [</s>], concatenated; index = starts (n+1)
    mono.{lang}.bytes            UTF-8 bytes of each document (int64; bits per byte)
    par.{lang}.tokens / .index   one parallel side per unit, same layout; unit i is row i of every language
    par.{a}~{b}.cuts / .cindex   sync cuts as token positions (int32 pairs); cindex = start of each unit's cuts
    par1.*, par2.*, ...          further groups of parallel corpora, one per distinct language set (e.g. one
                                 per en-xx pairwise corpus); `meta.json` lists every group under
                                 parallel.groups, and `parallel` itself describes the first

Tokens are uint16 when the vocabulary fits, else uint32; every array is a raw little-endian file read
with `numpy.memmap`, so memory stays flat however large the corpus. A cut (a, b) in words maps to the
last sub-token of word a and of word b. Shards are built into a temporary directory and renamed, chunk
by chunk as the corpora stream in (tokenized in worker processes, written in corpus order, so the bytes do
not depend on the number of workers). Opening checks every file's size against its index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syncmod.errors import InputError


@dataclass
class Shards:
    """Read-only view of a shard directory (memory-mapped)."""

    path: Path
    meta: dict

    @classmethod
    def open(cls, path: str | Path) -> Shards:
        path = Path(path)
        if not (path / "meta.json").exists():
            raise InputError.at(str(path), "not a shard directory (no meta.json)", "build it with `syncmod data shards`")
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError.at(str(path / "meta.json"), f"unreadable: {e}", "re-build the shards") from None
        shards = cls(path, meta)
        shards.check_sizes()
        return shards

    def _arr(self, name: str, dtype) -> np.ndarray:
        p = self.path / name
        return np.memmap(p, dtype=dtype, mode="r") if p.stat().st_size else np.zeros(0, dtype)

    def check_sizes(self) -> None:
        """Every file holds exactly what its index (and meta.json) says: a truncated or padded file is refused
        here, not read as wrong tokens later."""
        width = np.dtype(self.meta["dtype"]).itemsize
        for lang, m in self.meta.get("mono", {}).items():
            self._check(f"mono.{lang}", m["docs"], width)
            self._expect(f"mono.{lang}.bytes", 8 * m["docs"], "one int64 per document")
        for group in self.groups:
            for lang in group["languages"]:
                self._check(f"{group['prefix']}.{lang}", group["units"], width)
            for i, a in enumerate(group["languages"]):
                for b in group["languages"][i + 1:]:
                    self._check(f"{group['prefix']}.{a}~{b}", group["units"], 8, ("cuts", "cindex"))

    def _check(self, stem: str, n: int, width: int, names: tuple[str, str] = ("tokens", "index")) -> None:
        self._expect(f"{stem}.{names[1]}", 8 * (n + 1), f"{n} entries + 1")
        index = self._arr(f"{stem}.{names[1]}", np.int64)
        self._expect(f"{stem}.{names[0]}", width * int(index[-1]), f"{int(index[-1])} items as its index ends")

    def _expect(self, name: str, size: int, why: str) -> None:
        p = self.path / name
        have = p.stat().st_size if p.is_file() else None
        if have != size:
            what = "is missing" if have is None else f"has {have} bytes, expected {size} ({why})"
            raise InputError.at(str(p), what, "the shards are damaged: build them again with `syncmod data prepare`")

    @property
    def groups(self) -> list[dict]:
        """Every group of parallel corpora: prefix, languages, units, annotated, tokens."""
        return parallel_groups(self.meta)

    def group(self, langs: list[str] | set[str]) -> dict | None:
        """The group with exactly these languages, if any."""
        return next((g for g in self.groups if set(g["languages"]) == set(langs)), None)

    def sequences(self, kind: str, lang: str) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, index) for `kind`: "mono", or a parallel group's prefix ("par", "par1", ...)."""
        return self._arr(f"{kind}.{lang}.tokens", self.meta["dtype"]), self._arr(f"{kind}.{lang}.index", np.int64)

    def doc_bytes(self, lang: str) -> np.ndarray:
        return self._arr(f"mono.{lang}.bytes", np.int64)

    def cuts(self, a: str, b: str, prefix: str = "par") -> tuple[np.ndarray, np.ndarray, bool]:
        """(cuts as int32 pairs, index, swapped): `swapped` when stored as (b, a)."""
        if (self.path / f"{prefix}.{a}~{b}.cuts").exists():
            return (self._arr(f"{prefix}.{a}~{b}.cuts", np.int32).reshape(-1, 2),
                    self._arr(f"{prefix}.{a}~{b}.cindex", np.int64), False)
        cuts, index, _ = self.cuts(b, a, prefix)
        return cuts, index, True

    @property
    def mono_languages(self) -> list[str]:
        return sorted(self.meta["mono"])

    @property
    def parallel_languages(self) -> list[str]:
        """Languages of the first group (an N-way corpus today); `pair_graph` for every pair."""
        return list((self.meta.get("parallel") or {}).get("languages", []))

    @property
    def pair_graph(self) -> list[tuple[str, str]]:
        """Every language pair that some group connects (sorted within and across pairs)."""
        return pair_graph(self.meta)


def parallel_groups(meta: dict) -> list[dict]:
    """The groups of parallel corpora a shard `meta.json` describes (shards from before groups: one)."""
    par = meta.get("parallel") or None
    if not par:
        return []
    return par.get("groups") or [{**par, "prefix": "par"}]


def pair_graph(meta: dict) -> list[tuple[str, str]]:
    """Every language pair that some group of parallel corpora connects (sorted within and across pairs)."""
    return sorted({tuple(sorted((a, b))) for g in parallel_groups(meta) for i, a in enumerate(g["languages"])
                   for b in g["languages"][i + 1:]})


def parallel_languages(meta: dict) -> list[str]:
    """Every language of every group of parallel corpora, in order of first appearance."""
    return list(dict.fromkeys(lang for g in parallel_groups(meta) for lang in g["languages"]))
