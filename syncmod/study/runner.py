"""`syncmod study CONFIG`: conditions x seeds x tasks x module types, end to end, one report.

For every condition and seed: pre-train the bases (a YAML from pretrain/ plus overrides), train each module
type for each task in the source language — and natively in every target language, the translate-train
ceiling that retained fractions divide by — then evaluate every module on every language's base.
Finished cells are skipped, so a study resumes where it stopped. The report gives, per condition, mean ± sd
over seeds and a 95% interval (bootstrap over seeds x items) for the source score, transfer ratio, retained
fraction and ΔBPB against the reference condition at equal training tokens, every condition against the
first with paired intervals (syncmod.study.stats), plus heatmaps, ΔBPB-vs-transfer and loss-curve plots.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from syncmod.config import at_least, one_of, require
from syncmod.tracking.tracker import TrackingConfig

log = logging.getLogger(__name__)


@dataclass
class Condition:
    """One pre-training condition: a config file and dotted overrides."""

    name: str = "sync"
    """Name in the report."""
    config: str = "pretrain/sync.yaml"
    """Pre-training YAML."""
    overrides: list[str] = field(default_factory=list)
    """Dotted overrides, e.g. ["--sync.lam=4", "--schedule.pattern=SSSA"]."""


@dataclass
class StudyConfig:
    """A study on the synthetic world (or on prepared real data)."""

    out: str = "runs/study"
    """Everything goes here; finished cells are reused."""
    data: str | None = None
    """A prepared data root (`syncmod data prepare`); default: generate the synthetic world and prepare it."""
    world_seed: int = 0
    """Seed of the synthetic world (when `data` is not given)."""
    tasks: list[str] = field(default_factory=lambda: ["event-class"])
    """Task directories, or names of the synthetic world's tasks."""
    conditions: list[Condition] = field(default_factory=lambda: [
        Condition("sync", "pretrain/sync.yaml"), Condition("independent", "pretrain/independent.yaml")])
    reference: str = "independent"
    """Condition whose bits per byte ΔBPB is measured against (the no-sync control at equal monolingual steps)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds (each re-runs pre-training and modules)."""
    module_types: list[str] = field(default_factory=lambda: ["adapter"])
    """Module types trained for every task."""
    module_overrides: list[str] = field(default_factory=list)
    """Dotted overrides for every module, e.g. ["--module.rank=32"]."""
    module_variants: dict[str, list[str]] = field(default_factory=dict)
    """Named module recipes usable in `module_types`: name -> finetune overrides. `{others}` stands for the
    languages other than the module's own, `{parallel}` for the parallel training corpus; e.g.
    {"lora-ta": ["--module.type=lora", "--transfer_aware.langs={others}", "--transfer_aware.parallel={parallel}"]}."""
    source: str = "en"
    """Language the transferred modules are trained in."""
    langs: list[str] = field(default_factory=lambda: ["en", "xa", "xb", "xc"])
    """Target languages (each has its own base in a per-language condition)."""
    natives: bool = True
    """Also train every module type in every target language (the ceiling for retained fractions)."""
    finetune_steps: int = 200
    """Module training steps."""
    max_items: int | None = None
    """Score at most this many test items per language (the same ids in every language); None = all."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow tracking of the study and of every run in it (experiment default `syncmod-study`)."""

    def __post_init__(self) -> None:
        from syncmod.modules import MODULE_TYPES

        names = [c.name for c in self.conditions]
        require(bool(names) and len(set(names)) == len(names), "conditions", f"need distinct names, got {names}")
        require(self.reference in names, "reference", f"{self.reference!r} is not a condition {names}",
                "name one of the conditions")
        require(bool(self.seeds), "seeds", "is empty", "e.g. [0]")
        for mtype in self.module_types:
            one_of("module_types", mtype, [*MODULE_TYPES, *self.module_variants])
        at_least(self, 1, "finetune_steps", "max_items")
        if self.tracking.experiment is None:  # also when a `tracking:` block in the YAML leaves it out
            self.tracking.experiment = "syncmod-study"


