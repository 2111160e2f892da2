"""`sparse`: a sparse diff of chosen weight matrices. Before training, the entries with the largest
gradient magnitude on the task (a few batches) are picked — `density` of each target matrix — and only
they are trained: W = W_base + scatter(values at indices). Stored sparsely (indices + values)."""

from __future__ import annotations

import torch
import torch.nn.utils.parametrize as P
from torch import nn

from syncmod.modules.base import ModuleType, register
from syncmod.pretrain.architectures import is_linear, projections
from syncmod.pretrain.model import decoder_layers


class SparseDelta(nn.Module):
    def __init__(self, shape: torch.Size, index: torch.Tensor):
        super().__init__()
        self.shape = shape
        self.register_buffer("index", index)  # flat indices into the matrix
        self.values = nn.Parameter(torch.zeros(len(index)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        delta = torch.zeros(weight.numel(), dtype=weight.dtype, device=weight.device)
        return weight + delta.index_put((self.index,), self.values.to(weight.dtype)).view_as(weight)


@register("sparse")
class Sparse(ModuleType):
    def _targets(self, model: nn.Module) -> dict[str, nn.Linear]:
        blocks, targets = decoder_layers(model), projections(model, list(self.config.targets))
        out = {}
        for layer in self.layers:
            for name, mod in blocks[layer - 1].named_modules():
                if is_linear(mod) and any(name == t or name.endswith("." + t) for t in targets):
                    out[f"{layer}.{name}"] = mod
        return out

    def attach(self, model: nn.Module) -> nn.Module:
        self.model, self.linears, self.deltas = model, self._targets(model), {}
        return model

    def prepare(self, model: nn.Module, loss_fn) -> None:
        """Pick entries by gradient magnitude: accumulate |dL/dW| over the batches `loss_fn` yields."""
        weights = [m.weight for m in self.linears.values()]
        for w in weights:
            w.requires_grad_(True)
        scores = [torch.zeros_like(w) for w in weights]
        for loss in loss_fn():
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            for s, g in zip(scores, grads, strict=True):
                if g is not None:
                    s += g.abs()
        for w in weights:
            w.requires_grad_(False)
        index = {}
        for key, s in zip(self.linears, scores, strict=True):
            k = max(1, int(self.config.density * s.numel()))
            index[key] = torch.topk(s.flatten(), k).indices.sort().values
        self._install(index)

    def _install(self, index: dict[str, torch.Tensor]) -> None:
        for key, lin in self.linears.items():
            delta = SparseDelta(lin.weight.shape, index[key]).to(lin.weight.device)  # values too, on a GPU base
            P.register_parametrization(lin, "weight", delta)
            self.deltas[key] = delta

    def attach_shared(self, model: nn.Module) -> nn.Module:
        for key, lin in self._targets(model).items():
            P.register_parametrization(lin, "weight", self.deltas[key])  # the same values on both bases
        return model

    def detach(self) -> None:
        for lin in self.linears.values():
            if P.is_parametrized(lin, "weight"):
                P.remove_parametrizations(lin, "weight", leave_parametrized=False)

    def parameters(self) -> list[nn.Parameter]:
        return [d.values for d in self.deltas.values()]

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for key, d in self.deltas.items():
            out[f"{key}.index"] = d.index.detach().clone()
            out[f"{key}.values"] = d.values.detach().clone()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in self.linears if f"{k}.index" not in state]
        if missing:
            raise ValueError(f"sparse diff has no entries for {missing[:3]}")
        if not self.deltas:
            self._install({k: state[f"{k}.index"] for k in self.linears})
        for key, d in self.deltas.items():
            if int(state[f"{key}.index"].max()) >= d.shape.numel():
                raise ValueError(f"sparse indices of {key} exceed the matrix {tuple(d.shape)}")
            d.index.copy_(state[f"{key}.index"])
            d.values.data.copy_(state[f"{key}.values"])

    def layer_map(self) -> dict:
        return {**super().layer_map(), "targets": list(self.config.targets)}
