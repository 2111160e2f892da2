"""The blocks below a module, run once for every module on one base.

A module attached at block k changes nothing below it: the state after block k - 1 is the base's own, the same
for the floor's head and for every module on that base. When several modules are scored on one loaded base,
the first forward of a batch records that state, and every later forward of the same batch (same token ids,
same mask) replays it instead of running the blocks again; the blocks from k up run as usual. Replayed states
are the very tensors the blocks returned, so predictions are bit-identical to full forwards.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch
from torch import nn

from syncmod.pretrain.model import decoder_layers


class _Replay(nn.Module):
    """Stands in for a block: returns what the block returned for this batch (attributes read from the block,
    e.g. `attention_type`, still come from it)."""

    def __init__(self, block: nn.Module, output):
        super().__init__()
        object.__setattr__(self, "_block", block)  # not a submodule: the block stays where it was
        object.__setattr__(self, "_output", output)

    def forward(self, *_args, **_kwargs):
        return self._output

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_block"), name)


class PrefixCache:
    """States after block `depth` per batch, for one loaded base (make a new one for another base). At most
    `budget_bytes` of states are kept; batches beyond it run in full."""

    def __init__(self, budget_bytes: int = 1 << 30):
        self.budget, self.used = budget_bytes, 0
        self.states: dict[tuple, object] = {}

    @staticmethod
    def _key(depth: int, ids: torch.Tensor, mask: torch.Tensor) -> tuple:
        h = hashlib.sha256(ids.detach().cpu().numpy().tobytes())
        h.update(mask.detach().cpu().numpy().tobytes())
        return depth, tuple(ids.shape), h.hexdigest()

    @contextlib.contextmanager
    def reuse(self, model: nn.Module, depth: int, ids: torch.Tensor, mask: torch.Tensor) -> Iterator[None]:
        """Within this block, a forward of `model` on (ids, mask) runs blocks 1..depth only the first time."""
        if depth < 1:
            yield
            return
        blocks = decoder_layers(model)
        key = self._key(depth, ids, mask)
        if key in self.states:
            originals = [blocks[i] for i in range(depth)]
            for i, block in enumerate(originals):
                blocks[i] = _Replay(block, self.states[key])
            try:
                yield
            finally:
                for i, block in enumerate(originals):
                    blocks[i] = block
            return
        handle = blocks[depth - 1].register_forward_hook(lambda _m, _i, out: self._keep(key, out))
        try:
            yield
        finally:
            handle.remove()

    def _keep(self, key: tuple, out) -> None:
        size = sum(t.numel() * t.element_size() for t in (out if isinstance(out, tuple) else (out,))
                   if isinstance(t, torch.Tensor))
        if self.used + size <= self.budget:  # a copy: nothing downstream can change it in place
            kept = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in out) if isinstance(out, tuple) \
                else out.clone()
            self.states[key], self.used = kept, self.used + size
