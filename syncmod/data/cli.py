"""`syncmod data ...`: generate, import, validate, inspect corpora; train the tokenizer; build shards.

Each subcommand is a function over a dataclass of options (see `syncmod.cli`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from syncmod.config import at_least
from syncmod.data.synth.world import WorldConfig

log = logging.getLogger(__name__)


@dataclass
class SynthOut:
    """Where the synthetic world goes."""

    out: str = "runs/world"
    """Output directory."""


def synth(config: WorldConfig, args: SynthOut) -> int:
    """Generate the synthetic world (a YAML of WorldConfig keys and/or `--key=value` options)."""
    from syncmod.data.synth.world import generate
    from syncmod.io import claim_output

    with claim_output(args.out, "world"):
        generate(config, args.out)
    print(args.out)
    return 0


@dataclass
class CorporaArgs:
    """Corpora to check."""

    paths: list[str] = field(metadata={"positional": True})
    """Corpus files or directories (hf:NAME for a hub dataset)."""


def validate(args: CorporaArgs) -> int:
    """Check corpora; one line per problem, exit 2 on any."""
    for s in _validated(args.paths):
        print(f"{s.path}: ok ({s.kind})")
    return 0


def inspect(args: CorporaArgs) -> int:
    """Counts, lengths, examples, and sync points of corpora."""
    from syncmod.data.inspect import render

    for s in _validated(args.paths):
        print("\n".join(render(s)))
    return 0


def _validated(paths: list[str]) -> list:
    from syncmod.data.lines import Problems
    from syncmod.data.validate import validate as validate_corpus

    problems = Problems()
    summaries = [validate_corpus(p, problems) for p in paths]
    problems.raise_if_any()
    return summaries


@dataclass
class TokenizerArgs:
    """Train the study tokenizer."""

    paths: list[str] = field(metadata={"positional": True})
    """Corpora (parallel, monolingual, or a world directory)."""
    out: str
    """Output directory (loadable with AutoTokenizer.from_pretrained)."""
    kind: Literal["sentencepiece", "bpe"] = "sentencepiece"
    """SentencePiece, or `tokenizers` byte-level BPE."""
    sp_model: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece algorithm."""
    vocab_size: int = 4000
    """Vocabulary size."""
    max_sentences: int = 400_000
    """Reservoir sample size for training."""

    def __post_init__(self) -> None:
        at_least(self, 1, "vocab_size", "max_sentences")


def tokenizer(args: TokenizerArgs) -> int:
    """Train the study tokenizer over all languages."""
    from syncmod.data.tokenizer import train_tokenizer
    from syncmod.io import claim_output

    with claim_output(args.out, "tokenizer"):
        texts, langs = _texts(args.paths)
        train_tokenizer(texts(), langs, args.out, kind=args.kind, vocab_size=args.vocab_size,
                        max_sentences=args.max_sentences, sp_model=args.sp_model)
    print(args.out)
    return 0


def _texts(paths: list[str]):
    """Validate the corpora, then return (a re-iterable text source, the set of languages)."""
    from syncmod.data.lines import Problems
    from syncmod.data.prepare import corpus_texts
    from syncmod.data.validate import validate

    problems = Problems()
    summaries = [validate(p, problems) for p in paths]
    problems.raise_if_any()
    leaves = [p for s in summaries for p in ([s] if not s.parts else _leaves(s))]
    parallel = [p.path for p in leaves if p.kind == "parallel"]
    mono = [p.path for p in leaves if p.kind == "mono"]
    langs = {lang for p in leaves for lang in p.units}
    return (lambda: corpus_texts(parallel, mono)), langs


def _leaves(summary):
    for part in summary.parts:
        yield from (_leaves(part) if part.parts else [part])


