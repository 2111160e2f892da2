"""Eval speed: the transfer matrix of issue 16, scored by the code before it (commit 908a0f4) and by this
code, side by side in one run, on the same files.

The matrix: the synthetic world's `event-class` task (5 labels; 1,000 test items per language), 4 languages,
4 modules (adapter, lora and sparse trained in en, adapter trained in xa; linear heads), per-language bases of
4 layers / hidden 128, plus the no-module floor (label-token scoring). Everything is built here, with the
baseline commit's own CLI (so both sides read identical bases, modules and task files):

    python -m bench.eval_speed [--items 1000] [--work runs/bench/eval_speed]

`--task bible-genre` builds the issue's own matrix from the real data in ../shared/data instead: the Bible's
`genre` label (8 classes), a parallel classify task with the same test verses in en, es, fr and it (1,000 test
items, seed 0), an 8k SentencePiece vocabulary trained on 4,000 verses of those languages (each side also its monolingual text), per-language bases of
4 layers / hidden 128, and adapter/lora/sparse trained in en + adapter trained in es:

    python -m bench.eval_speed --task bible-genre [--work runs/bench/eval_speed_bible]

"before" runs the baseline's `syncmod eval` in a subprocess (the commit exported with `git archive` to a
temporary directory), with its TaskModel.predict wrapped only to record the predictions it returns; "after"
runs this code's `syncmod eval` in a subprocess. Both are timed end to end (process start to exit). Then every
prediction of every cell is compared; differing items are counted per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "908a0f4"
SHARED_DATA = ROOT.parent / "shared" / "data"
# task -> (languages, modules as (type, training language), what it is)
MATRICES = {
    "event-class": (["en", "xa", "xb", "xc"], [("adapter", "en"), ("lora", "en"), ("sparse", "en"), ("adapter", "xa")],
                    "synthetic event-class (5 labels)"),
    "bible-genre": (["en", "es", "fr", "it"], [("adapter", "en"), ("lora", "en"), ("sparse", "en"), ("adapter", "es")],
                    "Bible verses, genre (8 labels)"),
}
LANGS, MODULES = MATRICES["event-class"][:2]

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
        pretrain(data, pre, old, steps)
    return pre / "export", world / "tasks/event-class", train_modules(work, old, pre / "export",
                                                                      world / "tasks/event-class", MODULES)


def pretrain(data: Path, pre: Path, old: Path, steps: int) -> None:
    """Per-language bases of 4 layers / hidden 128 (the `small` preset) from a prepared data root."""
    run([sys.executable, "-m", "syncmod.cli", "pretrain", "pretrain/sync.yaml", f"--data.root={data}", f"--out={pre}",
         "--model.preset=small", "--model.hidden=128", f"--train.steps={steps}", "--schedule.sync_warmup=0",
         "--eval.every=0", "--checkpoint.every=0", "--tracking.enabled=false", "--train.log_every=50"], old)


def train_modules(work: Path, old: Path, base: Path, task: Path, spec: list[tuple[str, str]]) -> list[Path]:
    """One module per (type, language), a few steps each (speed does not need good ones)."""
    modules = []
    for kind, lang in spec:
        d = work / "modules" / f"{kind}-{lang}"
        if not d.exists():
            run([sys.executable, "-m", "syncmod.cli", "finetune", f"--base={base}", f"--task={task}",
                 f"--lang={lang}", f"--out={d}", f"--module.type={kind}", "--train.steps=40", "--train.eval_every=20",
                 "--tracking.enabled=false"], old)
        modules.append(d)
    return modules


def build_bible(work: Path, old: Path, items: int, steps: int, shared: Path) -> tuple[Path, Path, list[Path]]:
    """The issue's matrix from the real Bible corpus (reused when present): genre task, 8k vocabulary, bases."""
    corpus = shared / "bible" / "bible.jsonl.gz"
    langs, spec, _ = MATRICES["bible-genre"]
    sm = [sys.executable, "-m", "syncmod.cli"]
    task, data, pre = work / "task", work / "data", work / "pretrain"
    if not task.exists():
        run([*sm, "data", "task-from-parallel", str(corpus), "--label", "genre", "--languages", ",".join(langs),
             "--out", str(task), "--train", "1000", "--dev", "100", "--test", str(items), "--seed", "0"], old)
    if not data.exists():
        run([*sm, "data", "prepare", "--parallel", str(corpus), "--languages", ",".join(langs), "--max-units", "4000",
             "--holdout", "200", "--mono-from-parallel", "--vocab-size", "8000", "--out", str(data)], old)
    if not (pre / "export").exists():
        pretrain(data, pre, old, steps)
    return pre / "export", task, train_modules(work, old, pre / "export", task, spec)


