"""The schedule: which kind of step each global step is, λ at that step, and how many rows each
language gets. A pure function of (config, step, seed): every rank derives the same answers, and a
resumed run continues exactly. A custom schedule overrides `kind`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from syncmod.config import at_least, positive, require


@dataclass
class ScheduleConfig:
    """Interleaving of synchronous and asynchronous steps."""

    pattern: str = "SA"
    """Step kinds, repeated: S = synchronous, A = asynchronous, M = mixed (a synchronous and an asynchronous
    batch in one optimizer step, their losses summed). "SA" = 1 sync : 1 async, "SAAA" = 1 : 3, "SSSA" = 3 : 1,
    "S" = every step synchronous, "M" = every step both."""
    sync_warmup: int = 0
    """The first `sync_warmup` steps are all synchronous, then `pattern` applies. Measured on the synthetic
    world: asynchronous CLM steps erode alignment that is still forming, so aligning first is much faster."""
    temperature: float = 1.0
    """Language sampling temperature for `shared` bases: rows per language ∝ tokens_l^(1/T).
    T=1 follows the data, larger T flattens toward uniform. (`per-language` bases: every language equal.)"""
    pairs: Literal["all", "sample"] = "all"
    """How a synchronous step covers the pair graph when the parallel data is several corpora (e.g. pairwise
    en-xx): `all` = every corpus group gives a full batch each step; `sample` = the batch's rows are split
    among the groups by temperature sampling over their sizes (`pair_temperature`), anew each step."""
    pair_temperature: float = 1.0
    """`pairs: sample`: rows per corpus group ∝ units^(1/T); T=1 follows the data, larger T flattens."""

    def __post_init__(self) -> None:
        require(bool(self.pattern) and not set(self.pattern) - {"S", "A", "M"}, "pattern",
                f"{self.pattern!r} is not a pattern of S, A and M", 'e.g. "SA" (1 sync : 1 async), "SAAA" or "M"')
        at_least(self, 0, "sync_warmup")
        positive(self, "temperature", "pair_temperature")


class Schedule:
    def __init__(self, config: ScheduleConfig, sync_objective: str, lam: float, lam_warmup: int, seed: int,
                 lam_end: float | None = None, steps: int = 0):
        self.config, self.sync_objective, self.lam, self.lam_warmup, self.seed = (
            config, sync_objective, lam, lam_warmup, seed)
        self.lam_end, self.steps = lam_end, steps

    def kind(self, step: int) -> str:
        """`sync`, `async` or `mixed`. With no sync objective every step is asynchronous (clm-only, independent)."""
        if self.sync_objective == "none":
            return "async"
        if step < self.config.sync_warmup:
            return "sync"
        pattern = self.config.pattern
        return {"S": "sync", "A": "async", "M": "mixed"}[pattern[step % len(pattern)]]

    def lam_at(self, step: int) -> float:
        """λ at `step`: a linear ramp over `lam_warmup` steps, then `lam`; with `lam_end`, a cosine from `lam`
        to `lam_end` between the later of the two warm-ups and the last step."""
        ramp = 1.0 if self.lam_warmup <= 0 else min(1.0, (step + 1) / self.lam_warmup)
        start = max(self.lam_warmup, self.config.sync_warmup)
        if self.lam_end is None or step < start or self.steps <= start:
            return self.lam * ramp
        t = min(1.0, (step - start) / max(1, self.steps - 1 - start))
        return self.lam_end + (self.lam - self.lam_end) * 0.5 * (1 + math.cos(math.pi * t))

    def rows(self, step: int, total: int, tokens: dict[str, int], equal: bool) -> dict[str, int]:
        """How many sequences (of the global batch) each language gets at `step`: `total` each when `equal`,
        else `total` split by temperature sampling. Independent of the world size: N ranks see the rows of
        1 rank, a language's rows split unevenly over the ranks (the CLM loss is normalised globally)."""
        langs = sorted(tokens)
        if equal:
            return {lang: total for lang in langs}
        p = np.array([tokens[lang] for lang in langs], dtype=float) ** (1.0 / self.config.temperature)
        counts = np.random.default_rng([self.seed, step, 7]).multinomial(total, p / p.sum())
        return {lang: int(c) for lang, c in zip(langs, counts, strict=True) if c}


def pair_rows(rule: str, temperature: float, sizes: list[int], total: int, draw: int, *, seed: int) -> list[int]:
    """Global rows of a synchronous batch for each parallel corpus group (a pure function of its arguments,
    so every rank agrees and a resumed run repeats it): `total` each for `all`; for `sample`, `total` split
    by temperature sampling over the group sizes. The draw does not depend on the world size, so 2 ranks see
    the rows of 1 rank (a group's rows are then split unevenly over the ranks, possibly none on some: the
    losses are normalised globally). `draw` counts the synchronous batches drawn so far. Bind the first two
    and `seed` for `ParallelMix(rows=...)`."""
    if rule == "all" or len(sizes) == 1:
        return [total] * len(sizes)
    p = np.asarray(sizes, dtype=float) ** (1.0 / temperature)
    return [int(c) for c in np.random.default_rng([seed, draw, 11]).multinomial(total, p / p.sum())]
