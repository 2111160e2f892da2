"""Scheduled sampling (Bengio et al., 2015), the classic remedy for teacher forcing: each answer token the model
reads is, with probability `rate(step)`, replaced by the model's own prediction for that position (from a
teacher-forced pass without gradient); the loss still asks for the reference. The rate grows linearly from 0 to
`max_rate` over the training steps."""

from __future__ import annotations

import torch

from syncmod.pretrain.objectives.losses import shifted_nll


def rate(step: int, steps: int, max_rate: float) -> float:
    """Share of answer inputs taken from the model at `step` of `steps` (linear ramp)."""
    return max_rate * min(1.0, step / max(1, steps))


def mix_inputs(ids: torch.Tensor, loss_mask: torch.Tensor, predicted: torch.Tensor, p: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Inputs where answer tokens after the first are replaced by `predicted` (the model's next-token guess from
    the previous position) with probability p. The prompt and the first answer token are never replaced."""
    reads = loss_mask.clone()
    reads[:, 1:] &= loss_mask[:, :-1]  # an answer token whose predecessor is also an answer token
    reads[:, 0] = False
    coin = torch.rand(ids.shape, generator=generator).to(ids.device) < p
    guess = torch.cat([ids[:, :1], predicted[:, :-1]], dim=1)
    return torch.where(reads & coin, guess, ids)


def scheduled_sampling_loss(model, ids: torch.Tensor, mask: torch.Tensor, loss_mask: torch.Tensor, p: float,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sequence mean NLL of the reference answer given partly self-predicted answer inputs."""
    with torch.no_grad():
        predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    mixed = mix_inputs(ids, loss_mask, predicted, p, generator)
    logits = model(input_ids=mixed, attention_mask=mask).logits
    nll = shifted_nll(logits, ids)  # targets: the reference, whatever the inputs were
    m = loss_mask[:, 1:].to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1).clamp_min(1)
