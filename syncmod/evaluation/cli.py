"""`syncmod eval --base B --module M [M ...] --task T --langs en,xa,...`: the cross-lingual eval CLI.

Prints the table and writes results.json, table.md and heatmap.png to --out (logged to MLflow as a run,
nested under the module's run when --parent-run-id is given)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str]) -> int:
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task
    from syncmod.errors import InputError
    from syncmod.evaluation import report
    from syncmod.evaluation.transfer import transfer_matrix
    from syncmod.modules.bases import open_bases, resolve_uri
    from syncmod.tracking.tracker import TrackingConfig, make_tracker, shares_store

    p = argparse.ArgumentParser(prog="syncmod eval", description=__doc__)
    p.add_argument("--base", required=True, help="syncmod export dir, HF model dir, or runs:/ models:/ URI")
    p.add_argument("--module", nargs="+", default=[], help="module dirs or URIs (modules trained in a target "
                   "language serve as its native ceiling)")
    p.add_argument("--task", required=True, help="task directory")
    p.add_argument("--langs", help="comma-separated target languages (default: all of the task's)")
    p.add_argument("--split", default="test")
    p.add_argument("--max-items", type=int, default=None, help="score at most this many items per language")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--parent-run-id", default=None, help="nest the evaluation run under this MLflow run")
    p.add_argument("--no-tracking", action="store_true")
    args = p.parse_args(argv)

    problems = Problems()
    task = load_task(args.task, problems)
    problems.raise_if_any()
    langs = args.langs.split(",") if args.langs else task.languages
    missing = [lang for lang in langs if not task.split(args.split, lang)]
    if missing:
        raise InputError.at(args.task, f"no {args.split} examples for {missing}", f"task languages: {task.languages}")
    bases = open_bases(args.base)
    modules = [str(resolve_uri(m)) for m in args.module]
    out = Path(args.out)
    from syncmod.modules.files import read_card

    module_runs = [read_card(m).get("tracking_run_id") for m in modules]
    tracking = TrackingConfig(enabled=not args.no_tracking, uri=args.tracking_uri, parent_run_id=args.parent_run_id,
                              system_metrics=False)
    if tracking.parent_run_id is None and shares_store(tracking) and module_runs:
        tracking.parent_run_id = module_runs[0]  # nest under the (first) module's run when they share a store
    tracker = make_tracker(tracking, out, tags={"syncmod.kind": "eval", "task": task.name, "base": args.base,
                                                "base_run_id": bases.run_id, "modules": ",".join(args.module),
                                                "module_run_ids": ",".join(r or "" for r in module_runs)})
    with tracker:
        results = transfer_matrix(bases, task, modules, langs, args.split, args.max_items)
        paths = report.write(results, out)
        for m in results["modules"]:
            for t, cell in m["scores"].items():
                tracker.log_metrics({f"score/{m['type']}/{m['lang']}->{t}": cell["score"]}, 0)
        for path in paths.values():
            tracker.log_artifact(path)
    print(paths["md"].read_text())
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0
