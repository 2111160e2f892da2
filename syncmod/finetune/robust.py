"""The training loss of a module with the robust-training options (syncmod.finetune.objectives), one place:

    loss = task loss          mle: teacher-forced cross-entropy (classify: cross-entropy over labels)
                              token-align / scheduled-sampling: in its place (generate)
                              debias poe / reweight: in its place (classify)
         + objective.weight * seq-align or SRand on the module's own generations (generate)
         + uda.weight       * consistency on augmented unlabelled inputs
SAM changes the step, not the loss (finetune/train.py: `_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from syncmod.config import at_least, one_of
from syncmod.finetune.objectives import scheduled_sampling as ss
from syncmod.finetune.objectives import soft_align as sa
from syncmod.finetune.objectives.debias import Debias
from syncmod.finetune.objectives.uda import Uda
from syncmod.modules.runtime import _lm_loss

OBJECTIVES = ("mle", "token-align", "seq-align", "srand", "scheduled-sampling")


@dataclass
class ObjectiveConfig:
    """The generation objective (generate tasks)."""

    name: str = "mle"
    """mle | token-align (soft targets over top-k) | seq-align (own outputs, alignment-weighted) | srand (seq-align
    with random scores) | scheduled-sampling."""
    weight: float = 1.0
    """seq-align / srand: weight of the added objective (the teacher-forced loss stays)."""
    top_k: int = 8
    """token-align: the model's top-k candidates beside the reference."""
    max_new_tokens: int = 8
    """seq-align / srand: length of the module's own answers."""
    max_rate: float = 0.25
    """scheduled-sampling: share of answer inputs taken from the model at the last step (linear ramp from 0)."""

    def __post_init__(self) -> None:
        one_of("objective.name", self.name, OBJECTIVES)
        at_least(self, 0, "weight", "max_rate")
        at_least(self, 1, "top_k", "max_new_tokens")


class Robust:
    """The loss of one training step; `step` is advanced by the loop (scheduled sampling reads it)."""

    def __init__(self, cfg, model, task, bases):
        self.cfg, self.model, self.step, self.steps = cfg, model, 0, cfg.train.steps
        obj = cfg.objective
        if obj.name != "mle" and model.kind != "generate":
            from syncmod.errors import InputError

            raise InputError.at("objective.name", f"{obj.name} is a generation objective; {task.name} is {task.kind}",
                                "use objective.name=mle on classify tasks")
        self.sim = sa.cosine_similarity(model.model.get_input_embeddings().weight) if obj.name in (
            "token-align", "seq-align") else None
        self.gen = torch.Generator().manual_seed(cfg.train.seed)
        self.uda = Uda(cfg.uda, model, task, cfg.lang, bases, cfg.train.seed) if cfg.uda.weight > 0 else None
        self.debias = Debias(cfg.debias, model, task.split("train", cfg.lang), cfg.task) \
            if cfg.debias.method != "none" else None

    @property
    def active(self) -> bool:
        return self.uda is not None or self.debias is not None or self.cfg.objective.name != "mle"

    def loss(self, examples) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        extras: dict[str, torch.Tensor] = {}
        loss = self._task_loss(examples, extras)
        if self.uda is not None:
            extras["uda"] = self.uda.loss()
            loss = loss + self.cfg.uda.weight * extras["uda"]
        return loss, extras

    def _task_loss(self, examples, extras: dict) -> torch.Tensor:
        obj, model = self.cfg.objective, self.model
        if self.debias is not None:
            return self.debias.loss(examples)
        if obj.name == "mle" or model.kind != "generate":
            return model.loss(examples)
        ids, mask, loss_mask = (t.to(model.device) for t in model.enc.generate_train(examples))
        if obj.name == "scheduled-sampling":
            return ss.scheduled_sampling_loss(model.model, ids, mask, loss_mask,
                                              ss.rate(self.step, self.steps, obj.max_rate), self.gen).mean()
        logits = model.model(input_ids=ids, attention_mask=mask).logits
        if obj.name == "token-align":
            return sa.token_align_loss(logits, ids, loss_mask, self.sim, obj.top_k).mean()
        extras[obj.name] = sa.seq_align_loss(model, examples, self.sim, obj.max_new_tokens, self.gen)
        return _lm_loss(logits, ids, loss_mask).mean() + obj.weight * extras[obj.name]
