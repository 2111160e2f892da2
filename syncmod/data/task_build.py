"""Build a parallel classify task from a labelled parallel corpus (e.g. the Bible's `genre` per verse):
every language gets the same ids in every split, so every language is scored on the same items."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from syncmod.data.lines import Problems, read_json_lines
from syncmod.errors import InputError
from syncmod.io import atomic_dir, write_json, write_jsonl


def task_from_parallel(corpus: str | Path, label: str, langs: list[str], out: str | Path, name: str,
                       train: int, dev: int, test: int, seed: int = 0) -> Path:
    problems = Problems()
    rows = []
    for where, obj in read_json_lines(Path(corpus), problems):
        if label not in obj:
            problems.add(where, f"no label field {label!r}", f"choose a field the corpus has (e.g. {sorted(obj)[:6]})")
            continue
        missing = [lang for lang in langs if not isinstance(obj.get(lang), str) or not obj[lang].strip()]
        if missing:
            problems.add(where, f"missing language {missing[0]!r}", "choose languages every line has")
            continue
        rows.append(obj)
    problems.raise_if_any()
    return write_task(rows, label, langs, out, name, (train, dev, test), seed, source=str(corpus))


def write_task(rows: list[dict], label: str, langs: list[str], out: str | Path, name: str,
               sizes: tuple[int, int, int], seed: int, source: str) -> Path:
    """Split N-way labelled `rows` at random into train/dev/test of `sizes` (the same ids in every language)
    and write the task directory."""
    train, dev, test = sizes
    if train + dev + test > len(rows):
        raise InputError.at(source, f"asked for {train + dev + test} examples, the corpus has {len(rows)}",
                            "lower --train/--dev/--test")
    order = np.random.default_rng(seed).permutation(len(rows))
    splits = {"train": order[:train], "dev": order[train:train + dev], "test": order[train + dev:train + dev + test]}
    labels = sorted({str(r[label]) for r in rows})
    with atomic_dir(out) as tmp:
        write_json(tmp / "task.json", {"name": name, "kind": "classify", "labels": labels,
                                       "source": source, "label_field": label})
        for split, idx in splits.items():
            for lang in langs:
                write_jsonl(tmp / f"{split}.{lang}.jsonl",
                            ({"id": str(rows[i].get("id", i)), "lang": lang, "text": rows[i][lang],
                              "label": str(rows[i][label])} for i in idx))
    return Path(out)
