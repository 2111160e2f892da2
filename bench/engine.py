"""Engine benchmarks, measured side by side in one process (A B A B ..., medians), on the CPU or one GPU:

1. tokens/s of syncmod's pre-training step (clm, one base) against a bare PyTorch loop (same architecture,
   batch and accumulation; AdamW, fused on CUDA; bf16 autocast and `torch.compile` with `--compile` on a GPU);
2. L per-language bases colocated in one engine against one base, per token (the cost of colocation);
3. cost of a synchronous step per processed token against an asynchronous (clm) step, with parallel units packed
   into full rows (`data.pack: true`) and one unit a row (the default), side by side; and both with as many
   units per step as fill the clm step's rows (equal tokens per step: `--batch` x (seq_len + 1) / mean unit length).
MFU of each: FLOPs per token of the model run (matmuls + attention, `syncmod.pretrain.throughput`) against the
device's dense peak (a per-device table; on CPU a matmul probe).

    python -m bench.engine --data runs/data [--preset small] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch


def _engine(args, langs: list[str], pattern: str, objective: str, pack: bool = True, scale: int = 1):
    from syncmod.pretrain.config import PretrainConfig
    from syncmod.pretrain.engine import setup

    cfg = PretrainConfig(out="/tmp/syncmod-bench")
    cfg.data.root, cfg.data.languages = args.data, langs
    cfg.model.preset, cfg.model.max_seq_len = args.preset, max(128, args.seq_len + 1)
    cfg.schedule.pattern, cfg.sync.objective = pattern, objective
    cfg.train.batch_size, cfg.train.micro_batch_size = args.batch * scale, (args.micro or args.batch) * scale
    cfg.train.seq_len, cfg.train.steps, cfg.train.warmup_steps, cfg.train.compile = args.seq_len, 10**6, 1, args.compile
    cfg.tracking.enabled, cfg.data.pack = False, pack
    return setup(cfg)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time(fn, steps: int) -> float:
    """Tokens per second over `steps` calls of `fn` (which returns its tokens)."""
    _sync()
    t0 = time.perf_counter()
    tokens = sum(int(fn()) for _ in range(steps))
    _sync()
    return tokens / (time.perf_counter() - t0)


def _side_by_side(fns: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median tokens/s of each function, measured in alternation after two warm-up calls (compilation)."""
    for fn in fns.values():
        fn(), fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            runs[k].append(_time(fn, steps))
    return {k: statistics.median(v) for k, v in runs.items()}


def _stepper(run, kind: str):
    from syncmod.pretrain.engine import run_step

    step = [0]

    def f():
        _, tokens = run_step(run, kind, step[0])
        step[0] += 1
        return tokens
    return f


def bare_stepper(run, compile_model: bool):
    """A nanoGPT-style loop over one base of `run`'s architecture: its own model, random tokens on the device."""
    from transformers import LlamaForCausalLM

    from syncmod.pretrain.objectives.losses import shifted_nll

    device, ds = run.engine.device, run.ds
    micro, accumulation = ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]
    hf = run.model.base(run.langs[0]).config
    model = LlamaForCausalLM(hf).to(device=device, dtype=torch.float32)  # fp32 weights, bf16 autocast
    forward = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    batches = [torch.randint(10, hf.vocab_size, (micro, run.cfg.train.seq_len + 1), device=device)
               for _ in range(accumulation)]

    def step() -> int:
        for ids in batches:
            with torch.autocast(device.type, torch.bfloat16, enabled=run.bf16):
                logits = forward(input_ids=ids).logits
            loss = shifted_nll(logits, ids).mean()
            (loss / accumulation).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return sum(b.numel() for b in batches)
    return step


def _mfu(run, tokens_per_s: float) -> float:
    from syncmod.pretrain.throughput import flops_per_token, peak_flops

    fpt = flops_per_token(run.cfg.model.dims(), run.data.special["vocab"], run.cfg.train.seq_len)
    return tokens_per_s * fpt / peak_flops("bf16" if run.bf16 else "fp32")


def engine_vs_bare(args) -> dict:
    """Lines 1 and 2: bare loop, syncmod with one base, syncmod with `args.langs` bases colocated."""
    one = _engine(args, ["en"], "A", "none")
    fns = {"bare": bare_stepper(one, args.compile), "syncmod": _stepper(one, "async")}
    if args.langs > 1:
        langs = json.loads(Path(args.data, "train/meta.json").read_text())["parallel"]["languages"][:args.langs]
        fns["colocated"] = _stepper(_engine(args, langs, "A", "none"), "async")
    tps = _side_by_side(fns, args.rounds, args.steps)
    out = {f"{k}_tokens_per_s": v for k, v in tps.items()}
    out.update({f"{k}_mfu": _mfu(one, v) for k, v in tps.items()})
    out.update({"ratio": tps["syncmod"] / tps["bare"], "params_per_base": one.model.num_params(),
                "precision": "bf16" if one.bf16 else "fp32", "device": str(one.engine.device)})
    if "colocated" in tps:
        out["colocation_cost_per_token"] = tps["syncmod"] / tps["colocated"]
    return out


