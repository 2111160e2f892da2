"""`lora`: low-rank updates of the blocks' linear layers, through PEFT. Saved in PEFT's own format too,
so `PeftModel.from_pretrained(base, dir)` loads it."""

from __future__ import annotations

import torch
from torch import nn

from syncmod.modules.base import ModuleType, register


@register("lora")
class LoRA(ModuleType):
    def attach(self, model: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        from syncmod.pretrain.architectures import layout, projections

        # targets and block addresses of this architecture (GPT-2's fused c_attn for q/k/v_proj, ...)
        config = LoraConfig(r=self.config.rank, lora_alpha=self.config.alpha, lora_dropout=0.0,
                            target_modules=projections(model, list(self.config.targets)),
                            layers_to_transform=[i - 1 for i in self.layers], layers_pattern=layout(model).pattern,
                            bias="none", init_lora_weights=True)
        self.model = get_peft_model(model, config)
        return self.model

    def attach_shared(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        other = get_peft_model(model, self.model.peft_config["default"])
        mine = dict(self.model.named_modules())
        for name, mod in other.named_modules():
            if name.endswith(("lora_A.default", "lora_B.default")):
                mod.weight = mine[name].weight  # the very same Parameter: one set of LoRA weights, two bases
        return other

    def detach(self) -> None:
        self.model.unload()

    def parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if "lora_" in n]

    def state_dict(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"LoRA weights do not fit this base: unexpected {unexpected[:3]}")

    def save_peft(self, directory) -> None:
        self.model.save_pretrained(str(directory))