def _cell_done(path: Path, marker: str) -> bool:
    return (path / marker).exists()


def run_study(cfg: StudyConfig) -> dict:
    from syncmod.data.prepare import prepare
    from syncmod.data.synth.world import WorldConfig, generate

    out = Path(cfg.out)
    t0 = time.perf_counter()
    data = Path(cfg.data) if cfg.data else out / "data"
    world = out / "world"
    if not cfg.data:
        if not (world / "world.json").exists():
            generate(WorldConfig(seed=cfg.world_seed), world)
        if not (data / "valid" / "meta.json").exists():
            mono = sorted((world / "mono").glob("train.*.txt"))
            prepare(data, [str(world / "parallel/train.jsonl")], [str(p) for p in mono],
                    [str(world / "parallel/valid.jsonl")], [str(p) for p in sorted((world / "mono").glob("valid.*.txt"))],
                    vocab_size=2000)
    tasks = {Path(t).name: (Path(t) if Path(t).is_dir() else world / "tasks" / t) for t in cfg.tasks}
    from syncmod.tracking.tracker import make_tracker, resolve_uri

    out.mkdir(parents=True, exist_ok=True)
    tracker = make_tracker(cfg.tracking, out, _study_run_id(out), tags={"syncmod.kind": "study"})
    if tracker.run_id:
        (out / "study_run_id").write_text(tracker.run_id)
    # one store for the whole study, so runs nest across processes
    where = _Where(cfg, out, data, world, resolve_uri(cfg.tracking, out))
    with tracker:
        cells = _cells(where, tasks, tracker.run_id)
        summary = aggregate(cells, cfg, out)
        from syncmod.study.report import write_report

        write_report(summary, cells, cfg, out)
        for name in ("report.md", "report.json", "transfer_ratio.png", "cost_vs_transfer.png", "loss_curves.png"):
            tracker.log_artifact(out / name)
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _study_run_id(out: Path) -> str | None:
    path = out / "study_run_id"
    return path.read_text().strip() if path.exists() else None


@dataclass
class _Where:
    """Where a study's cells read and write: its config, output, data root, world, and tracking store."""

    cfg: StudyConfig
    out: Path
    data: Path
    world: Path
    uri: str

    def tracking(self, run_name: str, parent: str | None) -> list[str]:
        """Tracking overrides of a child run: the study's store, its name in the tree, the run it nests under."""
        t = self.cfg.tracking
        return [f"--tracking.experiment={t.experiment}", f"--tracking.enabled={t.enabled}", f"--tracking.uri={self.uri}",
                f"--tracking.run_name={run_name}"] + ([f"--tracking.parent_run_id={parent}"] if parent else [])


def _cells(where: _Where, tasks: dict[str, Path], study_run: str | None) -> list[dict]:
    """Pre-train every (condition, seed), train its modules, evaluate them. MLflow tree: study > pre-training
    run (`sync-s0`) > module runs (`sync-s0/adapter-en`) > the evaluation of the source module."""
    from syncmod.config import parse
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task
    from syncmod.modules.bases import open_bases
    from syncmod.pretrain.config import PretrainConfig
    from syncmod.pretrain.engine import train
    from syncmod.pretrain.metrics import read_metrics

    cfg, out = where.cfg, where.out
    cells: list[dict] = []
    for seed in cfg.seeds:
        for cond in cfg.conditions:
            run = f"{cond.name}-s{seed}"
            pre = out / "pretrain" / run
            pc = parse(PretrainConfig, [cond.config, f"--data.root={where.data}", f"--out={pre}",
                                        f"--train.seed={seed}", "--checkpoint.every=0", *cond.overrides,
                                        *where.tracking(run, study_run)], "syncmod study")
            if not _cell_done(pre / "export", "bases.json"):
                log.info("study: pre-training %s seed %d", cond.name, seed)
                train(pc)
            lm = read_metrics(pre / "metrics.jsonl", "eval")[-1]
            bases = open_bases(str(pre / "export"))
            for task_name, task_dir in tasks.items():
                task = load_task(task_dir, Problems())
                for mtype in cfg.module_types:
                    langs = [cfg.source, *[x for x in cfg.langs if x != cfg.source and cfg.natives]]
                    label = run if len(tasks) == 1 else f"{run}/{task_name}"  # run names: sync-s0/adapter-en
                    modules = [_module(where, run, seed, task_dir, mtype, lang, f"{label}/{mtype}-{lang}", bases.run_id)
                               for lang in langs]
                    edir = out / "eval" / run / task_name / mtype
                    if not _cell_done(edir, "results.json"):
                        _evaluate(where, bases, task, modules, edir, f"{label}/{mtype}/eval")
                    res = json.loads((edir / "results.json").read_text())
                    cells.append({"condition": cond.name, "seed": seed, "task": task_name, "module": mtype,
                                  "results": res, "lm": lm})
    return cells


