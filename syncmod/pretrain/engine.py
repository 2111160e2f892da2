"""The pre-training engine: one loop around `deepspeed.initialize`.

    for step in range(start, steps):
        kind = schedule.kind(step)              # "sync" or "async", same on every rank
        for each micro batch:
            batch = next batch of that kind     # parallel units, or monolingual windows
            loss  = objective[kind].loss(batch) # CLM (+ λ · sync loss at the sync points)
            engine.backward(loss); engine.step()
        log / evaluate / checkpoint

Everything a step needs is built before the loop; what happens in one step is `run_step` below.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from syncmod.config import config_hash, flatten, to_dict
from syncmod.data.loader import MonoStream, ParallelStream
from syncmod.data.shards import Shards
from syncmod.data.tokenizer import PAD, SEP, SYNC, load_tokenizer
from syncmod.distributed import ensure_env, rank, world_size
from syncmod.errors import InputError
from syncmod.io import write_json
from syncmod.pretrain import checkpoint as ckpt
from syncmod.pretrain.checks import check_config, check_data, languages, resolve_deepspeed
from syncmod.pretrain.config import PretrainConfig
from syncmod.pretrain.diagnostics import alignment, bits_per_byte
from syncmod.pretrain.export import export
from syncmod.pretrain.model import Bases
from syncmod.pretrain.objectives import OBJECTIVES, StepContext
from syncmod.pretrain.schedule import Schedule
from syncmod.pretrain.throughput import Meter, flops_per_token, peak_flops
from syncmod.tracking.tracker import Tracker, git_sha, make_tracker

log = logging.getLogger(__name__)


@dataclass
class Data:
    """The streams a run draws from, with one saveable position."""

    mono: dict[str, MonoStream]
    parallel: ParallelStream | None
    valid: Shards
    special: dict[str, int]
    tokens: dict[str, int]  # training tokens per language (language sampling)

    def state_dict(self) -> dict:
        return {"mono": {k: s.state_dict() for k, s in self.mono.items()},
                "parallel": self.parallel.state_dict() if self.parallel else None}

    def load_state_dict(self, state: dict) -> None:
        for k, s in self.mono.items():
            s.load_state_dict(state["mono"][k])
        if self.parallel:
            self.parallel.load_state_dict(state["parallel"])


def open_data(cfg: PretrainConfig, langs: list[str]) -> Data:
    root = Path(cfg.data.root)
    tok = load_tokenizer(root / "tokenizer")
    train, valid = Shards.open(root / "train"), Shards.open(root / "valid")
    special = {"pad": tok.convert_tokens_to_ids(PAD), "sep": tok.convert_tokens_to_ids(SEP),
               "sync": tok.convert_tokens_to_ids(SYNC), "bos": tok.bos_token_id, "eos": tok.eos_token_id,
               "vocab": len(tok)}
    r, w, seed = rank(), world_size(), cfg.train.seed
    mono = {lang: MonoStream(train, lang, cfg.train.seq_len, seed + i, r, w)
            for i, lang in enumerate(langs) if lang in train.mono_languages}
    parallel = None
    if cfg.sync.objective != "none":
        parallel = ParallelStream(train, langs, seed + 1000, cfg.model.max_seq_len - 1, special["pad"], r, w)
    tokens = {lang: train.meta["mono"].get(lang, {}).get("tokens", 1) for lang in langs}
    return Data(mono, parallel, valid, special, tokens)


def lr_lambda(cfg: PretrainConfig):
    t = cfg.train

    def f(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


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
    config_hash: str
    tracker: Tracker = field(default_factory=Tracker)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def run_step(run: Run, kind: str, step: int) -> tuple[dict[str, float], int]:
    """One optimizer step: every micro batch of the step's kind, forward, backward, step."""
    cfg, engine, data, ds = run.cfg, run.engine, run.data, run.ds
    micro, world = ds["train_micro_batch_size_per_gpu"], world_size()
    metrics: dict[str, float] = {}
    tokens = 0
    for _ in range(ds["gradient_accumulation_steps"]):
        if kind == "sync":
            batch = data.parallel.next(micro * world).to(engine.device)
        else:
            equal = cfg.model.topology == "per-language"
            rows = run.schedule.rows(step, micro * world * (1 if equal else len(data.mono)), data.tokens, equal, world)
            batch = {lang: data.mono[lang].next(n).to(engine.device) for lang, n in rows.items()}
        ctx = StepContext(forward=engine, sync_layers=run.sync_layers, lam=run.schedule.lam_at(step),
                          special=data.special, project=run.model.project)
        loss = run.objectives[kind].loss(batch, ctx)
        engine.backward(loss)
        engine.step()
        tokens += ctx.tokens
        for k, v in ctx.metrics.items():
            metrics[k] = metrics.get(k, 0.0) + v / ds["gradient_accumulation_steps"]
    return metrics, tokens


