"""`parallel-text`: x <sep> y as plain CLM — the decoder analogue of XLM's TLM. It sees the same parallel
data as `sync` but has no sync loss, so it separates the effect of the *data* from that of the *loss*.
With per-language bases, each base reads its own side first: x <sep> y in base x, y <sep> x in base y."""

from __future__ import annotations

import torch

from syncmod.data.loader import MixedBatch, ParallelBatch
from syncmod.pretrain.objectives.base import Objective, StepContext, causal_lm_loss, register


def concat(first: torch.Tensor, first_mask: torch.Tensor, second: torch.Tensor, second_mask: torch.Tensor,
           sep: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row by row x <sep> y (x without its </s>; y keeps its tag and </s>), right-padded to the width of both
    inputs. Tensor operations only: no per-row loop, no wait for the host."""
    nx, ny = first_mask.sum(1, keepdim=True), second_mask.sum(1, keepdim=True)
    pos = torch.arange(first.shape[1] + second.shape[1], device=first.device)[None]
    x = first.gather(1, pos.clamp(max=first.shape[1] - 1).expand(first.shape[0], -1))
    y = second.gather(1, (pos - nx).clamp(0, second.shape[1] - 1))
    out = torch.where(pos < nx - 1, x, torch.where(pos == nx - 1, torch.full_like(x, sep), y))
    keep = pos < nx + ny
    return torch.where(keep, out, torch.full_like(out, pad)), keep.expand(first.shape[0], -1)


@register("parallel-text")
class ParallelText(Objective):
    def loss(self, batch: ParallelBatch | MixedBatch, ctx: StepContext) -> torch.Tensor:
        if isinstance(batch, MixedBatch):  # several corpus groups (e.g. pairwise en-xx): each part on its own
            return sum(self.loss(part, ctx) for part in batch.parts)
        langs = list(batch.ids)
        total = 0.0
        for i, lang in enumerate(langs):
            other = langs[(i + 1) % len(langs)]  # each language paired with the next, every base fed
            if not ctx.owns(lang):  # language-parallel: this rank's language only
                continue
            ids, mask = concat(batch.ids[lang], batch.mask[lang], batch.ids[other], batch.mask[other],
                               ctx.special["sep"], ctx.special["pad"])
            logits, _ = ctx.forward(lang, ids, None, [])  # right-padded: no padding mask (`forward_side`)
            loss, mean = causal_lm_loss(logits, ids, mask)
            ctx.metrics[f"ptext/{lang}"] = mean
            ctx.tokens = ctx.tokens + mask.sum()
            total = total + loss
        return total
