"""Prepare a data root for pre-training: validate every corpus, train the tokenizer on the training
text of all languages, and build `train/` and `valid/` shards. Built under a temporary name.

For real corpora without splits, `languages` keeps a subset of an N-way corpus, `holdout` moves the last
units of each parallel corpus (at most a tenth of it) to the validation split, `mono_from_parallel` uses each
parallel side as monolingual text of its language (one document per unit), and `mono_parallel` corpora
(e.g. pairwise en-xx catalogs beside an N-way corpus) are used only that way, each distinct text once.
Those derived corpora are written as files under `corpora/` first, so every later step reads ordinary files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from syncmod.data.lines import Problems
from syncmod.data.mono import read_mono
from syncmod.data.parallel import read_parallel
from syncmod.data.raw_jsonl import units
from syncmod.data.scan import map_files, scan_corpora
from syncmod.data.shard_build import build_shards
from syncmod.data.tokenizer import load_tokenizer, train_tokenizer
from syncmod.errors import InputError
from syncmod.io import atomic_dir

log = logging.getLogger(__name__)


def prepare(out: str | Path, parallel: list[str], mono: list[str], valid_parallel: list[str], valid_mono: list[str],
            kind: str = "sentencepiece", sp_model: str = "bpe", vocab_size: int = 4000,
            languages: list[str] | None = None, holdout: int = 0, mono_from_parallel: bool = False,
            max_units: int | None = None, mono_parallel: list[str] = (), workers: int = 0,
            tokenizer: str | None = None) -> Path:
    """Validate, train the tokenizer, build the shards (see the module docstring). `parallel` corpora may be
    N-way or pairwise (each distinct language set becomes one group of the pair graph); `workers` tokenizer
    processes (0: one per core, 1: this process only); `tokenizer`: a checkpoint (directory or `hf:NAME`)
    whose tokenizer is used instead of training one (`syncmod.data.tokenizer_from`)."""
    if not parallel and not mono and not mono_parallel:
        raise InputError.at("data prepare", "no training corpora", "give --world DIR, or --parallel / --mono files")
    problems = Problems()
    jobs = [*(("parallel", s) for s in [*parallel, *valid_parallel]), *(("mono", s) for s in [*mono, *valid_mono]),
            *(("parallel", s) for s in mono_parallel)]
    scans = dict(zip(jobs, scan_corpora(jobs, problems, workers=workers), strict=True))  # the files at once
    counts: dict[str, int] = {spec: scans[(kind, spec)].units for kind, spec in jobs[:len(jobs) - len(mono_parallel)]}
    for spec in [*parallel, *valid_parallel]:
        if scans[("parallel", spec)].units and languages:
            _check_languages(spec, set(scans[("parallel", spec)].first), languages, several=len(parallel) > 1)
    for spec in mono_parallel:
        have = scans[("parallel", spec)].languages
        if languages and have and not set(languages) & have:
            raise InputError.at(spec, f"has none of the languages {languages}", f"it has {sorted(have)}")
    problems.raise_if_any()

    with atomic_dir(out) as tmp:
        if languages or holdout or mono_from_parallel or max_units or mono_parallel:
            parallel, valid_parallel, mono, valid_mono = _derive(
                tmp / "corpora", parallel, valid_parallel, mono, valid_mono, counts, languages, holdout,
                mono_from_parallel, max_units, workers)
        if mono_parallel:
            mono = [*mono, *_sides(tmp / "corpora", mono_parallel, languages, max_units)]
        langs = _languages(parallel, mono)
        if tokenizer:
            from syncmod.data.tokenizer_from import from_checkpoint

            from_checkpoint(tokenizer, langs, tmp / "tokenizer")
        else:
            train_tokenizer(corpus_texts(parallel, mono), langs, tmp / "tokenizer", kind=kind, vocab_size=vocab_size,
                            sp_model=sp_model)
        tok = load_tokenizer(tmp / "tokenizer")
        for split, par, mon in (("train", parallel, mono), ("valid", valid_parallel, valid_mono)):
            # validated above: one reading pass per corpus here, counted for the progress bar's ETA
            total = sum(counts[p] if p in counts else _count_lines(p) for p in [*par, *mon])
            build_shards(tok, tmp / split, parallel=par, mono=mon, workers=workers, validate=False, total=total)
    log.info("prepared %s (%d languages)", out, len(langs))
    return Path(out)


def _check_languages(spec: str, have: set[str], languages: list[str], several: bool) -> None:
    """With one parallel corpus every chosen language must be in it; with several (e.g. pairwise en-xx
    corpora) each must hold two of them, and the chosen ones it has are kept."""
    missing = [lang for lang in languages if lang not in have]
    if missing and (not several or len(have & set(languages)) < 2):
        raise InputError.at(spec, f"has no language {missing[0]!r}", f"choose from {sorted(have)}")


def _count_lines(path: str) -> int:
    """Lines of a corpus file written under corpora/ (plain text: fast)."""
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _languages(parallel: list[str], mono: list[str]) -> set[str]:
    langs: set[str] = set()
    scratch = Problems()
    for spec in parallel:
        for ex in read_parallel(spec, scratch):
            langs.update(ex.texts)
            break  # every unit of a corpus has the same languages
    for spec in mono:
        langs.update(lang for lang, _ in read_mono(spec, scratch))
    return langs


def corpus_texts(parallel: list[str], mono: list[str]):
    """Every text of the (validated) corpora: each side of each parallel unit, each monolingual document."""
    scratch = Problems()
    for spec in parallel:
        for _, texts in units(spec):
            yield from texts.values()
    for spec in mono:
        for _, t in read_mono(spec, scratch):
            yield t


def _sides(directory: Path, specs: list[str], languages: list[str] | None, max_units: int | None) -> list[str]:
    """Each side of `specs` (in `languages`) as monolingual text, one file per language, repeated texts once."""
    directory.mkdir(parents=True, exist_ok=True)
    seen, handles = set(), {}
    for spec in specs:
        for k, (_, texts) in enumerate(units(spec)):
            if max_units is not None and k >= max_units:
                break
            for lang, text in texts.items():
                text = " ".join(text.split())
                if (languages and lang not in languages) or (lang, text) in seen:
                    continue
                seen.add((lang, text))
                if lang not in handles:
                    handles[lang] = open(directory / f"mono-extra.{lang}.txt", "w", encoding="utf-8")
                handles[lang].write(text + "\n")
    for h in handles.values():
        h.close()
    return [str(directory / f"mono-extra.{lang}.txt") for lang in sorted(handles)]


def _derive(directory: Path, parallel, valid_parallel, mono, valid_mono, counts, languages, holdout,
            mono_from_parallel, max_units, workers=0):
    """Write the selected / split / derived corpora as files; return the new file lists."""
    directory.mkdir(parents=True)
    split_files: dict[str, list[Path]] = {"train": [], "valid": []}
    jobs = []
    for i, spec in enumerate(parallel):
        keep = min(holdout, counts[spec] // 10)  # a small corpus (e.g. 31 UDHR articles) keeps most units for training
        n = counts[spec] if max_units is None else min(counts[spec], max_units + keep)
        jobs.append((spec, {split: directory / f"{split}.{i}.jsonl" for split in ("train", "valid")}, n, keep, languages))
    for _, paths in map_files(_split, jobs, workers):  # the corpora at once
        for split in ("train", "valid"):
            if paths[split].stat().st_size:
                split_files[split].append(paths[split])
    for spec in valid_parallel:
        split_files["valid"].append(Path(spec))
    new_mono, new_valid_mono = list(mono), list(valid_mono)
    if mono_from_parallel:
        for split, target in (("train", new_mono), ("valid", new_valid_mono)):
            handles = {}
            for path in split_files[split]:
                for _, texts in units(path):
                    for lang, text in texts.items():
                        if lang not in handles:
                            handles[lang] = open(directory / f"mono-{split}.{lang}.txt", "w", encoding="utf-8")
                            target.append(str(directory / f"mono-{split}.{lang}.txt"))
                        handles[lang].write(" ".join(text.split()) + "\n")
            for h in handles.values():
                h.close()
    return ([str(p) for p in split_files["train"]], [str(p) for p in split_files["valid"]], new_mono, new_valid_mono)


_quote = json.encoder.encode_basestring  # a JSON string as json.dumps(..., ensure_ascii=False) writes it


def _split(spec: str, paths: dict[str, Path], n: int, keep: int, languages: list[str] | None) -> tuple:
    """Write the first `n` units of a validated corpus (the languages chosen) to `paths`: the last `keep` of them
    to the validation split, the others to the training split."""
    with open(paths["train"], "w", encoding="utf-8") as tr, open(paths["valid"], "w", encoding="utf-8") as va:
        for k, (uid, texts) in enumerate(units(spec)):
            if k >= n:
                break
            row = {"id": uid, **{lang: texts[lang] for lang in (languages or texts) if lang in texts}}
            # json.dumps(row, ensure_ascii=False) of a dict of strings, without its per-call setup
            line = ", ".join(f"{_quote(key)}: {_quote(value)}" for key, value in row.items())
            (va if k >= n - keep else tr).write("{" + line + "}\n")
    return spec, paths
