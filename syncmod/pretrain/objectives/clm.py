"""`clm`: causal language modelling on monolingual windows, every language (every base) each step."""

from __future__ import annotations

import torch

from syncmod.pretrain.objectives.base import Objective, StepContext, causal_lm_loss, register


@register("clm")
class CLM(Objective):
    def loss(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        total = 0.0
        for lang, ids in batch.items():
            logits, _ = ctx.forward(lang, ids, None, [])
            loss, mean = causal_lm_loss(logits, ids, None)
            ctx.metrics[f"clm/{lang}"] = mean
            ctx.tokens += ids.numel()
            total = total + loss
        return total
