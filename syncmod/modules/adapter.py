"""`adapter`: bottleneck adapters (down, ReLU, up; residual) after attention, after the FFN, and/or after
the whole block. After the block of a sync layer, an adapter reads and writes exactly the synced state:
the one place where different synced bases are trained to agree, so it can move between them."""

from __future__ import annotations

import torch
from torch import nn

from syncmod.modules.base import ModuleType, register
from syncmod.modules.heads import rms_norm
from syncmod.pretrain.architectures import block_part
from syncmod.pretrain.model import decoder_layers


class Bottleneck(nn.Module):
    def __init__(self, hidden: int, width: int):
        super().__init__()
        self.down, self.up = nn.Linear(hidden, width), nn.Linear(width, hidden)
        nn.init.zeros_(self.up.weight)  # starts as the identity: the base is unchanged before training
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # reads the normalised state (its direction, what sync aligns) and writes back at the state's own scale
        scale = h.float().pow(2).mean(-1, keepdim=True).sqrt().to(h.dtype)
        return h + scale * self.up(torch.relu(self.down(rms_norm(h))))


@register("adapter")
class Adapter(ModuleType):
    def attach(self, model: nn.Module) -> nn.Module:
        hidden = model.config.hidden_size
        blocks = decoder_layers(model)
        self.adapters = nn.ModuleDict()
        self.handles = []
        for layer in self.layers:
            for pos in self.config.position:
                key = f"{layer}_{pos}"
                self.adapters[key] = Bottleneck(hidden, self.config.rank)
                target = self._target(model, blocks[layer - 1], pos)
                self.handles.append(target.register_forward_hook(self._hook(self.adapters[key])))
        self.adapters.to(next(model.parameters()).device)
        return model

    def attach_shared(self, model: nn.Module) -> nn.Module:
        blocks = decoder_layers(model)
        for layer in self.layers:
            for pos in self.config.position:
                target = self._target(model, blocks[layer - 1], pos)
                self.handles.append(target.register_forward_hook(self._hook(self.adapters[f"{layer}_{pos}"])))
        return model

    @staticmethod
    def _target(model: nn.Module, block: nn.Module, pos: str) -> nn.Module:
        """The block itself, or its attention / MLP part under this architecture's name for it."""
        return block if pos == "block" else block_part(model, block, "attn" if pos == "attn" else "mlp")

    @staticmethod
    def _hook(adapter: Bottleneck):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple):
                return (adapter(output[0]), *output[1:])
            return adapter(output)
        return hook

    def detach(self) -> None:
        for h in self.handles:
            h.remove()

    def parameters(self) -> list[nn.Parameter]:
        return list(self.adapters.parameters())

    def owned(self) -> nn.Module:
        return self.adapters

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.adapters.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.adapters.load_state_dict(state, strict=True)

    def layer_map(self) -> dict:
        return {**super().layer_map(), "positions": list(self.config.position)}
