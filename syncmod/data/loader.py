"""Streaming batches from shards, sharded across ranks, with a position that saves and restores exactly.

Parallel data may be several corpus groups (an N-way corpus, pairwise en-xx corpora): `ParallelMix` keeps a
cursor per group and draws a synchronous batch over the pair graph by the schedule's rule.

Both streams walk a seeded permutation of their samples, epoch after epoch. A global batch is the next
`global_batch` samples of the permutation; rank r takes every world_size-th of them starting at r. So
1 rank and 2 ranks with the same global batch see the same samples, and the state is two integers.
Memory is the permutation (8 bytes a sample) plus the memory-mapped arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from syncmod.data.packing import Packed, pack
from syncmod.data.shards import Shards
from syncmod.data.task_inputs import pad


class _Cursor:
    """Position in an endless sequence of seeded permutations of range(n)."""

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("no samples to iterate over")
        self.n, self.seed, self.epoch, self.pos = n, seed, 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def take(self, k: int) -> np.ndarray:
        out = []
        while k:
            step = min(k, self.n - self.pos)
            out.append(self._perm[self.pos:self.pos + step])
            self.pos, k = self.pos + step, k - step
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation()
        return np.concatenate(out)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation()


class MonoStream:
    """Causal-LM windows of `seq_len + 1` tokens cut from one language's concatenated documents."""

    def __init__(self, shards: Shards, lang: str, seq_len: int, seed: int, rank: int = 0, world_size: int = 1):
        self.tokens, _ = shards.sequences("mono", lang)
        self.seq_len, self.rank, self.world_size = seq_len, rank, world_size
        n = (len(self.tokens) - 1) // seq_len
        if n <= 0:
            raise ValueError(f"monolingual {lang} has {len(self.tokens)} tokens, fewer than one window of {seq_len + 1}")
        self.cursor = _Cursor(n, seed)

    def next(self, global_batch: int) -> torch.Tensor:
        """This rank's share of the next global batch: (rows, seq_len + 1) int64, every world_size-th window
        from this rank's offset (uneven when world_size does not divide the batch; possibly no rows)."""
        starts = self.cursor.take(global_batch)[self.rank::self.world_size] * self.seq_len
        rows = [np.asarray(self.tokens[s:s + self.seq_len + 1], np.int64) for s in starts]
        return torch.from_numpy(np.stack(rows)) if rows else torch.zeros((0, self.seq_len + 1), dtype=torch.long)

    def state_dict(self) -> dict:
        return self.cursor.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.cursor.load_state_dict(state)


