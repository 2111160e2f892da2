"""The objective contract and registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from syncmod.distributed import all_sum, world_size
from syncmod.pretrain.objectives.losses import shifted_nll, sync_loss
from syncmod.pretrain.sync_points import pair_states
from syncmod.registry import registrar

OBJECTIVES: dict[str, type[Objective]] = {}
register = registrar(OBJECTIVES, "objective")


@dataclass
class StepContext:
    """What an objective may use besides its batch: the model call, the step's λ, the token ids."""

    forward: Callable[..., tuple[torch.Tensor, dict[int, torch.Tensor]]]  # (lang, ids, mask, layers)
    sync_layers: list[int]
    lam: float
    special: dict[str, int]
    project: Callable[[torch.Tensor], torch.Tensor] | None = None  # optional sync projection
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)  # device tensors: fetched when logged
    tokens: int | torch.Tensor = 0  # tokens processed on this rank (both sides of a pair count)
    # where the bases live (`syncmod.pretrain.placement`): colocated, every base is here and these are the plain
    # functions; language-parallel, a rank runs only its language's side and the pair's states are gathered
    owns: Callable[[str], bool] = field(default=lambda lang: True)
    pair_states: Callable[..., tuple[torch.Tensor, torch.Tensor]] = field(
        default=lambda part, states, layer, a, b, kind: pair_states(
            part, {a: states[a][layer], b: states[b][layer]}, a, b, kind))
    sync_loss: Callable[..., tuple[torch.Tensor, dict]] = field(default=sync_loss)


class Objective:
    """Computes the loss of one step. `batch` is what the schedule's data stream gave this step."""

    name = "objective"

    def __init__(self, config: Any):
        self.config = config

    def loss(self, batch: Any, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError


def causal_lm_loss(logits: torch.Tensor, ids: torch.Tensor,
                   mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token NLL summed over this rank, divided by the global number of predicted tokens, times the world
    size (DeepSpeed averages gradients over ranks): 1 rank and N ranks with one global batch agree exactly.
    Returns (loss for backward, global mean NLL for logging, a device scalar: no host sync)."""
    nll = shifted_nll(logits, ids)
    valid = torch.ones_like(nll, dtype=torch.bool) if mask is None else mask[:, 1:]
    local_sum = (nll * valid).sum()
    total = all_sum(valid.sum().to(nll.dtype))
    global_mean = all_sum(local_sum.detach().double()) / total
    return local_sum / total * world_size(), global_mean