def sync_cost(args) -> dict:
    """Line 3: seconds per processed token of a sync step (both sides of every pair count) vs a clm step."""
    run = _engine(args, ["en", "xa"], "SA", "sync")
    unpacked = _engine(args, ["en", "xa"], "SA", "sync", pack=False)
    group = json.loads(Path(args.data, "train/meta.json").read_text())["parallel"]["groups"][0]
    scale = max(1, round((args.seq_len + 1) * group["units"] / max(1, group["tokens"]["en"])))
    full = _engine(args, ["en", "xa"], "SA", "sync", scale=scale)
    full_unpacked = _engine(args, ["en", "xa"], "SA", "sync", pack=False, scale=scale)
    tps = _side_by_side({"sync": _stepper(run, "sync"), "clm": _stepper(run, "async"),
                         "sync_unpacked": _stepper(unpacked, "sync"), "sync_equal": _stepper(full, "sync"),
                         "sync_equal_unpacked": _stepper(full_unpacked, "sync")}, args.rounds, args.steps)
    return {"sync_tokens_per_s": tps["sync"], "clm_tokens_per_s": tps["clm"],
            "sync_unpacked_tokens_per_s": tps["sync_unpacked"], "sync_equal_tokens_per_s": tps["sync_equal"],
            "sync_equal_units": args.batch * scale, "sync_cost_per_token": tps["clm"] / tps["sync"],
            "sync_unpacked_cost_per_token": tps["clm"] / tps["sync_unpacked"],
            "sync_equal_cost_per_token": tps["clm"] / tps["sync_equal"],
            "sync_equal_unpacked_tokens_per_s": tps["sync_equal_unpacked"],
            "sync_equal_unpacked_cost_per_token": tps["clm"] / tps["sync_equal_unpacked"]}


def report(e: dict, c: dict | None, args) -> list[str]:
    lines = [f"engine vs bare loop ({args.preset}, {e['params_per_base'] / 1e6:.1f}M params, {args.batch} x "
             f"{args.seq_len + 1} tokens, {e['precision']}{', compiled' if args.compile else ''}, {e['device']}): "
             f"{e['syncmod_tokens_per_s']:,.0f} vs {e['bare_tokens_per_s']:,.0f} tokens/s, ratio {e['ratio']:.3f}, "
             f"MFU {e['syncmod_mfu']:.1%} vs {e['bare_mfu']:.1%}"]
    if "colocated_tokens_per_s" in e:
        lines.append(f"{args.langs} per-language bases colocated vs one base, per token: "
                     f"{e['colocated_tokens_per_s']:,.0f} vs {e['syncmod_tokens_per_s']:,.0f} tokens/s, "
                     f"cost {e['colocation_cost_per_token']:.3f}x, MFU {e['colocated_mfu']:.1%}")
    if c:
        lines.append(f"sync step vs clm step per processed token: {c['sync_tokens_per_s']:,.0f} vs "
                     f"{c['clm_tokens_per_s']:,.0f} tokens/s, cost {c['sync_cost_per_token']:.3f}x (packed rows; "
                     f"one unit a row: {c['sync_unpacked_tokens_per_s']:,.0f} tokens/s, "
                     f"{c['sync_unpacked_cost_per_token']:.3f}x)")
        lines.append(f"sync step at equal tokens per step ({c['sync_equal_units']} units, packed) vs clm step: "
                     f"{c['sync_equal_tokens_per_s']:,.0f} vs {c['clm_tokens_per_s']:,.0f} tokens/s, "
                     f"cost {c['sync_equal_cost_per_token']:.3f}x (one unit a row: "
                     f"{c['sync_equal_unpacked_tokens_per_s']:,.0f} tokens/s, {c['sync_equal_unpacked_cost_per_token']:.3f}x)")
    return lines


def summarize(out: Path, versions: str) -> dict:
    """bench/gpu_check.sh's result: gpu_check.md and gpu_check.json from base.json, 1b.json and the run's metrics.
    Raises when a number is missing or implausible (the check must fail loudly, never report a broken run)."""
    from syncmod.pretrain.metrics import read_metrics
    from syncmod.pretrain.throughput import peak_flops

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result: dict = {"device": gpu, "versions": versions.strip(), "peak_bf16_flops": peak_flops("bf16")}
    for name in ("base", "1b"):
        if (out / f"{name}.json").exists():
            result[name] = _checked(json.loads((out / f"{name}.json").read_text()), name, gpu != "cpu")
    result["pretrain"] = _run_summary(out / "pretrain_metrics.jsonl", read_metrics)
    if (out / "lp_metrics.jsonl").exists():
        result["language_parallel"] = _run_summary(out / "lp_metrics.jsonl", read_metrics)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_check.md").write_text("\n".join(_table(result)) + "\n")
    return result