def evaluate(run: Run) -> dict[str, float]:
    """Held-out bits per byte, retrieval per layer, mean cosine (all ranks take part: ZeRO-3 needs them)."""
    engine, cfg, data = run.engine, run.cfg, run.data

    def forward(lang, ids, mask, layers):  # evaluation code is device-agnostic: results come back on the CPU
        logits, states = engine.module(lang, ids.to(engine.device), None if mask is None else mask.to(engine.device),
                                       layers)
        return logits.float().cpu(), {k: v.float().cpu() for k, v in states.items()}

    engine.eval()
    out = {f"bpb/{k}": v for k, v in bits_per_byte(
        forward, data.valid, [x for x in run.langs if x in data.valid.mono_languages], cfg.train.seq_len,
        cfg.eval.max_docs).items()}
    if len(run.langs) >= 2 and set(run.langs) <= set(data.valid.parallel_languages):
        out.update(alignment(forward, data.valid, run.langs, run.model.num_layers, run.sync_layers, cfg.sync.kind,
                             cfg.eval.units, cfg.model.max_seq_len - 1, data.special["pad"]))
    engine.train()
    return out


def setup(cfg: PretrainConfig) -> tuple[Run, dict[str, Any] | None]:
    """Check everything, then build the engine; resume from the newest checkpoint if there is one."""
    ensure_env()
    check_config(cfg, int(os.environ["WORLD_SIZE"]))
    train_meta, _ = check_data(cfg)
    langs = languages(cfg, train_meta)
    chash = config_hash(_identity(cfg))
    ckpt_dir = Path(cfg.out) / "checkpoints"
    existing = ckpt.tags(ckpt_dir)
    if existing and cfg.checkpoint.resume == "never":
        raise InputError.at(str(ckpt_dir), "holds checkpoints and checkpoint.resume=never", "use another out directory")
    if existing:
        ckpt.check_owner(ckpt_dir, chash)

    import deepspeed  # after the checks: a bad config fails in a second, not after DeepSpeed's import

    on_gpu = torch.cuda.is_available()
    bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "default" and on_gpu)
    if not on_gpu:
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # skip a 70 s JIT build on CPU
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo", verbose=False)
    ds = resolve_deepspeed(cfg, world_size(), bf16)
    data = open_data(cfg, langs)

    torch.manual_seed(cfg.train.seed)
    model = Bases(cfg.model, langs, data.special["vocab"], data.special["pad"], data.special["bos"],
                  data.special["eos"], cfg.train.seed, projection=cfg.sync.projection)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    engine, _, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds)
    objectives = {"async": OBJECTIVES["clm"](None)}
    if cfg.sync.objective != "none":
        objectives["sync"] = OBJECTIVES[cfg.sync.objective](cfg.sync)
    run = Run(cfg, engine, scheduler, model, data,
              Schedule(cfg.schedule, cfg.sync.objective, cfg.sync.lam, cfg.sync.lam_warmup, cfg.train.seed),
              objectives, ds, langs, cfg.sync.resolved_layers(model.num_layers), bf16, chash)

    state = ckpt.resume(engine, ckpt_dir, chash) if existing else None
    if state:
        data.load_state_dict(state["data"])
        ckpt.set_rng_state(state["rng"])
    return run, state


def train(cfg: PretrainConfig) -> dict[str, float]:
    """Run (or resume) a pre-training job; returns the final evaluation. A crash marks the run FAILED."""
    run, state = setup(cfg)
    tags = {"syncmod.kind": "pretrain", "config_hash": run.config_hash, "git_sha": git_sha(),
            "deepspeed_stage": run.ds["zero_optimization"]["stage"], "world_size": world_size(),
            "topology": cfg.model.topology, "objective": cfg.sync.objective, "languages": ",".join(run.langs)}
    run.tracker = make_tracker(cfg.tracking, run.out, state.get("run_id") if state else None, tags)
    try:
        final = loop(run, start=state["step"] if state else 0, seen=state.get("tokens", 0) if state else 0)
    except BaseException:
        run.tracker.finish("FAILED")
        raise
    run.tracker.finish("FINISHED")
    return final