def timed_eval(code: Path, base: Path, task: Path, modules: list[Path], langs: list[str], out: Path,
               record: Path | None, extra: tuple[str, ...] = ()) -> float:
    args = ["eval", "--base", str(base), "--module", *map(str, modules), "--task", str(task), "--langs",
            ",".join(langs), "--out", str(out), "--no-tracking", *extra]
    cmd = [sys.executable, "-c", RECORDER, str(record), *args] if record else [sys.executable, "-m", "syncmod.cli",
                                                                               *args]
    t0 = time.perf_counter()
    run(cmd, code)
    return time.perf_counter() - t0


def compare(before: list[dict], after_out: Path, modules: list[Path], langs: list[str]) -> tuple[int, int, list[str]]:
    """Items whose prediction differs between the two runs (cells matched by module and language)."""
    from syncmod.evaluation.cells import cell_names

    names = cell_names([str(m) for m in modules])
    # the baseline scores the floor in every language first, then each module in every language
    order = [("floor", lang) for lang in langs] + [(n, lang) for n in names for lang in langs]
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


def args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(MATRICES), default="event-class",
                    help="the synthetic world's event-class, or the issue's own matrix from ../shared/data")
    ap.add_argument("--work", help="built files are kept here and reused (default: runs/bench/eval_speed[_bible])")
    ap.add_argument("--items", type=int, default=1000, help="test items per language")
    ap.add_argument("--steps", type=int, default=20, help="pre-training steps of the bases (speed does not need good ones)")
    ap.add_argument("--repeat", type=int, default=1, help="time before/after this many times, alternating (A B A B)")
    ap.add_argument("--shared-data", default=str(SHARED_DATA), help="the real corpora (for --task bible-genre)")
    ap.add_argument("--baseline", help=f"an exported tree of {BASELINE} to use (default: git archive it here)")
    ap.add_argument("--max-items", type=int, help="score only the first N test items (by id) per language, on "
                    "both sides (a shorter run on a busy machine; the built matrix stays the same)")
    ap.add_argument("--after-threads", default="auto",
                    help="the after side's --threads, one run per value, e.g. auto,2 (auto: its default, which "
                    "caps torch's threads at the cores other processes leave free; before always runs torch's)")
    ap.add_argument("--devices", action="store_true", help="only this code, on every device/precision here "
                    "(event-class; the matrix must be built already)")
    return ap


def main() -> None:
    args = args_parser().parse_args()
    langs, spec, what = MATRICES[args.task]
    bible = args.task == "bible-genre"
    work = Path(args.work or ("runs/bench/eval_speed_bible" if bible else "runs/bench/eval_speed")).resolve()
    if args.devices:
        devices(work)
        return
    if bible and not (Path(args.shared_data) / "bible" / "bible.jsonl.gz").is_file():
        print(f"skipped: {Path(args.shared_data) / 'bible/bible.jsonl.gz'} is absent (the real corpora of "
              "../shared/data; see its README); `--task event-class` needs no data")
        return
    work.mkdir(parents=True, exist_ok=True)
    variants = args.after_threads.split(",")
    before, after = [], {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(args.baseline).resolve() if args.baseline else export_baseline(Path(tmp) / "baseline")
        t0 = time.perf_counter()
        base, task, modules = (build_bible(work, old, args.items, args.steps, Path(args.shared_data)) if bible
                               else build(work, old, args.items, args.steps))
        built = time.perf_counter() - t0
        subset = ("--max-items", str(args.max_items)) if args.max_items else ()
        sides = [("before", old, work / "before-predictions.json", before, subset)]
        sides += [(_after_name(v), ROOT, None, after[v], (*subset, *(() if v == "auto" else ("--threads", v))))
                  for v in variants]
        for _ in range(args.repeat):  # back to back, alternating, so both sides see the same machine load
            for name, code, record, times, extra in sides:
                shutil.rmtree(work / f"eval-{name}", ignore_errors=True)
                times.append(timed_eval(code, base, task, modules, langs, work / f"eval-{name}", record, extra))
                print(f"  {name}: {times[-1]:.1f}s (load average {os.getloadavg()[0]:.2f})", flush=True)
    before_cells = json.loads((work / "before-predictions.json").read_text())
    cells = len(langs) * (len(spec) + 1)
    b = min(before)
    print(f"transfer matrix, {what}, {args.max_items or args.items} test items x {len(langs)} languages ({','.join(langs)}), "
          f"{len(spec)} modules + floor = {cells} cells; bases 4 layers / hidden 128 (built in {built:.0f}s)")
    for v in variants:
        a = min(after[v])
        total, diff, notes = compare(before_cells, work / f"eval-{_after_name(v)}", modules, langs)
        print(f"before ({BASELINE}, syncmod eval): {b:.1f}s   after (--threads {v}): {a:.1f}s   -> {b / a:.1f}x end "
              f"to end (best of {args.repeat}; all: {[round(t, 1) for t in before]} vs {[round(t, 1) for t in after[v]]})")
        print(f"  predictions: {total - diff} of {total} identical ({diff} differ)")
        for note in notes:
            print("    " + note)
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _after_name(threads: str) -> str:
    return "after" if threads == "auto" else f"after-threads{threads}"


if __name__ == "__main__":
    main()
