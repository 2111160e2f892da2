"""Model-state memory per rank for each preset and placement, *computed* from parameter counts (not measured):
weights, gradients and AdamW states as DeepSpeed holds them, activations not included.

bf16 (GPU default): 2 B bf16 weights + 2 B bf16 gradients + 12 B fp32 master weights and Adam moments = 16 B a
parameter; ZeRO-1 shards the 12 B over the data-parallel group, ZeRO-2 also the gradients, ZeRO-3 everything.
`colocated` holds all L bases on every rank (data-parallel group = the world); `language-parallel` holds one base
per rank (data-parallel group = the k ranks of its language).

    python -m bench.memory [--vocab 32000] [--langs 8] [--ranks 16]
"""

from __future__ import annotations

import argparse

import torch


def params(preset: str, vocab: int) -> int:
    from syncmod.pretrain.model import ModelConfig

    cfg = ModelConfig(preset=preset, max_seq_len=2048).hf_config(vocab, 0, 1, 2)
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        return sum(p.numel() for p in LlamaForCausalLM(cfg).parameters())


def per_rank_gib(n: int, bases: int, dp: int, stage: int) -> float:
    weights, grads, optim = 2.0, 2.0, 12.0  # bytes a parameter, bf16 mixed precision
    shard = {0: (weights + grads + optim), 1: weights + grads + optim / dp, 2: weights + (grads + optim) / dp,
             3: (weights + grads + optim) / dp}[stage]
    return n * bases * shard / 2**30


def table(vocab: int, langs: int, ranks: int) -> list[str]:
    k = ranks // langs
    out = [f"| preset | params / base | colocated, {ranks} ranks: ZeRO-0 / 2 / 3 | language-parallel, {langs} x {k}: "
           "ZeRO-0 / 2 / 3 |", "| --- | ---: | ---: | ---: |"]
    for preset in ("tiny", "small", "base", "1b"):
        n = params(preset, vocab)
        co = " / ".join(f"{per_rank_gib(n, langs, ranks, s):.2f}" for s in (0, 2, 3))
        lp = " / ".join(f"{per_rank_gib(n, 1, k, s):.2f}" for s in (0, 2, 3))
        out.append(f"| {preset} | {n / 1e6:,.1f}M | {co} GiB | {lp} GiB |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--langs", type=int, default=8)
    ap.add_argument("--ranks", type=int, default=16)
    args = ap.parse_args()
    print("\n".join(table(args.vocab, args.langs, args.ranks)))


if __name__ == "__main__":
    main()