def _module(where: _Where, run: str, seed: int, task_dir: Path, mtype: str, lang: str, run_name: str,
            base_run: str | None) -> str:
    """Train (or reuse) one module; its MLflow run nests under the pre-training run of its base, and its
    registered model is named after the condition and seed."""
    from syncmod.config import parse
    from syncmod.finetune.train import FinetuneConfig, finetune

    cfg, out = where.cfg, where.out
    mdir = out / "modules" / run / task_dir.name / f"{mtype}-{lang}"
    if not _cell_done(mdir, "card.json"):
        fc = parse(FinetuneConfig, [f"--out={mdir}", f"--base={out / 'pretrain' / run / 'export'}",
                                    f"--task={task_dir}", f"--lang={lang}", *_recipe(cfg, mtype, lang, where.world, where.data),
                                    f"--train.steps={cfg.finetune_steps}", f"--train.seed={seed}",
                                    f"--name=syncmod-{run}-{task_dir.name}-{mtype}-{lang}", *cfg.module_overrides,
                                    *where.tracking(run_name, base_run)], "syncmod study")
        finetune(fc)
    return str(mdir)


def _evaluate(where: _Where, bases, task, modules: list[str], edir: Path, run_name: str) -> None:
    """The transfer matrix of one module type, tracked as a run nested under the source module's run."""
    from dataclasses import replace

    from syncmod.evaluation import report
    from syncmod.evaluation.transfer import transfer_matrix
    from syncmod.tracking.tracker import make_tracker

    cfg = where.cfg
    card = json.loads((Path(modules[0]) / "card.json").read_text())  # modules[0]: the source-language module
    tracking = replace(cfg.tracking, uri=where.uri, run_name=run_name, parent_run_id=card.get("tracking_run_id"))
    tracker = make_tracker(tracking, edir, tags={"syncmod.kind": "eval", "task": task.name})
    with tracker:
        paths = report.write(transfer_matrix(bases, task, modules, cfg.langs, max_items=cfg.max_items), edir)
        for path in paths.values():
            tracker.log_artifact(path)


def _recipe(cfg: StudyConfig, name: str, lang: str, world: Path, data: Path) -> list[str]:
    """Finetune overrides of a module type or a named variant, trained in `lang`."""
    if name not in cfg.module_variants:
        return [f"--module.type={name}"]
    others = "[" + ",".join(x for x in cfg.langs if x != lang) + "]"
    parallel = world / "parallel" / "train.jsonl" if (world / "parallel").exists() else next(
        iter(sorted((data / "corpora").glob("train.*.jsonl"))), data)
    return [o.replace("{others}", others).replace("{parallel}", str(parallel)) for o in cfg.module_variants[name]]


