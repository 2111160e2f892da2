"""Data-preparation benchmark: tokens/s to build shards from the gettext en-de corpus, and peak memory.

Memory flatness is measured side by side: the same build on 1/4 and on all of the corpus; peak RSS
(of a fresh child process each) should barely move while the token count grows 4x.

    python -m bench.data_prep [--data ../shared/data] [--synthetic]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from syncmod.data.shards import build_shards
from syncmod.data.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[1])
t0 = time.perf_counter()
build_shards(tok, sys.argv[3], parallel=[sys.argv[2]], limit=int(sys.argv[4]) or None)
dt = time.perf_counter() - t0
meta = json.load(open(sys.argv[3] + "/meta.json"))
tokens = sum(meta["parallel"]["tokens"].values())
print(json.dumps({"seconds": dt, "tokens": tokens, "units": meta["parallel"]["units"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(corpus: Path, limit: int, tok: Path, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, str(tok), str(corpus), str(out), str(limit)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()
    corpus = Path(args.data) / "gettext" / "en-de.jsonl.gz"
    if not corpus.exists():
        sys.exit(f"{corpus} not found: pass --data DIR")
    from syncmod.data.lines import Problems
    from syncmod.data.parallel import read_parallel
    from syncmod.data.tokenizer import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        texts = (t for ex in read_parallel(corpus, Problems()) for t in ex.texts.values())
        train_tokenizer(texts, ["en", "de"], tmp / "tok", vocab_size=8000, max_sentences=100_000)
        tok_s = time.perf_counter() - t0
        rows = []
        for limit in (25_000, 0):
            r = run(corpus, limit, tmp / "tok", tmp / f"sh{limit}")
            rows.append(r)
            print(f"units {r['units']:>7,}  tokens {r['tokens']:>10,}  {r['tokens'] / r['seconds']:>10,.0f} tokens/s  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")
        print(f"tokenizer training (100k sampled strings, 8k SentencePiece BPE): {tok_s:.1f}s")
        print(f"peak-memory ratio full/quarter: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f} "
              f"for {rows[1]['tokens'] / rows[0]['tokens']:.1f}x the tokens")


if __name__ == "__main__":
    main()