@dataclass
class ParallelBatch:
    """One side per language, right-padded, with the sync cuts of every language pair."""

    ids: dict[str, torch.Tensor]  # lang -> (B, T) int64
    mask: dict[str, torch.Tensor]  # lang -> (B, T) bool
    cuts: dict[tuple[str, str], torch.Tensor]  # (a, b) -> (K, 3): row in batch, position in a, position in b
    packed: dict[str, Packed] | None = None  # lang -> the same units packed into full rows (`data.pack`)
    ends: dict[tuple[str, str], torch.Tensor] | None = None  # (a, b) -> the last cut of each unit (sentence end)

    def to(self, device: torch.device | str) -> ParallelBatch:
        move = lambda d: None if d is None else {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return ParallelBatch(move(self.ids), move(self.mask), move(self.cuts), move(self.packed), move(self.ends))


class ParallelStream:
    """Batches of parallel units for the languages `langs` of one corpus group (`prefix`: "par" is the first;
    all rows are translations of each other)."""

    def __init__(self, shards: Shards, langs: list[str], seed: int, max_len: int, pad_id: int,
                 rank: int = 0, world_size: int = 1, prefix: str = "par", pack: int = 0):
        self.langs, self.max_len, self.pad_id, self.pack = langs, max_len, pad_id, pack  # pack: row width, 0 = off
        self.rank, self.world_size = rank, world_size
        self.seqs = {lang: shards.sequences(prefix, lang) for lang in langs}
        self.cut_arrays = {(a, b): shards.cuts(a, b, prefix) for i, a in enumerate(langs) for b in langs[i + 1:]}
        self.cursor = _Cursor(len(self.seqs[langs[0]][1]) - 1, seed)

    def next(self, global_batch: int) -> ParallelBatch:
        return self.batch(self.cursor.take(global_batch)[self.rank::self.world_size])

    def batch(self, units: np.ndarray) -> ParallelBatch:
        """The batch of the given unit indices (e.g. a fixed held-out set in file order)."""
        ids, mask, packed = {}, {}, {}
        for lang, (tokens, index) in self.seqs.items():
            rows = [np.asarray(tokens[index[u]:min(index[u + 1], index[u] + self.max_len)], np.int64) for u in units]
            # a rank's share of a sampled group may be empty: (0, 1) sides keep the step's collectives in step
            ids[lang], mask[lang] = pad(rows, self.pad_id) if rows else (torch.zeros((0, 1), dtype=torch.long),
                                                                        torch.zeros((0, 1), dtype=torch.bool))
            if self.pack and rows:
                packed[lang] = pack(rows, self.pad_id, self.pack, ids[lang].shape[1])
        cuts, ends = {}, {}
        for (a, b), (arr, index, swapped) in self.cut_arrays.items():
            rows = []
            for k, u in enumerate(units):
                c = np.asarray(arr[index[u]:index[u + 1]])
                if swapped:
                    c = c[:, ::-1]
                keep = (c[:, 0] < ids[a].shape[1]) & (c[:, 1] < ids[b].shape[1]) & (c[:, 0] < self.max_len) & (c[:, 1] < self.max_len)
                c = c[keep]
                rows.append(np.column_stack([np.full(len(c), k), c]))
            cuts[(a, b)] = torch.from_numpy(np.concatenate(rows).astype(np.int64)) if rows else torch.zeros(0, 3, dtype=torch.long)
            last = [r[-1:] for r in rows]  # the sentence-end cut of each unit, found here so a step never asks
            ends[(a, b)] = torch.from_numpy(np.concatenate(last).astype(np.int64)) if last else torch.zeros(0, 3, dtype=torch.long)
        return ParallelBatch(ids, mask, cuts, packed or None, ends)

    def state_dict(self) -> dict:
        return self.cursor.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.cursor.load_state_dict(state)


@dataclass
class MixedBatch:
    """A synchronous batch drawn from several corpus groups: one `ParallelBatch` per group (e.g. one per en-xx
    pairwise corpus); only the pairs inside a part are translations of each other."""

    parts: list[ParallelBatch]

    def to(self, device: torch.device | str) -> MixedBatch:
        return MixedBatch([p.to(device) for p in self.parts])

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(a, b) for p in self.parts for i, a in enumerate(p.ids) for b in list(p.ids)[i + 1:]]


class ParallelMix:
    """Synchronous batches over the pair graph: one stream (own cursor) per corpus group that holds two or more
    of `langs`; the n-th draw gives group g `rows(sizes, global_batch, n)[g]` rows (the schedule's rule,
    `syncmod.pretrain.schedule.pair_rows`; default: a full batch from every group). With a single group a draw
    is that group's `ParallelBatch`, exactly as one `ParallelStream` gives it."""

    def __init__(self, shards: Shards, langs: list[str], seed: int, max_len: int, pad_id: int, rank: int = 0,
                 world_size: int = 1, rows: Callable[[list[int], int, int], list[int]] | None = None, pack: int = 0):
        self.streams, self.sizes = [], []
        for i, group in enumerate(shards.groups):
            have = [lang for lang in langs if lang in group["languages"]]  # the run's order, as before groups
            if len(have) >= 2 and group["units"]:
                self.streams.append(ParallelStream(shards, have, seed + 7919 * i, max_len, pad_id, rank, world_size,
                                                   group["prefix"], pack))
                self.sizes.append(group["units"])
        if not self.streams:
            raise ValueError(f"no parallel corpus connects two of {langs}")
        self.rows, self.draws = rows or (lambda sizes, total, draw: [total] * len(sizes)), 0

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(a, b) for s in self.streams for i, a in enumerate(s.langs) for b in s.langs[i + 1:]]

    def next(self, global_batch: int) -> ParallelBatch | MixedBatch:
        rows = self.rows(self.sizes, global_batch, self.draws)
        self.draws += 1
        if len(self.streams) == 1:
            return self.streams[0].next(rows[0])
        return MixedBatch([s.next(n) for s, n in zip(self.streams, rows, strict=True) if n])

    def state_dict(self) -> dict:
        return {"draws": self.draws, "streams": [s.state_dict() for s in self.streams]}

    def load_state_dict(self, state: dict) -> None:
        if "streams" not in state:  # a checkpoint from before corpus groups: one stream's position
            state = {"draws": 0, "streams": [state]}
        if len(state["streams"]) != len(self.streams):
            raise ValueError(f"checkpoint has {len(state['streams'])} parallel streams, the data has {len(self.streams)}")
        self.draws = int(state["draws"])
        for s, st in zip(self.streams, state["streams"], strict=True):
            s.load_state_dict(st)
