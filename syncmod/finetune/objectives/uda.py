"""Unsupervised data augmentation (Xie et al., NeurIPS 2020): on unlabelled inputs, the module's prediction on an
augmented version is pulled towards its prediction on the original (KL(p(x) || p(aug x)), p(x) without gradient).

Augmentations: `dropout` (each word dropped with probability `dropout`), `swap` (`swaps` random adjacent words
exchanged), and the cross-lingual one, `translate`: the same item (same id) in another language of the task,
read by that language's base with the same module weights attached — UDA as a transfer method.
The prediction compared is the class distribution (classify) or the first answer token's distribution (generate).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from syncmod.config import at_least, require
from syncmod.data.task_inputs import pad
from syncmod.data.tasks import Task, TaskExample

AUGMENTATIONS = ("dropout", "swap", "translate")


@dataclass
class UdaConfig:
    """Consistency training on augmented unlabelled inputs (off when weight is 0)."""

    weight: float = 0.0
    """Weight of the consistency loss; 0 = off."""
    augment: list[str] = field(default_factory=lambda: ["dropout"])
    """Augmentations, each adding a KL term: dropout | swap | translate."""
    dropout: float = 0.1
    """`dropout`: probability of dropping each word."""
    swaps: int = 1
    """`swap`: adjacent word pairs exchanged."""
    langs: list[str] = field(default_factory=list)
    """`translate`: languages whose version of the same item is the augmentation (their base, same module)."""
    unlabelled: str | None = None
    """Task directory whose training inputs serve as unlabelled data (labels unused); default: the task's own."""
    batch_size: int = 16
    """Unlabelled inputs per step."""

    def __post_init__(self) -> None:
        at_least(self, 0, "weight", "swaps")
        at_least(self, 1, "batch_size")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        for a in self.augment:
            require(a in AUGMENTATIONS, "augment", f"unknown augmentation {a!r}", f"use {', '.join(AUGMENTATIONS)}")
        require("translate" not in self.augment or bool(self.langs), "langs", "translate needs languages",
                "set uda.langs, e.g. [xa, xb]")


def token_dropout(text: str, p: float, rng: random.Random) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept or words[:1])


def word_swap(text: str, n: int, rng: random.Random) -> str:
    words = text.split()
    for _ in range(n if len(words) > 1 else 0):
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def consistency(clean_logp: torch.Tensor, aug_logp: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || p_aug), mean over rows; the clean side is a fixed target."""
    p = clean_logp.detach().exp()
    return (p * (clean_logp.detach() - aug_logp)).sum(-1).mean()


def predictive(model, examples: list[TaskExample]) -> torch.Tensor:
    """Log-probabilities the module predicts: over the labels (classify) or the first answer token (generate)."""
    if model.kind == "classify":
        return model.class_logits(examples).float().log_softmax(-1)
    enc = model.enc
    ids, mask = (t.to(model.device) for t in pad([enc.prompt(e, enc.max_len) for e in examples], enc.pad_id, left=True))
    out = model.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0),
                      logits_to_keep=1)
    return out.logits[:, -1].float().log_softmax(-1)


@contextmanager
def on_base(model, net):
    """The task model reading through another base that carries the same module weights."""
    own = model.model
    model.model = net
    try:
        yield model
    finally:
        model.model = own


class Uda:
    def __init__(self, config: UdaConfig, model, task: Task, lang: str, bases, seed: int = 0):
        from syncmod.data.lines import Problems
        from syncmod.data.tasks import load_task
        from syncmod.errors import InputError
        from syncmod.modules.bases import load_base

        self.config, self.model, self.lang = config, model, lang
        if config.unlabelled:  # only the inputs are read: another task's labels never reach the loss
            problems = Problems()
            task = load_task(config.unlabelled, problems)
            problems.raise_if_any()
        self.rows = task.split("train", lang)
        if not self.rows:
            raise InputError.at("uda.unlabelled", f"no training inputs in {lang!r}", "give a task with them")
        self.rng = random.Random(seed)
        self.translations = {t: {r.id: r for r in task.split("train", t)} for t in config.langs}
        self.nets = {}
        for t in config.langs if "translate" in config.augment else []:
            if not self.translations[t]:
                raise InputError.at("uda.langs", f"the task has no training items in {t!r}", "pick task languages")
            same = bases.path(t) == bases.path(lang)
            self.nets[t] = model.model if same else model.module_type.attach_shared(load_base(bases.path(t),
                                                                                              str(model.device))[0])

    def loss(self) -> torch.Tensor:
        batch = self.rng.sample(self.rows, min(self.config.batch_size, len(self.rows)))
        with torch.no_grad():
            clean = predictive(self.model, batch)
        terms = []
        for aug in self.config.augment:
            if aug == "translate":
                for t, net in self.nets.items():
                    keep = [i for i, r in enumerate(batch) if r.id in self.translations[t]]
                    with on_base(self.model, net):
                        other = predictive(self.model, [self.translations[t][batch[i].id] for i in keep])
                    terms.append(consistency(clean[keep], other))
                continue
            noisy = [replace(r, text=self._augment(aug, r.text)) for r in batch]
            terms.append(consistency(clean, predictive(self.model, noisy)))
        return torch.stack(terms).mean()

    def _augment(self, aug: str, text: str) -> str:
        if aug == "dropout":
            return token_dropout(text, self.config.dropout, self.rng)
        return word_swap(text, self.config.swaps, self.rng)
