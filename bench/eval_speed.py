"""Eval speed: the transfer matrix of issue 16, scored by the code before it (commit 908a0f4) and by this
code, side by side in one run, on the same files.

The matrix: the synthetic world's `event-class` task (5 labels; 1,000 test items per language), 4 languages,
4 modules (adapter, lora and sparse trained in en, adapter trained in xa; linear heads), per-language bases of
4 layers / hidden 128, plus the no-module floor (label-token scoring). Everything is built here, with the
baseline commit's own CLI (so both sides read identical bases, modules and task files):

    python -m bench.eval_speed [--items 1000] [--work runs/bench/eval_speed]

"before" runs the baseline's `syncmod eval` in a subprocess (the commit exported with `git archive` to a
temporary directory), with its TaskModel.predict wrapped only to record the predictions it returns; "after"
runs this code's `syncmod eval` in a subprocess. Both are timed end to end (process start to exit). Then every
prediction of every cell is compared; differing items are counted per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "908a0f4"
LANGS = ["en", "xa", "xb", "xc"]
MODULES = [("adapter", "en"), ("lora", "en"), ("sparse", "en"), ("adapter", "xa")]

# Runs the baseline CLI with TaskModel.predict wrapped to write each cell's predictions (nothing else changes).
RECORDER = """
import json, sys
from syncmod.modules import runtime
from syncmod import cli
cells, predict = [], runtime.TaskModel.predict
def recording(self, examples, *a, **k):
    out = predict(self, examples, *a, **k)
    cells.append({"module": self.module_type is not None, "lang": examples[0].lang, "predictions": out})
    return out
