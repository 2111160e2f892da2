"""Data-preparation benchmark: tokens/s (wall), tokens per CPU-second and peak memory of building shards, at two
corpus sizes, for the path of commit 908a0f4 (single process, fast tokenizer), the path before issue 12's rate work
(97ee752) and today's, side by side in one run; then the whole `syncmod data prepare` over every gettext catalog
(tokenizer training included), 97ee752 against today.

Old code runs from a `git worktree` in a temporary directory (it is not importable otherwise); every build runs in
a fresh child process, so peak RSS is that build's alone (worker processes: their own max). CPU time (process +
workers) is far less disturbed by the other jobs of a shared machine than wall time; the main process's own CPU
time is the serial part, so on an idle machine with C cores the wall time would be about max(main, all / C)
("idle" below; SentencePiece training threads count as main).
The build stage is read + validate + tokenize + write the shards, with an already trained tokenizer.

    python -m bench.data_prep [--data ../shared/data] [--repeats 1]

Corpus: the gettext en-de catalog (95k pairs) and all eight gettext catalogs from ../shared/data; without them, a
synthetic world of 40k units.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD, BEFORE = "908a0f4", "97ee752"
MEASURE = r"""
import json, resource, sys, time
def cpu(who):
    u = resource.getrusage(who)
    return u.ru_utime + u.ru_stime
c0, t0 = cpu(resource.RUSAGE_SELF), time.perf_counter()
run()
dt = time.perf_counter() - t0
use = [resource.getrusage(r) for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
main = cpu(resource.RUSAGE_SELF) - c0
print(json.dumps({"seconds": dt, "tokens": tokens(), "cpu": main + cpu(resource.RUSAGE_CHILDREN), "main_cpu": main,
                  "units": units(), "peak_rss_mb": max(u.ru_maxrss for u in use) / 1024}))
"""
CHILD = r"""
import json, sys
try:
    from syncmod.data.shard_build import build_shards
except ImportError:  # the old code (908a0f4) kept the builder in shards.py
    from syncmod.data.shards import build_shards
from syncmod.data.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[1])
kw = {"workers": int(sys.argv[5])} if sys.argv[5] != "old" else {}
corpora = sys.argv[2].split(",")
def run():
    build_shards(tok, sys.argv[3], parallel=corpora, limit=int(sys.argv[4]) or None, **kw)
def meta():
    return json.load(open(sys.argv[3] + "/meta.json"))["parallel"]
def tokens():
    return sum(sum(g["tokens"].values()) for g in meta().get("groups", [meta()]))
def units():
    return meta()["units"] if "groups" not in meta() else sum(g["units"] for g in meta()["groups"])
""" + MEASURE
PREPARE = r"""
import json, sys
from syncmod.cli import main
def run():
    assert main(["data", "prepare", "--out", sys.argv[1], "--vocab-size", "8000", "--holdout", "1000",
                 "--parallel", *sys.argv[2:]]) == 0
def metas():
    return [json.load(open(f"{sys.argv[1]}/{split}/meta.json"))["parallel"] for split in ("train", "valid")]
def tokens():
    return sum(sum(g["tokens"].values()) for m in metas() for g in m["groups"])
def units():
    return sum(g["units"] for m in metas() for g in m["groups"])
""" + MEASURE


def _env(code: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), "TOKENIZERS_PARALLELISM": "true"}


def _child(code: Path, script: str, args: list[str], out: Path) -> dict:
    # cwd=code: a `-c` script imports from its working directory first, so it must be the code under test
    res = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True,
                         env=_env(code), cwd=code)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def build(code: Path, corpora: list[Path], limit: int, tok: Path, out: Path, workers: str) -> dict:
    return _child(code, CHILD, [str(tok), ",".join(map(str, corpora)), str(out), str(limit), workers], out)


def prepare(code: Path, corpora: list[Path], out: Path) -> dict:
    return _child(code, PREPARE, [str(out), *map(str, corpora)], out)


def corpus_for(data: Path, tmp: Path) -> tuple[Path, list[int]]:
    """The gettext en-de catalog when present, else a synthetic world's parallel file."""
    gettext = data / "gettext" / "en-de.jsonl.gz"
    if gettext.exists():
        return gettext, [0]
    print(f"{gettext} not found: using a synthetic world")
    world = tmp / "world"
    subprocess.run([sys.executable, "-m", "syncmod.cli", "data", "synth", "--out", str(world), "--parallel_train=40000",
                    "--mono_train=100", "--mono_valid=100", "--parallel_valid=100"], check=True, capture_output=True,
                   env=_env(ROOT))
    return world / "parallel" / "train.jsonl", [10_000, 0]


