"""Build a parallel classify task from pairwise corpora that share a pivot language (e.g. the gettext catalogs
en-de, en-cs, ... with their `source` package), and the corpora without the task's items for pre-training.

A unit of the task is a pivot text that every corpus translates, with the same label in every corpus; its label
comes from a field of the lines (optionally the first match of a regular expression in it, e.g. `^[^/]+` for
the package of `gimp-data/gimp20`). So every language has the same ids and the same labels, and the label
distribution is identical in every language: nothing about a label can be told from the language alone.
`rest` receives each corpus minus the pivot texts the task uses (train, dev and test), in a seeded random order
(so `--max-units` later takes a sample across the corpus, not its first packages), compressed like the input.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from syncmod.data.lines import Problems, read_json_lines
from syncmod.data.parallel import RESERVED
from syncmod.data.task_build import write_task
from syncmod.errors import InputError
from syncmod.io import atomic_dir


def task_from_pairs(corpora: list[str], label: str, out: str | Path, rest: str | Path | None, *, pivot: str = "en",
                    name: str | None = None, label_pattern: str | None = None, top_labels: int = 0,
                    min_words: int = 0, sizes: tuple[int, int, int] = (2000, 300, 1000), seed: int = 0) -> Path:
    """Join `corpora` on their pivot text, keep the units with one label everywhere (see the module docstring),
    write the task to `out` and, when `rest` is given, the corpora without the task's pivot texts."""
    try:
        pattern = re.compile(label_pattern) if label_pattern else None
    except re.error as e:
        raise InputError.at("--label-pattern", f"{label_pattern!r} is not a regular expression ({e})",
                            "e.g. '^[^/]+'") from e
    lines, langs = _read(corpora, label, pivot, pattern)
    pool = _join(lines, langs, pivot, min_words, top_labels)
    n = sum(sizes)
    if n > len(pool):
        raise InputError.at(corpora[0], f"asked for {n} examples, {len(pool)} pivot texts are in every corpus "
                            "with one label", "lower --train/--dev/--test, --min-words or raise --top-labels")
    chosen = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:n]]
    write_task(chosen, "label", [pivot, *langs], out, name or label, sizes, seed,
               source=" ".join(str(c) for c in corpora))
    if rest is not None:
        _write_rest(corpora, lines, {row[pivot] for row in chosen}, pivot, Path(rest), seed)
    return Path(out)


def _read(corpora: list[str], label: str, pivot: str, pattern: re.Pattern | None):
    """Each corpus's lines (as read) and its one other language; problems are collected, then raised at once."""
    problems = Problems()
    lines: list[list[dict]] = []
    langs: list[str] = []
    for spec in corpora:
        rows, lang = [], None
        for where, obj in read_json_lines(Path(spec), problems):
            other = sorted(k for k in obj if k not in RESERVED and k != pivot)
            if pivot not in obj or len(other) != 1:
                problems.add(where, f"not a {pivot}-XX pair (keys {sorted(obj)[:6]})",
                             f"give pairwise corpora that all have the pivot language {pivot!r} and one other")
                break
            if label not in obj:
                problems.add(where, f"no label field {label!r}", f"choose a field the corpus has (e.g. {sorted(obj)[:6]})")
                break
            if lang is not None and other[0] != lang:
                problems.add(where, f"language {other[0]!r} after {lang!r}", "one language pair per corpus")
                break
            lang = other[0]
            found = pattern.search(str(obj[label])) if pattern else None
            rows.append({**obj, "label": found.group(0) if found else str(obj[label])})
        if lang is not None and lang in langs:
            problems.add(spec, f"a second corpus of the pair {pivot}-{lang}", "give each pair once")
        lines.append(rows)
        langs.append(lang)
    problems.raise_if_any()
    return lines, langs


def _join(lines: list[list[dict]], langs: list[str], pivot: str, min_words: int, top_labels: int) -> list[dict]:
    """N-way rows {id, pivot, langs..., label} for the pivot texts in every corpus with one label, in a stable
    order; only the `top_labels` most frequent labels (0: all)."""
    by_text: list[dict[str, dict]] = [{row[pivot]: row for row in rows} for rows in lines]
    rows = []
    for text in sorted(by_text[0]):
        found = [d.get(text) for d in by_text]
        if any(f is None for f in found) or len({f["label"] for f in found}) != 1 or len(text.split()) < min_words:
            continue
        ident = "u" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
        rows.append({"id": ident, pivot: text, **{lang: f[lang] for lang, f in zip(langs, found, strict=True)},
                     "label": found[0]["label"]})
    if top_labels:
        keep = {lab for lab, _ in sorted(Counter(r["label"] for r in rows).items(), key=lambda kv: (-kv[1], kv[0]))
                [:top_labels]}
        rows = [r for r in rows if r["label"] in keep]
    return rows


def _write_rest(corpora: list[str], lines: list[list[dict]], used: set[str], pivot: str, rest: Path, seed: int) -> None:
    """Each corpus without the `used` pivot texts, shuffled with `seed`, under `rest` with the corpus's file name."""
    with atomic_dir(rest) as tmp:
        for spec, rows in zip(corpora, lines, strict=True):
            keep = [row for row in rows if row[pivot] not in used]
            order = np.random.default_rng([seed, len(keep)]).permutation(len(keep))
            path = tmp / Path(spec).name
            raw = open(path, "wb")
            packed = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.name.endswith(".gz") else raw
            with raw, packed, io.TextIOWrapper(packed, encoding="utf-8") as f:
                for i in order:
                    row = {k: v for k, v in keep[i].items() if k != "label"}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
