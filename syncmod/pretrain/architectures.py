"""Where things are inside a decoder-only causal LM: the one place syncmod looks up a model's decoder blocks,
their attention and MLP parts, and the names of their projections.

A model is addressed by its structure, not its class: the first known path to the decoder blocks that the
model has wins (`model.layers`: Llama, Mistral, Qwen2, Gemma, Phi-3, SmolLM, OLMo...; `transformer.h`: GPT-2,
GPT-J, Falcon...; `gpt_neox.layers`: GPT-NeoX, Pythia). Projection names are the Llama ones (`q_proj`, ...,
`down_proj`) wherever the configs of syncmod name them; a model that calls them otherwise (GPT-2's fused
`c_attn`, GPT-NeoX's `query_key_value`) gets them translated here. PEFT wrappers are looked through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from syncmod.errors import InputError


@dataclass(frozen=True)
class Layout:
    """One family's addresses, relative to the causal-LM module."""

    blocks: str
    """Dotted path of the `nn.ModuleList` of decoder blocks."""
    attn: tuple[str, ...]
    """Candidate names of a block's attention module."""
    mlp: tuple[str, ...]
    """Candidate names of a block's MLP module."""
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Llama projection name -> this family's module names inside a block (suffixes, for PEFT)."""

    @property
    def pattern(self) -> str:
        """The last component of `blocks` (PEFT's `layers_pattern`)."""
        return self.blocks.rsplit(".", 1)[-1]


LAYOUTS: tuple[Layout, ...] = (
    Layout("model.layers", ("self_attn", "attention"), ("mlp", "feed_forward")),
    Layout("transformer.h", ("attn", "self_attention", "attention"), ("mlp",),
           {"q_proj": ("attn.c_attn",), "k_proj": ("attn.c_attn",), "v_proj": ("attn.c_attn",),
            "o_proj": ("attn.c_proj",), "up_proj": ("mlp.c_fc",), "gate_proj": ("mlp.c_fc",),
            "down_proj": ("mlp.c_proj",)}),
    Layout("gpt_neox.layers", ("attention",), ("mlp",),
           {"q_proj": ("attention.query_key_value",), "k_proj": ("attention.query_key_value",),
            "v_proj": ("attention.query_key_value",), "o_proj": ("attention.dense",),
            "up_proj": ("mlp.dense_h_to_4h",), "gate_proj": ("mlp.dense_h_to_4h",), "down_proj": ("mlp.dense_4h_to_h",)}),
    Layout("model.decoder.layers", ("self_attn",), ("fc1",),
           {"o_proj": ("self_attn.out_proj",), "up_proj": ("fc1",), "down_proj": ("fc2",)}),
)
SUPPORTED = ", ".join(x.blocks for x in LAYOUTS)


def unwrap(model: nn.Module) -> nn.Module:
    """The causal LM inside PEFT wrappers (`PeftModel` -> `LoraModel` -> the model)."""
    seen = set()
    while hasattr(model, "get_base_model") and id(model) not in seen:
        seen.add(id(model))
        model = model.get_base_model()
    return model


def _get(module: nn.Module, path: str) -> nn.Module | None:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def layout(model: nn.Module) -> Layout:
    """The layout of `model` (a causal LM, possibly wrapped by PEFT); one clear line when none fits."""
    inner = unwrap(model)
    for candidate in LAYOUTS:
        if isinstance(_get(inner, candidate.blocks), nn.ModuleList):
            return candidate
    kind = getattr(getattr(inner, "config", None), "model_type", "?")
    raise InputError.at(type(inner).__name__, f"cannot find the decoder blocks of this architecture "
                        f"(model_type {kind!r}); syncmod knows {SUPPORTED}",
                        "add its layout to syncmod/pretrain/architectures.py (LAYOUTS)")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM (or of its inner model, which has `layers` itself)."""
    inner = unwrap(model)
    if isinstance(getattr(inner, "layers", None), nn.ModuleList):  # e.g. LlamaModel handed in directly
        return inner.layers
    return _get(inner, layout(inner).blocks)


def block_part(model: nn.Module, block: nn.Module, part: str) -> nn.Module:
    """A block's `attn` or `mlp` module."""
    names = getattr(layout(model), part)
    for name in names:
        if isinstance(getattr(block, name, None), nn.Module):
            return getattr(block, name)
    raise InputError.at("module.position", f"a {type(block).__name__} has no {part} module (looked for {names})",
                        "use position [block]")


def is_linear(module: nn.Module) -> bool:
    """A projection with a 2-D `weight`: `nn.Linear`, or the transposed `Conv1D` of GPT-2-style models."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, nn.Linear | Conv1D)


def projections(model: nn.Module, names: list[str]) -> list[str]:
    """Module-name suffixes inside a block for the configured projection `names` (Llama names translated for
    other families; names the block has itself kept). One clear line when a name matches nothing."""
    lay, block = layout(model), decoder_layers(model)[0]
    have = [n for n, m in block.named_modules() if is_linear(m)]
    out: list[str] = []
    for name in names:
        found = [n for n in have if n == name or n.endswith("." + name)]
        targets = [name] if found else [t for t in lay.aliases.get(name, ()) if t in have]
        if not targets:
            raise InputError.at("module.targets", f"{name!r} is not a projection of a {type(block).__name__} "
                                f"(it has {sorted(set(have))})", "name projections the block has")
        out += [t for t in targets if t not in out]
    return out
