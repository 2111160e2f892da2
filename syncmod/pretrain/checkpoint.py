"""Checkpoints through DeepSpeed: `engine.save_checkpoint(dir, tag="step-NNNNNNNN", client_state=...)` on
all ranks. The client state holds the train state (step, tokens, tracking run id), the data positions, the RNG
states and the run identity's hash. A tag counts once its marker (`syncmod_complete`, the run identity as
JSON) is written after every rank saved; `resume: auto` picks the newest such tag.

The `Checkpointer` owns the cadence: the loop calls `checkpointer.save(step, last_step=...)` every step and
the checkpointer decides whether this step saves and which older tags go.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from syncmod.distributed import comm_device, rank
from syncmod.errors import InputError
from syncmod.pretrain.config import CheckpointConfig
from syncmod.pretrain.identity import RunIdentity
from syncmod.pretrain.state import TrainState

log = logging.getLogger(__name__)
TAG = re.compile(r"^step-(\d{8})$")
DONE = "syncmod_complete"
# torch.save reports a failed write (disk full, file-size limit) as a RuntimeError from its zip writer
WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed")


class Stateful(Protocol):
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


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


def saved_identity(tag_dir: Path) -> dict:
    """The run identity a tag's marker recorded (markers before identities were recorded hold only a hash)."""
    text = (tag_dir / DONE).read_text().strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"hash": text}


def check_resumable(directory: Path, identity: RunIdentity, resume: str) -> bool:
    """At start, before any model is built: True when there is a checkpoint of this very run to resume;
    refuses (one line) checkpoints of another run, or any when `resume` is `never`."""
    found = tags(directory)
    if not found:
        return False
    if resume == "never":
        raise InputError.at(str(directory), "holds checkpoints and checkpoint.resume=never", "use another out directory")
    identity.check(saved_identity(found[-1][1]), str(directory))
    return True


class Checkpointer:
    """Saves and restores the engine (weights, optimizer, LR schedule) together with the run's other state."""

    def __init__(self, engine, directory: Path, config: CheckpointConfig, identity: RunIdentity, train_state: TrainState,
                 data: Stateful):
        self.engine, self.directory, self.config, self.identity = engine, directory, config, identity
        self.train_state, self.data = train_state, data

    def due(self, step: int, last_step: bool) -> bool:
        return last_step or bool(self.config.every and step % self.config.every == 0)

    def save(self, step: int, last_step: bool = False) -> bool:
        """Save when `step` is due (every `checkpoint.every` steps, and the last); keep the newest `keep`."""
        if not self.due(step, last_step):
            return False
        tag = f"step-{step:08d}"
        client = {**self.train_state.state_dict(), "data": self.data.state_dict(), "rng": rng_state(),
                  "config_hash": self.identity.hash}
        self._write(tag, client)
        if rank() == 0:
            for _, old in tags(self.directory)[:-self.config.keep]:
                shutil.rmtree(old, ignore_errors=True)
        _any_rank(False)  # a barrier: no rank reads the directory while rank 0 prunes it
        log.info("saved checkpoint %s", self.directory / tag)
        return True

    def load(self) -> bool:
        """Restore the newest complete checkpoint, if any; True when one was loaded."""
        found = tags(self.directory)
        if not found:
            return False
        path = found[-1][1]
        _, client = self.engine.load_checkpoint(str(self.directory), tag=path.name, load_optimizer_states=True,
                                                load_lr_scheduler_states=True)
        self.train_state.load_state_dict(client)
        self.data.load_state_dict(client["data"])
        set_rng_state(client["rng"])
        log.info("resumed from %s", path)
        return True

    def _write(self, tag: str, client: dict) -> None:
        """Every rank writes its part, then rank 0 the marker. A failed write (disk full) anywhere removes the
        partial tag and stops every rank with one line; the previous complete tag stays the one to resume."""
        error = _attempt(lambda: self.engine.save_checkpoint(str(self.directory), tag=tag, client_state=client))
        if not _any_rank(error is not None) and rank() == 0:
            error = _attempt(lambda: (self.directory / tag / DONE).write_text(json.dumps(self.identity.to_json())))
        if _any_rank(error is not None):
            if rank() == 0:
                shutil.rmtree(self.directory / tag, ignore_errors=True)
            raise self._not_saved(tag, error)

    def _not_saved(self, tag: str, error: BaseException | None) -> InputError:
        if isinstance(error, OSError):
            reason = error.strerror or str(error)
        else:  # torch.save's writer loses the errno: "[enforce fail at inline_container.cc] unexpected pos ..."
            reason = "a file could not be written" if error else "another rank could not write its part"
        free = shutil.disk_usage(self.directory).free / 2**20 if self.directory.exists() else 0.0
        previous = tags(self.directory)
        then = f"`resume: auto` continues from {previous[-1][1].name}" if previous else "no earlier checkpoint"
        return InputError.at(str(self.directory / tag), f"checkpoint not saved: {reason} ({free:.0f} MiB free there)",
                             f"free disk space (or raise the file-size limit) and run again; {then}")


def _attempt(write) -> BaseException | None:
    """Run a write; return the error when it failed for lack of room (OSError, torch.save's writer error)."""
    try:
        write()
    except OSError as e:
        return e
    except RuntimeError as e:
        if not any(s in str(e) for s in WRITE_FAILURES):
            raise
        return e
    return None


def _any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on any (an all-reduce, so also a barrier)."""
    if not torch.distributed.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device=comm_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())
