"""The pre-training engine: one loop around `deepspeed.initialize`.

    for step in range(start, steps):
        kind = schedule.kind(step)              # "sync", "async" or "mixed" (both), same on every rank
        for each micro batch:
            batch = next batch of that kind     # parallel units, or monolingual windows (mixed: one of each)
            loss  = objective[kind].loss(batch) # CLM (+ λ · sync loss at the sync points); mixed: the sum
            engine.backward(loss); engine.step()
        metrics.step(...)                       # averages; logs every `log_every` steps
        evaluate when due; checkpointer.save(step, last_step=...)

Everything a step needs is built before the loop (`setup`); what happens in one step is `run_step`. The
loop's parts decide for themselves: the metrics logger when to log, the checkpointer when to save and what
to keep, and the counters live in a `TrainState` that is checkpointed like the rest.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from syncmod.config import flatten, to_dict
from syncmod.data.loader import MonoStream, ParallelMix
from syncmod.data.shards import Shards
from syncmod.data.tokenizer import SEP, SYNC, load_tokenizer
from syncmod.distributed import ensure_env, rank, world_size
from syncmod.io import write_json
from syncmod.pretrain.checkpoint import Checkpointer, check_resumable
from syncmod.pretrain.checks import check_config, check_data, languages, resolve_deepspeed
from syncmod.pretrain.config import EvalConfig, PretrainConfig
from syncmod.pretrain.diagnostics import alignment_by_group, bits_per_byte
from syncmod.pretrain.export import export
from syncmod.pretrain.identity import RunIdentity
from syncmod.pretrain.init_from import add_needed_tokens
from syncmod.pretrain.metrics import Metrics, MetricsLogger
from syncmod.pretrain.model import Bases
from syncmod.pretrain.objectives import OBJECTIVES
from syncmod.pretrain.placement import Colocated, check_placement, make_placement
from syncmod.pretrain.schedule import Schedule, pair_rows
from syncmod.pretrain.state import TrainState
from syncmod.pretrain.throughput import Meter, flops_per_token, peak_flops
from syncmod.tracking.tracker import Tracker, git_sha, make_tracker

log = logging.getLogger(__name__)


@dataclass
class Data:
    """The streams a run draws from, with one saveable position."""

    mono: dict[str, MonoStream]
    parallel: ParallelMix | None
    valid: Shards
    special: dict[str, int]
    tokens: dict[str, int]  # training tokens per language (language sampling)
    tokenizer: Any = None  # the data root's (a continued run's may have gained <sync> / <sep>): exported
    added_tokens: list[str] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {"mono": {k: s.state_dict() for k, s in self.mono.items()},
                "parallel": self.parallel.state_dict() if self.parallel else None}

    def load_state_dict(self, state: dict) -> None:
        for k, s in self.mono.items():
            s.load_state_dict(state["mono"][k])
        if self.parallel:
            self.parallel.load_state_dict(state["parallel"])


def open_data(cfg: PretrainConfig, langs: list[str], placement: Colocated) -> Data:
    """The run's streams over `data.root`, this rank's share of each (of its languages' under language-parallel)."""
    root = Path(cfg.data.root)
    tok = load_tokenizer(root / "tokenizer")
    added = add_needed_tokens(tok, cfg)  # continued runs: <sync> / <sep> only when the objective uses them
    train, valid = Shards.open(root / "train"), Shards.open(root / "valid")
    special = {"pad": tok.pad_token_id, "sep": tok.convert_tokens_to_ids(SEP),
               "sync": tok.convert_tokens_to_ids(SYNC), "bos": tok.bos_token_id, "eos": tok.eos_token_id,
               "vocab": len(tok)}
    r, w, seed = placement.dp_rank, placement.dp_world, cfg.train.seed
    mono = {lang: MonoStream(train, lang, cfg.train.seq_len, seed + i, r, w)
            for i, lang in enumerate(langs) if lang in train.mono_languages and lang in placement.local_langs}
    parallel = None
    if cfg.sync.objective != "none":
        # one cursor per corpus group (N-way, or pairwise en-xx); the schedule's rule covers the pair graph
        parallel = ParallelMix(train, langs, seed + 1000, cfg.model.max_seq_len - 1, special["pad"], r, w,
                               lambda sizes, total, draw: pair_rows(cfg.schedule.pairs, cfg.schedule.pair_temperature,
                                                                    sizes, total, draw, seed=seed),
                               pack=cfg.train.seq_len + 1 if cfg.data.pack else 0)
    tokens = {lang: train.meta["mono"].get(lang, {}).get("tokens", 1) for lang in langs}
    return Data(mono, parallel, valid, special, tokens, tok, added)


def lr_lambda(cfg: PretrainConfig):
    t = cfg.train

    def f(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on norms, biases or embeddings); frozen parameters left out."""
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in trained if not (p.ndim >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]  # DeepSpeed drops empty groups (e.g. LoRA bases: no norms trained)


@dataclass
class Run:
    """Everything one pre-training job holds, built once by `setup`."""

    cfg: PretrainConfig
    engine: Any
    scheduler: Any
    model: Bases
    data: Data
    schedule: Schedule
    objectives: dict[str, Any]
    ds: dict
    langs: list[str]
    sync_layers: list[int]
    bf16: bool
    identity: RunIdentity
    state: TrainState
    checkpointer: Checkpointer
    tracker: Tracker = field(default_factory=Tracker)
    placement: Colocated = field(default_factory=lambda: Colocated([]))

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


PARTS = {"sync": ("sync",), "async": ("async",), "mixed": ("sync", "async")}
"""What one step of each kind trains on: a `mixed` step (pattern letter M) sums a synchronous and an
asynchronous batch's losses in one optimizer step (its `clm/*` metrics are the monolingual batch's)."""


def run_step(run: Run, kind: str, step: int) -> tuple[dict[str, float | torch.Tensor], int | torch.Tensor]:
    """One optimizer step: every micro batch of the step's kind, forward, backward, step. Returns the step's
    metrics (mean over micro batches) and this rank's processed tokens, both possibly still on the device."""
    engine, accumulation = run.engine, run.ds["gradient_accumulation_steps"]
    metrics: dict[str, float | torch.Tensor] = {}
    tokens: int | torch.Tensor = 0
    for _ in range(accumulation):
        loss, values = 0.0, {}
        for part in PARTS[kind]:  # mixed: the monolingual batch's clm/* replace the parallel sides'
            ctx = run.placement.context(forward=engine, sync_layers=run.sync_layers, lam=run.schedule.lam_at(step),
                                        special=run.data.special, project=run.model.project)
            loss = loss + run.placement.loss(run.objectives[part], next_batch(run, part, step), ctx)
            tokens = tokens + ctx.tokens
            values.update(ctx.metrics)
        engine.backward(loss)
        engine.step()
        for k, v in values.items():
            metrics[k] = metrics.get(k, 0.0) + v / accumulation
    return metrics, tokens


