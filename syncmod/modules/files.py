"""Module files: `module.safetensors` (module weights + head, never pickle) and `card.json` (type, config,
task, training language, layer map, base fingerprint, versions, sha256 of the weights file). A `lora`
module is also saved in PEFT's format under `peft/`.

Loading checks the card and the file's checksum; a base of another shape is refused; a base with the same
shape but other weights loads as a *transfer*, which the returned record and the log say.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from syncmod.errors import InputError
from syncmod.io import atomic_dir, write_json
from syncmod.modules.bases import fingerprint

log = logging.getLogger(__name__)
CARD, WEIGHTS = "card.json", "module.safetensors"


# What the tracker keeps in the module's own directory while it trains (its default local store).
TRACKING_FILES = ("mlflow.db", "mlartifacts", "tracking_fallback.jsonl", "tracking_ids.json")


def save_module(directory: Path, card: dict, tensors: dict[str, torch.Tensor], peft_saver=None) -> Path:
    with atomic_dir(directory, "module", keep=TRACKING_FILES) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        card = {**card, "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
                "weights_sha256": hashlib.sha256((tmp / WEIGHTS).read_bytes()).hexdigest()}
        write_json(tmp / CARD, card)
        if peft_saver is not None:
            peft_saver(tmp / "peft")
    return directory


FIX = "re-train or re-copy the module"
# What every card holds, and its JSON type; optional fields may also be null.
CARD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "type": str, "module": dict, "task": str, "lang": str, "base": dict, "weights_sha256": str}
OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "head": dict, "kind": str, "labels": list, "sync_layers": list, "head_layer": int,
    "tensors": dict, "tracking_run_id": str, "claim": str}


def read_card(directory: str | Path) -> dict:
    """card.json, checked field by field (types, the module and head configs) so a bad card fails here, in
    one line, and not later inside the model code."""
    directory = Path(directory)
    path = directory / CARD
    if not directory.is_dir():
        raise InputError.at(str(directory), "module directory does not exist" if not directory.exists() else
                            "is a file, not a module directory", "give a directory written by `syncmod finetune`")
    if not path.exists():
        raise InputError.at(str(path), "module card is missing", "give a directory written by `syncmod finetune`")
    try:
        card = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError.at(f"{path}:{e.lineno}", f"module card is not valid JSON ({e.msg} at column {e.colno})",
                            FIX) from e
    except UnicodeDecodeError as e:
        raise InputError.at(str(path), f"module card is not UTF-8 (byte {e.start})", FIX) from e
    if not isinstance(card, dict):
        raise InputError.at(str(path), f"module card must be a JSON object, got {type(card).__name__}", FIX)
    for key, kind in {**CARD_FIELDS, **OPTIONAL_FIELDS}.items():
        if key not in card:
            if key in CARD_FIELDS:
                raise InputError.at(str(path), f"module card has no {key!r}", FIX)
            continue
        value = card[key]
        if value is None and key in OPTIONAL_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InputError.at(str(path), f"module card field {key!r} is {json.dumps(value)}, expected "
                                f"{_json_type(kind)}", FIX)
    _check_configs(card, str(path))
    return card


def _json_type(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,)))


def _check_configs(card: dict, where: str) -> None:
    """The module and head configs and the base fingerprint, as the loading code will read them."""
    from syncmod.modules.base import MODULE_TYPES, ModuleConfig
    from syncmod.modules.heads import HeadConfig

    _check_dataclass(card["module"], ModuleConfig, "module", where)
    _check_dataclass(card.get("head") or {}, HeadConfig, "head", where)
    if card["type"] != card["module"].get("type", card["type"]):
        raise InputError.at(where, f"module card says type {card['type']!r} and module.type "
                            f"{card['module']['type']!r}", FIX)
    if MODULE_TYPES and card["type"] not in MODULE_TYPES:
        raise InputError.at(where, f"unknown module type {card['type']!r} (known: {sorted(MODULE_TYPES)})", FIX)
    arch, sha = card["base"].get("architecture"), card["base"].get("weights_sha256")
    if not isinstance(arch, dict) or not isinstance(sha, str):
        raise InputError.at(where, "module card field 'base' needs 'architecture' (an object) and "
                            "'weights_sha256' (a string)", FIX)
    layers = card.get("sync_layers")
    if layers is not None and not all(type(x) is int and x >= 1 for x in layers):
        raise InputError.at(where, f"module card field 'sync_layers' is {layers}, expected layer numbers >= 1", FIX)
    labels = card.get("labels")
    if labels is not None and not all(isinstance(x, str) for x in labels):
        raise InputError.at(where, f"module card field 'labels' is {json.dumps(labels)}, expected strings", FIX)


def _check_dataclass(values: dict, cls: type, name: str, where: str) -> None:
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in hints:
            raise InputError.at(where, f"module card field '{name}.{key}' is not a {cls.__name__} field "
                                f"(fields: {', '.join(f.name for f in dataclasses.fields(cls))})", FIX)
        if not _fits(value, hints[key]):
            raise InputError.at(where, f"module card field '{name}.{key}' is {json.dumps(value)}, which is not "
                                f"{_type_name(hints[key])}", FIX)


def _fits(value, hint) -> bool:
    """Does a JSON value fit a config field's type (str, int, float, bool, None, list[...], unions, Literal)?"""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if hint is type(None):
        return value is None
    if hint is float:
        return type(value) in (int, float)
    if hint in (int, str, bool):
        return type(value) is hint
    return True  # a type JSON cannot express: the config class checks it


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def read_weights(directory: str | Path, card: dict) -> dict[str, torch.Tensor]:
    """The module's tensors, checked against the card: the names and shapes it lists, then the checksum."""
    path = Path(directory) / WEIGHTS
    if not path.exists():
        raise InputError.at(str(path), "module weights are missing", FIX)
    _check_tensor_list(path, card.get("tensors"))
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != card["weights_sha256"]:
        raise InputError.at(str(path), "module weights are truncated or corrupted (checksum mismatch)", FIX)
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise InputError.at(str(path), f"module weights are unreadable ({e})", FIX) from e


