"""Merge methods as pure functions over tensors: one generalized task-arithmetic routine, parameterised.

For the deltas d_1..d_n of one tensor (task vectors: what each module adds to the base) with weights w_i:

    d_i   <- sparsify(d_i)                     magnitude: keep the top `density` by |d|  (TIES "trim")
                                               random:    keep each entry with p = density, divide by density
                                                          (DARE "drop and rescale": the expectation is kept)
    m_i   <- sign(w_i d_i) == sign(sum_j w_j d_j)   (TIES "elect sign"; all ones without consensus)
    merged = lambda * sum_i m_i w_i d_i / divisor   divisor = sum_i m_i |w_i| when `normalize` (a weighted mean
                                                    over the entries that agree: TIES "disjoint mean"), else 1

| method          | sparsify  | consensus | normalize |
|-----------------|-----------|-----------|-----------|
| linear          | -         | -         | yes       |
| task-arithmetic | -         | -         | no        |
| ties            | magnitude | sign      | yes       |
| dare-linear     | random    | -         | no        |
| dare-ties       | random    | sign      | yes       |

This is mergekit's generalized task arithmetic (sign elected on the *weighted* deltas, so a negative weight
— task-vector negation — votes with its sign flipped). PEFT's `merge_utils.ties` elects the sign on the
unweighted deltas and divides by the count of agreeing entries; with unit weights the two are the same.
The divisor takes |w| (mergekit takes w) so that a negated input averaged in keeps its flipped sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from syncmod.registry import registrar

MERGE_METHODS: dict[str, type[MergeMethod]] = {}
register = registrar(MERGE_METHODS, "merge method")


@dataclass(frozen=True)
class MergeParams:
    """The knobs every method reads (a method ignores those it does not use)."""

    density: float = 1.0
    """Fraction of each delta kept by trimming (ties) or random dropping (dare-*)."""
    lam: float = 1.0
    """Scale of the merged delta (task arithmetic's lambda)."""


class MergeMethod:
    """One parameterisation of :func:`generalized_merge`; subclasses set the class attributes."""

    name = "merge"
    sparsify: str | None = None  # None, "magnitude" or "random"
    consensus: bool = False
    normalize: bool = False

    def merge(self, deltas: list[torch.Tensor], weights: list[float], params: MergeParams,
              generator: torch.Generator | None = None) -> torch.Tensor:
        return generalized_merge(deltas, weights, params, self.sparsify, self.consensus, self.normalize, generator)


@register("linear")
class Linear(MergeMethod):
    normalize = True


@register("task-arithmetic")
class TaskArithmetic(MergeMethod):
    pass


@register("ties")
class Ties(MergeMethod):
    sparsify, consensus, normalize = "magnitude", True, True


@register("dare-linear")
class DareLinear(MergeMethod):
    sparsify = "random"


@register("dare-ties")
class DareTies(MergeMethod):
    sparsify, consensus, normalize = "random", True, True


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the `density` fraction of entries with the largest magnitude (at least one), zero the rest."""
    if density >= 1.0:
        return delta
    k = max(1, int(density * delta.numel()))
    keep = torch.zeros(delta.numel(), dtype=torch.bool, device=delta.device)
    keep[torch.topk(delta.abs().flatten(), k).indices] = True
    return delta * keep.view_as(delta)


def drop_and_rescale(delta: torch.Tensor, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE: keep each entry with probability `density` and divide the kept ones by it (E[result] = delta)."""
    if density >= 1.0:
        return delta
    keep = torch.bernoulli(torch.full_like(delta, density), generator=generator)
    return delta * keep / density


def elect_sign(weighted: torch.Tensor) -> torch.Tensor:
    """Mask of the entries whose sign agrees with the sign of the sum over inputs (ties go to +)."""
    majority = torch.where(weighted.sum(0) >= 0, 1.0, -1.0).to(weighted.dtype)
    return weighted.sign() == majority


def generalized_merge(deltas: list[torch.Tensor], weights: list[float], params: MergeParams,
                      sparsify: str | None = None, consensus: bool = False, normalize: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The routine every method is a case of (see the module docstring). Deltas must have one shape."""
    if len(deltas) != len(weights) or not deltas:
        raise ValueError(f"{len(deltas)} deltas but {len(weights)} weights")
    shapes = {tuple(d.shape) for d in deltas}
    if len(shapes) != 1:
        raise ValueError(f"deltas of different shapes cannot be merged: {sorted(shapes)}")
    if not 0.0 < params.density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {params.density}")
    if sparsify == "magnitude":
        deltas = [trim(d, params.density) for d in deltas]
    elif sparsify == "random":
        deltas = [drop_and_rescale(d, params.density, generator) for d in deltas]
    elif sparsify is not None:
        raise ValueError(f"unknown sparsification {sparsify!r}")
    stacked = torch.stack([d.float() for d in deltas])
    w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device).view(-1, *([1] * (stacked.dim() - 1)))
    weighted = stacked * w
    mask = elect_sign(weighted) if consensus else torch.ones_like(weighted, dtype=torch.bool)
    merged = (weighted * mask).sum(0)
    if normalize:
        divisor = (w.abs() * mask).sum(0)
        # no agreeing input (or weights that cancel): nothing to average, keep the sum as it is
        merged = merged / torch.where(divisor.abs() < 1e-8, torch.ones_like(divisor), divisor)
    return (params.lam * merged).to(deltas[0].dtype)


def get_method(name: str) -> MergeMethod:
    if name not in MERGE_METHODS:
        raise KeyError(name)
    return MERGE_METHODS[name]()
