"""Building shards (the layout is described in `syncmod.data.shards`): tokenized chunk by chunk in worker
processes as the corpora stream in, written in corpus order into a temporary directory, then renamed."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np

from syncmod.data.encode import Encoder, Plan, TokEncoder, make_plan, ordered_map, sequences
from syncmod.data.lines import Problems
from syncmod.data.mono import read_mono
from syncmod.data.parallel import ParallelExample, read_parallel
from syncmod.data.raw_jsonl import RawChunk, is_raw_jsonl, raw_chunks
from syncmod.data.raw_jsonl import payload as raw_payload
from syncmod.data.repeats import corpus_languages, encode_repeated, shared_languages
from syncmod.data.scan import scan_corpora
from syncmod.data.tokenizer import lang_tag
from syncmod.errors import InputError
from syncmod.io import atomic_dir, write_json

log = logging.getLogger(__name__)
CHUNK = 4096  # units or documents per piece of work: large enough to amortise sending it to a worker


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

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        start = self.tokens.n
        self.tokens.write(tokens)
        self.index.write(start + np.cumsum(lengths))

    def close(self) -> None:
        self.tokens.close()
        self.index.close()


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size < 2**16 else np.uint32)


def word_ends_to_tokens(text: str, offsets: list[tuple[int, int]], words: Iterable[int]) -> list[int]:
    """Token position (in [<lang>] + tokens) of the last sub-token of each word count in `words`."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]  # words as `str.split()` sees them
    starts = np.fromiter((s for s, _ in offsets), np.int64, len(offsets))
    # +1 for the language tag at position 0; the last token that starts before the word's end.
    return [int(np.searchsorted(starts, ends[a - 1], side="left")) for a in words]


@dataclass(frozen=True)
class _Spec:
    """What the chunk encoders need besides the texts (plain data: it is sent to worker processes)."""

    tags: dict[str, int]
    eos: int
    dtype: str
    repeated: frozenset[str] = frozenset()
    """Languages of more than one parallel corpus: their texts are encoded once (`syncmod.data.repeats`)."""


def _encode_mono(spec: _Spec, enc, chunk: list[tuple[str, str]]) -> dict[str, tuple[np.ndarray, ...]]:
    """lang -> (tokens, lengths, UTF-8 bytes of each document) for a chunk of (lang, text)."""
    by_lang: dict[str, list[str]] = {}
    for lang, text in chunk:
        by_lang.setdefault(lang, []).append(text)
    out = {}
    for lang, texts in by_lang.items():
        tokens, lengths = sequences(enc.ids(texts), spec.tags[lang], spec.eos, np.dtype(spec.dtype))
        out[lang] = (tokens, lengths, np.fromiter((len(t.encode()) for t in texts), np.int64, len(texts)))
    return out


def _encode_parallel(spec: _Spec, enc, chunk: dict) -> dict:
    """Sequences per language and token cuts per language pair for a chunk of parallel units
    (`_payload`: texts by language, and the units with annotated cuts)."""
    if isinstance(chunk, RawChunk):
        chunk = raw_payload(chunk)  # parsed here, in the worker
    langs, texts, annotated = chunk["languages"], chunk["texts"], chunk["annotated"]
    seqs, offsets = {}, {}
    for lang in langs:
        ids = encode_repeated(enc, texts[lang], spec.dtype) if lang in spec.repeated else enc.ids(texts[lang])
        seqs[lang] = sequences(ids, spec.tags[lang], spec.eos, np.dtype(spec.dtype))
        # Offsets only where the sentence-end shortcut below does not hold: annotated cuts, trailing space.
        need = [k for k, t in enumerate(texts[lang]) if k in annotated or t[-1:].isspace()]
        offsets[lang] = dict(zip(need, enc.offsets([texts[lang][k] for k in need]), strict=True))
    cuts = {}
    for i, a in enumerate(langs):
        for b in langs[i + 1:]:
            cuts[(a, b)] = _pair_cuts(chunk, a, b, seqs, offsets)
    return {"languages": langs, "seqs": seqs, "cuts": cuts, "annotated": len(annotated)}


