"""Texts that repeat across corpora, encoded once. Pairwise corpora around a pivot language (en-de, en-fr, ... cut
from the same catalogs or the same English source) repeat the pivot side: in the eight gettext catalogs 688k English
texts are 130k distinct ones. Each encoder (one per worker process) keeps the ids of the short texts it has encoded
in the languages found in more than one corpus, up to a bound (then it starts over), so memory stays flat. The ids
are the encoder's own, so the shards are the same bytes."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import islice

MAX_TEXTS = 1 << 17
"""Texts remembered per encoder (~30 MB for catalog messages; the repeats are one corpus apart)."""
MAX_CHARS = 256
"""Longer texts are encoded every time (they rarely repeat, and would cost memory)."""


def encode_repeated(enc, texts: list[str], dtype: str) -> list:
    """`enc.ids(texts)`, each distinct text encoded once, short ones kept in `enc.repeats` for later calls."""
    known: dict[str, array] = enc.repeats
    if len(known) > MAX_TEXTS:
        known.clear()  # bounded: start over
    fresh = [t for t in dict.fromkeys(texts) if t not in known]
    got = dict(zip(fresh, enc.ids(fresh), strict=True))
    typecode = "H" if dtype == "uint16" else "I"
    for text, ids in got.items():
        if len(text) <= MAX_CHARS:
            known[text] = array(typecode, ids)
    return [got[t] if t in got else known[t] for t in texts]


def shared_languages(first_units: Iterable[Iterable[str]]) -> frozenset[str]:
    """The languages of more than one corpus, given each corpus's languages."""
    seen: dict[str, int] = {}
    for langs in first_units:
        for lang in set(langs):
            seen[lang] = seen.get(lang, 0) + 1
    return frozenset(lang for lang, n in seen.items() if n > 1)


def corpus_languages(specs: list[str], read) -> Iterable[list[str]]:
    """The languages of each parallel corpus (of its first unit), read with `read(spec)` -> units."""
    for spec in specs:
        yield [lang for ex in islice(read(spec), 1) for lang in ex.texts]