runtime.TaskModel.predict = recording
rc = cli.main(sys.argv[2:])
json.dump(cells, open(sys.argv[1], "w"))
sys.exit(rc)
"""


def run(cmd: list[str], code: Path, **kw) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])  # this tree first
    env = {**os.environ, "PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc


def export_baseline(dest: Path) -> Path:
    """The baseline commit's tree (git archive: no worktree, nothing in .git changes)."""
    archive = subprocess.run(["git", "archive", BASELINE], cwd=ROOT, capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(dest, filter="data")
    return dest


def build(work: Path, old: Path, items: int, steps: int) -> tuple[Path, Path, list[Path]]:
    """World, data, bases and modules (reused when present)."""
    sm = [sys.executable, "-m", "syncmod.cli"]
    world, data, pre = work / "world", work / "data", work / "pretrain"
    if not world.exists():
        run([*sm, "data", "synth", "--out", str(world), "--parallel_train=3000", "--parallel_valid=100",
             "--mono_train=3000", "--mono_valid=100", "--task_train=1000", "--task_dev=100",
             f"--task_test={items}"], old)
    if not data.exists():
        run([*sm, "data", "prepare", "--world", str(world), "--out", str(data), "--vocab-size", "4000"], old)
    if not (pre / "export").exists():
        run([*sm, "pretrain", "pretrain/sync.yaml", f"--data.root={data}", f"--out={pre}", "--model.preset=small",
             "--model.hidden=128", f"--train.steps={steps}", "--schedule.sync_warmup=0", "--eval.every=0",
             "--checkpoint.every=0", "--tracking.enabled=false", "--train.log_every=50"], old)
    modules = []
    for kind, lang in MODULES:
        d = work / "modules" / f"{kind}-{lang}"
        if not d.exists():
            run([*sm, "finetune", f"--base={pre / 'export'}", f"--task={world / 'tasks/event-class'}",
                 f"--lang={lang}", f"--out={d}", f"--module.type={kind}", "--train.steps=40", "--train.eval_every=20",
                 "--tracking.enabled=false"], old)
        modules.append(d)
    return pre / "export", world / "tasks/event-class", modules


def timed_eval(code: Path, base: Path, task: Path, modules: list[Path], out: Path, record: Path | None) -> float:
    args = ["eval", "--base", str(base), "--module", *map(str, modules), "--task", str(task), "--langs",
            ",".join(LANGS), "--out", str(out), "--no-tracking"]
    cmd = [sys.executable, "-c", RECORDER, str(record), *args] if record else [sys.executable, "-m", "syncmod.cli",
                                                                               *args]
    t0 = time.perf_counter()
    run(cmd, code)
    return time.perf_counter() - t0


def compare(before: list[dict], after_out: Path, modules: list[Path]) -> tuple[int, int, list[str]]:
    """Items whose prediction differs between the two runs (cells matched by module and language)."""
    from syncmod.evaluation.cells import cell_names

    names = cell_names([str(m) for m in modules])
    # the baseline scores the floor in every language first, then each module in every language
    order = [("floor", lang) for lang in LANGS] + [(n, lang) for n in names for lang in LANGS]
    total, diff, notes = 0, 0, []
    for (name, lang), cell in zip(order, before, strict=True):
        assert cell["lang"] == lang and cell["module"] == (name != "floor"), (name, lang, cell["lang"])
        new = json.loads((after_out / "cells" / f"{name}__{lang}.json").read_text())["predictions"]
        total += len(new)
        bad = [i for i, (a, b) in enumerate(zip(cell["predictions"], new, strict=True)) if a != b]
        diff += len(bad)
        if bad:
            notes.append(f"{name} {lang}: {len(bad)} items differ (first: {bad[:5]})")
    return total, diff, notes


def devices(work: Path) -> None:
    """This code alone on the built matrix, in every setting the machine has (CPU fp32; on a GPU fp32, bf16,
    bf16 compiled), in one process: wall time per setting and predictions that differ from CPU fp32."""
    import torch

    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task
    from syncmod.evaluation.transfer import Scoring, transfer_matrix
    from syncmod.modules.bases import open_bases

    task = load_task(work / "world/tasks/event-class", Problems())
    bases = open_bases(str(work / "pretrain/export"))
    modules = [str(work / "modules" / f"{kind}-{lang}") for kind, lang in MODULES]
    cpu = torch.device("cpu")
    settings = [("cpu fp32", Scoring(cpu, torch.float32)), ("cpu fp32 batch 256", Scoring(cpu, torch.float32, 256))]
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        settings += [("cuda fp32", Scoring(gpu, torch.float32)), ("cuda bf16", Scoring(gpu, torch.bfloat16)),
                     ("cuda bf16 compiled", Scoring(gpu, torch.bfloat16, compile=True)),
                     ("cuda bf16 compiled, batch 256", Scoring(gpu, torch.bfloat16, 256, compile=True))]
    reference = None
    for name, scoring in settings:
        t0 = time.perf_counter()
        cells = work / "devices" / name.replace(" ", "_").replace(",", "")
        transfer_matrix(bases, task, modules, LANGS, cells=cells, scoring=scoring)
        seconds = time.perf_counter() - t0
        predictions = [p for f in sorted(cells.glob("*.json")) for p in json.loads(f.read_text())["predictions"]]
        reference = reference or predictions
        same = sum(a == b for a, b in zip(predictions, reference, strict=True))
        print(f"{name}: {seconds:.1f}s; predictions equal to cpu fp32: {same} of {len(predictions)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/bench/eval_speed", help="built files are kept here and reused")
    ap.add_argument("--items", type=int, default=1000, help="test items per language")
    ap.add_argument("--steps", type=int, default=20, help="pre-training steps of the bases (speed does not need good ones)")
    ap.add_argument("--baseline", help=f"an exported tree of {BASELINE} to use (default: git archive it here)")
    ap.add_argument("--devices", action="store_true", help="only this code, on every device/precision here "
                    "(the matrix must be built already)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    if args.devices:
        devices(work)
        return
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(args.baseline).resolve() if args.baseline else export_baseline(Path(tmp) / "baseline")
        t0 = time.perf_counter()
        base, task, modules = build(work, old, args.items, args.steps)
        built = time.perf_counter() - t0
        before = timed_eval(old, base, task, modules, work / "eval-before", work / "before-predictions.json")
        after = timed_eval(ROOT, base, task, modules, work / "eval-after", None)
    total, diff, notes = compare(json.loads((work / "before-predictions.json").read_text()), work / "eval-after",
                                 modules)
    cells = len(LANGS) * (len(MODULES) + 1)
    print(f"transfer matrix, event-class (5 labels), {args.items} test items x {len(LANGS)} languages, "
          f"{len(MODULES)} modules + floor = {cells} cells; bases 4 layers / hidden 128 (built in {built:.0f}s)")
    print(f"before ({BASELINE}, syncmod eval): {before:.1f}s   after: {after:.1f}s   -> {before / after:.1f}x end to end")
    print(f"predictions: {total - diff} of {total} identical ({diff} differ)")
    for note in notes:
        print("  " + note)


if __name__ == "__main__":
    main()
