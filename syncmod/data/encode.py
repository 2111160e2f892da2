"""Tokenizing shard chunks fast, in this process or in worker processes, with the same ids either way.

The saved fast tokenizer (`tokenizer.json`) is the reference. When the directory also holds the
SentencePiece model it was converted from, SentencePiece's own batched encoder gives the same ids about
3x faster; it is used only after the main process checked, on tricky strings and on the first chunk of
the corpus, that both give identical ids. Character offsets (needed only to map annotated word cuts, or
a sentence end followed by whitespace, to tokens) always come from the fast tokenizer.

Workers are forked (they re-import nothing), and ignore SIGINT: Ctrl-C is handled once, by the
main process, which cancels what is queued and removes its temporary output.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
PROBE = [" leading space", "two  spaces", "tab\there", "new\nline", "Grüße aus Köln", "日本語のテキスト", "emoji 🎉",
         "trailing ", "x", "%s file(s) <b>bold</b> {0}", "\u00a0nbsp\u2009thin"]


@dataclass(frozen=True)
class Plan:
    """What a worker needs to encode exactly like the main process (plain data: it crosses processes)."""

    tokenizer_json: str
    """The fast tokenizer file: offsets, and ids when `sp_model` is None."""
    sp_model: str | None
    """A SentencePiece model checked to give the fast tokenizer's ids."""
    threads: int = 1
    """SentencePiece encoding threads (in-process encoding uses every core; each worker one)."""


class Encoder:
    """Ids (without special tokens) and character offsets of batches of texts."""

    def __init__(self, plan: Plan):
        from tokenizers import Tokenizer

        self.plan, self.repeats = plan, {}  # repeats: syncmod.data.repeats
        self.fast = Tokenizer.from_file(plan.tokenizer_json)
        self.sp = None
        if plan.sp_model:
            import sentencepiece as spm

            self.sp = spm.SentencePieceProcessor(model_file=plan.sp_model)

    def ids(self, texts: list[str]) -> list[list[int]]:
        if self.sp is not None:
            return self.sp.encode(texts, num_threads=self.plan.threads)
        return [e.ids for e in self.fast.encode_batch_fast(texts, add_special_tokens=False)]

    def offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        return [e.offsets for e in self.fast.encode_batch(texts, add_special_tokens=False)]


class TokEncoder:
    """The same interface over a loaded `transformers` tokenizer (one not saved in a directory)."""

    def __init__(self, tok):
        self.tok, self.repeats = tok, {}

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=False)["input_ids"]

    def offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        return self.tok(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


def make_plan(tok, sample: list[str], threads: int) -> Plan | None:
    """The plan for `tok` (a tokenizer loaded from a directory), or None when it has no `tokenizer.json`
    (then the caller encodes in-process with `tok` itself). SentencePiece is used only if it agrees on
    `sample` + PROBE."""
    directory = Path(getattr(tok, "name_or_path", "") or ".")
    if not (directory / "tokenizer.json").is_file():
        return None
    plan = Plan(str(directory / "tokenizer.json"), None, threads)
    model = directory / "tokenizer.model"
    if model.is_file():
        candidate = Plan(plan.tokenizer_json, str(model), threads)
        texts = [*PROBE, *sample]
        fast = Encoder(plan).ids(texts)
        if Encoder(candidate).ids(texts) == fast:
            return candidate
        log.info("SentencePiece ids differ from %s; encoding with the fast tokenizer", plan.tokenizer_json)
    return plan


def sequences(ids: list[list[int]], tag: int, eos: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated [tag] ids [eos] of every text, and each sequence's length."""
    lengths = np.fromiter(map(len, ids), np.int64, len(ids)) + 2
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]) if len(ids) else 0, dtype)
    content = np.ones(len(out), bool)
    content[starts], content[ends - 1] = False, False
    out[starts], out[ends - 1] = tag, eos
    out[content] = np.fromiter(chain.from_iterable(ids), dtype, int(lengths.sum()) - 2 * len(ids))
    return out, lengths


# -- worker processes ---------------------------------------------------------------------------------------
_ENCODER: Encoder | None = None


def _init(plan: Plan) -> None:
    global _ENCODER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process alone handles Ctrl-C
    _ENCODER = Encoder(plan)


def _call(fn: Callable, item):
    return fn(_ENCODER, item)


def ordered_map(fn: Callable, items: Iterable, plan: Plan | None, workers: int, inline) -> Iterator:
    """`fn(encoder, item)` for each item, in order. With `workers` > 1 (and a plan) the calls run in that many
    processes, at most two items per worker in flight, so memory stays flat however long `items` is; else
    in this process with the `inline` encoder."""
    if workers <= 1 or plan is None:
        for item in items:
            yield fn(inline, item)
        return
    # fork: nothing is re-imported (and a caller's script needs no __main__ guard). The fast tokenizer's thread
    # pool must not be used in a forked child; saying so up front also keeps tokenizers from warning about it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init,
                               initargs=(plan,))
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(_call, fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
