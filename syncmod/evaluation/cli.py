"""`syncmod eval --base B --module M [M ...] --task T --langs en,xa,...`: the cross-lingual eval CLI.

Prints the table and writes results.json, table.md and heatmap.png to --out (logged to MLflow as a run,
nested under the module's run when --parent-run-id is given)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from syncmod.config import at_least


@dataclass
class EvalArgs:
    """The options of `syncmod eval` (each field is a `--dashed-name` option)."""

    base: str
    """syncmod export dir, HF model dir, or runs:/ models:/ URI."""
    task: str
    """Task directory (task.json + SPLIT.LANG.jsonl), a `datasets` save_to_disk directory (or one per language
    in DIR/<lang>), or `hf:NAME` (online); see the --*-column options for datasets."""
    module: list[str] = field(default_factory=list)
    """Module dirs or URIs (modules trained in a target language serve as its native ceiling)."""
    langs: list[str] | None = None
    """Target languages, e.g. `en,xa,xb` (default: all of the task's)."""
    split: str = "test"
    """Task split to score."""
    max_items: int | None = None
    """Score at most this many items per language."""
    out: str = "runs/eval"
    """Output directory: results.json, table.md, heatmap.png."""
    tracking_uri: str | None = None
    """MLflow tracking server (default MLFLOW_TRACKING_URI, else a store in --out)."""
    parent_run_id: str | None = None
    """Nest the evaluation run under this MLflow run."""
    no_tracking: bool = False
    """Do not log to MLflow."""
    resume: bool = False
    """Continue an evaluation that stopped: reuse the cells in --out/cells scored with the same inputs."""
    metric: str | None = None
    """The score: accuracy or macro_f1 (classify), exact_match or token_f1 (generate); default the first."""
    batch_size: int = 64
    """Items per forward pass."""
    device: str | None = None
    """cpu, cuda, cuda:1, ... (default: the GPU when there is one, in bf16 where it supports it)."""
    compile: bool = False
    """torch.compile the bases' decoder blocks (pays on a GPU with large bases and many items)."""
    threads: int | None = None
    """CPU threads (default: torch's, but no more than the cores other processes leave free now)."""
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    """datasets tasks: the input column(s), joined by a space (e.g. premise,hypothesis; `input` if no `text`)."""
    label_column: str = "label"
    """datasets tasks: the label or answer column (`target` if no `label`; dotted paths like answers.text)."""
    lang_column: str = "lang"
    """datasets tasks: the language column (without one: one dataset per language, DIR/<lang> or hub configs)."""
    id_column: str = "id"
    """datasets tasks: the item id column (default: the row index within its language)."""
    hub_config: str = "{lang}"
    """hf: tasks without a language column: the config of each language (e.g. xquad.{lang})."""
    language_modules: str | None = None
    """Modules stacked on a language module (MAD-X): the target language's, e.g. runs/modules/lang-{lang}
    (default: the language module each was trained on stays under it)."""

    def __post_init__(self) -> None:
        at_least(self, 1, "max_items")
        at_least(self, 1, "threads")


def evaluate(args: EvalArgs) -> int:
    """Every module on every language's base: scores, the transfer matrix, transfer ratios (a table and a heatmap)."""
    from syncmod.data.lines import Problems
    from syncmod.errors import InputError
    from syncmod.evaluation import report
    from syncmod.evaluation.scores import check_metric
    from syncmod.evaluation.subsets import add_subsets
    from syncmod.evaluation.subsets import markdown as subsets_markdown
    from syncmod.evaluation.transfer import Scoring, check_modules, free_cores, transfer_matrix
    from syncmod.io import check_output, claim_output
    from syncmod.modules.bases import open_bases, resolve_uri
    from syncmod.modules.compose import resolve_swaps
    from syncmod.modules.files import read_card

    check_output(args.out, "eval")
    problems = Problems()
    task = _load_task(args, problems)
    problems.raise_if_any()
    metric = check_metric(task.kind, args.metric)
    scoring = Scoring.auto(args.device, args.batch_size, args.compile, args.threads or free_cores())
    langs = args.langs or task.languages
    missing = [lang for lang in langs if not task.split(args.split, lang)]
    if missing:
        raise InputError.at(args.task, f"no {args.split} examples for {missing}", f"task languages: {task.languages}")
    bases = open_bases(args.base)
    modules = [str(resolve_uri(m)) for m in args.module]
    check_modules(bases, task, [(m, read_card(m)) for m in modules], langs)  # every input, before any output
    resolve_swaps([(m, read_card(m)) for m in modules], langs, args.language_modules)  # and the stacks' too
    out = Path(args.out)
    with claim_output(out, "eval"), _tracker(args, task.name, bases.run_id, modules, out) as tracker:
        results = transfer_matrix(bases, task, modules, langs, args.split, args.max_items, metric=metric,
                                  cells=out / "cells", resume=args.resume,
                                  scoring=scoring, language_modules=args.language_modules)
        with_subsets = Path(args.task).is_dir() and add_subsets(results, task, args.task, args.max_items)
        paths = report.write(results, out)
        if with_subsets:  # in/out-of-domain and shortcut splits (the task's subsets.json)
            paths["subsets"] = out / "subsets.md"
            paths["subsets"].write_text(subsets_markdown(results))
        for m in results["modules"]:
            for t, cell in m["scores"].items():
                tracker.log_metrics({f"score/{m['type']}/{m['lang']}->{t}": cell["score"]}, 0)
        for path in paths.values():
            tracker.log_artifact(path)
    print(paths["md"].read_text())
    if "subsets" in paths:
        print(paths["subsets"].read_text())
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def _load_task(args: EvalArgs, problems):
    """A task directory or JSONL file, or a `datasets` task mapped by the --*-column options."""
    from syncmod.data.hf_tasks import TaskColumns, is_dataset, load_hf_task
    from syncmod.data.tasks import load_task

    if not is_dataset(args.task):
        return load_task(args.task, problems)
    columns = TaskColumns(text=args.text_columns, label=args.label_column, lang=args.lang_column, id=args.id_column,
                          config=args.hub_config)
    return load_hf_task(args.task, columns, problems, args.langs)


def _tracker(args: EvalArgs, task: str, base_run_id: str | None, modules: list[str], out: Path):
    """The evaluation's MLflow run, nested under the (first) module's run when they share a store."""
    from syncmod.modules.files import read_card
    from syncmod.tracking.tracker import TrackingConfig, make_tracker, shares_store

    module_runs = [read_card(m).get("tracking_run_id") for m in modules]
    tracking = TrackingConfig(enabled=not args.no_tracking, uri=args.tracking_uri, parent_run_id=args.parent_run_id,
                              system_metrics=False)
    if tracking.parent_run_id is None and shares_store(tracking) and module_runs:
        tracking.parent_run_id = module_runs[0]
    return make_tracker(tracking, out, tags={"syncmod.kind": "eval", "task": task, "base": args.base,
                                             "base_run_id": base_run_id, "modules": ",".join(args.module),
                                             "module_run_ids": ",".join(r or "" for r in module_runs)})
