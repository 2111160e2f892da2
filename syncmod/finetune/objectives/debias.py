"""Debiasing against a bias model (syncmod.data.shortcut.BiasModel), for classify tasks:

poe      (Clark et al., EMNLP 2019): product of experts — train the module's log-probabilities plus
         `weight` x the bias model's, so examples the bias already explains give the module little gradient;
         the module alone predicts at test time. A uniform bias model leaves the loss unchanged.
reweight (Utama et al., EMNLP 2020): each example's cross-entropy is scaled by (1 - p_bias(gold)) ** weight,
         down-weighting what the bias model gets right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from syncmod.config import at_least, one_of

METHODS = ("none", "poe", "reweight")


@dataclass
class DebiasConfig:
    """Debias module training against a bias model (classify tasks; off when method is none)."""

    method: str = "none"
    """none | poe (product of experts) | reweight (example re-weighting)."""
    weight: float = 1.0
    """Weight of the bias model: its log-probabilities' factor (poe) or the exponent of 1 - p_bias (reweight)."""
    features: list[str] | None = None
    """Words the bias model reads (a known shortcut); None: the task's shortcut.json `features` when it has one,
    else every word (a weak bag-of-words model for unknown biases)."""

    def __post_init__(self) -> None:
        one_of("method", self.method, METHODS)
        at_least(self, 0, "weight")


def poe_loss(logits: torch.Tensor, bias_log_probs: torch.Tensor, target: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the product of experts softmax(log p_module + weight * log p_bias)."""
    return F.cross_entropy(logits.float().log_softmax(-1) + weight * bias_log_probs.float(), target)


def reweighted_loss(logits: torch.Tensor, bias_log_probs: torch.Tensor, target: torch.Tensor,
                    weight: float = 1.0) -> torch.Tensor:
    """Mean over examples of (1 - p_bias(gold)) ** weight x cross-entropy."""
    p_gold = bias_log_probs.float().gather(-1, target[:, None])[:, 0].exp()
    scale = (1 - p_gold).clamp_min(0) ** weight
    return (scale * F.cross_entropy(logits.float(), target, reduction="none")).mean()


class Debias:
    """The bias model of a training split and the debiased loss of a batch."""

    def __init__(self, config: DebiasConfig, model, rows, task_dir: str):
        import json
        from pathlib import Path

        from syncmod.data.shortcut import BiasModel
        from syncmod.errors import InputError

        if model.kind != "classify":
            raise InputError.at("debias.method", f"{config.method} needs a classify task", "set debias.method=none")
        features = config.features
        card = Path(task_dir) / "shortcut.json"
        if features is None and card.exists():
            features = json.loads(card.read_text())["features"]
        self.config, self.model = config, model
        self.bias = BiasModel(rows, model.labels, features)
        self.table = {}  # text -> bias log-probs: the training rows are fixed, so each is computed once

    def loss(self, examples) -> torch.Tensor:
        missing = [e for e in examples if e.text not in self.table]
        for e, lp in zip(missing, self.bias.log_probs(missing), strict=True):
            self.table[e.text] = lp
        bias = torch.from_numpy(np.stack([self.table[e.text] for e in examples])).to(self.model.device)
        target = torch.tensor([self.model.labels.index(e.target) for e in examples], device=self.model.device)
        logits = self.model.class_logits(examples)
        fn = poe_loss if self.config.method == "poe" else reweighted_loss
        return fn(logits, bias, target, self.config.weight)
