"""`make bench`: every benchmark, each a ratio measured side by side, written to bench/results.md."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import torch

BENCHES = [["bench.data_prep"], ["bench.engine"], ["bench.eval_speed"]]


def main() -> None:
    lines = ["# Benchmark results", "",
             f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or '?'}; "
             f"Python {platform.python_version()}, torch {torch.__version__}.", ""]
    for args in BENCHES:
        proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
        out = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        lines += [f"## {args[0]}", "", "```", *(out or [f"failed: {proc.stderr.strip().splitlines()[-1:]}"]), "```", ""]
        print("\n".join(out))
    Path(__file__).with_name("results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
