"""The module-type contract, its config, and placement of modules by portable layer address.

Layers are addressed like AdapterHub does (`model_layers = "model.layers"`, block index), and placement is
relative to the base's sync layers: `at` (the sync layer blocks), `below` (blocks 1..s), `above` (blocks
above the deepest sync layer), `all`, or an explicit list of 1-based block indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from syncmod.config import at_least, one_of, positive, require
from syncmod.registry import registrar

MODULE_TYPES: dict[str, type[ModuleType]] = {}
register = registrar(MODULE_TYPES, "module type")


@dataclass
class ModuleConfig:
    """A task module: its type, where it sits, and its size."""

    type: str = "adapter"
    """`lora` (PEFT), `adapter` (bottleneck, residual), or `sparse` (a sparse diff of chosen weights)."""
    layers: Literal["at", "below", "above", "all"] | list[int] = "at"
    """Placement: `at` / `below` / `above` the base's sync layers, `all`, or a list of 1-based blocks."""
    rank: int = 8
    """LoRA rank / adapter bottleneck width."""
    alpha: float = 16.0
    """LoRA scaling numerator (scale = alpha / rank)."""
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """LoRA and sparse: the linear layers (by name inside a block) that get a diff."""
    position: list[Literal["attn", "ffn", "block"]] = field(default_factory=lambda: ["block"])
    """Adapter: after `attn`, after `ffn`, and/or after the whole `block` (reads and writes the layer's state)."""
    density: float = 0.01
    """Sparse: fraction of each target matrix's entries that are trained (picked by gradient magnitude)."""

    def __post_init__(self) -> None:
        one_of("type", self.type, MODULE_TYPES)  # the registry (adapter, lora, sparse, ...) is the source of truth
        at_least(self, 1, "rank")
        positive(self, "alpha")
        require(0 < self.density <= 1, "density", f"must be within (0, 1], got {self.density}")
        require(self.layers != [], "layers", "is empty", "give blocks, or at / below / above / all")


def resolve_layers(spec: str | list[int], sync_layers: list[int], num_layers: int) -> list[int]:
    """1-based block indices for a placement spec."""
    from syncmod.errors import InputError

    if isinstance(spec, list):
        layers = list(spec)
    elif spec == "at":
        layers = list(sync_layers)
    elif spec == "below":
        layers = list(range(1, max(sync_layers) + 1))
    elif spec == "above":
        layers = list(range(max(sync_layers) + 1, num_layers + 1))
    elif spec == "all":
        layers = list(range(1, num_layers + 1))
    else:
        raise InputError.at("module.layers", f"unknown placement {spec!r}", "use at, below, above, all, or a list")
    bad = [i for i in layers if not 1 <= i <= num_layers]
    if bad or not layers:
        raise InputError.at("module.layers", f"blocks {bad or layers} are not within 1..{num_layers}",
                            "choose existing blocks (1-based)")
    return sorted(set(layers))


class ModuleType:
    """Parameters added to a frozen base. `attach` may wrap the model (PEFT does) and returns the model to use."""

    name = "module"

    def __init__(self, config: ModuleConfig, layers: list[int]):
        self.config, self.layers = config, layers

    def attach(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def detach(self) -> None:
        """Remove hooks / parametrizations (the base can take another module afterwards)."""

    def parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def owned(self) -> nn.Module | None:
        """Parameters that live outside the base (adapters), to register in the task model; None when the
        module's parameters are inside the base already (LoRA layers, sparse parametrizations)."""
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def prepare(self, model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> None:
        """Called once before training with a function that returns a training loss (sparse picks entries)."""

    def attach_shared(self, model: nn.Module) -> nn.Module:
        """Attach to another base with the *same* parameters (transfer-aware training)."""
        raise NotImplementedError

    def layer_map(self) -> dict:
        return {"model_layers": getattr(self, "blocks_path", "model.layers"), "blocks": self.layers}
