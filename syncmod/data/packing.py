"""Packing parallel units into full rows: consecutive units of one language side share a row, each attending
only to itself (a block-diagonal causal mask) with positions restarting at 0, so every state is exactly the
state of the unit alone. A synchronous step then runs rows as full as an asynchronous step's instead of one
short, padded unit per row.

The layout is computed on the host, in the loader (numpy), so the step itself never waits for the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Packed:
    """One language side of a parallel batch, packed: R rows of width S holding U units."""

    ids: torch.Tensor  # (R, S) int64, padded with the pad id
    segments: torch.Tensor  # (R, S) int64: the unit's number within its row; -1 on padding
    positions: torch.Tensor  # (R, S) int64: position within the unit
    targets: torch.Tensor  # (R, S) bool: token t is predicted from t-1 of the same unit (for `causal_lm_loss`)
    index: torch.Tensor  # (U, T) int64: flat position r*S+s of each unit token in the unpadded layout; 0 on padding

    def to(self, device: torch.device | str) -> Packed:
        return Packed(*(t.to(device, non_blocking=True) for t in
                        (self.ids, self.segments, self.positions, self.targets, self.index)))

    def attention_mask(self) -> torch.Tensor:
        """(R, 1, S, S) bool, True where a query may attend: causal and within its unit (padding attends to
        padding, so no row of the mask is empty)."""
        s = self.segments
        causal = torch.ones(s.shape[1], s.shape[1], dtype=torch.bool, device=s.device).tril()
        return ((s[:, :, None] == s[:, None, :]) & causal)[:, None]

    def unpack(self, states: torch.Tensor) -> torch.Tensor:
        """(R, S, d) packed states -> (U, T, d) in the unit-per-row layout of the batch's `ids`."""
        flat = states.reshape(-1, states.shape[-1])
        return flat[self.index.reshape(-1)].view(*self.index.shape, states.shape[-1])


def pack(rows: list[np.ndarray], pad_id: int, width: int, unit_width: int) -> Packed:
    """Pack `rows` (one unit's tokens each, in order) greedily into rows of `max(width, longest unit)` tokens;
    `unit_width` is the padded width T of the unpacked batch (for `Packed.index`)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    width = int(max(width, lengths.max(initial=1)))
    place, r, used, seg = [], 0, 0, -1  # (row, start, unit number in the row) of each unit
    for n in lengths:
        if used + n > width and used > 0:
            r, used, seg = r + 1, 0, -1
        seg += 1
        place.append((r, used, seg))
        used += n
    n_rows = r + 1 if rows else 0
    ids = np.full((n_rows, width), pad_id, np.int64)
    segments = np.full((n_rows, width), -1, np.int64)
    positions = np.zeros((n_rows, width), np.int64)
    targets = np.zeros((n_rows, width), bool)
    index = np.zeros((len(rows), unit_width), np.int64)
    for u, (tokens, n, (r, s, seg)) in enumerate(zip(rows, lengths, place, strict=True)):
        ids[r, s:s + n] = tokens
        segments[r, s:s + n] = seg
        positions[r, s:s + n] = np.arange(n)
        targets[r, s + 1:s + n] = True
        index[u, :n] = r * width + s + np.arange(n)
    return Packed(*(torch.from_numpy(a) for a in (ids, segments, positions, targets, index)))
