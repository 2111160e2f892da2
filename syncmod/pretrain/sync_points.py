"""Sync points: which states of two parallel sides are compared, for each kind.

- `eos`:   the sentence end only (the last cut of each unit);
- `cut`:   every crossing-free cut (x[:a] and y[:b] are translations); a cut sits on the last sub-token
           of word a and of word b, so in a causal LM each state sees exactly the shared prefix;
- `mean`:  mean-pooled states over each sentence (not causal-safe; a baseline);
- `token`: a dedicated `<sync>` token appended after each sentence, whose state is compared.
"""

from __future__ import annotations

import torch

from syncmod.data.loader import ParallelBatch

KINDS = ("eos", "cut", "mean", "token")


def add_sync_token(batch: ParallelBatch, sync_id: int, pad_id: int) -> ParallelBatch:
    """Insert `<sync>` before each side's final `</s>`; the sentence-end cut moves onto it. Tensor operations
    only (no per-row loop, no wait for the host); the result is one unit a row (not packed)."""
    ids, mask = {}, {}
    for lang, x in batch.ids.items():
        n = batch.mask[lang].sum(1, keepdim=True)  # (B, 1) tokens per row, </s> at n - 1
        pos = torch.arange(x.shape[1] + 1, device=x.device)[None]
        shifted = x.gather(1, torch.where(pos < n - 1, pos, pos - 1).clamp(0, x.shape[1] - 1))
        out = torch.where(pos == n - 1, torch.full_like(shifted, sync_id), shifted)
        ids[lang] = torch.where(pos <= n, out, torch.full_like(out, pad_id))
        mask[lang] = (pos <= n).expand(x.shape[0], -1)
    if batch.ends is not None:  # the loader's sentence-end cuts: moved onto <sync> where they sit before </s>
        ends = {}
        for (a, b), c in batch.ends.items():
            at_end = (c[:, 1] == batch.mask[a].sum(1)[c[:, 0]] - 2) & (c[:, 2] == batch.mask[b].sum(1)[c[:, 0]] - 2)
            ends[(a, b)] = c + at_end[:, None] * torch.tensor([0, 1, 1], device=c.device)
        return ParallelBatch(ids, mask, ends, None, ends)
    cuts = {}
    for (a, b), c in batch.cuts.items():
        c = c.clone()
        rows = c[:, 0]
        end_a = batch.mask[a].sum(1)[rows] - 2  # last content token before </s>
        end_b = batch.mask[b].sum(1)[rows] - 2
        is_end = (c[:, 1] == end_a) & (c[:, 2] == end_b)
        c[is_end, 1] += 1
        c[is_end, 2] += 1
        cuts[(a, b)] = c[is_end]
    return ParallelBatch(ids, mask, cuts)


def select(batch: ParallelBatch, a: str, b: str, kind: str) -> torch.Tensor:
    """(K, 3) rows of (unit row, position in a, position in b) for the kind (`eos`, `cut`, `token`)."""
    c = batch.cuts[(a, b)] if (a, b) in batch.cuts else batch.cuts[(b, a)][:, [0, 2, 1]]
    if kind == "cut":
        return c
    if batch.ends is not None:  # found by the loader: no boolean indexing (a wait for the host) in the step
        return batch.ends[(a, b)] if (a, b) in batch.ends else batch.ends[(b, a)][:, [0, 2, 1]]
    # the sentence-end cut is the last one of each unit
    last = torch.ones(len(c), dtype=torch.bool, device=c.device)
    if len(c) > 1:
        last[:-1] = c[1:, 0] != c[:-1, 0]
    return c[last]


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sentence's tokens, leaving out the language tag at position 0."""
    m = mask.clone()
    m[:, 0] = False
    m = m.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp_min(1)


def sentence_end(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each right-padded row's state at its sentence-end sync point: the last token before </s>."""
    return states[torch.arange(states.shape[0], device=states.device), mask.sum(1) - 2]


def forward_side(forward, batch: ParallelBatch, lang: str, layers: list[int]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor, dict]:
    """Run one side of a parallel batch: (logits, ids, mask of predicted tokens for `causal_lm_loss`, states at
    `layers` in the batch's unit-per-row layout, so sync points index them as always). A packed side runs its
    full rows (block-diagonal mask, positions restarting per unit) and its states are unpacked.

    An unpacked side is right-padded and runs without its padding mask: under the causal mask no real token
    attends to the padding after it, and positions count from 0 either way, so every real token's logits and
    states are the same (bitwise on CPU SDPA: tests/test_unpadded.py), while SDPA takes its causal fast path
    and transformers neither builds a 4-D mask nor checks the padding mask on the host. The padding positions
    compute something else, so every loss and pooling keeps masking them (`causal_lm_loss`, `mean_pool`, cuts)."""
    p = batch.packed.get(lang) if batch.packed else None
    if p is None:
        logits, states = forward(lang, batch.ids[lang], None, layers)
        return logits, batch.ids[lang], batch.mask[lang], states
    logits, states = forward(lang, p.ids, p.attention_mask(), layers, p.positions)
    return logits, p.ids, p.targets, {k: p.unpack(v) for k, v in states.items()}


def pair_states(batch: ParallelBatch, states: dict[str, torch.Tensor], a: str, b: str,
                kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """States of side a and side b at the sync points of the pair: two (K, d) tensors, row-aligned."""
    if kind == "mean":
        return mean_pool(states[a], batch.mask[a]), mean_pool(states[b], batch.mask[b])
    c = select(batch, a, b, kind)
    return states[a][c[:, 0], c[:, 1]], states[b][c[:, 0], c[:, 2]]