@dataclass
class ShardsArgs:
    """Pre-tokenize corpora."""

    tokenizer: str
    """Tokenizer directory (`syncmod data tokenizer`)."""
    out: str
    """Output directory."""
    parallel: list[str] = field(default_factory=list)
    """Parallel corpora, N-way or pairwise (corpora with the same languages are concatenated)."""
    mono: list[str] = field(default_factory=list)
    """Monolingual corpora."""
    limit: int | None = None
    """At most this many units per corpus."""
    workers: int = 0
    """Tokenizer worker processes (0: one per core; 1: this process only). The shards are the same bytes."""

    def __post_init__(self) -> None:
        at_least(self, 1, "limit")
        at_least(self, 0, "workers")


def shards(args: ShardsArgs) -> int:
    """Pre-tokenize corpora into memory-mapped shards."""
    from syncmod.data.shard_build import build_shards
    from syncmod.data.tokenizer import load_tokenizer
    from syncmod.io import claim_output

    with claim_output(args.out, "shards"):
        tok = load_tokenizer(args.tokenizer)
        t0 = time.perf_counter()
        build_shards(tok, args.out, parallel=args.parallel, mono=args.mono, limit=args.limit, workers=args.workers)
    log.info("shards built in %.1fs", time.perf_counter() - t0)
    print(args.out)
    return 0


@dataclass
class PrepareArgs:
    """Tokenizer + train/valid shards under one root."""

    out: str
    """The data root (what `syncmod pretrain` reads as data.root)."""
    world: str | None = None
    """A synthetic world directory (from `syncmod data synth`)."""
    parallel: list[str] = field(default_factory=list)
    """Parallel training corpora, each N-way or pairwise (e.g. en-de.jsonl en-cs.jsonl): the pairs they connect
    are the pair graph of synchronous steps."""
    mono: list[str] = field(default_factory=list)
    """Monolingual training corpora."""
    valid_parallel: list[str] = field(default_factory=list)
    """Held-out parallel corpora."""
    valid_mono: list[str] = field(default_factory=list)
    """Held-out monolingual corpora."""
    kind: Literal["sentencepiece", "bpe"] = "sentencepiece"
    """SentencePiece, or `tokenizers` byte-level BPE."""
    sp_model: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece algorithm."""
    vocab_size: int = 4000
    """Vocabulary size."""
    languages: list[str] | None = None
    """A subset of an N-way corpus, e.g. `en,es,fr`."""
    holdout: int = 0
    """Last N units of each parallel corpus -> valid split (at most a tenth of a corpus)."""
    max_units: int | None = None
    """Use at most this many units of each parallel corpus."""
    mono_from_parallel: bool = False
    """Each parallel side is monolingual text too."""
    mono_parallel: list[str] = field(default_factory=list)
    """Parallel corpora used only as monolingual text of the chosen --languages (e.g. pairwise en-xx catalogs
    next to an N-way corpus); repeated texts are kept once."""
    workers: int = 0
    """Tokenizer worker processes (0: one per core; 1: this process only). The shards are the same bytes."""
    tokenizer: str | None = None
    """Use this checkpoint's tokenizer (a Hugging Face model directory, or hf:NAME) as is instead of training
    one, for continued pre-training (`model.init_from`); only `<lang_xx>` tags are added."""

    def __post_init__(self) -> None:
        at_least(self, 1, "vocab_size", "max_units")
        at_least(self, 0, "holdout", "workers")


def prepare(args: PrepareArgs) -> int:
    """Tokenizer + train/valid shards under one root: what `syncmod pretrain` reads."""
    from syncmod.data.prepare import prepare as prepare_root
    from syncmod.io import claim_output

    if args.world:
        w = Path(args.world)
        train_par, valid_par = [str(w / "parallel/train.jsonl")], [str(w / "parallel/valid.jsonl")]
        train_mono = sorted(str(p) for p in (w / "mono").glob("train.*.txt"))
        valid_mono = sorted(str(p) for p in (w / "mono").glob("valid.*.txt"))
    else:
        train_par, valid_par = args.parallel, args.valid_parallel
        train_mono, valid_mono = args.mono, args.valid_mono
    with claim_output(args.out, "data"):
        prepare_root(args.out, train_par, train_mono, valid_par, valid_mono, kind=args.kind, sp_model=args.sp_model,
                     vocab_size=args.vocab_size, languages=args.languages, holdout=args.holdout,
                     mono_from_parallel=args.mono_from_parallel, max_units=args.max_units,
                     mono_parallel=args.mono_parallel, workers=args.workers, tokenizer=args.tokenizer)
    print(args.out)
    return 0


@dataclass
class TaskArgs:
    """A parallel classify task from a labelled parallel corpus."""

    corpus: str = field(metadata={"positional": True})
    """N-way JSONL with a label field, e.g. ../shared/data/bible/bible.jsonl.gz."""
    label: str
    """The label field, e.g. genre."""
    languages: list[str]
    """Languages, e.g. `en,es,fr,it`."""
    out: str
    """Output task directory."""
    name: str | None = None
    """Task name (default: the label field)."""
    train: int = 2000
    """Training examples per language."""
    dev: int = 300
    """Dev examples per language."""
    test: int = 1000
    """Test examples per language."""
    seed: int = 0
    """Seed of the split."""

    def __post_init__(self) -> None:
        at_least(self, 1, "train", "dev", "test")


def task_from_parallel(args: TaskArgs) -> int:
    """A parallel classify task from a labelled parallel corpus."""
    from syncmod.data.task_build import task_from_parallel as build
    from syncmod.io import claim_output

    with claim_output(args.out, "task"):
        build(args.corpus, args.label, args.languages, args.out, args.name or args.label,
              args.train, args.dev, args.test, args.seed)
    print(args.out)
    return 0


@dataclass
class PairsTaskArgs:
    """A parallel classify task from pairwise corpora that share a pivot language (see syncmod.data.task_pairs)."""

    corpora: list[str] = field(metadata={"positional": True})
    """Pairwise JSONL corpora, e.g. ../shared/data/gettext/en-de.jsonl.gz en-cs.jsonl.gz ..."""
    label: str
    """The label field of the lines, e.g. source."""
    out: str
    """Output task directory."""
    rest: str | None = None
    """Also write the corpora without the task's pivot texts here (shuffled), to pre-train on."""
    pivot: str = "en"
    """The language every corpus shares; its text joins the corpora."""
    label_pattern: str | None = None
    """The label is the first match of this regular expression in the field, e.g. `^[^/]+` (the package)."""
    top_labels: int = 0
    """Keep the units of the most frequent labels only (0: all)."""
    min_words: int = 0
    """Keep pivot texts of at least this many words."""
    name: str | None = None
    """Task name (default: the label field)."""
    train: int = 2000
    """Training examples per language."""
    dev: int = 300
    """Dev examples per language."""
    test: int = 1000
    """Test examples per language."""
    seed: int = 0
    """Seed of the selection, the split and the order of --rest."""

    def __post_init__(self) -> None:
        at_least(self, 1, "train", "dev", "test")
        at_least(self, 0, "top_labels", "min_words")


