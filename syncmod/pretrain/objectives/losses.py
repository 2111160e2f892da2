"""Sync losses between row-aligned states za[i] <-> zb[i] (translations of each other).

All three are normalised by the global number of sync points (and scaled by the world size, as DeepSpeed
averages gradients), so N ranks and 1 rank with one global batch give the same loss. InfoNCE takes its
negatives from every rank, gathered with gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from syncmod.distributed import all_sum, gather_with_grad, sum_all, world_size

LOSSES = ("infonce", "cosine", "mse")


def shifted_nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token NLL in float32: (B, T-1), position t scoring ids[:, t+1] from logits[:, t]. The one
    language-modelling cross-entropy (pre-training loss, bits per byte, task modules' generation loss)."""
    shifted = logits[:, :-1]
    nll = F.cross_entropy(shifted.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1), reduction="none")
    return nll.view(ids.shape[0], ids.shape[1] - 1)


def sync_loss(za: torch.Tensor, zb: torch.Tensor, kind: str, temperature: float = 0.1,
              stop_a: bool = False, stop_b: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Returns (loss for backward, {loss, acc, cos} as global means for logging, device scalars)."""
    if stop_a:
        za = za.detach()
    if stop_b:
        zb = zb.detach()
    k_global = za.shape[0] if world_size() == 1 else int(sum_all(za.shape[0]))
    if k_global == 0:
        return za.sum() * 0.0, {}
    na, nb = F.normalize(za.float(), dim=-1), F.normalize(zb.float(), dim=-1)
    ga, offset = gather_with_grad(na)
    gb, _ = gather_with_grad(nb)
    targets = torch.arange(na.shape[0], device=na.device) + offset
    with torch.no_grad():
        hits = (na @ gb.T).argmax(1).eq(targets).sum() + (nb @ ga.T).argmax(1).eq(targets).sum()
        cos = (na * nb).sum(-1).sum()
    if kind == "infonce":
        local = (F.cross_entropy(na @ gb.T / temperature, targets, reduction="sum")
                 + F.cross_entropy(nb @ ga.T / temperature, targets, reduction="sum")) / 2
    elif kind == "cosine":
        local = (1 - (na * nb).sum(-1)).sum()
    elif kind == "mse":
        local = (za.float() - zb.float()).pow(2).mean(-1).sum()
    else:
        raise ValueError(f"unknown sync loss {kind!r}")
    stats = {"loss": all_sum(local.detach().double()) / k_global,
             "acc": all_sum(hits.double()) / (2 * k_global),
             "cos": all_sum(cos.double()) / k_global}
    return local / k_global * world_size(), stats