def _run_summary(path: Path, read_metrics) -> dict:
    """Median tokens/s and MFU of a run's sync and async steps after its first third (compilation, shapes)."""
    steps = [m for m in read_metrics(path) if m["kind"] in ("sync", "async")]
    warm = max(m["step"] for m in steps) // 3
    result = {"steps": len(steps), "after_step": warm}
    for kind in ("sync", "async"):
        rows = [m for m in steps if m["kind"] == kind and m["step"] > warm]
        losses = [v for m in rows for k, v in m.items() if k.startswith("clm/")]
        if not rows or not all(math.isfinite(v) for v in losses):
            raise SystemExit(f"{path.name}: no {kind} steps after step {warm}, or a non-finite loss: {rows[-1:]}")
        result[kind] = {k: statistics.median(m[f"perf/{k}"] for m in rows) for k in ("tokens_per_s", "mfu")}
    return result


def _checked(e: dict, name: str, on_gpu: bool) -> dict:
    for k in ("bare", "syncmod", "colocated"):
        if f"{k}_tokens_per_s" in e and not (e[f"{k}_tokens_per_s"] > 0 and 0 < e[f"{k}_mfu"] <= 1):
            raise SystemExit(f"{name}: implausible {k}: {e[f'{k}_tokens_per_s']} tokens/s, MFU {e[f'{k}_mfu']}")
    if on_gpu and not (e["device"].startswith("cuda") and e["precision"] == "bf16"):
        raise SystemExit(f"{name}: ran on {e['device']} in {e['precision']}, not on the GPU in bf16")
    return e


def _table(r: dict) -> list[str]:
    out = [f"# GPU check: {r['device']}", "", f"{r['versions']}; MFU against {r['peak_bf16_flops'] / 1e12:.3g} "
           "TFLOP/s dense bf16 (per-device table; CPU: matmul probe).", "",
           "| measurement | tokens/s | MFU | ratio |", "| --- | ---: | ---: | ---: |"]
    for name in ("base", "1b"):
        if name in r:
            e = r[name]
            name = e["args"]["preset"]
            out += [f"| {name}: bare loop{', compiled' if e['args']['compile'] else ''} | {e['bare_tokens_per_s']:,.0f} | {e['bare_mfu']:.1%} | 1 |",
                    f"| {name}: syncmod step, 1 base | {e['syncmod_tokens_per_s']:,.0f} | {e['syncmod_mfu']:.1%} | "
                    f"{e['ratio']:.3f} |"]
            if "colocated_tokens_per_s" in e:
                out.append(f"| {name}: syncmod step, {e['args']['langs']} bases colocated | "
                           f"{e['colocated_tokens_per_s']:,.0f} | {e['colocated_mfu']:.1%} | "
                           f"{e['colocated_tokens_per_s'] / e['bare_tokens_per_s']:.3f} |")
    for key, what in (("pretrain", "colocated"), ("language_parallel", "language-parallel, all ranks")):
        p = r.get(key)
        for kind in ("async", "sync") if p else ():
            out.append(f"| `syncmod pretrain` sync.yaml, {what}, {kind} steps (median after step {p['after_step']}) | "
                       f"{p[kind]['tokens_per_s']:,.0f} | {p[kind]['mfu']:.1%} | |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/data")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed round")
    ap.add_argument("--seq-len", type=int, default=127, help="tokens per window, minus one")
    ap.add_argument("--batch", type=int, default=16, help="sequences per optimizer step (and per base)")
    ap.add_argument("--micro", type=int, default=None, help="sequences per forward (default: --batch)")
    ap.add_argument("--langs", type=int, default=4, help="bases colocated in line 2 (1: skip the line)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the bare model and syncmod's blocks")
    ap.add_argument("--no-sync", action="store_true", help="skip line 3")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--summarize", default=None, help="only write bench/gpu_check.sh's summary of this directory")
    ap.add_argument("--versions", default=None, help="with --summarize: a file with the software versions")
    args = ap.parse_args()
    if args.summarize:
        summarize(Path(args.summarize), Path(args.versions).read_text() if args.versions else "")
        return
    from syncmod.distributed import ensure_env

    ensure_env()
    e = engine_vs_bare(args)
    c = None if args.no_sync else sync_cost(args)
    print("\n".join(report(e, c, args)))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **e, **(c or {})}, indent=2))


if __name__ == "__main__":
    main()
