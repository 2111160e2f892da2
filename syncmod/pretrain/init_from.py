"""Continued pre-training: bases that start from an existing Hugging Face causal LM (`model.init_from`).

- `shared` topology continues the checkpoint; `per-language` copies it once per language (the copies are
  bitwise identical at step 0, each then continued on its language, synchronised at the sync steps).
- With `model.lora_rank > 0` the checkpoint is loaded once and frozen; each base is a LoRA on it (PEFT,
  one adapter per language, switched per forward) and is merged into the weights at export.
- The data root is prepared with the checkpoint's tokenizer (`syncmod data prepare --tokenizer DIR`), which
  adds only the `<lang_xx>` tags the shards carry; `<sync>` and `<sep>` are added here when the config uses
  them (`sync.kind: token`, `sync.objective: parallel-text`). The embedding is resized (new rows: the mean
  of the old ones) when the tokenizer outgrew it; what was added is recorded in the run and its export.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from torch import nn

from syncmod.data.tokenizer import SEP, SYNC
from syncmod.errors import InputError

FREEZE_PARTS = ("embeddings", "lm_head", "layers<K")


@functools.lru_cache(maxsize=8)
def resolve(spec: str) -> Path:
    """A local checkpoint directory for `spec` (a directory, or `hf:NAME` fetched from the Hub)."""
    where = f"model.init_from={spec}"
    if spec.startswith("hf:"):
        return _download(spec[3:], where)
    path = Path(spec)
    if not path.is_dir():
        raise InputError.at(where, "no such checkpoint directory" if not path.exists() else "is a file",
                            "give a directory written by save_pretrained (config.json + safetensors), or hf:NAME")
    if not (path / "config.json").exists():
        raise InputError.at(where, "not a Hugging Face model directory (no config.json)",
                            "give a directory written by save_pretrained")
    return path


def _download(name: str, where: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 — not in the local cache: fetch it
        pass
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 — the Hub client raises many types (offline, unknown repo, gated)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError.at(where, f"cannot fetch {name!r} from the Hugging Face Hub: {first}",
                            f"on a machine with network run `hf download {name} --local-dir DIR`, "
                            "then give model.init_from=DIR") from None


@functools.lru_cache(maxsize=8)
def checkpoint_config(spec: str):
    from transformers import AutoConfig

    path = resolve(spec)
    try:
        return AutoConfig.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 — transformers raises many types for an unknown or broken config
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError.at(str(path / "config.json"), f"not a causal-LM config: {first}",
                            "give a directory written by save_pretrained") from None


def checkpoint_dims(spec: str) -> tuple[int, int, int, int, int]:
    """(layers, hidden, heads, kv heads, intermediate) of the checkpoint, as `ModelConfig.dims` gives them."""
    c = checkpoint_config(spec)
    hidden, heads = getattr(c, "hidden_size", 0), getattr(c, "num_attention_heads", 1)
    kv = getattr(c, "num_key_value_heads", None) or heads
    inter = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * hidden
    return getattr(c, "num_hidden_layers", 1), hidden, heads, kv, inter


def check(cfg) -> None:
    """Start-up checks of a continued run (a `PretrainConfig`): the checkpoint's architecture is addressable,
    the freeze list is valid, the options combine. Builds the model on the meta device only."""
    from transformers import AutoModelForCausalLM

    from syncmod.pretrain.architectures import layout

    m = cfg.model
    with torch.device("meta"):
        layout(AutoModelForCausalLM.from_config(checkpoint_config(m.init_from)))
    for part in m.freeze:
        _freeze_layer_bound(part, checkpoint_dims(m.init_from)[0])
    if m.lora_rank and m.freeze:
        raise InputError.at("model.freeze", "has no effect with model.lora_rank > 0 (the checkpoint is frozen then)",
                            "drop model.freeze, or set model.lora_rank=0")
    if m.lora_rank and m.gradient_checkpointing and m.topology == "per-language":
        raise InputError.at("model.gradient_checkpointing", "per-language LoRA bases switch adapters between "
                            "forwards, so a recomputed block would use the last language's", "use one of the two")


def _freeze_layer_bound(part: str, layers: int) -> int | None:
    if part in ("embeddings", "lm_head"):
        return None
    if part.startswith("layers<") and part[7:].isdigit() and 1 <= int(part[7:]) <= layers + 1:
        return int(part[7:])
    raise InputError.at("model.freeze", f"unknown part {part!r}",
                        f"use {', '.join(FREEZE_PARTS)} with 1 <= K <= {layers + 1}")


def needed_tokens(cfg) -> list[str]:
    """Special tokens a config's objective writes into its inputs."""
    out = []
    if cfg.sync.objective != "none" and cfg.sync.kind == "token":
        out.append(SYNC)
    if cfg.sync.objective == "parallel-text":
        out.append(SEP)
    return out


