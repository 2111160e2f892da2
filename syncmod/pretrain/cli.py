"""`syncmod pretrain CONFIG [--a.b=value ...]`, also `deepspeed --module syncmod.pretrain CONFIG ...` and
`torchrun -m syncmod.pretrain ...`. Accepts HF-style `--deepspeed path.json` and the launcher's `--local_rank`."""

from __future__ import annotations

import json


def _launcher_args(argv: list[str]) -> list[str]:
    """Drop `--local_rank` (the launcher's; LOCAL_RANK is in the environment too) and map `--deepspeed X`."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--local_rank") or a.startswith("--local-rank"):
            i += 1 if "=" in a else 2
            continue
        if a in ("--deepspeed", "--tracking-uri"):
            key = "train.deepspeed" if a == "--deepspeed" else "tracking.uri"
            out.append(f"--{key}={argv[i + 1]}")
            i += 2
            continue
        if a.startswith("--tracking-uri="):
            out.append("--tracking.uri=" + a.split("=", 1)[1])
            i += 1
            continue
        if a.startswith("--deepspeed="):
            out.append("--train.deepspeed=" + a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    return out


def main(argv: list[str]) -> int:
    from syncmod.config import parse
    from syncmod.distributed import rank
    from syncmod.pretrain.config import PretrainConfig
    from syncmod.pretrain.engine import train

    cfg, _ = parse(PretrainConfig, _launcher_args(argv), "syncmod pretrain")
    final = train(cfg)
    if rank() == 0:
        print(json.dumps({"out": cfg.out, **final}, sort_keys=True))
    return 0

