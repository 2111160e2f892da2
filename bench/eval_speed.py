"""Eval speed: batched generation with the KV cache against a one-example-at-a-time generate loop on the
same items (same model, same greedy answers), measured side by side.

    python -m bench.eval_speed --base runs/pretrain/sync/export --task runs/world/tasks/qa [--items 128]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="runs/demo/pretrain/sync-s0/export", help="bases (make demo leaves these)")
    ap.add_argument("--task", default="runs/demo/world/tasks/qa")
    ap.add_argument("--items", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task
    from syncmod.modules.bases import load_base, open_bases
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build

    task = load_task(args.task, Problems())
    bases = open_bases(args.base)
    base, tok = load_base(bases.path("en"))
    model = build(base, tok, None, HeadConfig(), task, bases.sync_layers)
    rows = task.split("test", "en")[: args.items]
    batched, single = [], []
    answers = {}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        answers["batched"] = model.generate(rows)
        batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        answers["single"] = [model.generate([r])[0] for r in rows]
        single.append(time.perf_counter() - t0)
    same = sum(a == b for a, b in zip(answers["batched"], answers["single"], strict=True)) / len(rows)
    print(f"eval, {len(rows)} qa items: batched {statistics.median(batched):.2f}s vs one at a time "
          f"{statistics.median(single):.2f}s -> {statistics.median(single) / statistics.median(batched):.1f}x "
          f"(identical answers: {same:.0%})")


if __name__ == "__main__":
    main()
