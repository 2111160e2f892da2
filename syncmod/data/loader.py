"""Streaming batches from shards, sharded across ranks, with a position that saves and restores exactly.

Both streams walk a seeded permutation of their samples, epoch after epoch. A global batch is the next
`global_batch` samples of the permutation; rank r takes every world_size-th of them starting at r. So
1 rank and 2 ranks with the same global batch see the same samples, and the state is two integers.
Memory is the permutation (8 bytes a sample) plus the memory-mapped arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from syncmod.data.shards import Shards


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
        """This rank's share of the next global batch: (global_batch // world_size, seq_len + 1) int64."""
        starts = self.cursor.take(global_batch)[self.rank::self.world_size] * self.seq_len
        rows = [np.asarray(self.tokens[s:s + self.seq_len + 1], np.int64) for s in starts]
        return torch.from_numpy(np.stack(rows))

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

    def to(self, device: torch.device | str) -> ParallelBatch:
        return ParallelBatch({k: v.to(device) for k, v in self.ids.items()},
                             {k: v.to(device) for k, v in self.mask.items()},
                             {k: v.to(device) for k, v in self.cuts.items()})


class ParallelStream:
    """Batches of parallel units for the languages `langs` (all rows are translations of each other)."""

    def __init__(self, shards: Shards, langs: list[str], seed: int, max_len: int, pad_id: int,
                 rank: int = 0, world_size: int = 1):
        self.langs, self.max_len, self.pad_id = langs, max_len, pad_id
        self.rank, self.world_size = rank, world_size
        self.seqs = {lang: shards.sequences("par", lang) for lang in langs}
        self.cut_arrays = {(a, b): shards.cuts(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]}
        self.cursor = _Cursor(len(self.seqs[langs[0]][1]) - 1, seed)

    def next(self, global_batch: int) -> ParallelBatch:
        return self.batch(self.cursor.take(global_batch)[self.rank::self.world_size])

    def batch(self, units: np.ndarray) -> ParallelBatch:
        """The batch of the given unit indices (e.g. a fixed held-out set in file order)."""
        ids, mask = {}, {}
        for lang, (tokens, index) in self.seqs.items():
            rows = [np.asarray(tokens[index[u]:min(index[u + 1], index[u] + self.max_len)], np.int64) for u in units]
            width = max(len(r) for r in rows)
            out = np.full((len(rows), width), self.pad_id, np.int64)
            m = np.zeros((len(rows), width), bool)
            for k, r in enumerate(rows):
                out[k, :len(r)], m[k, :len(r)] = r, True
            ids[lang], mask[lang] = torch.from_numpy(out), torch.from_numpy(m)
        cuts = {}
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
        return ParallelBatch(ids, mask, cuts)

    def state_dict(self) -> dict:
        return self.cursor.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.cursor.load_state_dict(state)
