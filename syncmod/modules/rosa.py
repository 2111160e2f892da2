"""`rosa`: robust adaptation (RoSA, Nikdan et al. 2024) — a low-rank update plus a sparse diff of the same
matrices, trained jointly: W = W_base + scatter(values at indices) + (alpha / rank) · B·A.

The LoRA part is PEFT's (as `lora`), the sparse part is `sparse`'s (entries picked by gradient magnitude on a
few task batches before training, `density` of each target matrix). The sparse diff is installed on the base's
own linear layers before PEFT wraps them, so PEFT's layer calls the parametrized weight and adds its own update.
Saved as one safetensors file (`lora.*` and `sparse.*`); there is no PEFT-only copy, since PEFT alone would
load the low-rank half and silently drop the sparse one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from syncmod.modules.base import ModuleConfig, ModuleType, register
from syncmod.modules.lora import LoRA
from syncmod.modules.sparse import Sparse


@register("rosa")
class RoSA(ModuleType):
    def __init__(self, config: ModuleConfig, layers: list[int]):
        super().__init__(config, layers)
        self.lora, self.sparse = LoRA(config, layers), Sparse(config, layers)

    def attach(self, model: nn.Module) -> nn.Module:
        self.sparse.attach(model)  # finds the plain linear layers before PEFT wraps them
        self.model = self.lora.attach(model)
        return self.model

    def prepare(self, model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> None:
        """The sparse support, by gradient magnitude with the (zero-initialised) LoRA update in place."""
        self.sparse.prepare(model, loss_fn)

    def attach_shared(self, model: nn.Module) -> nn.Module:
        self.sparse.attach_shared(model)
        return self.lora.attach_shared(model)

    def detach(self) -> None:
        self.lora.detach()  # PEFT puts the (parametrized) linear layers back, then the sparse diff comes off
        self.sparse.detach()

    def parameters(self) -> list[nn.Parameter]:
        return self.lora.parameters() + self.sparse.parameters()

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"lora.{k}": v for k, v in self.lora.state_dict().items()}
        out.update({f"sparse.{k}": v for k, v in self.sparse.state_dict().items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        unknown = [k for k in state if not k.startswith(("lora.", "sparse."))]
        if unknown:
            raise ValueError(f"RoSA weights have keys of neither part: {unknown[:3]}")
        self.sparse.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("sparse.")})
        self.lora.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lora.")})

    def layer_map(self) -> dict:
        return {**super().layer_map(), "targets": list(self.config.targets)}