def aggregate(cells: list[dict], cfg: StudyConfig, out: Path) -> dict:
    """Per (condition, task, module): mean ± sd over seeds and a paired 95% interval (seeds x items) for each
    headline number; every condition against the first; ΔBPB against the reference at equal tokens."""
    from syncmod.study.stats import Unit, bpb_curve, compare, delta_bpb, summarise

    targets = [t for t in cfg.langs if t != cfg.source]
    rng = np.random.default_rng(0)
    runs = {(c["condition"], c["seed"]) for c in cells}  # one pre-training run serves many cells: read it once
    curves = {(cond, seed): bpb_curve(out / "pretrain" / f"{cond}-s{seed}" / "metrics.jsonl", cfg.langs)
              for cond, seed in runs}
    groups: dict[tuple, dict] = {}
    for c in cells:
        g = groups.setdefault((c["condition"], c["task"], c["module"]), {"units": {}, "extra": {}})
        g["units"][c["seed"]] = Unit(c["results"], cfg.source, targets)
        extra = g["extra"]
        src = next(m for m in c["results"]["modules"] if m["lang"] == cfg.source)
        for t in targets:
            extra.setdefault(f"to_{t}", []).append(src["scores"][t]["score"])
        if (cfg.reference, c["seed"]) in curves:
            d, equal = delta_bpb(curves[(c["condition"], c["seed"])], curves[(cfg.reference, c["seed"])])
            extra.setdefault("delta_bpb", []).append(d)
            extra.setdefault("equal_tokens", []).append(equal)
        layers = c["results"].get("sync_layers") or []
        if layers and f"retrieval/top1_layer{layers[0]}" in c["lm"]:
            extra.setdefault("retrieval", []).append(c["lm"][f"retrieval/top1_layer{layers[0]}"])
        extra.setdefault("floor", []).append(float(np.mean([c["results"]["floor"][t]["score"] for t in cfg.langs])))
    rows = []
    for (cond, task, module), g in groups.items():
        row = {"condition": cond, "task": task, "module": module, "seeds": len(g["units"]),
               **summarise(g["units"], rng)}
        for k, xs in g["extra"].items():
            if k == "equal_tokens":
                row[k] = all(xs)
                continue
            row[k] = {"mean": float(np.mean(xs)), "sd": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
                      "ci": _seed_ci(xs)}
        rows.append(row)
    first = cfg.conditions[0].name
    comparisons = []
    for (cond, task, module), g in groups.items():
        if cond != first and (first, task, module) in groups:
            comparisons.append({"condition": first, "against": cond, "task": task, "module": module,
                                **compare(groups[(first, task, module)]["units"], g["units"], rng)})
    return {"rows": rows, "comparisons": comparisons, "source": cfg.source, "targets": targets}


def _seed_ci(xs: list[float], resamples: int = 2000) -> list[float]:
    """95% percentile-bootstrap interval of the mean over seeds (degenerate with one seed)."""
    from syncmod.evaluation.scores import bootstrap_ci

    a = np.asarray(xs, dtype=float)
    if len(a) < 2:
        return [float(a.mean()), float(a.mean())]
    return list(bootstrap_ci(a, resamples, seed=0))


def check_conditions(cfg: StudyConfig) -> None:
    """Every condition's pre-training config and overrides, and the module overrides, parse — before any work."""
    from syncmod.config import COMMAND_LINE, parse
    from syncmod.errors import InputError, Problem
    from syncmod.finetune.train import FinetuneConfig
    from syncmod.pretrain.config import PretrainConfig

    checks = [(f"conditions.{i} ({c.name})", PretrainConfig, [c.config, *c.overrides]) for i, c in enumerate(cfg.conditions)]
    checks.append(("module_overrides", FinetuneConfig, list(cfg.module_overrides)))
    for where, cls, argv in checks:
        try:
            parse(cls, argv, "syncmod study")
        except InputError as e:
            raise InputError([Problem(f"{where}: {p.where.replace(COMMAND_LINE, 'overrides')}", p.what, p.fix)
                              for p in e.problems]) from e


def run(config: StudyConfig) -> int:
    """Conditions x seeds x tasks x module types, end to end, one report (a YAML from studies/)."""
    from syncmod.io import claim_output

    check_conditions(config)
    with claim_output(config.out, "study"):
        summary = run_study(config)
    print((Path(config.out) / "report.md").read_text())
    print(f"study finished in {summary['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    from syncmod.cli import main as cli_main

    sys.exit(cli_main(["study", *sys.argv[1:]]))
