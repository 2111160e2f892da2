"""Validate any corpus path: detect its format, read all of it, collect every problem and a summary.

Used by `syncmod data validate|inspect` and by every command that consumes data, before work starts.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from syncmod.data import parallel
from syncmod.data.lines import Problems, first_json
from syncmod.data.mono import read_mono
from syncmod.data.parallel import ParallelExample, read_parallel
from syncmod.data.tasks import load_task


@dataclass
class Summary:
    """What a corpus holds: its kind, units and word lengths per language, and one example."""

    path: str
    kind: str
    units: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lengths: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    example: ParallelExample | None = None
    examples: dict[str, str] = field(default_factory=dict)
    parts: list[Summary] = field(default_factory=list)

    def add(self, lang: str, text: str) -> None:
        self.units[lang] += 1
        if len(self.lengths[lang]) < 100_000:  # enough for statistics, bounded memory
            self.lengths[lang].append(len(text.split()))
        self.examples.setdefault(lang, text)

    def stats(self, lang: str) -> dict[str, float]:
        xs = self.lengths[lang]
        return {"mean": statistics.fmean(xs), "median": statistics.median(xs), "max": max(xs)} if xs else {}


EXPECTED = ("expected NAME.jsonl(.gz), NAME.tsv, Moses files NAME.xx, NAME.xx.txt, a task directory "
            "(task.json), or a saved Hugging Face dataset (dataset_info.json)")


def detect(path: Path) -> str:
    """`world`, `task`, `parallel`, `mono`, `dir` or `unknown`."""
    if path.is_dir():
        if (path / "world.json").exists():
            return "world"
        if (path / "task.json").exists():
            return "task"
        if parallel.kind_of(path) == "hf":
            return "parallel"
        return "dir"
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".txt"):
        return "mono"
    if name.endswith(".jsonl"):
        obj = first_json(path) or {}
        if "lang" in obj and "text" in obj and "label" not in obj:
            return "mono"
        if "lang" in obj and ("target" in obj or "label" in obj):
            return "task"
        return "parallel"
    if parallel.kind_of(path):
        return "parallel"
    return "unknown"


def validate(path: str | Path, problems: Problems) -> Summary:
    """Read everything at `path`; problems land in `problems` (the caller decides to raise)."""
    spec = str(path)
    if spec.startswith("hf:"):
        summary = Summary(spec, "parallel")
        _scan_parallel(spec, summary, problems)
        return summary
    path = Path(path)
    if not path.exists():
        problems.add(str(path), "file does not exist", "check the path")
        return Summary(str(path), "missing")
    kind = detect(path)
    summary = Summary(str(path), kind)
    before = problems.total
    if kind == "parallel":
        _scan_parallel(path, summary, problems)
    elif kind == "mono":
        for lang, text in read_mono(path, problems):
            summary.add(lang, text)
    elif kind == "task":
        task = load_task(path, problems)
        if task:
            for split in task.data.values():
                for lang, rows in split.items():
                    for r in rows:
                        summary.add(lang, r.text)
    elif kind in ("world", "dir"):
        summary.parts = _scan_dir(path, problems)
        if not summary.parts:
            problems.add(str(path), "no corpus in this directory", EXPECTED)
    else:
        problems.add(str(path), "unknown corpus format", EXPECTED)
    if kind in ("parallel", "mono") and not summary.units and problems.total == before:
        problems.add(str(path), "holds no examples (only blank lines)", "give at least one line of text")
    return summary


def _scan_dir(path: Path, problems: Problems) -> list[Summary]:
    """Every corpus under a directory: task directories and saved datasets whole, other files one by one."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    whole = sorted({p.parent for p in files if p.name in ("task.json", "dataset_info.json", "dataset_dict.json")})
    whole = [d for d in whole if not any(o in d.parents for o in whole)]  # a dataset's splits are read with it
    parts = [validate(d, problems) for d in whole]
    for p in files:
        if any(d in p.parents for d in whole) or p.name in ("world.json", "README.md"):
            continue
        if detect(p) in ("parallel", "mono") and not _moses_sibling(p) and not _lone_extension(p):
            parts.append(validate(p, problems))
    return parts


def _lone_extension(p: Path) -> bool:
    """notes.csv, run.py: a two- or three-letter extension without siblings is no Moses set, just another file."""
    return parallel.kind_of(p) == "moses" and len(parallel.moses_files(p)) < 2


def _moses_sibling(p: Path) -> bool:
    """In a directory scan, read a Moses set once (from its first file)."""
    if parallel.kind_of(p) != "moses":
        return False
    files = list(parallel.moses_files(p).values())
    return bool(files) and files[0] != p


def _scan_parallel(path: str | Path, summary: Summary, problems: Problems) -> None:
    for ex in read_parallel(path, problems):
        if summary.example is None or (not summary.example.sync and ex.sync):
            summary.example = ex
        for lang, text in ex.texts.items():
            summary.add(lang, text)