def task_from_pairs(args: PairsTaskArgs) -> int:
    """A parallel classify task from pairwise corpora joined on their pivot text (+ the corpora without it)."""
    import contextlib

    from syncmod.data.task_pairs import task_from_pairs as build
    from syncmod.io import claim_output

    with claim_output(args.out, "task"), (claim_output(args.rest, "corpora") if args.rest
                                          else contextlib.nullcontext()):
        build(args.corpora, args.label, args.out, args.rest, pivot=args.pivot, name=args.name,
              label_pattern=args.label_pattern, top_labels=args.top_labels, min_words=args.min_words,
              sizes=(args.train, args.dev, args.test), seed=args.seed)
    print(args.out)
    return 0


@dataclass
class GettextArgs:
    """gettext catalogs to import."""

    roots: list[str] = field(metadata={"positional": True})
    """Directories to search, e.g. /usr/share/locale."""
    lang: str
    """The target language of the catalogs, e.g. de."""
    out: str
    """Output en-XX parallel JSONL."""


def import_gettext(args: GettextArgs) -> int:
    """gettext catalogs (.po/.mo) -> en-XX parallel JSONL."""
    from syncmod.data.gettext import import_gettext as run_import

    run_import(args.roots, args.lang, args.out)
    print(args.out)
    return 0
