"""`syncmod data ...`: generate, import, validate, inspect corpora; train the tokenizer; build shards."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from syncmod.errors import InputError

log = logging.getLogger(__name__)


def _synth(argv: list[str]) -> int:
    from syncmod.config import parse
    from syncmod.data.synth.world import WorldConfig, generate

    config, extra = parse(WorldConfig, argv, "syncmod data synth",
                          extra={"--out": {"default": "runs/world", "help": "output directory"}})
    generate(config, extra["out"])
    print(extra["out"])
    return 0


def _validate(args: argparse.Namespace) -> int:
    from syncmod.data.inspect import render
    from syncmod.data.lines import Problems
    from syncmod.data.validate import validate

    problems = Problems()
    summaries = [validate(p, problems) for p in args.paths]
    problems.raise_if_any()
    if args.command == "inspect":
        for s in summaries:
            print("\n".join(render(s)))
    else:
        for s in summaries:
            print(f"{s.path}: ok ({s.kind})")
    return 0


def _tokenizer(args: argparse.Namespace) -> int:
    from syncmod.data.tokenizer import train_tokenizer

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


def _shards(args: argparse.Namespace) -> int:
    from syncmod.data.shards import build_shards
    from syncmod.data.tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    t0 = time.perf_counter()
    build_shards(tok, args.out, parallel=args.parallel or [], mono=args.mono or [], limit=args.limit)
    log.info("shards built in %.1fs", time.perf_counter() - t0)
    print(args.out)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """tokenizer/ + train/ + valid/ shards under one root: what `syncmod pretrain` reads."""
    from syncmod.data.prepare import prepare

    if args.world:
        w = Path(args.world)
        train_par, valid_par = [str(w / "parallel/train.jsonl")], [str(w / "parallel/valid.jsonl")]
        train_mono = sorted(str(p) for p in (w / "mono").glob("train.*.txt"))
        valid_mono = sorted(str(p) for p in (w / "mono").glob("valid.*.txt"))
    else:
        train_par, valid_par = args.parallel or [], args.valid_parallel or []
        train_mono, valid_mono = args.mono or [], args.valid_mono or []
    prepare(args.out, train_par, train_mono, valid_par, valid_mono, kind=args.kind, sp_model=args.sp_model,
            vocab_size=args.vocab_size, languages=args.languages.split(",") if args.languages else None,
            holdout=args.holdout, mono_from_parallel=args.mono_from_parallel, max_units=args.max_units,
            mono_parallel=args.mono_parallel or [])
    print(args.out)
    return 0


def _task(args: argparse.Namespace) -> int:
    from syncmod.data.task_build import task_from_parallel

    task_from_parallel(args.corpus, args.label, args.languages.split(","), args.out, args.name or args.label,
                       args.train, args.dev, args.test, args.seed)
    print(args.out)
    return 0


def _gettext(args: argparse.Namespace) -> int:
    from syncmod.data.gettext import import_gettext

    import_gettext(args.roots, args.lang, args.out)
    print(args.out)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["synth"]:
        return _synth(argv[1:])
    parser = argparse.ArgumentParser(prog="syncmod data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("synth", help="generate the synthetic world (see `syncmod data synth --help`)")
    for name, text in [("validate", "check corpora; one line per problem, exit 2 on any"),
                       ("inspect", "counts, lengths, examples, and sync points of corpora")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("paths", nargs="+", help="corpus files or directories (hf:NAME for a hub dataset)")
    p = sub.add_parser("tokenizer", help="train the study tokenizer over all languages")
    p.add_argument("paths", nargs="+", help="corpora (parallel, monolingual, or a world directory)")
    p.add_argument("--out", required=True)
    p.add_argument("--kind", choices=["sentencepiece", "bpe"], default="sentencepiece")
    p.add_argument("--sp-model", choices=["bpe", "unigram"], default="bpe", help="SentencePiece algorithm")
    p.add_argument("--vocab-size", type=int, default=4000)
    p.add_argument("--max-sentences", type=int, default=400_000, help="reservoir sample size for training")
    p = sub.add_parser("shards", help="pre-tokenize corpora into memory-mapped shards")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--parallel", nargs="*", help="parallel corpora (same languages)")
    p.add_argument("--mono", nargs="*", help="monolingual corpora")
    p.add_argument("--limit", type=int, default=None, help="at most this many units per corpus")
    p.add_argument("--out", required=True)
    p = sub.add_parser("prepare", help="tokenizer + train/valid shards under one root (what pretrain reads)")
    p.add_argument("--world", help="a synthetic world directory (from `syncmod data synth`)")
    p.add_argument("--parallel", nargs="*")
    p.add_argument("--mono", nargs="*")
    p.add_argument("--valid-parallel", nargs="*")
    p.add_argument("--valid-mono", nargs="*")
    p.add_argument("--kind", choices=["sentencepiece", "bpe"], default="sentencepiece")
    p.add_argument("--sp-model", choices=["bpe", "unigram"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=4000)
    p.add_argument("--languages", help="comma-separated subset of an N-way corpus, e.g. en,es,fr")
    p.add_argument("--holdout", type=int, default=0, help="last N units of each parallel corpus -> valid split "
                   "(at most a tenth of a corpus)")
    p.add_argument("--max-units", type=int, default=None, help="use at most this many units of each parallel corpus")
    p.add_argument("--mono-from-parallel", action="store_true", help="each parallel side is monolingual text too")
    p.add_argument("--mono-parallel", nargs="*", help="parallel corpora used only as monolingual text of the chosen "
                   "--languages (e.g. pairwise en-xx catalogs next to an N-way corpus); repeated texts are kept once")
    p.add_argument("--out", required=True)
    p = sub.add_parser("task-from-parallel", help="a parallel classify task from a labelled parallel corpus")
    p.add_argument("corpus", help="N-way JSONL with a label field, e.g. ../shared/data/bible/bible.jsonl.gz")
    p.add_argument("--label", required=True, help="the label field, e.g. genre")
    p.add_argument("--languages", required=True, help="comma-separated languages, e.g. en,es,fr,it")
    p.add_argument("--name", default=None)
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--dev", type=int, default=300)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("import-gettext", help="gettext catalogs (.po/.mo) -> en-XX parallel JSONL")
    p.add_argument("roots", nargs="+", help="directories to search, e.g. /usr/share/locale")
    p.add_argument("--lang", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    handler = {"validate": _validate, "inspect": _validate, "tokenizer": _tokenizer, "shards": _shards,
               "import-gettext": _gettext, "prepare": _prepare,
               "task-from-parallel": _task}[args.command]
    if args.command in ("tokenizer", "shards", "prepare") and Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError.at(args.out, "exists and is not a directory", "choose another --out")
    return handler(args)
