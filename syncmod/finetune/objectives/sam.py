"""Sharpness-aware minimisation (Foret et al., ICLR 2021): step with the gradient taken at the worst nearby
weights, w + e(w) with e(w) = rho * g / ||g|| (g: the gradient at w, the norm over all trained parameters).

With DeepSpeed's engine it is one step in two passes, and the engine sees only the second:

    loss = engine.module(batch);  g = autograd.grad(loss, params)     # pass 1, at w: .grad untouched
    with perturbed(params, g, rho):                                   # w <- w + e(w)
        engine.backward(engine(batch))                                # pass 2: .grad = gradient at w + e(w)
    # leaving the block restores w exactly (saved copies, not w + e - e)
    engine.step()                                                     # clip, AdamW at w with the SAM gradient

Pass 1 uses plain autograd so the engine's micro-step counters, gradient accumulation and clipping see one
backward per step, as without SAM. It costs a second forward and backward per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from syncmod.config import at_least


@dataclass
class SamConfig:
    """Sharpness-aware minimisation (off when rho is 0)."""

    rho: float = 0.0
    """Radius of the weight neighbourhood (Foret et al. use 0.05); 0 = plain training."""

    def __post_init__(self) -> None:
        at_least(self, 0, "rho")


def ascent(grads: list[torch.Tensor | None], rho: float) -> list[torch.Tensor | None]:
    """e(w) = rho * g / ||g||: the first-order worst-case perturbation of norm rho (None where a parameter got
    no gradient; all zeros when the gradient is zero)."""
    present = [g for g in grads if g is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in present])) if present \
        else torch.tensor(0.0)
    scale = rho / (norm + 1e-12)
    return [None if g is None else (g.float() * scale).to(g.dtype) for g in grads]


@contextmanager
def perturbed(params: list[torch.nn.Parameter], grads: list[torch.Tensor | None], rho: float) -> Iterator[None]:
    """Inside the block the parameters sit at w + e(w); on leaving they are restored bit for bit."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, e in zip(params, ascent(grads, rho), strict=True):
            if e is not None:
                p.add_(e)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)


def sam_step(engine, params: list[torch.nn.Parameter], batch, rho: float, forward: Callable | None = None):
    """One SAM step through a DeepSpeed engine (see the module docstring). `forward(batch)` returns the
    training loss first (default: the engine's module); returns what the unperturbed pass returned."""
    forward = forward or engine.module
    first = forward(batch)
    loss = first[0] if isinstance(first, tuple) else first
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with perturbed(params, list(grads), rho):
        second = engine(batch)
        engine.backward(second[0] if isinstance(second, tuple) else second)
    engine.step()
    return first
