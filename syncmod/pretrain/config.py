"""The pre-training config: documented dataclasses, loaded from `pretrain/*.yaml` with dotted overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from syncmod.config import at_least, positive, require
from syncmod.pretrain.model import ModelConfig
from syncmod.pretrain.objectives.sync import SyncConfig
from syncmod.pretrain.schedule import ScheduleConfig
from syncmod.tracking.tracker import TrackingConfig


@dataclass
class DataConfig:
    """Where the prepared data lives (`syncmod data prepare` writes this layout)."""

    root: str = "runs/data"
    """Directory with `tokenizer/`, `train/` shards and `valid/` shards."""
    languages: list[str] | None = None
    """Languages to train on (default: every language of the parallel shards, else of the monolingual ones)."""
    pack: bool = False
    """Synchronous steps: pack consecutive parallel units into rows of `train.seq_len + 1` tokens, each unit
    attending only to itself (the same states and losses as one unit a row, up to float rounding; rows as full
    as a CLM step's). Off by default: no faster on CPU at 16 units a step (an explicit mask computes every
    masked-out score); it pays when a sync step holds many units (pretrain/README.md)."""


@dataclass
class TrainConfig:
    """Optimisation. Batch sizes count sequences per language (a parallel unit gives one per language)."""

    steps: int = 1000
    """Optimizer steps."""
    batch_size: int = 32
    """Global batch per language per step (all ranks and accumulation steps together)."""
    micro_batch_size: int | None = None
    """Per rank per forward; default batch_size / world size (no accumulation)."""
    seq_len: int = 64
    """Tokens per monolingual training window."""
    lr: float = 1e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (cosine decay)."""
    warmup_steps: int = 50
    """Linear warm-up steps."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clipping (0 = off)."""
    seed: int = 0
    """Seed of initialisation, data order and schedule."""
    precision: Literal["default", "fp32", "bf16"] = "default"
    """`fp32`, `bf16`, or `default` (bf16 on a GPU, fp32 on CPU: bf16 matmul is ~100x slower on these CPUs)."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage 0-3."""
    deepspeed: str | None = None
    """A DeepSpeed JSON config (HF-style `--deepspeed path.json`); its values win over the fields above,
    and any `"auto"` in it is filled from them."""
    log_every: int = 10
    """Log metrics every this many steps."""

    def __post_init__(self) -> None:
        at_least(self, 1, "steps", "batch_size", "micro_batch_size", "seq_len", "log_every")
        at_least(self, 0, "warmup_steps", "weight_decay", "grad_clip")
        positive(self, "lr")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be within 0..1, got {self.min_lr_ratio}")

    def micro_batch(self, world_size: int) -> int:
        """Sequences per language per rank per forward."""
        return self.micro_batch_size or self.batch_size // world_size

    def accumulation(self, world_size: int) -> int:
        """Forwards per optimizer step on each rank."""
        return self.batch_size // (self.micro_batch(world_size) * world_size)
    compile: bool = False
    """`torch.compile` each decoder block of every base (pays on a GPU; on CPU the compile time does not)."""


@dataclass
class EvalConfig:
    """Held-out evaluation during pre-training."""

    every: int = 200
    """Evaluate every this many steps (and at the end); 0 = only at the end."""
    max_docs: int = 200
    """Held-out monolingual documents per language for bits per byte."""
    units: int = 200
    """Held-out parallel units for retrieval and mean cosine."""

    def __post_init__(self) -> None:
        at_least(self, 0, "every")
        at_least(self, 1, "max_docs", "units")


@dataclass
class CheckpointConfig:
    """DeepSpeed checkpoints under `<out>/checkpoints`."""

    every: int = 500
    """Save every this many steps (and at the end); 0 = only at the end."""
    keep: int = 2
    """Keep the newest this many checkpoints."""
    resume: Literal["auto", "never"] = "auto"
    """`auto`: continue from the newest checkpoint in the output directory, if any; `never`: refuse to start
    over existing checkpoints."""

    def __post_init__(self) -> None:
        at_least(self, 0, "every")
        at_least(self, 1, "keep")


@dataclass
class PretrainConfig:
    """Pre-train bases with interleaved synchronous (parallel, sync loss) and asynchronous (CLM) steps."""

    out: str = "runs/pretrain"
    """Output directory: checkpoints, exported bases, metrics, resolved config."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        from syncmod.pretrain.checks import check_fields  # checks imports this module

        check_fields(self)
