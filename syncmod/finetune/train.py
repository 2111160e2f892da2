"""`syncmod finetune CONFIG [--a.b=value ...]`: train one task module in one language on a frozen base.

    for step in range(steps):
        batch = next training examples (seeded order)
        loss  = task loss (robust.py: objective, debiasing, UDA) (+ transfer-aware consistency between bases)
        engine.backward(loss); engine.step()          # DeepSpeed over the module's parameters only
                                                      # (SAM: two passes per step, objectives/sam.py)
        every eval_every steps: dev score; keep the best; stop after `patience` evaluations without gain
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from syncmod import __version__
from syncmod.config import at_least, config_hash, flatten, positive, to_dict
from syncmod.data.lines import Problems
from syncmod.data.tasks import load_task
from syncmod.errors import InputError
from syncmod.evaluation.scores import score
from syncmod.finetune.objectives.debias import DebiasConfig
from syncmod.finetune.objectives.sam import SamConfig, sam_step
from syncmod.finetune.objectives.uda import UdaConfig
from syncmod.finetune.robust import ObjectiveConfig, Robust
from syncmod.finetune.transfer_aware import TransferAware, TransferAwareConfig
from syncmod.modules import compose
from syncmod.modules.base import ModuleConfig, ModuleType
from syncmod.modules.bases import fingerprint, load_base, open_bases
from syncmod.modules.files import TRACKING_FILES, save_module
from syncmod.modules.heads import HeadConfig
from syncmod.modules.runtime import build
from syncmod.tracking.tracker import TrackingConfig, git_sha, make_tracker, shares_store

log = logging.getLogger(__name__)


@dataclass
class FinetuneTrainConfig:
    """Optimisation of the module."""

    steps: int = 300
    """Optimizer steps (at most; early stopping may end sooner)."""
    batch_size: int = 32
    """Examples per step."""
    lr: float = 1e-3
    """AdamW learning rate."""
    eval_every: int = 50
    """Score the dev split every this many steps."""
    patience: int = 4
    """Stop after this many dev evaluations without improvement."""
    dev_examples: int = 200
    """Dev examples scored at each evaluation."""
    max_len: int = 256
    """Longest input in tokens (inputs are truncated from the left)."""
    seed: int = 0
    """Seed of the module's initialisation and the example order."""

    def __post_init__(self) -> None:
        at_least(self, 1, "steps", "batch_size", "eval_every", "patience", "dev_examples", "max_len")
        positive(self, "lr")


