"""`syncmod demo` (= `make demo`): a small study on the synthetic world, end to end, on a laptop CPU.

world -> tokenizer + shards -> 4-layer per-language bases pre-trained with `sync` and, as the control,
`independent` (never synchronised, as many steps) -> an adapter module for `event-class` at the
sync layer, trained in every language -> every module on every language's base -> the headline table: per
condition, source score, target scores, transfer ratio, retained fraction, ΔBPB. It is `syncmod study` with
a small preset (hidden 128, 600 steps); `--steps`, `--hidden` and `--out` change it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from syncmod.config import at_least


@dataclass
class DemoConfig:
    """The demo study. Defaults finish in under ten minutes on a 2-core CPU."""

    out: str = "runs/demo"
    """Everything goes here (world, data, bases, modules, evaluations, report); finished parts are reused."""
    seed: int = 0
    """Seed of the world and of every run."""
    steps: int = 600
    """Pre-training steps of the sync condition (the first half all synchronous, then 1 sync : 1 async)."""
    hidden: int = 128
    """Hidden size of the 4-layer bases (the `small` preset has 256)."""
    finetune_steps: int = 200
    """Module training steps."""

    def __post_init__(self) -> None:
        at_least(self, 2, "steps")
        at_least(self, 1, "hidden", "finetune_steps")


def study_config(cfg: DemoConfig):
    from syncmod.study.runner import Condition, StudyConfig

    warm = cfg.steps // 2
    common = [f"--model.hidden={cfg.hidden}", "--train.log_every=50"]
    return StudyConfig(
        out=cfg.out, world_seed=cfg.seed, seeds=[cfg.seed], tasks=["event-class"], module_types=["adapter"],
        module_overrides=["--module.rank=32"], finetune_steps=cfg.finetune_steps,
        conditions=[Condition("sync", "pretrain/sync.yaml", [*common, f"--train.steps={cfg.steps}",
                                                             f"--schedule.sync_warmup={warm}"]),
                    Condition("independent", "pretrain/independent.yaml", [*common, f"--train.steps={cfg.steps}"])])


def demo(config: DemoConfig) -> int:
    """A small study on the synthetic world, end to end (`make demo`): sync vs independent bases, adapter modules."""
    from syncmod.study.runner import run_study

    root = Path(__file__).resolve().parents[2]  # the repository (syncmod/study/demo.py)
    if not (root / "pretrain" / "sync.yaml").exists():
        from syncmod.errors import InputError

        raise InputError.at(str(root / "pretrain"), "the demo needs the repository's pretrain/ configs",
                            "run it from a clone of syncmod")
    import os

    os.chdir(root)
    from syncmod.io import claim_output

    with claim_output(config.out, "study"):  # the demo is a study
        summary = run_study(study_config(config))
    print((Path(config.out) / "report.md").read_text())
    import resource

    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(f"demo finished in {summary['seconds'] / 60:.1f} min, peak memory {peak / 2**20:.2f} GB (resident); "
          f"report: {Path(config.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    from syncmod.cli import main as cli_main

    sys.exit(cli_main(["demo", *sys.argv[1:]]))
