"""Reading text files line by line with exact locations for every problem.

Lines are decoded one at a time, so an invalid UTF-8 byte is reported with its line number, and
files of any size stream in constant memory.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from syncmod.errors import InputError, Problem

LANG_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
MAX_PROBLEMS = 20


@lru_cache(maxsize=4096)  # called for every key of every line: corpora use a handful of codes
def is_lang_code(code: str) -> bool:
    return bool(LANG_CODE.match(code))


@dataclass
class Line:
    where: str  # "file:line"
    text: str


class Problems:
    """Collects problems; `raise_if_any` turns them into one InputError (capped, with a count)."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.total = 0

    def add(self, where: str, what: str, fix: str = "") -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(where, what, fix))

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total:
            items = list(self.items)
            if self.total > len(items):
                items.append(Problem("...", f"{self.total - len(items)} more problems not shown"))
            raise InputError(items)


def check_file(path: Path, problems: Problems) -> bool:
    if not path.exists():
        problems.add(str(path), "file does not exist", "check the path")
        return False
    if path.is_dir():
        problems.add(str(path), "is a directory, expected a file", "name a file inside it")
        return False
    if path.stat().st_size == 0:
        problems.add(str(path), "file is empty", "give a file with at least one line")
        return False
    return True


def read_lines(path: Path, problems: Problems) -> Iterator[Line]:
    """Yield decoded lines (without the newline). Bad UTF-8 is a problem at its line, not a crash."""
    if not check_file(path, problems):
        return
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            name = str(path)
            for n, raw in enumerate(f, 1):
                where = f"{name}:{n}"
                try:
                    text = raw.decode("utf-8-sig" if n == 1 else "utf-8")  # a leading BOM is not text
                except UnicodeDecodeError as e:
                    problems.add(where, f"invalid UTF-8 at byte {e.start}", "re-encode the file as UTF-8")
                    continue
                yield Line(where, text.rstrip("\r\n"))
    except (OSError, EOFError) as e:  # truncated or corrupt gzip
        problems.add(str(path), f"cannot read file: {e}", "re-create or re-download it")


_SCAN = json.JSONDecoder().scan_once
_JSON_SPACE = " \t\n\r"


def loads(text: str) -> Any:
    """`json.loads(text)` without its per-call overhead in the common case (one value, nothing after it but
    whitespace); anything else goes to `json.loads`, which raises its own error."""
    try:
        obj, end = _SCAN(text, len(text) - len(text.lstrip(_JSON_SPACE)))
    except (StopIteration, ValueError):
        return json.loads(text)
    return obj if end == len(text) or not text[end:].strip(_JSON_SPACE) else json.loads(text)


def read_json_lines(path: Path, problems: Problems) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, object) for each non-blank line that is a JSON object."""
    for line in read_lines(path, problems):
        if not line.text.strip():
            continue
        try:
            obj = loads(line.text)
        except json.JSONDecodeError as e:
            problems.add(line.where, f"invalid JSON: {e.msg} at column {e.colno}", "write one JSON object per line")
            continue
        except RecursionError:
            problems.add(line.where, "invalid JSON: nested too deeply", "write one flat JSON object per line")
            continue
        if not isinstance(obj, dict):
            problems.add(line.where, f"expected a JSON object, got {type(obj).__name__}", "write one object per line")
            continue
        yield line.where, obj


def first_json(path: Path) -> dict[str, Any] | None:
    """The first JSON object of a JSONL file, or None when it cannot be read (validation reports why)."""
    scratch = Problems()
    for _, obj in read_json_lines(path, scratch):
        return obj
    return None