def next_batch(run: Run, part: str, step: int):
    """The next global micro batch of this rank for `part`: parallel units, or monolingual windows."""
    cfg, data, ds = run.cfg, run.data, run.ds
    micro, world = ds["train_micro_batch_size_per_gpu"], run.placement.dp_world
    if part == "sync":
        return data.parallel.next(micro * world).to(run.engine.device)
    equal = cfg.model.topology == "per-language"
    rows = run.schedule.rows(step, micro * world * (1 if equal else len(data.mono)), data.tokens, equal)
    return {lang: data.mono[lang].next(n).to(run.engine.device) for lang, n in rows.items() if lang in data.mono}


def evaluate(run: Run) -> dict[str, float]:
    """Held-out bits per byte, retrieval per layer, mean cosine (all ranks take part: ZeRO-3 needs them)."""
    engine, cfg, data = run.engine, run.cfg, run.data
    forward = run.placement.eval_forward()  # evaluation code is device-agnostic: results come back on the CPU
    engine.eval()
    out = {f"bpb/{k}": v for k, v in bits_per_byte(
        forward, data.valid, [x for x in run.langs if x in data.valid.mono_languages], cfg.train.seq_len,
        cfg.eval.max_docs).items()}
    if len(run.langs) >= 2:
        out.update(alignment_by_group(forward, data.valid, run.langs, run.model.num_layers, run.sync_layers,
                                      cfg.sync.kind, cfg.eval.units, cfg.model.max_seq_len - 1, data.special["pad"]))
    engine.train()
    return out


def eval_due(cfg: EvalConfig, step: int, last_step: bool) -> bool:
    return last_step or bool(cfg.every and step % cfg.every == 0)


def setup(cfg: PretrainConfig) -> Run:
    """Check everything, then build the engine; resume from the newest checkpoint if there is one."""
    ensure_env()
    world = int(os.environ["WORLD_SIZE"])
    if cfg.model.placement == "colocated":
        check_config(cfg, world)
    train_meta, _ = check_data(cfg)
    langs = languages(cfg, train_meta)
    check_config(cfg, check_placement(cfg, langs, world, train_meta))  # language-parallel: batches count per language group
    identity = RunIdentity.of(cfg)
    ckpt_dir = Path(cfg.out) / "checkpoints"
    check_resumable(ckpt_dir, identity, cfg.checkpoint.resume)

    import deepspeed  # after the checks: a bad config fails in a second, not after DeepSpeed's import

    on_gpu = torch.cuda.is_available()
    bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "default" and on_gpu)
    if not on_gpu:
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # skip a 70 s JIT build on CPU
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo", verbose=False)
    placement = make_placement(cfg, langs)
    ds = resolve_deepspeed(cfg, placement.dp_world, bf16)
    data = open_data(cfg, langs, placement)

    torch.manual_seed(cfg.train.seed)
    model = Bases(cfg.model, langs, data.special["vocab"], data.special["pad"], data.special["bos"],
                  data.special["eos"], cfg.train.seed, projection=cfg.sync.projection, only=placement.only)
    if model.init_record:  # a continued checkpoint: what was done to it, in config.json and bases.json
        model.init_record["tokens_added"] = data.added_tokens
    if cfg.train.compile:
        model.compile_blocks()
    # fused AdamW: one kernel for all parameters on CUDA (DeepSpeed steps it on its fp32 master weights)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr, betas=(0.9, 0.95),
                                  fused=on_gpu)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    engine, _, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds,
                                                   mpu=placement.mpu)
    placement.bind(engine, cfg.model.dims()[1], data.special["vocab"], cfg.sync.resolved_layers(model.num_layers))
    objectives = {"async": OBJECTIVES["clm"](None)}
    if cfg.sync.objective != "none":
        objectives["sync"] = OBJECTIVES[cfg.sync.objective](cfg.sync)
    state = TrainState()
    run = Run(cfg, engine, scheduler, model, data,
              Schedule(cfg.schedule, cfg.sync.objective, cfg.sync.lam, cfg.sync.lam_warmup, cfg.train.seed,
                       lam_end=cfg.sync.lam_end, steps=cfg.train.steps),
              objectives, ds, langs, cfg.sync.resolved_layers(model.num_layers), bf16, identity, state,
              Checkpointer(engine, ckpt_dir, cfg.checkpoint, identity, state, data), placement=placement)
    run.checkpointer.load()
    return run


