"""Parallel corpora: N-way JSONL (plain or .gz), TSV with a language header, Moses file sets, and
Hugging Face datasets saved on disk (or by hub name when online).

Every reader yields :class:`ParallelExample` and records problems with `file:line` instead of
raising mid-stream; callers validate a whole corpus before any work starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncmod.data.lines import Problems, check_file, is_lang_code, read_json_lines, read_lines

# Keys of a parallel JSONL line that are not languages (the shared corpora use id/book/genre/source).
RESERVED = {"id", "book", "genre", "source", "sync", "align", "meta"}
Pair = tuple[str, str]
Cut = tuple[int, int]


@dataclass
class ParallelExample:
    """One unit of N-way parallel text. Sync cuts and alignments are word-based, keyed by language pair."""

    id: str
    texts: dict[str, str]
    sync: dict[Pair, list[Cut]] = field(default_factory=dict)
    align: dict[Pair, list[Cut]] = field(default_factory=dict)

    def cuts(self, a: str, b: str) -> list[Cut]:
        """Cuts (words of a, words of b) for the pair; without annotation, only the sentence end (`eos`)."""
        if (a, b) in self.sync:
            return self.sync[(a, b)]
        if (b, a) in self.sync:
            return [(y, x) for x, y in self.sync[(b, a)]]
        return [(len(self.texts[a].split()), len(self.texts[b].split()))]


def split_pair(key: str, langs: set[str]) -> Pair | None:
    """'en-pt-BR' -> ('en', 'pt-BR'): language codes may contain '-', so try every split."""
    parts = key.split("-")
    for i in range(1, len(parts)):
        a, b = "-".join(parts[:i]), "-".join(parts[i:])
        if a in langs and b in langs:
            return a, b
    return None


def kind_of(path: Path) -> str | None:
    """`jsonl`, `tsv`, `moses` or `hf` when `path` looks like a parallel corpus of that format."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        return "hf"
    if name.endswith(".jsonl") or name.endswith(".json"):
        return "jsonl"
    if name.endswith(".tsv"):
        return "tsv"
    if "." in name and is_lang_code(name.rsplit(".", 1)[1]) and name.rsplit(".", 1)[1] not in {"txt"}:
        return "moses"
    return None


def read_parallel(path: str | Path, problems: Problems) -> Iterator[ParallelExample]:
    """Dispatch on the format of `path` (see :func:`kind_of`); `hf:NAME` loads a hub dataset."""
    spec = str(path)
    if spec.startswith("hf:"):
        yield from _read_hf(spec[3:], problems, from_hub=True)
        return
    path = Path(path)
    kind = kind_of(path)
    if kind == "jsonl":
        yield from _read_jsonl(path, problems)
    elif kind == "tsv":
        yield from _read_tsv(path, problems)
    elif kind == "moses":
        yield from _read_moses(path, problems)
    elif kind == "hf":
        yield from _read_hf(str(path), problems, from_hub=False)
    else:
        problems.add(str(path), "unknown parallel format",
                     "use .jsonl/.jsonl.gz, .tsv, Moses files NAME.xx, or a saved Hugging Face dataset")


# -- N-way JSONL ------------------------------------------------------------------------------------------
def _read_jsonl(path: Path, problems: Problems) -> Iterator[ParallelExample]:
    langs: list[str] | None = None
    name = path.name
    for n, (where, obj) in enumerate(read_json_lines(path, problems), 1):
        keys = [k for k in obj if k not in RESERVED]
        bad = [k for k in keys if not is_lang_code(k)]
        if bad:
            problems.add(where, f"unknown language code format {bad[0]!r}",
                         "use codes like en, de, pt-BR; other keys must be one of " + ", ".join(sorted(RESERVED)))
            continue
        if langs is None:
            langs = keys
            if len(langs) < 2:
                problems.add(where, f"a parallel line needs at least two languages, got {langs}",
                             "add the translations as language-code keys")
                return
        missing = [lang for lang in langs if lang not in obj]
        if missing:
            problems.add(where, f"missing language {missing[0]!r} of this corpus", "give every line every language")
            continue
        extra = [k for k in keys if k not in langs]
        if extra:
            problems.add(where, f"language {extra[0]!r} is not one of this corpus's languages {langs} "
                         "(set by its first line)", "give every line the same languages, or split the corpus")
            continue
        texts = {}
        for lang in langs:
            value = obj[lang]
            if not isinstance(value, str) or not value.strip():
                problems.add(where, f"language {lang!r} has no text", "give a non-empty string")
                break
            texts[lang] = value
        else:
            ex = ParallelExample(str(obj["id"]) if "id" in obj else f"{name}:{n}", texts)
            if ("sync" not in obj and "align" not in obj) or _annotations(where, obj, ex, problems):
                yield ex