def _check_tensor_list(path: Path, want: dict | None) -> None:
    """Names and shapes from the file's header against the card's list (cards from before it was kept: none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            have = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise InputError.at(str(path), f"module weights are truncated or corrupted ({e})", FIX) from None
    if not want:
        return
    missing = sorted(set(want) - set(have))
    if missing:
        raise InputError.at(str(path), f"module weights lack tensor {missing[0]!r}" +
                            (f" and {len(missing) - 1} more" if len(missing) > 1 else "") + " that the card lists", FIX)
    extra = sorted(set(have) - set(want))
    if extra:
        raise InputError.at(str(path), f"module weights hold tensor {extra[0]!r}, which the card does not list", FIX)
    wrong = next((k for k in sorted(want) if have[k] != want[k]), None)
    if wrong:
        raise InputError.at(str(path), f"module tensor {wrong!r} has shape {have[wrong]}, the card says "
                            f"{want[wrong]}", FIX)


def check_shape(card: dict, config, where: str) -> None:
    """Refuse a base of another shape (from its config alone: cheap, before any work)."""
    from syncmod.modules.bases import architecture_of_config

    want, have = card["base"]["architecture"], architecture_of_config(config)
    if want != have:
        diff = {k: (want.get(k), have.get(k)) for k in want if want.get(k) != have.get(k)}
        raise InputError.at(where, "module was trained for a base of another shape: " +
                            ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items()),
                            "use a base with the same architecture")


def check_base(card: dict, model, where: str) -> bool:
    """True when this is a transfer (same shape, other weights); raises when the shape differs."""
    check_shape(card, model.config, where)
    transfer = fingerprint(model)["weights_sha256"] != card["base"]["weights_sha256"]
    if transfer:
        log.info("transfer: module %s (trained on base %s, %s) applied to another base", card.get("name", "?"),
                 card["base"]["weights_sha256"][:12], card["lang"])
    return transfer
