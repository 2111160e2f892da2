"""Data-preparation benchmark: tokens/s and peak memory of building shards, today's path against the path of
commit 908a0f4 (single process, fast tokenizer), side by side in one run, at two corpus sizes.

The old code runs from a `git worktree` of 908a0f4 in a temporary directory (it is not importable otherwise);
every build runs in a fresh child process, so peak RSS is that build's alone (worker processes: their own max).
Besides wall-clock tokens/s, tokens per CPU-second (process + workers): the machine is shared, and CPU time
is far less disturbed by other jobs than wall time.
The build stage is what is timed: read + validate + tokenize + write the shards, with an already trained
tokenizer; the whole `syncmod data prepare` (which also trains the tokenizer) is timed once at the larger size.

    python -m bench.data_prep [--data ../shared/data] [--repeats 2]

Corpus: the gettext en-de catalog (95k pairs) from ../shared/data; without it, a synthetic world of 40k units.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD = "908a0f4"
CHILD = r"""
import json, resource, sys, time
try:
    from syncmod.data.shard_build import build_shards
except ImportError:  # the old code (908a0f4) kept the builder in shards.py
    from syncmod.data.shards import build_shards
from syncmod.data.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[1])
kw = {"workers": int(sys.argv[5])} if sys.argv[5] != "old" else {}
import resource
c0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0 = time.perf_counter()
build_shards(tok, sys.argv[3], parallel=[sys.argv[2]], limit=int(sys.argv[4]) or None, **kw)
dt = time.perf_counter() - t0
meta = json.load(open(sys.argv[3] + "/meta.json"))
use = [resource.getrusage(r) for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(json.dumps({"seconds": dt, "tokens": sum(meta["parallel"]["tokens"].values()),
                  "cpu": sum(u.ru_utime + u.ru_stime for u in use) - c0, "units": meta["parallel"]["units"],
                  "peak_rss_mb": max(u.ru_maxrss for u in use) / 1024}))
"""


def _env(code: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), "TOKENIZERS_PARALLELISM": "true"}


def build(code: Path, corpus: Path, limit: int, tok: Path, out: Path, workers: str) -> dict:
    # cwd=code: a `-c` script imports from its working directory first, so it must be the code under test
    res = subprocess.run([sys.executable, "-c", CHILD, str(tok), str(corpus), str(out), str(limit), workers],
                         capture_output=True, text=True, check=True, env=_env(code), cwd=code)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def prepare(code: Path, corpus: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "syncmod.cli", "data", "prepare", "--parallel", str(corpus), "--out",
                    str(out), "--vocab-size", "8000", "--holdout", "1000"], capture_output=True, text=True,
                   check=True, env=_env(code), cwd=code)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return time.perf_counter() - t0


def corpus_for(data: Path, tmp: Path) -> tuple[Path, list[int]]:
    """The gettext en-de catalog when present, else a synthetic world's parallel file."""
    gettext = data / "gettext" / "en-de.jsonl.gz"
    if gettext.exists():
        return gettext, [25_000, 0]
    print(f"{gettext} not found: using a synthetic world")
    world = tmp / "world"
    subprocess.run([sys.executable, "-m", "syncmod.cli", "data", "synth", "--out", str(world), "--parallel_train=40000",
                    "--mono_train=100", "--mono_valid=100", "--parallel_valid=100"], check=True, capture_output=True,
                   env=_env(ROOT))
    return world / "parallel" / "train.jsonl", [10_000, 0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=2, help="builds per configuration; the fastest is reported")
    args = ap.parse_args()
    from syncmod.data.lines import Problems
    from syncmod.data.parallel import read_parallel
    from syncmod.data.tokenizer import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus, sizes = corpus_for(Path(args.data), tmp)
        old = tmp / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), OLD], check=True,
                       capture_output=True)
        try:
            texts = (t for ex in read_parallel(corpus, Problems()) for t in ex.texts.values())
            train_tokenizer(texts, ["en", "de"] if "gettext" in str(corpus) else ["en", "xa", "xb", "xc"],
                            tmp / "tok", vocab_size=8000, max_sentences=100_000)
            _measure(old, corpus, sizes, tmp, args.repeats)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=True)


def _measure(old: Path, corpus: Path, sizes: list[int], tmp: Path, repeats: int) -> None:
    configs = {"908a0f4 (1 process)": (old, "old"), "now, 1 process (2 encode threads)": (ROOT, "1"),
               "now, 2 worker processes": (ROOT, "2")}
    print(f"corpus {corpus.name}; build stage = read + validate + tokenize + write shards; best of {repeats}")
    for limit in sizes:
        best: dict[str, dict] = {}
        for _ in range(repeats):  # alternate the configurations: the machine is shared and noisy
            for name, (code, workers) in configs.items():
                r = build(code, corpus, limit, tmp / "tok", tmp / "sh", workers)
                if name not in best or r["seconds"] < best[name]["seconds"]:
                    best[name] = r
        base = best["908a0f4 (1 process)"]
        for name, r in best.items():
            print(f"units {r['units']:>7,}  tokens {r['tokens']:>10,}  {name:<34} {r['tokens'] / r['seconds']:>10,.0f} "
                  f"tokens/s x{base['seconds'] / r['seconds']:.2f}  {r['tokens'] / r['cpu']:>10,.0f} tokens/CPU-s "
                  f"x{base['cpu'] / r['cpu']:.2f}  peak RSS {r['peak_rss_mb']:.0f} MB")
    t_old, t_new = prepare(old, corpus, tmp / "root"), prepare(ROOT, corpus, tmp / "root")
    print(f"whole `syncmod data prepare` (tokenizer training included), full corpus: 908a0f4 {t_old:.1f}s, "
          f"now {t_new:.1f}s, x{t_old / t_new:.2f}")


if __name__ == "__main__":
    main()
