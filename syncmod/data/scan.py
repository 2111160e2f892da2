"""Working on several corpus files at once, one file per forked worker process, results in the files' order.
Validating: each file is read by the ordinary readers (`read_parallel`, `read_mono`), so the problems recorded
are exactly those of reading the files one after the other in this process."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

from syncmod.data.lines import MAX_PROBLEMS, Problems
from syncmod.data.mono import read_mono
from syncmod.data.parallel import read_parallel


@dataclass
class Scan:
    """What reading one corpus found (plain data: it crosses processes)."""

    units: int = 0
    """Units (parallel) or documents (monolingual) read, at most `limit`."""
    first: list[str] = field(default_factory=list)
    """The languages of the first parallel unit."""
    languages: set[str] = field(default_factory=set)
    """Every language seen (parallel corpora)."""
    problems: Problems = field(default_factory=Problems)


def _scan(kind: str, spec: str, limit: int | None) -> Scan:
    scan = Scan()
    if kind == "mono":
        scan.units = sum(1 for _ in islice(read_mono(spec, scan.problems), limit))
        return scan
    for ex in islice(read_parallel(spec, scan.problems), limit):
        if not scan.units:
            scan.first = list(ex.texts)
        scan.languages.update(ex.texts)
        scan.units += 1
    return scan


def _quiet() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process alone handles Ctrl-C


def map_files(fn: Callable, jobs: list[tuple], workers: int = 0) -> list:
    """`fn(*job)` for every job (one per corpus file), in `workers` forked processes (0: one per core; one job or
    one worker: in this process); the results in the jobs' order."""
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        return [fn(*job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_quiet) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def scan_corpora(jobs: list[tuple[str, str]], problems: Problems, limit: int | None = None,
                 workers: int = 0) -> list[Scan]:
    """Read every (kind, spec) of `jobs` (kind `parallel` or `mono`) once (`map_files`), and add their problems to
    `problems` in the jobs' order."""
    scans = map_files(_scan, [(kind, str(spec), limit) for kind, spec in jobs], workers)
    for scan in scans:  # as if read one after the other: the first MAX_PROBLEMS problems, every one counted
        problems.items += scan.problems.items[:MAX_PROBLEMS - len(problems.items)]
        problems.total += scan.problems.total
    return scans