def _line(name: str, r: dict, base: dict, cores: int) -> str:
    idle = max(r["main_cpu"], r["cpu"] / cores)
    return (f"units {r['units']:>7,}  tokens {r['tokens']:>10,}  {name:<30} {r['tokens'] / r['seconds']:>10,.0f} tokens/s"
            f" x{base['seconds'] / r['seconds']:<5.2f} {r['tokens'] / r['cpu']:>10,.0f} tokens/CPU-s "
            f"x{base['cpu'] / r['cpu']:<5.2f} idle~{r['tokens'] / idle / 1e6:4.2f}M/s  peak RSS {r['peak_rss_mb']:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=1, help="builds per configuration; the fastest is reported")
    args = ap.parse_args()
    from syncmod.data.lines import Problems
    from syncmod.data.parallel import read_parallel
    from syncmod.data.tokenizer import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus, sizes = corpus_for(Path(args.data), tmp)
        trees = {commit: tmp / commit for commit in (OLD, BEFORE)}
        for commit, tree in trees.items():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True,
                           capture_output=True)
        try:
            # every gettext catalog's languages: the second size builds them all
            corpora = sorted(corpus.parent.glob("en-*.jsonl.gz")) if "gettext" in str(corpus) else [corpus]
            texts = (t for c in corpora for ex in read_parallel(c, Problems()) for t in ex.texts.values())
            langs = {"en", *(c.name[3:5] for c in corpora)} if "gettext" in str(corpus) else ["en", "xa", "xb", "xc"]
            train_tokenizer(texts, langs, tmp / "tok", vocab_size=8000, max_sentences=100_000)
            print(f"load average at the start {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
            _measure(trees, corpus, sizes, tmp, args.repeats)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)


def _measure(trees: dict[str, Path], corpus: Path, sizes: list[int], tmp: Path, repeats: int) -> None:
    """The build stage of `corpus` (and, for gettext, of all eight catalogs: new code only, 908a0f4 has no pairwise
    groups) per configuration; then the whole `data prepare`."""
    configs = {f"{OLD} (1 process)": (trees[OLD], "old"), f"{BEFORE}, 2 workers": (trees[BEFORE], "2"),
               "now, 1 process": (ROOT, "1"), "now, 2 workers": (ROOT, "2")}
    cores = os.cpu_count() or 1
    runs = [([corpus], limit, configs) for limit in sizes]
    catalogs = sorted(corpus.parent.glob("en-*.jsonl.gz")) if "gettext" in str(corpus) else []
    if len(catalogs) > 1:
        runs.append((catalogs, 0, {k: v for k, v in configs.items() if not k.startswith(OLD)}))
    print(f"build stage = read + validate + tokenize + write shards (trained tokenizer); best of {repeats}; "
          "x = ratio to the first line of the block")
    for corpora, limit, chosen in runs:
        best: dict[str, dict] = {}
        for _ in range(repeats):  # alternate the configurations: the machine is shared and noisy
            for name, (code, workers) in chosen.items():
                r = build(code, corpora, limit, tmp / "tok", tmp / "sh", workers)
                if name not in best or r["seconds"] < best[name]["seconds"]:
                    best[name] = r
        base = next(iter(best.values()))
        print(f"{len(corpora)} corpus file(s):")
        for name, r in best.items():
            print(_line(name, r, base, cores))
    if catalogs:
        print(f"whole `syncmod data prepare` of {len(catalogs)} gettext catalogs (validation, holdout split, tokenizer "
              "training, train + valid shards; default workers):")
        before = prepare(trees[BEFORE], catalogs, tmp / "root")
        print(_line(BEFORE, before, before, cores))
        print(_line("now", prepare(ROOT, catalogs, tmp / "root"), before, cores))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
