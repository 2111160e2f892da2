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


def save_module(directory: Path, card: dict, tensors: dict[str, torch.Tensor], peft_saver=None) -> Path:
    with atomic_dir(directory) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        card = {**card, "weights_sha256": hashlib.sha256((tmp / WEIGHTS).read_bytes()).hexdigest()}
        write_json(tmp / CARD, card)
        if peft_saver is not None:
            peft_saver(tmp / "peft")
    return directory


def read_card(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / CARD
    if not path.exists():
        raise InputError.at(str(path), "module card is missing", "give a directory written by `syncmod finetune`")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError.at(f"{path}:1", f"module card is not valid JSON ({e})", "re-train or re-copy the module") from e
    for key in ("type", "module", "task", "lang", "base", "weights_sha256"):
        if key not in card:
            raise InputError.at(str(path), f"module card has no {key!r}", "re-train or re-copy the module")
    return card


def read_weights(directory: str | Path, card: dict) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS
    if not path.exists():
        raise InputError.at(str(path), "module weights are missing", "re-train or re-copy the module")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != card["weights_sha256"]:
        raise InputError.at(str(path), "module weights are truncated or corrupted (checksum mismatch)",
                            "re-train or re-copy the module")
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise InputError.at(str(path), f"module weights are unreadable ({e})", "re-train or re-copy the module") from e


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
