"""Prepare a data root for pre-training: validate every corpus, train the tokenizer on the training
text of all languages, and build `train/` and `valid/` shards. Built under a temporary name."""

from __future__ import annotations

import logging
from pathlib import Path

from syncmod.data.lines import Problems
from syncmod.data.mono import read_mono
from syncmod.data.parallel import read_parallel
from syncmod.data.shards import build_shards
from syncmod.data.tokenizer import load_tokenizer, train_tokenizer
from syncmod.errors import InputError
from syncmod.io import atomic_dir

log = logging.getLogger(__name__)


def prepare(out: str | Path, parallel: list[str], mono: list[str], valid_parallel: list[str], valid_mono: list[str],
            kind: str = "sentencepiece", sp_model: str = "bpe", vocab_size: int = 4000) -> Path:
    if not parallel and not mono:
        raise InputError.at("data prepare", "no training corpora", "give --world DIR, or --parallel / --mono files")
    problems = Problems()
    langs: set[str] = set()
    for spec in [*parallel, *valid_parallel]:
        for ex in read_parallel(spec, problems):
            langs.update(ex.texts)
    for spec in [*mono, *valid_mono]:
        for lang, _ in read_mono(spec, problems):
            langs.add(lang)
    problems.raise_if_any()

    def texts():
        scratch = Problems()
        for spec in parallel:
            for ex in read_parallel(spec, scratch):
                yield from ex.texts.values()
        for spec in mono:
            for _, t in read_mono(spec, scratch):
                yield t

    with atomic_dir(out) as tmp:
        train_tokenizer(texts(), langs, tmp / "tokenizer", kind=kind, vocab_size=vocab_size, sp_model=sp_model)
        tok = load_tokenizer(tmp / "tokenizer")
        build_shards(tok, tmp / "train", parallel=parallel, mono=mono)
        build_shards(tok, tmp / "valid", parallel=valid_parallel, mono=valid_mono)
    log.info("prepared %s (%d languages)", out, len(langs))
    return Path(out)
