"""How a module answers a task.

- `generate` tasks: the LM itself writes the answer after `<sep>` (trained with CLM on the answer only).
- `classify` tasks, two heads (chosen in config):
  `linear` — a linear layer on one layer's state at one position (default: the deepest sync layer at the
  sentence-end sync point, the last token before `</s>`: between different bases only the states at sync
  layers are trained to be comparable); `label-tokens` — the LM scores each label's text after `<sep>`,
  with label strings shared by all languages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from syncmod.config import at_least
from syncmod.pretrain.sync_points import mean_pool, sentence_end


@dataclass
class HeadConfig:
    """The classify head (ignored for generate tasks)."""

    kind: Literal["linear", "label-tokens"] = "linear"
    """`linear` (a linear head on one layer's state) or `label-tokens` (the LM scores each label's text)."""
    layer: int | None = None
    """Layer the linear head reads (1-based block output); default the base's deepest sync layer."""
    position: Literal["eos", "mean"] = "eos"
    """Position it reads: `eos` (the sentence-end sync point, last token before </s>) or `mean` (mean-pooled)."""

    def __post_init__(self) -> None:
        at_least(self, 1, "layer")


class LinearHead(nn.Module):
    def __init__(self, hidden: int, labels: int):
        super().__init__()
        self.proj = nn.Linear(hidden, labels)

    def forward(self, states: torch.Tensor, mask: torch.Tensor, position: str) -> torch.Tensor:
        pooled = mean_pool(states, mask) if position == "mean" else sentence_end(states, mask)
        return self.proj(rms_norm(pooled))


def rms_norm(h: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Parameter-free RMS normalisation. Residual states can reach norms in the hundreds, and bases differ in
    scale; sync losses align *directions* (normalised states), so heads and adapters read directions."""
    return h * torch.rsqrt(h.float().pow(2).mean(-1, keepdim=True) + eps).to(h.dtype)
