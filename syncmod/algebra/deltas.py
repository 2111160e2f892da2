"""Each module type's weight delta ΔW — what the module adds to the base — and the way back to its state.

- `lora`: ΔW = (alpha / rank) · B·A per target matrix; the merged ΔW is re-factored to the requested rank by
  SVD (B' = U·√S, A' = √S·Vh, alpha' = rank', so the scale is 1), as PEFT's `svd` combination does.
- `sparse`: indices + values become a dense delta on the same matrix; the merged delta is stored sparsely on
  the union of the inputs' supports (entries the merge zeroed are dropped).
- `adapter`: its parameters (same shapes) are the delta itself: the adapter is zero-initialised in `up`, so
  the parameters are what training added (the `down` projection's random start is not saved, so it is merged
  as trained).

A registry keyed by module type (like the module types themselves): a type without an entry cannot be merged,
and says so.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from syncmod.registry import registrar

DELTAS: dict[str, type[Deltas]] = {}
register = registrar(DELTAS, "module delta")

Shape = Callable[[str], torch.Size]  # a target matrix's shape in the base, by the module's key ("1.self_attn.q_proj")


class Deltas:
    """How one module type's state becomes named deltas and how merged deltas become a state again."""

    name = "deltas"
    free: tuple[str, ...] = ()
    """Module-config fields that may differ between the inputs of a merge (the rest must be equal)."""

    def deltas(self, state: dict[str, torch.Tensor], module: dict, shape: Shape) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def state(self, merged: dict[str, torch.Tensor], module: dict, rank: int | None) -> tuple[dict, dict]:
        """(module state, module config) of the merged module."""
        raise NotImplementedError


@register("lora")
class LoRADeltas(Deltas):
    free = ("rank", "alpha")

    def deltas(self, state, module, shape):
        scale = module["alpha"] / module["rank"]
        out = {}
        for key in state:
            if key.endswith(".lora_A.weight"):
                prefix = key[: -len(".lora_A.weight")]
                out[prefix] = scale * state[f"{prefix}.lora_B.weight"].float() @ state[key].float()
        return out

    def state(self, merged, module, rank):
        rank = rank or module["rank"]
        out = {}
        for prefix, delta in merged.items():
            b, a = refactor(delta, rank)
            out[f"{prefix}.lora_A.weight"], out[f"{prefix}.lora_B.weight"] = a, b
        return out, {**module, "rank": rank, "alpha": float(rank)}


def refactor(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B (out, rank), A (rank, in) with B·A the best rank-`rank` approximation of `delta` (exact at full rank);
    zero-padded when `rank` exceeds the matrix's own rank bound."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    k = min(rank, s.numel())
    root = s[:k].sqrt()
    b, a = u[:, :k] * root, root[:, None] * vh[:k]
    if k < rank:
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - k)], 1)
        a = torch.cat([a, a.new_zeros(rank - k, a.shape[1])], 0)
    return b.contiguous(), a.contiguous()


@register("sparse")
class SparseDeltas(Deltas):
    free = ("density",)

    def deltas(self, state, module, shape):
        out = {}
        for key in state:
            if key.endswith(".index"):
                name = key[: -len(".index")]
                size = shape(name)
                dense = torch.zeros(size.numel(), dtype=state[f"{name}.values"].dtype)
                out[name] = dense.index_put((state[key].long(),), state[f"{name}.values"]).view(size)
        return out

    def state(self, merged, module, rank):
        out, kept, total = {}, 0, 0
        for name, delta in merged.items():
            flat = delta.flatten()
            index = torch.nonzero(flat).flatten()
            if index.numel() == 0:  # the loader needs an entry per matrix; a zero value changes nothing
                index = torch.zeros(1, dtype=torch.long)
            out[f"{name}.index"], out[f"{name}.values"] = index, flat[index].contiguous()
            kept, total = kept + index.numel(), total + flat.numel()
        return out, {**module, "density": kept / max(total, 1)}


@register("adapter")
class AdapterDeltas(Deltas):
    def deltas(self, state, module, shape):
        return {k: v.float() for k, v in state.items()}

    def state(self, merged, module, rank):
        return dict(merged), dict(module)


@register("rosa")
class RoSADeltas(Deltas):
    """The low-rank and the sparse part merged each on its own (each keeps its form: SVD to `rank`, union of
    supports); the linear methods give the same total ΔW as merging the sum, ties/dare act per part."""

    free = ("rank", "alpha", "density")

    def deltas(self, state, module, shape):
        out = {}
        for part, handler in (("lora", LoRADeltas()), ("sparse", SparseDeltas())):
            sub = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(f"{part}.")}
            out.update({f"{part}:{k}": v for k, v in handler.deltas(sub, module, shape).items()})
        return out

    def state(self, merged, module, rank):
        out = {}
        for part, handler in (("lora", LoRADeltas()), ("sparse", SparseDeltas())):
            sub = {k[len(part) + 1:]: v for k, v in merged.items() if k.startswith(f"{part}:")}
            state, module = handler.state(sub, module, rank)
            out.update({f"{part}.{k}": v for k, v in state.items()})
        return out, module