def _annotations(where: str, obj: dict[str, Any], ex: ParallelExample, problems: Problems) -> bool:
    langs = set(ex.texts)
    for field_name in ("align", "sync"):
        value = obj.get(field_name)
        if value is None:
            continue
        if not isinstance(value, dict):
            problems.add(where, f"{field_name!r} must be an object keyed by language pair", 'e.g. {"en-de": ...}')
            return False
        for key, items in value.items():
            pair = split_pair(key, langs)
            if pair is None:
                problems.add(where, f"{field_name} key {key!r} is not a pair of this line's languages",
                             "use 'xx-yy' with two language codes of the line")
                return False
            parsed = _parse_links(items)
            if parsed is None:
                problems.add(where, f"{field_name}[{key!r}] is malformed",
                             "use [[a, b], ...] or a string 'i-j i-j ...'")
                return False
            getattr(ex, field_name)[pair] = parsed
    return all(_check_cuts(where, ex, pair, cuts, problems) for pair, cuts in ex.sync.items())


def _check_cuts(where: str, ex: ParallelExample, pair: Pair, cuts: list[Cut], problems: Problems) -> bool:
    """Cuts are word counts from 1 to the sentence length, strictly increasing on both sides (they split the
    pair into consecutive segments), and never cross an alignment link."""
    a, b = pair
    na, nb = len(ex.texts[a].split()), len(ex.texts[b].split())
    links = ex.align.get((a, b)) or [(j, i) for i, j in ex.align.get((b, a), [])]
    prev = (0, 0)
    for x, y in cuts:
        if not (1 <= x <= na and 1 <= y <= nb):
            problems.add(where, f"sync cut ({x}, {y}) for {a}-{b} is out of range: {a} has {na} words, "
                         f"{b} has {nb}", "cuts count words from 1 to the sentence length")
            return False
        if x <= prev[0] or y <= prev[1]:
            problems.add(where, f"sync cut ({x}, {y}) for {a}-{b} does not come after ({prev[0]}, {prev[1]})",
                         "list cuts in order, each one further on both sides")
            return False
        prev = (x, y)
        crossing = next(((i, j) for i, j in links if (i < x) != (j < y)), None)
        if crossing:
            problems.add(where, f"sync cut ({x}, {y}) for {a}-{b} crosses alignment link "
                         f"{crossing[0]}-{crossing[1]}", "a cut must leave every link on one side")
            return False
    return True


def _parse_links(items: Any) -> list[Cut] | None:
    """[[a, b], ...] of integers, or the string form 'a-b a-b ...'; None when malformed."""
    if isinstance(items, str):
        pairs = [tok.split("-") for tok in items.split()]
        if not all(len(p) == 2 and p[0].isdigit() and p[1].isdigit() for p in pairs):
            return None
        return [(int(p[0]), int(p[1])) for p in pairs]
    if not isinstance(items, list):
        return None
    if not all(isinstance(p, list) and len(p) == 2 and all(type(v) is int for v in p) for p in items):
        return None
    return [(p[0], p[1]) for p in items]