def add_needed_tokens(tok, cfg) -> list[str]:
    """Add the special tokens the config needs that the tokenizer lacks (a continued run only: syncmod's
    own tokenizers have them all). Returns what was added."""
    if not cfg.model.init_from:
        return []
    missing = [t for t in needed_tokens(cfg) if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return missing


def checkpoint_bases(config, names: list[str], vocab_size: int) -> tuple[nn.ModuleDict, dict]:
    """The bases of a continued run and the record of what was done to the checkpoint."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve(config.init_from)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    rows = model.get_input_embeddings().weight.shape[0]
    if vocab_size > rows:  # the tokenizer got language tags / <sync> / <sep>: mean-initialised rows
        model.resize_token_embeddings(vocab_size, mean_resizing=True)
    model.config.use_cache = False
    record = {"init_from": config.init_from, "path": str(path.resolve()), "model_type": model.config.model_type,
              "checkpoint_vocab": rows, "vocab": model.get_input_embeddings().weight.shape[0],
              "freeze": list(config.freeze), "lora_rank": config.lora_rank}
    if config.lora_rank:
        return nn.ModuleDict({"lora": _lora(model, config, names)}), record
    frozen = freeze(model, config.freeze)
    record["frozen_params"] = frozen
    # per-language copies of the very same weights: bitwise identical at step 0
    return nn.ModuleDict({name: model if i == 0 else copy.deepcopy(model) for i, name in enumerate(names)}), record


def freeze(model: nn.Module, parts: list[str]) -> int:
    """Freeze the listed parts; returns the number of frozen parameters."""
    from syncmod.pretrain.architectures import decoder_layers, unwrap

    params: list[nn.Parameter] = []
    blocks = decoder_layers(model)
    for part in parts:
        if part == "embeddings":
            inner = unwrap(model)
            params += list(model.get_input_embeddings().parameters())
            params += [p for n, p in inner.named_parameters() if n.endswith(("wpe.weight", "embed_positions.weight"))]
        elif part == "lm_head":
            params += list(model.get_output_embeddings().parameters())
        else:
            for block in list(blocks)[:_freeze_layer_bound(part, len(blocks)) - 1]:
                params += list(block.parameters())
    unique = {id(p): p for p in params}
    for p in unique.values():
        p.requires_grad_(False)
    return sum(p.numel() for p in unique.values())


def _lora(model: nn.Module, config, names: list[str]) -> nn.Module:
    """One frozen checkpoint with a LoRA adapter per base name (each initialised as PEFT does: B = 0, so every
    base starts as the checkpoint itself)."""
    from peft import LoraConfig, get_peft_model

    from syncmod.pretrain.architectures import projections

    targets = projections(model, list(config.lora_targets)) if config.lora_targets else "all-linear"
    lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.0, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")
    with torch.random.fork_rng():  # every adapter's A drawn alike: the bases differ only by what training does
        torch.manual_seed(0)
        peft = get_peft_model(model, lora, adapter_name=names[0])
        for name in names[1:]:
            torch.manual_seed(0)
            peft.add_adapter(name, lora)
    peft.set_adapter(names[0])
    for n, p in peft.named_parameters():  # every adapter trainable from the start, so the optimizer holds them all
        if "lora_" in n:
            p.requires_grad_(True)
    return peft


def use_adapter(peft: nn.Module, name: str) -> nn.Module:
    """Make `name` the active LoRA of `peft`. PEFT marks only the active adapter trainable; every adapter is
    kept trainable here, since one step runs several languages before its backward."""
    if peft.active_adapter != name:
        peft.set_adapter(name)
        for n, p in peft.named_parameters():
            if "lora_" in n:
                p.requires_grad_(True)
    return peft


def save_base(base: nn.Module, directory: Path, name: str) -> None:
    """`save_pretrained` of one base; a LoRA base is merged into the checkpoint's weights first (and unmerged
    after, so the other bases stay as they were)."""
    if not hasattr(base, "merge_adapter"):
        base.save_pretrained(directory, safe_serialization=True)
        return
    use_adapter(base, name)
    base.merge_adapter()
    try:
        inner = base.get_base_model()
        state = {k.replace(".base_layer.", "."): v for k, v in inner.state_dict().items() if "lora_" not in k}
        inner.save_pretrained(directory, state_dict=state, safe_serialization=True)
    finally:
        base.unmerge_adapter()


def check_tokenizer(cfg) -> None:
    """The data root must be tokenized with the checkpoint's tokenizer: every token of the checkpoint's
    tokenizer (when it has one) has the same id in the data root's."""
    import json

    path = resolve(cfg.model.init_from)
    if not (path / "tokenizer_config.json").exists():
        return
    mine = json.loads((path / "tokenizer.json").read_text())["model"]["vocab"] if (path / "tokenizer.json").exists() \
        else None
    data = Path(cfg.data.root) / "tokenizer" / "tokenizer.json"
    theirs = json.loads(data.read_text())["model"]["vocab"]
    if isinstance(mine, list):  # Unigram: [piece, score] in id order
        mine, theirs = {p[0]: i for i, p in enumerate(mine)}, {p[0]: i for i, p in enumerate(theirs)}
    if mine is not None and any(theirs.get(k) != v for k, v in mine.items()):
        raise InputError.at(str(data.parent), f"data root was not tokenized with {cfg.model.init_from}'s tokenizer",
                            f"prepare it with `syncmod data prepare ... --tokenizer {cfg.model.init_from}`")
