"""Engine benchmarks, measured side by side in one process (A B A B ..., medians):

1. tokens/s of syncmod's pre-training step (clm) against a bare PyTorch loop (same model, batch, AdamW);
2. cost of a synchronous step per processed token against an asynchronous (clm) step;
3. MFU of the engine (6N + attention FLOPs per token; CPU peak from a matmul probe).

    python -m bench.engine --data runs/data [--preset small] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _engine(data_root: str, preset: str, langs: list[str], pattern: str, batch: int, seq_len: int,
            objective: str = "sync"):
    from syncmod.pretrain.config import PretrainConfig
    from syncmod.pretrain.engine import setup

    cfg = PretrainConfig(out="/tmp/syncmod-bench")
    cfg.data.root, cfg.data.languages = data_root, langs
    cfg.model.preset, cfg.schedule.pattern, cfg.sync.objective = preset, pattern, objective
    cfg.train.batch_size, cfg.train.seq_len, cfg.train.steps, cfg.train.warmup_steps = batch, seq_len, 10**6, 1
    cfg.tracking.enabled = False
    run, _ = setup(cfg)
    return run


def _time(fn, steps: int) -> float:
    t0 = time.perf_counter()
    tokens = sum(fn() for _ in range(steps))
    return tokens / (time.perf_counter() - t0)


def engine_vs_bare(data_root: str, preset: str, rounds: int, steps: int) -> dict:
    from syncmod.pretrain.engine import run_step

    run = _engine(data_root, preset, ["en"], "A", 16, 128, objective="none")
    step = [0]

    def syncmod_step() -> int:
        _, tokens = run_step(run, "async", step[0])
        step[0] += 1
        return tokens

    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(run.model.base("en").config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    batch = run.data.mono["en"].next(16)

    def bare_step() -> int:
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return batch.numel()

    syncmod_step(), bare_step()  # warm-up
    a, b = [], []
    for _ in range(rounds):
        a.append(_time(syncmod_step, steps))
        b.append(_time(bare_step, steps))
    from syncmod.pretrain.throughput import cpu_peak_flops, flops_per_token

    layers, hidden = run.cfg.model.dims()[:2]
    fpt = flops_per_token(run.model.num_params(), layers, hidden, 128)
    return {"syncmod_tokens_per_s": statistics.median(a), "bare_tokens_per_s": statistics.median(b),
            "ratio": statistics.median(a) / statistics.median(b),
            "mfu": statistics.median(a) * fpt / cpu_peak_flops(), "params": run.model.num_params()}


def sync_cost(data_root: str, preset: str, rounds: int, steps: int) -> dict:
    """Seconds per processed token of a sync step (both sides of every pair count) vs a clm step."""
    from syncmod.pretrain.engine import run_step

    run = _engine(data_root, preset, ["en", "xa"], "SA", 16, 64)
    k = [0]

    def make(kind):
        def f() -> int:
            _, tokens = run_step(run, kind, k[0])
            k[0] += 1
            return tokens
        return f

    make("sync")(), make("async")()
    s, a = [], []
    for _ in range(rounds):
        s.append(_time(make("sync"), steps))
        a.append(_time(make("async"), steps))
    return {"sync_tokens_per_s": statistics.median(s), "clm_tokens_per_s": statistics.median(a),
            "sync_cost_per_token": statistics.median(a) / statistics.median(s)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="runs/data")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    from syncmod.distributed import ensure_env

    ensure_env()
    e = engine_vs_bare(args.data, args.preset, args.rounds, args.steps)
    print(f"engine vs bare loop ({args.preset}, {e['params'] / 1e6:.1f}M params, 16 x 128 tokens): "
          f"{e['syncmod_tokens_per_s']:,.0f} vs {e['bare_tokens_per_s']:,.0f} tokens/s, ratio {e['ratio']:.3f}, "
          f"MFU {e['mfu']:.1%}")
    c = sync_cost(args.data, args.preset, args.rounds, args.steps)
    print(f"sync step vs clm step per processed token: {c['sync_tokens_per_s']:,.0f} vs {c['clm_tokens_per_s']:,.0f} "
          f"tokens/s, cost {c['sync_cost_per_token']:.3f}x")


if __name__ == "__main__":
    main()
