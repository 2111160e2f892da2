"""Checkpoints through DeepSpeed: `engine.save_checkpoint(dir, tag="step-NNNNNNNN", client_state=...)` on
all ranks, with the schedule step, data positions, RNG states, config hash and tracking run id. `resume:
auto` picks the newest complete tag; only the last `keep` tags stay on disk.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from syncmod.distributed import rank
from syncmod.errors import InputError

log = logging.getLogger(__name__)
TAG = re.compile(r"^step-(\d{8})$")
DONE = "syncmod_complete"


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def tags(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint tags (marker written after every rank saved), oldest first."""
    if not directory.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in directory.iterdir() if (m := TAG.match(p.name)) and (p / DONE).exists()]
    return sorted(out)


def save(engine, directory: Path, step: int, client_state: dict[str, Any], keep: int) -> None:
    tag = f"step-{step:08d}"
    engine.save_checkpoint(str(directory), tag=tag, client_state=client_state)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    if rank() == 0:
        (directory / tag / DONE).write_text(client_state["config_hash"] + "\n")
        for _, old in tags(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    log.info("saved checkpoint %s", directory / tag)


def check_owner(directory: Path, config_hash: str) -> None:
    """Refuse, at start, to resume checkpoints written by another config."""
    _, path = tags(directory)[-1]
    saved_hash = (path / DONE).read_text().strip()
    if saved_hash != config_hash:
        raise InputError.at(str(directory), f"checkpoints belong to another config (hash {saved_hash}, this one "
                            f"{config_hash})", "use another output directory for a changed config")


def resume(engine, directory: Path, config_hash: str) -> dict[str, Any] | None:
    """Load the newest complete checkpoint."""
    found = tags(directory)
    if not found:
        return None
    check_owner(directory, config_hash)
    _, path = found[-1]
    _, client_state = engine.load_checkpoint(str(directory), tag=path.name, load_optimizer_states=True,
                                             load_lr_scheduler_states=True)
    log.info("resumed from %s", path)
    return client_state
