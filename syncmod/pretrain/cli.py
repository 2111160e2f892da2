"""`syncmod pretrain CONFIG [--a.b=value ...]`, also `deepspeed --module syncmod.pretrain CONFIG ...` and
`torchrun -m syncmod.pretrain ...`. Accepts HF-style `--deepspeed path.json` and the launcher's `--local_rank`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from syncmod.pretrain.config import PretrainConfig


@dataclass
class LaunchOptions:
    """Options a launcher or a Hugging Face user passes beside the config."""

    deepspeed: str | None = None
    """A DeepSpeed JSON config (same as `--train.deepspeed`); `"auto"` values are filled from the config."""
    local_rank: int | None = field(default=None, metadata={"flags": ["--local_rank", "--local-rank"]})
    """Set by `deepspeed`/`torch.distributed.launch`; unused (LOCAL_RANK is in the environment too)."""
    tracking_uri: str | None = None
    """MLflow tracking server (same as `--tracking.uri`)."""


def pretrain(config: PretrainConfig, launch: LaunchOptions) -> int:
    """Pre-train bases with interleaved synchronous (parallel, sync loss) and asynchronous (CLM) steps."""
    from syncmod.distributed import rank
    from syncmod.pretrain.engine import train

    if launch.deepspeed:
        config.train = dataclasses.replace(config.train, deepspeed=launch.deepspeed)
    if launch.tracking_uri:
        config.tracking = dataclasses.replace(config.tracking, uri=launch.tracking_uri)
    from syncmod.io import claim_output

    with claim_output(config.out, "pretrain"):  # rank 0 locks it; the other ranks only check it
        final = train(config)
    if rank() == 0:
        print(json.dumps({"out": config.out, **final}, sort_keys=True))
    return 0
