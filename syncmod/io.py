"""Small file helpers: atomic writes (temporary name, then rename) and transparent gzip reading."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    A crash mid-write leaves the old file (or nothing), never a half-written one a later step trusts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else "\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str | None = None, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place only on success.

    An existing directory at `path` is replaced only when it is empty or a previous syncmod output of the same
    `kind` (default: the kind `claim_output` claimed `path` for); a regular file there is never touched. Entries
    named in `keep` (e.g. a tracking store the command has open there) move over into the new directory.
    """
    path = Path(path)
    kind = kind or _CLAIMED.get(_key(path))
    _check_replaceable(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if kind:
            (tmp / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
        _check_replaceable(path, kind)  # again: the work may have taken hours
        if path.exists():
            for name in keep:  # renamed, not copied: open files stay the same files
                if (path / name).exists() and not (tmp / name).exists():
                    os.replace(path / name, tmp / name)
            old = path.with_name(f".{path.name}.old")
            _rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _rmtree(tmp)
        raise


# -- output locations: checked at start, locked while in use, replaced only when they are ours ---------------
MARKER = ".syncmod-output"  # {"kind": ...}: what wrote this directory, so a rerun may replace it
# Files that identify an output of each kind written before markers existed (or by a run that stopped early).
SIGNS = {"pretrain": ("checkpoints", "metrics.jsonl", "export", "ds_config.json"), "module": ("card.json",),
         "tokenizer": ("tokenizer_config.json",), "eval": ("results.json", "cells"), "world": ("world.json",),
         "data": ("tokenizer",), "shards": ("meta.json",), "task": ("task.json",),
         "study": ("study_run_id", "report.md", "world", "data")}
_CLAIMED: dict[str, str] = {}  # absolute path -> kind, for the outputs this process holds


def _key(path: Path) -> str:
    return os.path.abspath(path)


def output_kind(path: Path) -> str | None:
    """The kind its marker names, when the directory has one."""
    try:
        kind = json.loads((path / MARKER).read_text(encoding="utf-8"))["kind"]
        return kind if isinstance(kind, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_output_of(path: Path, kind: str) -> bool:
    """Is this directory a syncmod output of `kind` (its marker says so, or without one, its files do)?"""
    have = output_kind(path)
    return have == kind if have else any((path / name).exists() for name in SIGNS.get(kind, ()))


def _check_replaceable(path: Path, kind: str | None) -> None:
    from syncmod.errors import InputError

    if path.is_symlink():
        raise InputError.at(str(path), "is a symbolic link (it is left as it is)",
                            "give the directory it points to, or another output path")
    if path.exists() and not path.is_dir():
        raise InputError.at(str(path), "exists and is not a directory (it is left as it is)",
                            "choose another output path, or move that file away yourself")
    if not path.is_dir() or not any(path.iterdir()) or _key(path) in _CLAIMED:
        return
    if kind is None or not is_output_of(path, kind):
        have = output_kind(path) or next((k for k in SIGNS if is_output_of(path, k)), None)
        what = f"not a previous {kind} output" if kind else "not known to be a syncmod output"
        raise InputError.at(str(path), f"holds files and is {what}" + (f" (it is a {have} output)" if have else ""),
                            "choose another output path, or empty that directory yourself")


def check_output(path: str | Path, kind: str) -> None:
    """Refuse, before any work, an output path that cannot become this command's output: a file (or a file
    among its parents), a directory holding something else, or a place this process cannot write."""
    from syncmod.errors import InputError

    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            break
    if parent != path and not parent.is_dir():
        raise InputError.at(str(path), f"cannot be created: {parent} is a file, not a directory",
                            "choose an output path under a directory")
    _check_replaceable(path, kind)
    for place in {parent.parent if parent == path else parent, *([path] if path.is_dir() else [])}:
        try:
            fd, probe = tempfile.mkstemp(dir=place, prefix=".syncmod-probe.")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise InputError.at(str(path), f"cannot write in {place}: {e.strerror}",
                                "choose a writable output path") from None


@contextlib.contextmanager
def claim_output(path: str | Path, kind: str) -> Iterator[Path]:
    """Check `path` as this command's output (see `check_output`) and hold a lock on it until the block ends.

    The lock is `fcntl.flock` on `.NAME.lock` beside the output (it survives the output being replaced).
    Only the launcher's rank 0 takes it; the other ranks check the output and that no *other* launch holds the
    lock, and otherwise go on (they must not wait on a lock their own rank 0 holds). On success a directory
    output gets its marker, so a later run of the same kind may replace it.
    """
    path = Path(path)
    check_output(path, kind)
    if int(os.environ.get("RANK", "0")) != 0:
        _check_not_held_elsewhere(path)
        yield path
        return
    existed = path.exists()
    created = _make_parents(path.parent)
    lock = path.parent / f".{path.name}.lock"
    fd = None
    try:
        fd = _lock(lock, path)
        _CLAIMED[_key(path)] = kind
        yield path
    finally:
        _CLAIMED.pop(_key(path), None)
        _settle(path, kind, existed)
        if fd is not None:
            _unlock(lock, fd)
        for d in created:  # parents made for the lock, left empty by a run that wrote nothing
            with contextlib.suppress(OSError):
                d.rmdir()


def _settle(path: Path, kind: str, existed: bool) -> None:
    """A directory this command wrote into gets its marker (a stopped run may resume into it); one it created
    and left empty (bad input found after the claim) is removed."""
    with contextlib.suppress(OSError):
        if not path.is_dir() or path.is_symlink():
            return
        if any(p.name != MARKER for p in path.iterdir()):
            if not (path / MARKER).exists():
                (path / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
        elif not existed:
            (path / MARKER).unlink(missing_ok=True)
            path.rmdir()


def _make_parents(directory: Path) -> list[Path]:
    """mkdir -p, returning the directories it created, deepest first."""
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    return missing


def _launch() -> str:
    """What the ranks of one launch share (and another launch does not)."""
    return os.environ.get("TORCHELASTIC_RUN_ID") or f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"


def _holder_text() -> str:
    import socket

    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "launch": _launch()})


def _lock(lock: Path, path: Path) -> int:
    import fcntl

    from syncmod.errors import InputError

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(lock)
            os.close(fd)
            raise InputError.at(str(path), f"is in use by another syncmod process (pid {holder.get('pid', '?')})",
                                "wait for it to finish, or choose another output path") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:  # not a file its previous holder unlinked while we were opening it
            os.ftruncate(fd, 0)
            os.write(fd, _holder_text().encode())
            return fd
        os.close(fd)


def _unlock(lock: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(lock)):
            os.unlink(lock)  # while still holding it: a waiter that opened it sees it is gone and retries
    os.close(fd)


def _read_holder(lock: Path) -> dict:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _check_not_held_elsewhere(path: Path) -> None:
    """Ranks other than 0: refuse when the lock names another launch that is still alive."""
    import socket

    from syncmod.errors import InputError

    holder = _read_holder(path.parent / f".{path.name}.lock")
    if not holder or holder.get("launch") == _launch():
        return
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid", 0)), 0)
        except (OSError, ValueError):
            return  # a holder killed without releasing: its lock is gone with it
    raise InputError.at(str(path), f"is in use by another syncmod process (pid {holder.get('pid', '?')})",
                        "wait for it to finish, or choose another output path")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")


def write_jsonl(path: str | Path, rows: Any) -> int:
    """Write rows as JSON lines (stable key order, UTF-8); returns the number written."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n
