"""Process-group helpers: launcher environment, global sums, and an all-gather that carries gradients.

`world_size`, `all_sum`, `sum_all` and `gather_with_grad` act on the *current group*: the whole world, unless a
`scope(group)` says otherwise (a language group under `model.placement: language-parallel`, or `LOCAL`: this
rank alone). `rank()` is always the global rank.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import torch
import torch.distributed as dist


def ensure_env() -> None:
    """A plain `python` process (no launcher) becomes rank 0 of 1 with a free local port."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})


LOCAL = "local"  # a scope of this rank alone
_SCOPES: list = [None]  # None: the world


@contextlib.contextmanager
def scope(group) -> Iterator[None]:
    """Make `group` (a process group, None for the world, or `LOCAL`) the current group inside the block."""
    _SCOPES.append(group)
    try:
        yield
    finally:
        _SCOPES.pop()


def _group():
    return _SCOPES[-1]


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """Ranks in the current group."""
    if not dist.is_initialized() or _group() is LOCAL:
        return 1
    return dist.get_world_size(_group())


def comm_device() -> torch.device:
    """Where collective buffers must live: the GPU for NCCL, the CPU for gloo."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_all(x: torch.Tensor | float) -> torch.Tensor:
    """Sum of a value over all ranks (no gradient), as a CPU float64 scalar."""
    t = torch.as_tensor(x, dtype=torch.float64).detach().to(comm_device()).clone()
    if world_size() > 1:
        dist.all_reduce(t, group=_group())
    return t.cpu()


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over all ranks, on its own device (no host transfer, so no wait inside a step)."""
    t = x.detach().clone()
    if world_size() > 1:
        dist.all_reduce(t, group=_group())
    return t


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `x` (K_r, ...) from every rank along dim 0, with gradients flowing back to each rank's
    own slice. Ranks may hold different K_r. Returns (gathered, offset of this rank's rows)."""
    if world_size() == 1:
        return x, 0
    group = _group()
    sizes = torch.tensor([x.shape[0]], dtype=torch.long, device=comm_device())
    all_sizes = [torch.zeros_like(sizes) for _ in range(world_size())]
    dist.all_gather(all_sizes, sizes, group=group)
    counts = [int(s) for s in all_sizes]
    padded = torch.zeros((max(counts), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded = torch.cat([x, padded[x.shape[0]:]]) if x.shape[0] < max(counts) else x
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(padded, group=group or dist.group.WORLD)
    out = torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])
    return out, sum(counts[: dist.get_rank(group)])