# -- TSV ----------------------------------------------------------------------------------------------------
def _read_tsv(path: Path, problems: Problems) -> Iterator[ParallelExample]:
    header: list[str] | None = None
    for line in read_lines(path, problems):
        cols = line.text.split("\t")
        if header is None:
            header = cols
            bad = [c for c in cols if not is_lang_code(c)]
            if bad or len(cols) < 2 or len(set(cols)) != len(cols):
                problems.add(line.where, f"header must name two or more distinct language codes, got {cols}",
                             "start the file with a row like 'en<TAB>de'")
                return
            continue
        if not line.text.strip():
            continue
        if len(cols) != len(header):
            problems.add(line.where, f"{len(cols)} columns, the header has {len(header)}",
                         "use one tab between translations and none inside them")
            continue
        if any(not c.strip() for c in cols):
            problems.add(line.where, "an empty translation", "fill every column")
            continue
        yield ParallelExample(line.where.rsplit(":", 1)[1], dict(zip(header, cols, strict=True)))


# -- Moses ----------------------------------------------------------------------------------------------------
def moses_files(path: Path) -> dict[str, Path]:
    """All files `NAME.xx` beside `path` (which is one of them), by language code."""
    stem = path.name.rsplit(".", 1)[0]
    return {p.name.rsplit(".", 1)[1]: p for p in sorted(path.parent.glob(f"{stem}.*"))
            if is_lang_code(p.name.rsplit(".", 1)[1])}


def _read_moses(path: Path, problems: Problems) -> Iterator[ParallelExample]:
    if not check_file(path, problems):
        return
    files = moses_files(path)
    if len(files) < 2:
        problems.add(str(path), "a Moses corpus needs files NAME.xx for at least two languages",
                     f"add e.g. {path.with_suffix('.de').name} beside it")
        return
    readers = {lang: read_lines(p, problems) for lang, p in files.items()}
    for n in itertools.count(1):
        rows = {lang: next(r, None) for lang, r in readers.items()}
        present = {lang: line for lang, line in rows.items() if line is not None}
        if not present:
            return
        if len(present) != len(rows):
            short = [lang for lang in rows if lang not in present][0]
            longer = next(iter(present))
            problems.add(f"{files[short]}:{n}", f"file ends at line {n - 1} but {files[longer].name} goes on",
                         "Moses files must have the same number of lines, one sentence per line")
            return
        empty = [lang for lang, line in present.items() if not line.text.strip()]
        if empty:
            problems.add(f"{files[empty[0]]}:{n}", "empty line", "remove the line in every file of the set")
            continue
        yield ParallelExample(f"{path.name.rsplit('.', 1)[0]}:{n}", {lang: ln.text for lang, ln in present.items()})


# -- Hugging Face datasets ------------------------------------------------------------------------------------
def _hf_rows(split, batch_size: int = 1000) -> Iterator[dict]:
    """Rows of a split, read in batches (memory-mapped Arrow on disk, a stream from the hub): never whole."""
    for batch in split.iter(batch_size=batch_size):
        yield from (dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True))


def _read_hf(name: str, problems: Problems, from_hub: bool) -> Iterator[ParallelExample]:
    import datasets

    try:
        ds = datasets.load_dataset(name, streaming=True) if from_hub else datasets.load_from_disk(name)
    except Exception as e:  # datasets raises many types for a missing or corrupt dataset
        problems.add(name, f"cannot load Hugging Face dataset: {e}", "save it with Dataset.save_to_disk")
        return
    splits = ds.values() if isinstance(ds, datasets.DatasetDict | datasets.IterableDatasetDict) else [ds]
    for split in splits:
        for n, row in enumerate(_hf_rows(split)):
            texts = row["translation"] if "translation" in row else {
                k: v for k, v in row.items() if k not in RESERVED and is_lang_code(k)}
            if not isinstance(texts, dict) or len(texts) < 2 or any(not isinstance(v, str) or not v.strip() for v in texts.values()):
                problems.add(f"{name}:{n}", "row needs two or more non-empty translations",
                             "use a 'translation' column {lang: text} or one column per language")
                continue
            yield ParallelExample(str(row.get("id", n)), dict(texts))
