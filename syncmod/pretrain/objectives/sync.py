"""`sync` and `shuffled-sync`: CLM on every side of a batch of translations plus λ · sync loss between the
sides' states at the sync points, at every sync layer, for every language pair the batch holds (all pairs
of an N-way batch; per part, the pairs of a batch drawn from several corpus groups such as pairwise en-xx).

`shuffled-sync` is the negative control: the same data and loss, but side b of each pair is rolled by
one unit, so the loss pulls together sentence ends that are *not* translations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from syncmod.config import at_least, positive, require
from syncmod.data.loader import MixedBatch, ParallelBatch
from syncmod.pretrain.objectives.base import Objective, StepContext, causal_lm_loss, register
from syncmod.pretrain.sync_points import add_sync_token, forward_side


@dataclass
class SyncConfig:
    """What a synchronous step does."""

    objective: str = "sync"
    """Objective of synchronous steps: `sync`, `parallel-text`, `shuffled-sync`, or `none` (no sync steps:
    `clm-only`; with `per-language` bases, the `independent` control)."""
    kind: str = "eos"
    """Sync points: `eos` (sentence end), `cut` (all crossing-free cuts), `mean` (mean-pooled), `token` (<sync>)."""
    layers: list[int] | Literal["middle", "dense"] | None = None
    """Layers whose states are synced (1..num_layers; output of that block). `middle` (= None): the middle
    layer; `dense`: every block but the last (1..num_layers-1: the last block's output feeds each language's own
    LM head), for any depth; or a list of layer numbers."""
    loss: str = "infonce"
    """`infonce` (symmetric, negatives gathered across ranks), `cosine` (1 - cos), `mse` (pivot stop-gradient)."""
    temperature: float = 0.1
    """InfoNCE temperature τ."""
    lam: float = 1.0
    """λ: weight of the sync loss against the CLM loss of the sides."""
    lam_warmup: int = 0
    """Steps over which λ ramps linearly from 0 to `lam`."""
    lam_end: float | None = None
    """λ at the last step: after `schedule.sync_warmup` (and `lam_warmup`), λ follows a cosine from `lam` down
    (or up) to `lam_end`. None = λ stays at `lam`."""
    pivot: str | None = None
    """The language that is not pulled: its states are stop-gradient targets of the sync loss (any loss).
    Default: none for `infonce` / `cosine`; the first language for `mse`."""
    projection: bool = False
    """Pass states through a learned linear projection (shared by all bases) before the loss."""
    dims: int | None = None
    """Sync only a subspace: the first `dims` coordinates of the states (after the projection, if any); the
    rest of the hidden state is left to each base. None = the whole state."""

    def __post_init__(self) -> None:
        positive(self, "temperature")
        at_least(self, 0, "lam", "lam_warmup", "lam_end")
        at_least(self, 1, "dims")
        require(self.layers is None or len(self.layers) > 0, "layers", "is empty",
                "give layers, `middle` or `dense`")

    def resolved_layers(self, num_layers: int) -> list[int]:
        if self.layers == "dense":
            return list(range(1, num_layers)) or [1]
        if self.layers is None or self.layers == "middle":
            return [max(1, num_layers // 2)]
        return list(self.layers)


@register("sync")
class Sync(Objective):
    shuffled = False

    def loss(self, batch: ParallelBatch | MixedBatch, ctx: StepContext) -> torch.Tensor:
        """CLM on every side + λ · the mean sync loss over the pairs present (a `MixedBatch` from several corpus
        groups, e.g. pairwise en-xx corpora: the pairs inside each part; a pair without annotated cuts has only
        its sentence end, so `cut` is `eos` there)."""
        cfg: SyncConfig = self.config
        total, clm, terms = 0.0, {}, []
        for part in batch.parts if isinstance(batch, MixedBatch) else [batch]:
            if cfg.kind == "token":
                part = add_sync_token(part, ctx.special["sync"], ctx.special["pad"])
            loss, states = self._sides(part, ctx, clm)
            total = total + loss
            terms += self._pairs(part, states, ctx)
        for lang, means in clm.items():
            ctx.metrics[f"clm/{lang}"] = sum(means) / len(means)
        for key in ("loss", "acc", "cos"):
            vals = [st[key] for _, st in terms if key in st]
            if vals:
                ctx.metrics[f"sync/{key}"] = sum(vals) / len(vals)
        ctx.metrics["sync/lambda"] = ctx.lam
        return total + ctx.lam * sum(loss for loss, _ in terms) / len(terms)

    def _sides(self, part: ParallelBatch, ctx: StepContext, clm: dict) -> tuple[torch.Tensor, dict]:
        """Forward every side of one part: the summed CLM loss and each side's states at the sync layers."""
        states, total = {}, 0.0
        for lang in filter(ctx.owns, part.ids):  # language-parallel: this rank's language only
            logits, ids, targets, layer_states = forward_side(ctx.forward, part, lang, ctx.sync_layers)
            loss, mean = causal_lm_loss(logits, ids, targets)
            clm.setdefault(lang, []).append(mean)
            ctx.tokens = ctx.tokens + part.mask[lang].sum()
            total = total + loss
            states[lang] = layer_states
        return total, states

    def _pairs(self, part: ParallelBatch, states: dict, ctx: StepContext) -> list[tuple[torch.Tensor, dict]]:
        """(sync loss, stats) for every pair of the part at every sync layer."""
        cfg: SyncConfig = self.config
        langs = list(part.ids)
        pivot = cfg.pivot or (langs[0] if cfg.loss == "mse" else None)  # the side that is not pulled
        out = []
        for layer in ctx.sync_layers:
            for i, a in enumerate(langs):
                for b in langs[i + 1:]:
                    za, zb = ctx.pair_states(part, states, layer, a, b, "eos" if self.shuffled else cfg.kind)
                    if self.shuffled:
                        zb = zb.roll(1, dims=0)
                    if ctx.project is not None:
                        za, zb = ctx.project(za), ctx.project(zb)
                    if cfg.dims:
                        za, zb = za[:, :cfg.dims], zb[:, :cfg.dims]
                    out.append(ctx.sync_loss(za, zb, cfg.loss, cfg.temperature, stop_a=a == pivot, stop_b=b == pivot))
        return out


@register("shuffled-sync")
class ShuffledSync(Sync):
    shuffled = True
