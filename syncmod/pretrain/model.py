"""Bases: Llama-style causal LMs from `transformers` configs, one shared or one per language.

`Bases` holds every base of a run in one `nn.Module`, so a single DeepSpeed engine updates all of them
on every step. States at the sync layers are captured with forward hooks on those decoder layers only
(no `output_hidden_states` for every layer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from syncmod.config import at_least

# name: (layers, hidden, heads, kv heads, intermediate)
PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (2, 64, 4, 4, 172),
    "small": (4, 256, 4, 4, 688),
    "base": (12, 768, 12, 12, 2048),
    "1b": (16, 2048, 32, 8, 5632),
}


@dataclass
class ModelConfig:
    """Architecture of every base (same for all languages)."""

    preset: str = "small"
    """Size preset: tiny (2 layers, hidden 64), small (4, 256), base (12, 768), 1b (16, 2048)."""
    topology: Literal["shared", "per-language"] = "per-language"
    """`shared`: one base for all languages; `per-language`: one base per language, trained jointly."""
    max_seq_len: int = 128
    """Longest sequence (positions) the bases handle."""
    layers: int | None = None
    """Override the preset's number of layers."""
    hidden: int | None = None
    """Override the preset's hidden size."""
    tie_embeddings: bool = False
    """Share input and output embeddings."""
    init_from: str | None = None
    """Continue a checkpoint instead of starting from scratch: a Hugging Face causal-LM directory, or
    `hf:NAME` (downloaded; needs a network). Its architecture replaces preset / layers / hidden, and the data
    root must be prepared with its tokenizer (`syncmod data prepare --tokenizer DIR`). `per-language`: one copy
    of it per language, bitwise identical at step 0."""
    freeze: list[str] = field(default_factory=list)
    """With `init_from`: parts kept frozen — `embeddings` (input and position embeddings), `lm_head`, and
    `layers<K` (blocks 1..K-1, 1-based)."""
    lora_rank: int = 0
    """With `init_from`: > 0 trains a LoRA of this rank per base (one per language, or one `shared`) on one
    frozen copy of the checkpoint instead of copying it per language; merged into each base at export."""
    lora_targets: list[str] | None = None
    """Projections the LoRA of `lora_rank` adapts (Llama names such as q_proj are translated for GPT-2 /
    GPT-NeoX); default: every linear layer of the blocks."""
    gradient_checkpointing: bool = False
    """Recompute each block's activations in the backward pass (less memory, ~1/3 more compute)."""
    init: Literal["independent", "shared"] = "independent"
    """Initial weights of `per-language` bases: `independent` (each base its own random start) or `shared`
    (every base starts from identical weights, the first base's start). One `shared`-topology base: the same
    either way."""
    placement: Literal["colocated", "language-parallel"] = "colocated"
    """`colocated`: every base on every rank; `language-parallel` (per-language bases): one rank group per
    language holds only its base and trains it data-parallel inside the group (world size = languages x k)."""

    def __post_init__(self) -> None:
        at_least(self, 1, "max_seq_len", "layers", "hidden")
        at_least(self, 0, "lora_rank")

    def dims(self) -> tuple[int, int, int, int, int]:
        if self.init_from:  # the checkpoint's architecture
            from syncmod.pretrain.init_from import checkpoint_dims

            return checkpoint_dims(self.init_from)
        layers, hidden, heads, kv, inter = PRESETS[self.preset]
        if self.hidden:
            heads = kv = max(1, self.hidden // 64)
            hidden, inter = self.hidden, int(self.hidden * 8 / 3 // 4 * 4)
        return self.layers or layers, hidden, heads, kv, inter

    def hf_config(self, vocab_size: int, pad_id: int, bos_id: int, eos_id: int):
        from transformers import LlamaConfig

        layers, hidden, heads, kv, inter = self.dims()
        return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=inter,
                           num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                           max_position_embeddings=self.max_seq_len, pad_token_id=pad_id, bos_token_id=bos_id,
                           eos_token_id=eos_id, tie_word_embeddings=self.tie_embeddings, rms_norm_eps=1e-5,
                           attention_dropout=0.0, attn_implementation="sdpa")  # flash / memory-efficient kernels


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of an HF causal LM, also through PEFT wrappers (see `architectures`)."""
    from syncmod.pretrain.architectures import decoder_layers as blocks

    return blocks(model)


@contextlib.contextmanager
def capture(model: nn.Module, layers: list[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the hidden state after each listed layer (1-based: layer l = output of block l; 0 = embeddings)."""
    states: dict[int, torch.Tensor] = {}
    blocks = decoder_layers(model)
    handles = []
    for layer in layers:
        if layer == 0:
            emb = model.get_input_embeddings()
            handles.append(emb.register_forward_hook(lambda _m, _i, out: states.__setitem__(0, out)))
        else:
            def hook(_m, _i, out, layer=layer):
                states[layer] = out[0] if isinstance(out, tuple) else out
            handles.append(blocks[layer - 1].register_forward_hook(hook))
    try:
        yield states
    finally:
        for h in handles:
            h.remove()


class Bases(nn.Module):
    """All bases of a run. `shared`: one base named `shared`; `per-language`: one base per language."""

    def __init__(self, config: ModelConfig, languages: list[str], vocab_size: int, pad_id: int, bos_id: int,
                 eos_id: int, seed: int, projection: bool = False, only: list[str] | None = None):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config, self.languages = config, list(languages)
        names = ["shared"] if config.topology == "shared" else self.languages
        held = [n for n in names if only is None or n in only]  # `only`: this rank's bases (language-parallel)
        self.names, self.held, self.init_record, self.adapters = names, held, None, False
        if config.init_from:  # continue a checkpoint (syncmod.pretrain.init_from)
            from syncmod.pretrain.init_from import checkpoint_bases

            self.bases, self.init_record = checkpoint_bases(config, held, vocab_size)
            self.adapters = config.lora_rank > 0
            hf = next(iter(self.bases.values())).config
        else:
            hf = config.hf_config(vocab_size, pad_id, bos_id, eos_id)
            models = {}
            for i, name in enumerate(names):
                torch.manual_seed(seed * 1000 + (0 if config.init == "shared" else i))  # reproducible; shared: identical
                if name in held:  # every base seeded as when all are built: the same init on any placement
                    models[name] = LlamaForCausalLM(hf)
            self.bases = nn.ModuleDict(models)
        if config.gradient_checkpointing:  # HF's own; non-reentrant, so the sync-layer hooks see the first pass
            for model in self.bases.values():
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # an optional learned projection before the sync loss, shared by all bases (a loss head, not exported)
        self.project = nn.Linear(hf.hidden_size, hf.hidden_size, bias=False) if projection else None

    def compile_blocks(self) -> None:
        """`torch.compile` the forward of every decoder block (as torchtitan compiles per block). Only the
        block's `forward` is compiled, not its call: the forward hooks that capture sync-layer states (and
        DeepSpeed's) stay outside the compiled code, so adding them does not recompile. Identical blocks
        share one compiled graph; the state dict keeps its names."""
        for model in self.bases.values():
            for block in decoder_layers(model):
                block.forward = torch.compile(block.forward)

    def base(self, lang: str) -> nn.Module:
        if self.adapters:  # one frozen checkpoint, a LoRA per base: switch to this base's
            from syncmod.pretrain.init_from import use_adapter

            return use_adapter(self.bases["lora"], "shared" if "shared" in self.names else lang)
        return self.bases["shared" if "shared" in self.bases else lang]

    @property
    def num_layers(self) -> int:
        return self.config.dims()[0]

    def forward(self, lang: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                layers: list[int] = (), position_ids: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Logits of `lang`'s base and its states at `layers` (packed rows: a 4-D mask and `position_ids`)."""
        if input_ids.shape[0] == 0:  # a rank's empty share of a sampled batch: the same graph, no rows
            logits, states = self.forward(lang, input_ids.new_zeros((1, input_ids.shape[1])), None, layers)
            return logits[:0], {k: v[:0] for k, v in states.items()}
        model = self.base(lang)
        with capture(model, list(layers)) as states:
            out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.logits, dict(states)

    def num_params(self, per_base: bool = True) -> int:
        model = next(iter(self.bases.values())) if per_base else self
        return sum(p.numel() for p in model.parameters())
