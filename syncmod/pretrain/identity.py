"""Run identity: what makes two invocations the same run, so that `resume: auto` continues only that run.

Checked at start against what the newest checkpoint recorded, in two parts:
- the config without where things live (`out`, `data.root`, a DeepSpeed JSON's path), without cadence
  (logging, evaluation, checkpoints, tracking) and without `train.compile`: a moved run directory or data
  copied elsewhere resumes;
- the data's tokenizer (a hash of its files) and vocabulary size: a data root re-prepared with another
  tokenizer is refused, where it used to crash on resume or train on ids that mean other words.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from syncmod.config import config_hash, flatten, to_dict
from syncmod.errors import InputError
from syncmod.pretrain.config import PretrainConfig

CADENCE = ("eval", "checkpoint", "tracking")  # how often things happen, not what is trained


@dataclass(frozen=True)
class RunIdentity:
    config: dict
    """The config fields that define the trained weights (see the module docstring)."""
    tokenizer: dict
    """`{"sha256": ..., "vocab": N}` of the data root's tokenizer."""

    @classmethod
    def of(cls, cfg: PretrainConfig) -> RunIdentity:
        d = to_dict(cfg)
        for key in ("out", *CADENCE):
            d.pop(key)
        d["data"].pop("root")
        d["data"].pop("pack", None)  # packed rows compute the same states as one unit a row
        d["train"].pop("log_every")
        d["train"].pop("compile", None)  # how the same computation runs, not what it computes
        if d["model"].get("placement") == "colocated":  # the default keeps the hashes of earlier runs
            d["model"].pop("placement")
        if d["train"].get("deepspeed") and Path(cfg.train.deepspeed).is_file():  # its content defines the run
            d["train"]["deepspeed"] = hashlib.sha256(Path(cfg.train.deepspeed).read_bytes()).hexdigest()
        return cls(d, tokenizer_fingerprint(Path(cfg.data.root)))

    @property
    def hash(self) -> str:
        return config_hash({"config": self.config, "tokenizer": self.tokenizer})

    def to_json(self) -> dict:
        return {"hash": self.hash, "config": self.config, "tokenizer": self.tokenizer}

    def check(self, saved: dict, where: str) -> None:
        """Refuse (one line naming what changed) when `saved` (a checkpoint's `to_json`) is another run's."""
        if saved.get("hash") == self.hash:
            return
        if "tokenizer" in saved and saved["tokenizer"] != self.tokenizer:
            old, new = saved["tokenizer"], self.tokenizer
            what = (f"vocabulary {old['vocab']} -> {new['vocab']}" if old["vocab"] != new["vocab"]
                    else f"tokenizer files {old['sha256'][:12]} -> {new['sha256'][:12]}")
            raise InputError.at(where, f"checkpoints were trained with another tokenizer than data.root's ({what})",
                                "use the data root the run was started with, or another output directory")
        raise InputError.at(where, f"checkpoints belong to another config ({_changes(saved.get('config'), self.config)})",
                            "use another output directory for a changed config")


def tokenizer_fingerprint(root: Path) -> dict:
    """Hash of every file of `root/tokenizer` (names and bytes) and the vocabulary size the shards were cut with."""
    digest = hashlib.sha256()
    for path in sorted(p for p in (root / "tokenizer").iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    vocab = json.loads((root / "train" / "meta.json").read_text()).get("vocab_size")
    return {"sha256": digest.hexdigest(), "vocab": vocab}


def _changes(old: dict | None, new: dict) -> str:
    if old is None:  # a checkpoint written before identities were recorded: only its hash is known
        return "saved before run identities were recorded"
    a, b = flatten(old), flatten(new)
    diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    return ", ".join(diff[:3]) + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")