def train(cfg: PretrainConfig) -> dict[str, float]:
    """Run (or resume) a pre-training job; returns the final evaluation. A crash marks the run FAILED."""
    run = setup(cfg)
    tags = {"syncmod.kind": "pretrain", "config_hash": run.identity.hash, "git_sha": git_sha(),
            "deepspeed_stage": run.ds["zero_optimization"]["stage"], "world_size": world_size(),
            "topology": cfg.model.topology, "placement": cfg.model.placement, "objective": cfg.sync.objective, "languages": ",".join(run.langs)}
    run.tracker = make_tracker(cfg.tracking, run.out, run.state.run_id, tags)
    run.state.run_id = run.tracker.run_id
    with run.tracker:
        return loop(run)


def loop(run: Run) -> dict[str, float]:
    """The training loop from `run.state.step`: step, log, evaluate, checkpoint; then export the bases."""
    cfg, state = run.cfg, run.state
    write_run_files(run)
    metrics = make_metrics(run)
    final: dict[str, float] = {}
    for step in range(state.step, cfg.train.steps):
        kind = run.schedule.kind(step)
        values, tokens = run_step(run, kind, step)
        state.step = step + 1
        state.add_tokens(tokens * world_size())
        last = state.step == cfg.train.steps
        metrics.step(state.step, kind, values, tokens)
        if eval_due(cfg.eval, state.step, last):
            # train/tokens: evaluations compare runs at equal training tokens
            final = {**evaluate(run), "train/tokens": float(state.settle())}
            metrics.log(state.step, "eval", final)
        run.checkpointer.save(state.step, last_step=last)
    metrics.close()
    return {**final, **export_bases(run)}


def write_run_files(run: Run) -> None:
    """The resolved config and DeepSpeed config in the output directory; params and both files tracked once."""
    cfg, out = run.cfg, run.out
    if rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {**to_dict(cfg), "_resolved": {
            "languages": run.langs, "sync_layers": run.sync_layers, "config_hash": run.identity.hash,
            "world_size": world_size(), **({"init": run.model.init_record} if run.model.init_record else {})}})
        write_json(out / "ds_config.json", run.ds)
    if run.state.step == 0:
        run.tracker.log_params(flatten(to_dict(cfg)))
        run.tracker.log_artifact(out / "config.json")
        run.tracker.log_artifact(out / "ds_config.json")


def make_metrics(run: Run) -> Metrics:
    """The metrics logger of rank 0 (tokens/s and MFU of the bases as configured); a no-op elsewhere."""
    if rank() != 0:
        return Metrics()
    cfg = run.cfg
    meter = Meter(flops_per_token(cfg.model.dims(), run.data.special["vocab"], cfg.train.seq_len),
                  peak_flops("bf16" if run.bf16 else "fp32"), world_size())

    def extras() -> dict[str, float]:
        out = {"lr": run.scheduler.get_last_lr()[0]}
        norm = run.engine.get_global_grad_norm()
        if norm is not None:
            out["grad_norm"] = float(norm)
        return out

    return MetricsLogger(run.out, cfg.train.log_every, run.state.step, cfg.train.steps, run.tracker, meter, extras)


def export_bases(run: Run) -> dict[str, float]:
    """Export every base (checked against the engine's logits), and track the export."""
    out, tracker = run.out, run.tracker
    diffs = export(run.engine, out / "export", run.data.tokenizer or load_tokenizer(Path(run.cfg.data.root) / "tokenizer"),
                   run.data.special, run.sync_layers, tracker.run_id, run.placement)
    result = {"export/probe_max_abs_diff": max(diffs.values(), default=0.0)}
    tracker.log_metrics(result, run.cfg.train.steps)
    tracker.set_tags({"export_dir": str((out / "export").resolve())})
    tracker.log_artifact(out / "export" / "bases.json", "export")
    tracker.log_artifact(out / "metrics.jsonl")
    return result