def _pair_cuts(chunk: dict, a: str, b: str, seqs: dict, offsets: dict) -> tuple[np.ndarray, np.ndarray]:
    """Flat (a, b) token cuts of every unit, and each unit's number of cuts. Most units have one cut, the
    sentence ends at (sequence length - 2) on both sides (`_end`); only the others are mapped one by one."""
    rows = np.stack([seqs[a][1] - 2, seqs[b][1] - 2], axis=1).astype(np.int32)
    counts = np.ones(len(rows), np.int64)
    pieces, prev = [], 0
    for k in sorted({*chunk["annotated"], *offsets[a], *offsets[b]}):
        unit = np.asarray(_unit_cuts(chunk, a, b, seqs, offsets, k), np.int32).reshape(-1, 2)
        pieces += [rows[prev:k], unit]
        counts[k], prev = len(unit), k + 1
    return np.concatenate([*pieces, rows[prev:]]).reshape(-1), counts


def _payload(chunk: list[ParallelExample]) -> dict:
    """What a worker needs of a chunk (lists of strings pickle much faster than example objects)."""
    langs = list(chunk[0].texts)
    return {"languages": langs, "texts": {lang: [ex.texts[lang] for ex in chunk] for lang in langs},
            "annotated": {k: ex for k, ex in enumerate(chunk) if ex.sync}}


def _unit_cuts(chunk: dict, a: str, b: str, seqs: dict, offsets: dict, k: int) -> list[tuple[int, int]]:
    texts = chunk["texts"]
    if k in chunk["annotated"]:
        cuts = chunk["annotated"][k].cuts(a, b)
        pa = word_ends_to_tokens(texts[a][k], offsets[a][k], [x for x, _ in cuts])
        pb = word_ends_to_tokens(texts[b][k], offsets[b][k], [y for _, y in cuts])
        return list(zip(pa, pb, strict=True))
    return [(_end(texts, seqs, offsets, a, k), _end(texts, seqs, offsets, b, k))]


def _end(texts: dict, seqs: dict, offsets: dict, lang: str, k: int) -> int:
    """Token position of the sentence end (the last word's last sub-token) of unit k's side in `lang`."""
    if k in offsets[lang]:
        return word_ends_to_tokens(texts[lang][k], offsets[lang][k], [len(texts[lang][k].split())])[0]
    # No trailing space: every token starts before the text's end, so it is the last content token, at
    # position (sequence length - 2) after the tag.
    return int(seqs[lang][1][k]) - 2


def build_shards(tok, out_dir: str | Path, parallel: list[str] = (), mono: list[str] = (),
                 limit: int | None = None, workers: int = 0, validate: bool = True,
                 total: int | None = None) -> Path:
    """Validate every input (unless the caller did: `validate=False`), then tokenize it into `out_dir`, chunk
    by chunk as it streams in (`workers` processes; 0 = one per core, 1 = this process alone). `total` units
    and documents (counted when validating) give the progress bar its ETA. Returns the directory."""
    problems = Problems()
    if validate:
        total = _validate(parallel, mono, limit, problems, workers)
    dtype = _dtype(len(tok))
    meta: dict = {"dtype": dtype.name, "vocab_size": len(tok), "eos_id": tok.eos_token_id,
                  "pad_id": tok.pad_token_id, "mono": {}, "parallel": None}
    first = [t for _, t in islice(_mono_and_parallel_texts(parallel, mono), 2000)]
    workers = workers or os.cpu_count() or 1
    if total is not None and total <= CHUNK:
        workers = 1  # one chunk: starting processes would cost more than they save
    plan = make_plan(tok, first, threads=1)
    inline = Encoder(Plan(plan.tokenizer_json, plan.sp_model, os.cpu_count() or 1)) if plan else TokEncoder(tok)
    spec = _Spec({lang: tok.convert_tokens_to_ids(lang_tag(lang)) for lang in _tag_languages(tok)}, tok.eos_token_id,
                 dtype.name, shared_languages(corpus_languages(parallel, lambda p: read_parallel(p, Problems()))))
    run = _Run(spec, plan, workers, inline, _progress(total, out_dir))
    with atomic_dir(out_dir) as tmp, run.bar:
        if parallel:
            meta["parallel"] = _build_parallel(run, tmp, parallel, dtype, limit, problems)
        meta["mono"] = _build_mono(run, tmp, mono, dtype, limit, problems)
        write_json(tmp / "meta.json", meta)
    log.info("built shards in %s (%d tokens, %.0f tokens/s)", out_dir, run.tokens, run.rate())
    return Path(out_dir)