def loop(run: Run, start: int, seen: int = 0) -> dict[str, float]:
    """The training loop: step, log, evaluate, checkpoint; then export the bases. `seen` counts training
    tokens (all ranks; logged with every evaluation as `train/tokens`, so baselines compare at equal tokens)."""
    cfg, out, tracker = run.cfg, run.out, run.tracker
    if rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {**to_dict(cfg), "_resolved": {
            "languages": run.langs, "sync_layers": run.sync_layers, "config_hash": run.config_hash,
            "world_size": world_size()}})
        write_json(out / "ds_config.json", run.ds)
    if start == 0:
        tracker.log_params(flatten(to_dict(cfg)))
        tracker.log_artifact(out / "config.json")
        tracker.log_artifact(out / "ds_config.json")
    layers, hidden = cfg.model.dims()[:2]
    meter = Meter(flops_per_token(run.model.num_params(), layers, hidden, cfg.train.seq_len),
                  peak_flops("bf16" if run.bf16 else "fp32"), world_size())
    progress = _progress(start, cfg.train.steps)
    final: dict[str, float] = {}
    window: dict[str, list[float]] = {}  # metrics since the last log line, averaged when logged

    for step in range(start, cfg.train.steps):
        kind = run.schedule.kind(step)
        metrics, tokens = run_step(run, kind, step)
        meter.add(tokens)
        seen += tokens * world_size()
        for k, v in metrics.items():
            window.setdefault(k, []).append(v)
        done = step + 1
        if done % cfg.train.log_every == 0 or done == cfg.train.steps:
            metrics = {k: sum(v) / len(v) for k, v in window.items()}
            window.clear()
            metrics.update(meter.read())
            metrics["lr"] = run.scheduler.get_last_lr()[0]
            norm = run.engine.get_global_grad_norm()
            if norm is not None:
                metrics["grad_norm"] = float(norm)
            _log(out, done, kind, metrics, progress)
            tracker.log_metrics(metrics, done)
        if (cfg.eval.every and done % cfg.eval.every == 0) or done == cfg.train.steps:
            final = {**evaluate(run), "train/tokens": float(seen)}
            _log(out, done, "eval", final, progress)
            tracker.log_metrics(final, done)
        if (cfg.checkpoint.every and done % cfg.checkpoint.every == 0) or done == cfg.train.steps:
            client = {"step": done, "tokens": seen, "data": run.data.state_dict(), "rng": ckpt.rng_state(),
                      "config_hash": run.config_hash, "run_id": tracker.run_id}
            ckpt.save(run.engine, out / "checkpoints", done, client, cfg.checkpoint.keep)
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()

    diffs = export(run.engine, out / "export", load_tokenizer(Path(cfg.data.root) / "tokenizer"), run.data.special,
                   run.sync_layers, tracker.run_id)
    final["export/probe_max_abs_diff"] = max(diffs.values(), default=0.0)
    tracker.log_metrics({"export/probe_max_abs_diff": final["export/probe_max_abs_diff"]}, cfg.train.steps)
    tracker.set_tags({"export_dir": str((out / "export").resolve())})
    tracker.log_artifact(out / "export" / "bases.json", "export")
    tracker.log_artifact(out / "metrics.jsonl")
    return final


def _identity(cfg: PretrainConfig) -> dict:
    """What makes two runs the same run: everything but logging, evaluation and checkpoint cadence."""
    d = to_dict(cfg)
    for key in ("eval", "checkpoint", "tracking"):
        d.pop(key)
    d["train"].pop("log_every")
    return d


def _progress(start: int, steps: int):
    if rank() != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, initial=start, desc="pretrain", unit="step", dynamic_ncols=True,
                disable=not os.isatty(2) and os.environ.get("SYNCMOD_PROGRESS") != "1")


def _log(out: Path, step: int, kind: str, metrics: dict[str, float], progress) -> None:
    if rank() != 0:
        return
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "kind": kind, "time": time.time(), **metrics}) + "\n")
    keys = ["clm/", "sync/acc", "sync/loss", "perf/tokens_per_s", "bpb/", "retrieval/top1"]
    shown = {k: v for k, v in metrics.items() if any(k.startswith(p) for p in keys)}
    text = " ".join(f"{k}={v:.3g}" for k, v in list(shown.items())[:8])
    if progress is not None and not progress.disable:
        progress.set_postfix_str(text[:120])
    log.info("step %d [%s] %s", step, kind, text)