@dataclass
class FinetuneConfig:
    """Train a task module in one language on a frozen base."""

    out: str = "runs/modules/module"
    """Output directory of the module (module.safetensors, card.json, peft/ for lora)."""
    base: str = "runs/pretrain/sync/export"
    """The base: a syncmod export directory, a Hugging Face model directory, or runs:/ / models:/ URI."""
    task: str = "runs/world/tasks/event-class"
    """Task directory (task.json + SPLIT.LANG.jsonl)."""
    lang: str = "en"
    """Training language (its base, in a per-language export)."""
    name: str | None = None
    """Registered-model name in MLflow (default: syncmod-<task>-<type>-<lang>)."""
    module: ModuleConfig = field(default_factory=ModuleConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: FinetuneTrainConfig = field(default_factory=FinetuneTrainConfig)
    transfer_aware: TransferAwareConfig = field(default_factory=TransferAwareConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    uda: UdaConfig = field(default_factory=UdaConfig)
    debias: DebiasConfig = field(default_factory=DebiasConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    stack: list[str] = field(default_factory=list)
    """A language module (trained with `--task=TEXT.txt`, the clm objective) frozen under the module trained here:
    MAD-X composition (syncmod.modules.compose); at eval it is swapped for the target language's."""


class _Trainable(nn.Module):
    """What DeepSpeed wraps: the task model (frozen base inside), its robust-training loss and the
    transfer-aware bases. Returns (loss, {name: extra loss term for logging})."""

    def __init__(self, model, aware, robust):
        super().__init__()
        self.model, self.aware, self.robust = model, aware, robust

    def forward(self, examples):
        loss, extras = self.robust.loss(examples) if self.robust.active else (self.model.loss(examples), {})
        if self.aware is not None:
            extras["consistency"] = self.aware.loss()
            loss = loss + self.aware.config.weight * extras["consistency"]
        return loss, extras


def finetune(cfg: FinetuneConfig) -> dict:
    """Train one module on the frozen base of `cfg.lang`, keep the best dev checkpoint, save it with its card."""
    task, bases = _inputs(cfg)
    stack = compose.check_stack(cfg.stack, cfg.lang, task.kind)
    base, tok = load_base(bases.path(cfg.lang))
    base_fingerprint = fingerprint(base)  # before attaching: PEFT and parametrizations put module weights inside
    under = compose.attach_stack(base, tok, stack, bases.sync_layers)  # frozen, its hooks first
    torch.manual_seed(cfg.train.seed)
    model = build(base, tok, cfg.module, cfg.head, task, bases.sync_layers, cfg.train.max_len)
    model.under = under
    stream = _batches(task.split("train", cfg.lang), cfg.train.batch_size, cfg.train.seed)
    if type(model.module_type).prepare is not ModuleType.prepare:  # it picks from task batches (sparse, rosa)
        picks = [next(stream) for _ in range(4)]
        model.module_type.prepare(model.model, lambda: (model.loss(b) for b in picks))
    aware = TransferAware(cfg.transfer_aware, model, bases, cfg.lang) if cfg.transfer_aware.langs else None
    robust = Robust(cfg, model, task, bases)
    engine = _engine(_Trainable(model, aware, robust), model.trainable(), cfg)

    out = Path(cfg.out)
    if cfg.tracking.parent_run_id is None and shares_store(cfg.tracking):
        cfg.tracking.parent_run_id = bases.run_id  # nest under the pre-training run when both live in one store
    tracker = make_tracker(cfg.tracking, out, tags={"syncmod.kind": "finetune", "module_type": cfg.module.type,
                                                    "lang": cfg.lang, "task": task.name, "git_sha": git_sha(),
                                                    "base": str(bases.root), "base_run_id": bases.run_id,
                                                    "config_hash": config_hash(cfg)})
    tracker.log_params(flatten(to_dict(cfg)))
    with tracker:
        dev_rows = task.split("dev", cfg.lang)[: cfg.train.dev_examples]
        best = _train(engine, model, stream, dev_rows, task.kind, cfg, tracker, robust)
        model.load(best["state"])
        card = {"name": cfg.name or f"syncmod-{task.name}-{cfg.module.type}-{cfg.lang}", "type": cfg.module.type,
                "module": to_dict(cfg.module), "head": to_dict(cfg.head), "task": task.name, "kind": task.kind,
                "labels": task.labels, "lang": cfg.lang, "layer_map": model.module_type.layer_map(),
                "sync_layers": model.sync_layers, "head_layer": model.head_layer, "base": base_fingerprint,
                "base_path": str(bases.path(cfg.lang)), "claim": _claim(cfg), "transfer_aware": to_dict(cfg.transfer_aware),
                "robust": {k: to_dict(getattr(cfg, k)) for k in ("objective", "sam", "uda", "debias")},
                "dev_score": best["score"], "best_step": best["step"], "syncmod_version": __version__,
                "versions": _versions(), "tracking_run_id": tracker.run_id, **compose.card_fields(under)}
        save_module(out, card, model.state(), getattr(model.module_type, "save_peft", None))
        for path in sorted(out.iterdir()):  # the module's own files, not the run's local tracking store beside them
            if path.name not in TRACKING_FILES and not path.name.startswith("."):
                tracker.log_artifact(path, "module" if path.is_file() else f"module/{path.name}")
        tracker.register_model(card["name"], "module", "current")  # "latest" is reserved by MLflow
    return card


def _inputs(cfg: FinetuneConfig):
    """The task (checked) and the bases, before any model is built."""
    problems = Problems()
    task = compose.text_task(cfg.task, cfg.lang, problems) if compose.is_text(cfg.task) else load_task(cfg.task, problems)
    problems.raise_if_any()
    if not task.split("train", cfg.lang):
        raise InputError.at(cfg.task, f"has no training examples in {cfg.lang!r} (languages: {task.languages})",
                            "choose --lang among the task's languages")
    return task, open_bases(cfg.base)


def _batches(rows: list, batch_size: int, seed: int):
    """Endless shuffled batches of training examples (a new permutation every epoch)."""
    rng = np.random.default_rng(seed)
    n, size = len(rows), min(batch_size, len(rows))
    while True:
        order = rng.permutation(n)
        for i in range(0, n - size + 1, size):
            yield [rows[j] for j in order[i:i + size]]


def _engine(trainable: torch.nn.Module, params, cfg: FinetuneConfig):
    """A one-process DeepSpeed engine over the module's parameters (ZeRO 0, gradient clipping 1.0)."""
    import deepspeed

    from syncmod.distributed import ensure_env

    ensure_env()
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo" if not torch.cuda.is_available() else "nccl", verbose=False)
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=0.0)
    engine, *_ = deepspeed.initialize(model=trainable, optimizer=optimizer, config={
        "train_micro_batch_size_per_gpu": cfg.train.batch_size, "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 0}, "zero_allow_untested_optimizer": True, "steps_per_print": 10**9,
        "gradient_clipping": 1.0})
    return engine


def _step(engine, batch, params, rho: float):
    """One optimiser step: plain, or sharpness-aware (two passes, objectives/sam.py) when rho > 0."""
    if rho > 0:
        return sam_step(engine, params, batch, rho)
    loss, extras = engine(batch)
    engine.backward(loss)
    engine.step()
    return loss, extras


def _train(engine, model, stream, dev_rows, kind, cfg, tracker, robust) -> dict:
    best = {"score": float("-inf"), "step": 0, "state": model.state()}  # a clm dev score is negative
    bad = 0
    params = model.trainable()
    for step in range(1, cfg.train.steps + 1):
        robust.step = step
        loss, extras = _step(engine, next(stream), params, cfg.sam.rho)
        if step % cfg.train.eval_every == 0 or step == cfg.train.steps:
            model.eval()
            dev = compose.clm_dev(model, dev_rows) if kind == compose.CLM else score(
                kind, model.predict(dev_rows), [r.target for r in dev_rows])
            model.train()
            metrics = {"loss": loss.item(), "dev/score": dev["score"]}
            metrics.update({name: value.item() for name, value in extras.items()})
            tracker.log_metrics(metrics, step)
            log.info("step %d loss %.4f dev %.4f", step, metrics["loss"], dev["score"])
            if dev["score"] > best["score"]:
                best, bad = {"score": dev["score"], "step": step, "state": model.state()}, 0
            else:
                bad += 1
                if bad >= cfg.train.patience:
                    log.info("early stop at step %d (best dev %.4f at step %d)", step, best["score"], best["step"])
                    break
    return best


def _claim(cfg: FinetuneConfig) -> str:
    if cfg.transfer_aware.langs:
        return "trained with the target bases in the loop (transfer-aware)"
    return "trained once on one base; plug into any base of the same shape"


def _versions() -> dict:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def run(config: FinetuneConfig) -> int:
    """Train a task module in one language on a frozen base (a YAML from finetune/ + dotted options)."""
    from syncmod.io import claim_output

    with claim_output(config.out, "module"):
        card = finetune(config)
    print(json.dumps({"out": config.out, "dev_score": card["dev_score"], "best_step": card["best_step"]}))
    return 0


if __name__ == "__main__":
    from syncmod.cli import main as cli_main

    sys.exit(cli_main(["finetune", *sys.argv[1:]]))
