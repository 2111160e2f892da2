"""Tasks from Hugging Face `datasets`: a `save_to_disk` directory or `hf:NAME` (when online), mapped to the
same `Task` that data/tasks.py reads from JSONL — so XNLI-, PAWS-X- or XQuAD-style data are evaluated as they
are published, without conversion scripts.

Where the language comes from, in this order: a language column (`lang`, `--lang-column`); one saved dataset per
language in subdirectories named by language code (`DIR/en`, `DIR/de`, ...); one hub config per language
(`config`, `--hub-config`, e.g. `{lang}` for XNLI and PAWS-X, `xquad.{lang}` for XQuAD). Splits: `train`,
`validation` (read as `dev`) and `test`; a dataset without splits is a test set. Without an id column the row
index is the id, which lines up test sets that are parallel by position (XNLI, PAWS-X, XQuAD).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from syncmod.data.lines import Problems, is_lang_code
from syncmod.data.tasks import SPLITS, Task, TaskExample

SPLIT_NAMES = {"train": "train", "validation": "dev", "dev": "dev", "test": "test"}


@dataclass
class TaskColumns:
    """Which columns of a `datasets` dataset make task examples."""

    text: list[str] = field(default_factory=lambda: ["text"])
    """Input columns, joined by `joiner` (e.g. [premise, hypothesis]; [context, question]). `input` is used
    when the dataset has no `text` column."""
    label: str = "label"
    """The label (classify) or answer (generate) column; `target` when there is no `label` column. Dotted
    paths reach into nested columns (`answers.text`); of a list, the first element is the answer."""
    lang: str = "lang"
    """The language column, when the dataset has one."""
    id: str = "id"
    """The item id column; when the dataset has none, the row index."""
    config: str = "{lang}"
    """Hub config name of each language (`hf:` tasks without a language column)."""
    joiner: str = " "
    """Joins several input columns into one text."""
    kind: str | None = None
    """`classify` or `generate`; default: classify when the label column is a ClassLabel or a string/int column."""


def is_dataset(spec: str | Path) -> bool:
    """`hf:NAME`, or a directory written by `save_to_disk` (itself, or one per language inside it)."""
    if str(spec).startswith("hf:"):
        return True
    path = Path(spec)
    return path.is_dir() and (_saved(path) or any(_saved(p) for p in path.iterdir() if p.is_dir()))


def _saved(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def load_hf_task(spec: str, columns: TaskColumns, problems: Problems, langs: list[str] | None = None,
                 name: str | None = None) -> Task | None:
    """Load a task from `datasets`; problems (missing columns, no language, unknown labels) go to `problems`."""
    parts = _open(spec, columns, langs, problems)
    if not parts or not all(parts.values()):
        if parts is not None:
            problems.add(spec, "no dataset with a train, validation or test split here",
                         "give a save_to_disk directory (or one per language in DIR/<lang>)")
        return None
    first = next(iter(next(iter(parts.values())).values()))
    if None in parts and columns.lang not in first.column_names:
        problems.add(spec, f"the dataset has no language column {columns.lang!r} and no part per language",
                     "name the language column (--lang-column), or save one dataset per language in DIR/<lang>")
        return None
    resolved = _resolve(first, columns, spec, problems)
    if resolved is None:
        return None
    kind, text_cols, label_col, names = resolved
    data: dict[str, dict[str, list[TaskExample]]] = defaultdict(lambda: defaultdict(list))
    for lang, splits in parts.items():
        for split, ds in splits.items():
            position: dict[str, int] = defaultdict(int)  # the row index within its language: the default id
            for row in ds:
                row_lang = str(row[columns.lang]) if lang is None else lang
                ident = str(row[columns.id]) if columns.id in ds.column_names else str(position[row_lang])
                position[row_lang] += 1
                text = columns.joiner.join(str(_get(row, c)) for c in text_cols)
                target = _answer(_get(row, label_col), names)
                data[split][row_lang].append(TaskExample(ident, row_lang, text, target))
    bad = sorted({lang for split in data.values() for lang in split if not is_lang_code(lang)})
    if bad:
        problems.add(spec, f"language values {bad[:5]} are not language codes", "map them to codes like en, de, pt-BR")
        return None
    labels = names or (sorted({e.target for s in data.values() for rows in s.values() for e in rows})
                       if kind == "classify" else None)
    data = {s: dict(by_lang) for s, by_lang in data.items()}
    _check_parallel(spec, data.get("test", {}), problems)
    return Task(name or spec.removeprefix("hf:").rstrip("/").split("/")[-1].split(":")[0], kind, labels, data)


def _check_parallel(spec: str, test: dict[str, list[TaskExample]], problems: Problems) -> None:
    """Every language is scored on the same items: the test ids must match across languages."""
    ids = {lang: {r.id for r in rows} for lang, rows in test.items()}
    ref = "en" if "en" in ids else min(ids, default=None)
    for lang in sorted(ids):
        if ids[lang] != ids[ref]:
            problems.add(f"{spec} (test, {lang})", f"test ids differ from {ref}: {len(ids[lang] - ids[ref])} extra, "
                         f"{len(ids[ref] - ids[lang])} missing", "test sets must be parallel: the same ids in every "
                         "language (map columns.id, or keep the languages in the same row order)")


def _open(spec: str, columns: TaskColumns, langs: list[str] | None, problems: Problems) -> dict | None:
    """{lang: {split: Dataset}}, or {None: {split: Dataset}} for one dataset with a language column."""
    logging.getLogger("datasets").setLevel(logging.WARNING)  # its import says which of JAX/TF/torch it found
    import datasets

    try:
        if spec.startswith("hf:"):
            if langs:
                try:
                    return {lang: _splits(datasets.load_dataset(spec[3:], columns.config.format(lang=lang)))
                            for lang in langs}
                except ValueError:  # the dataset has no config per language: one dataset, a language column
                    pass
            return {None: _splits(datasets.load_dataset(spec[3:]))}
        path = Path(spec)
        if _saved(path):
            return {None: _splits(datasets.load_from_disk(str(path)))}
        return {p.name: _splits(datasets.load_from_disk(str(p))) for p in sorted(path.iterdir())
                if p.is_dir() and _saved(p) and (langs is None or p.name in langs)}
    except (OSError, ValueError, ConnectionError) as e:
        problems.add(spec, f"cannot load the dataset: {str(e).splitlines()[0][:200]}",
                     "give a save_to_disk directory, or hf:NAME with the machine online")
        return None


def _splits(ds) -> dict:
    import datasets

    if isinstance(ds, datasets.Dataset):
        return {"test": ds}
    return {SPLIT_NAMES[k]: v for k, v in ds.items() if k in SPLIT_NAMES and SPLIT_NAMES[k] in SPLITS}


def _resolve(ds, columns: TaskColumns, spec: str, problems: Problems):
    """(kind, input columns, label column, ClassLabel names or None) from a dataset's columns."""
    import datasets

    have = set(ds.column_names)
    text = columns.text if all(c.split(".")[0] in have for c in columns.text) else \
        (["input"] if "input" in have and columns.text == ["text"] else columns.text)
    label = columns.label if columns.label.split(".")[0] in have else ("target" if "target" in have else columns.label)
    missing = [c for c in [*text, label] if c.split(".")[0] not in have]
    if missing:
        problems.add(spec, f"no column {missing[0]!r} (columns: {sorted(have)})",
                     "map the columns: --text-columns, --label-column, --lang-column")
        return None
    feature = ds.features.get(label)
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    kind = columns.kind or ("classify" if names or label == "label" else "generate")
    if kind not in ("classify", "generate"):
        problems.add(spec, f"kind must be classify or generate, got {kind!r}", "set TaskColumns.kind")
        return None
    return kind, text, label, names


def _get(row: dict, column: str):
    value = row
    for key in column.split("."):
        value = value[key]
    return value


def _answer(value, names: list[str] | None) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    if names is not None and isinstance(value, int):
        return names[value]
    return str(value)