class _Run:
    """One build's encoding setup, progress bar, and token count."""

    def __init__(self, spec: _Spec, plan: Plan | None, workers: int, inline, bar):
        self.spec, self.plan, self.workers, self.inline, self.bar = spec, plan, workers, inline, bar
        self.tokens, self.t0 = 0, time.perf_counter()

    def map(self, fn, chunks: Iterator) -> Iterator:
        return ordered_map(partial(fn, self.spec), chunks, self.plan, self.workers, self.inline)

    def advance(self, items: int, tokens: int) -> None:
        self.tokens += tokens
        self.bar.update(items)
        self.bar.set_postfix_str(f"{self.rate() / 1e6:.2f}M tokens/s", refresh=False)

    def rate(self) -> float:
        return self.tokens / max(time.perf_counter() - self.t0, 1e-9)


def _progress(total: int | None, out_dir: str | Path):
    """A progress bar on stderr (units and documents, ETA, tokens/s) when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=f"shards {Path(out_dir).name}", unit="unit", dynamic_ncols=True,
                disable=not os.isatty(2) and os.environ.get("SYNCMOD_PROGRESS") != "1")


def _validate(parallel: list[str], mono: list[str], limit: int | None, problems: Problems, workers: int) -> int:
    """Read every input once (the files at once, in `workers` processes), recording problems; the number of units
    and documents that will be built (with a limit, only the units that will be used are read)."""
    jobs = [*(("parallel", spec) for spec in parallel), *(("mono", spec) for spec in mono)]
    n = sum(scan.units for scan in scan_corpora(jobs, problems, limit, workers))
    problems.raise_if_any()
    return n


def _mono_and_parallel_texts(parallel: list[str], mono: list[str]) -> Iterator[tuple[str, str]]:
    scratch = Problems()
    for spec in parallel:
        for ex in read_parallel(spec, scratch):
            yield from ex.texts.items()
    for spec in mono:
        yield from read_mono(spec, scratch)


def _tag_languages(tok) -> list[str]:
    return [t[6:-1] for t in tok.all_special_tokens if t.startswith("<lang_") and t.endswith(">")]


def _check_tags(spec: _Spec, langs: Iterable[str]) -> None:
    missing = [lang for lang in langs if lang not in spec.tags]
    if missing:
        raise InputError.at("tokenizer", f"has no tag for language {missing[0]!r}",
                            "train the tokenizer on every language of the study")


def _chunks(it: Iterator, limit: int | None) -> Iterator[list]:
    it = islice(it, limit) if limit else it
    while chunk := list(islice(it, CHUNK)):
        yield chunk


def _parallel_chunks(run: _Run, specs: list[str], limit: int | None, problems: Problems) -> Iterator[list]:
    for spec in specs:
        if is_raw_jsonl(str(spec)):  # validated JSONL: the workers parse it
            for raw in raw_chunks(str(spec), CHUNK, limit):
                _check_tags(run.spec, raw.languages)
                yield raw
            continue
        for chunk in _chunks(read_parallel(spec, problems), limit):
            _check_tags(run.spec, chunk[0].texts)
            yield _payload(chunk)


def _build_parallel(run: _Run, tmp: Path, specs: list[str], dtype: np.dtype, limit: int | None,
                    problems: Problems) -> dict:
    """Corpora with the same languages are concatenated into one group of files (`par.*`, the first group's
    languages; `par1.*`, `par2.*`, ... the others, e.g. one per en-xx pairwise corpus)."""
    groups: dict[frozenset, dict] = {}
    for res in run.map(_encode_parallel, _parallel_chunks(run, specs, limit, problems)):
        key = frozenset(res["languages"])
        if key not in groups:
            groups[key] = _Group(tmp, "par" if not groups else f"par{len(groups)}", res["languages"], dtype)
        groups[key].add(res)
        run.advance(len(res["seqs"][res["languages"][0]][1]), sum(len(t) for t, _ in res["seqs"].values()))
    problems.raise_if_any()
    described = [g.close() for g in groups.values()]
    return {**described[0], "groups": described} if described else None


class _Group:
    """The files of one group of parallel corpora that share their languages."""

    def __init__(self, tmp: Path, prefix: str, langs: list[str], dtype: np.dtype):
        self.prefix, self.langs, self.units, self.annotated = prefix, langs, 0, 0
        self.writers = {lang: _SeqWriter(tmp, f"{prefix}.{lang}", dtype) for lang in langs}
        self.cut_writers = {}
        for i, a in enumerate(langs):
            for b in langs[i + 1:]:
                self.cut_writers[(a, b)] = (_Appender(tmp / f"{prefix}.{a}~{b}.cuts", np.int32),
                                            _Appender(tmp / f"{prefix}.{a}~{b}.cindex", np.int64))
                self.cut_writers[(a, b)][1].write(np.zeros(1, np.int64))

    def add(self, res: dict) -> None:
        for lang, (tokens, lengths) in res["seqs"].items():
            self.writers[lang].add(tokens, lengths)
        for (a, b), (cuts_w, index_w) in self.cut_writers.items():
            flat, counts = res["cuts"][(a, b)] if (a, b) in res["cuts"] else _swap(res["cuts"][(b, a)])
            index_w.write(cuts_w.n // 2 + np.cumsum(counts))
            cuts_w.write(flat)
        self.units += len(next(iter(res["seqs"].values()))[1])
        self.annotated += res["annotated"]

    def close(self) -> dict:
        for w in self.writers.values():
            w.close()
        for c, i in self.cut_writers.values():
            c.close()
            i.close()
        return {"prefix": self.prefix, "languages": self.langs, "units": self.units, "annotated": self.annotated > 0,
                "tokens": {lang: w.tokens.n for lang, w in self.writers.items()}}


def _swap(cuts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return cuts[0].reshape(-1, 2)[:, ::-1].reshape(-1), cuts[1]


def _build_mono(run: _Run, tmp: Path, specs: list[str], dtype: np.dtype, limit: int | None,
                problems: Problems) -> dict:
    writers: dict[str, tuple[_SeqWriter, _Appender]] = {}
    docs: dict[str, int] = {}
    sizes: dict[str, int] = {}

    def chunks() -> Iterator[list]:
        for spec in specs:
            for chunk in _chunks(read_mono(spec, problems), limit):
                _check_tags(run.spec, {lang for lang, _ in chunk})
                yield chunk

    for res in run.map(_encode_mono, chunks()):
        for lang, (tokens, lengths, nbytes) in res.items():
            if lang not in writers:
                writers[lang] = (_SeqWriter(tmp, f"mono.{lang}", dtype), _Appender(tmp / f"mono.{lang}.bytes", np.int64))
                docs[lang], sizes[lang] = 0, 0
            writers[lang][0].add(tokens, lengths)
            writers[lang][1].write(nbytes)
            docs[lang] += len(lengths)
            sizes[lang] += int(nbytes.sum())
        run.advance(sum(len(v[1]) for v in res.values()), sum(len(v[0]) for v in res.values()))
    problems.raise_if_any()
    meta = {}
    for lang, (seq, nbytes) in writers.items():
        seq.close()
        nbytes.close()
        meta[lang] = {"docs": docs[lang], "bytes": sizes[lang], "tokens": seq.tokens.n}
    return meta
