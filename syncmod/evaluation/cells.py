"""Cell-by-cell results of an evaluation, so an interrupted one resumes where it stopped.

Each (module, language) cell is written to `OUT/cells/<module>__<lang>.json` (atomically) as soon as it is
scored: its predictions, in item order, and the key of everything they depend on (module weights, base files,
items, precision). Scores are computed from the predictions when the matrix is assembled, so a resumed
evaluation and an uninterrupted one write the same results.json. With `resume`, a cell whose key matches is
reused; any other cell is scored again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from syncmod.io import write_json

log = logging.getLogger(__name__)


def items_digest(rows: list) -> str:
    """A digest of the scored items (ids, inputs, targets): a cell is only reused for the very same items."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r.id, r.text, r.target]).encode())
    return h.hexdigest()[:16]


def base_files(path: Path) -> dict[str, list[int]]:
    """Size and modification time of a base directory's files: cheap, and changes when the base is rewritten."""
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(Path(path).iterdir()) if p.is_file()}


def cell_names(module_dirs: list[str]) -> list[str]:
    """A file-name-safe, unique name per module (its directory's name; -2, -3 ... for repeats)."""
    names: list[str] = []
    for d in module_dirs:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(d).resolve().name) or "module"
        candidate, k = name, 2
        while candidate in names or candidate == "floor":
            candidate, k = f"{name}-{k}", k + 1
        names.append(candidate)
    return names


class CellStore:
    """`OUT/cells/`: read with `get` (None unless resuming and the key matches), write with `put`."""

    def __init__(self, directory: Path | None, resume: bool):
        self.dir, self.resume = directory, resume
        if directory is not None and not resume and directory.exists():
            for stale in directory.glob("*.json"):  # starting over: no cell of an earlier run may be trusted
                stale.unlink()

    def _path(self, name: str, lang: str) -> Path:
        return self.dir / f"{name}__{lang}.json"

    def get(self, name: str, lang: str, key: dict) -> dict | None:
        if self.dir is None or not self.resume or not self._path(name, lang).exists():
            return None
        try:
            stored = json.loads(self._path(name, lang).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if stored.get("key") != key:
            log.info("cell %s/%s was scored with other inputs: scoring it again", name, lang)
            return None
        return stored

    def put(self, name: str, lang: str, key: dict, cell: dict) -> None:
        if self.dir is not None:
            write_json(self._path(name, lang), {**cell, "key": key})
