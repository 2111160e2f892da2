"""The study's module-algebra cells (a study YAML's `algebra:` section; issue 14), per condition and seed:

- multi-source: the native modules of the other languages merged by each method and applied on a target's base,
  against the best single source (every language in turn is the target);
- cross-base: all native modules (each trained on its own base) merged into one, evaluated on every base;
- multi-task: the source-language modules of `event-class` and a second task merged (bodies; each task read by
  its own head), the chance-corrected fraction of each single-task module's score kept, per method;
- negation: a multi-task merge (the best method's and task arithmetic's) minus the event-class module: the
  event-class score should fall to what its head reads off the base with the body removed (the `head only`
  reference, itself a merge: the module minus itself, its head kept), the second task stay. Measured per module
  type of `merge_types`: LoRA's ΔW = B·A is a task vector (zero at init); an adapter's parameters include the
  random init of its down projection, so "adapter minus adapter" arithmetic is not task-vector arithmetic;
- module-types: adapter, rosa and MAD-X composition (a task adapter on a clm language adapter, swapped for the
  target's) trained in the source language, moved, with cost: trainable parameters and training seconds.

Merged modules are ordinary module directories (`syncmod merge`'s code); scores are per item on the same test
items, so every comparison is paired. Results go to OUT/algebra.json and OUT/algebra.md after every cell;
finished modules and scores are reused, so the section resumes like the rest of a study.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from syncmod.study import algebra_stats as A

log = logging.getLogger(__name__)
CELLS = ("multi-source", "cross-base", "multi-task", "multi-task-tuned", "negation", "module-types")


@dataclass
class AlgebraConfig:
    """The module-algebra cells of a study (they reuse the study's native modules of `module`)."""

    cells: list[str] = field(default_factory=lambda: list(CELLS))
    """Which cells, in this order (cheap merges first, trainings last)."""
    methods: list[str] = field(default_factory=lambda: ["linear", "task-arithmetic", "ties", "dare-ties"])
    """Merge methods compared (syncmod/algebra/merge.py)."""
    density: float = 0.5
    """ties / dare-*: the fraction of each delta kept."""
    lam: float = 1.0
    """Scale of the merged delta."""
    module: str = "adapter"
    """The module type merged (the study's natives of this type are the inputs)."""
    merge_types: list[str] | None = None
    """Module types of the multi-task merge and the negation (default: [module]); e.g. [adapter, lora]."""
    rank: int | None = None
    """LoRA / RoSA merges: rank of the merged module; default: the sum of the inputs' ranks, so the merged ΔW
    is exact (no SVD truncation; a negation then subtracts exactly)."""
    task: str = "event-class"
    """The main task (one of the study's)."""
    second_task: str = "agent-kind"
    """The other task of the multi-task merge and the negation (a synthetic-world task name or a directory)."""
    types: list[str] = field(default_factory=lambda: ["adapter", "rosa", "mad-x"])
    """Module-type table: module types trained in the source language, and `mad-x` (composition)."""
    language_module: list[str] = field(default_factory=lambda: [
        "--module.type=adapter", "--module.layers=all", "--module.rank=32", "--train.max_len=64",
        "--train.dev_examples=100"])
    """Finetune overrides of the MAD-X language modules (clm on each language's monolingual training text)."""
    language_steps: int = 200
    """Training steps of a language module."""
    text: str | None = None
    """The language modules' monolingual text, `{lang}` in the path (default: the world's mono/train.{lang}.txt)."""
    lams: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])
    """multi-task-tuned: the lambdas tried (each merge's knobs chosen on the dev split, scored on test)."""
    densities: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.8])
    """multi-task-tuned: the densities tried by ties / dare-* (the other methods have none)."""

    def __post_init__(self) -> None:
        from syncmod.algebra.merge import MERGE_METHODS
        from syncmod.config import one_of, require

        for c in self.cells:
            one_of("cells", c, CELLS)
        for m in self.methods:
            one_of("methods", m, MERGE_METHODS)
        from syncmod.algebra.deltas import DELTAS

        for t in self.merge_types or []:
            one_of("merge_types", t, DELTAS)
        require(0 < self.density <= 1, "density", f"must be in (0, 1], got {self.density}")
        require(all(0 < d <= 1 for d in self.densities) and bool(self.densities), "densities",
                f"each must be in (0, 1], got {self.densities}")
        require(bool(self.lams), "lams", "must list at least one lambda")
        require(self.rank is None or self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require("negation" not in self.cells or "multi-task" in self.cells, "cells",
                "negation needs multi-task (it negates the best multi-task merge)", "add multi-task before it")


@dataclass
class _Ctx:
    """One (condition, seed): where its modules, merges and scores live."""

    where: object  # study.runner._Where
    cfg: AlgebraConfig
    condition: str
    seed: int
    tasks: dict[str, Path]
    out: Path
    bases: object = None
    costs: dict = field(default_factory=dict)

    @property
    def run(self) -> str:
        return f"{self.condition}-s{self.seed}"


def run_algebra(where, tasks: dict[str, Path], cfg: AlgebraConfig) -> dict:
    """Every cell for every condition and seed (cell by cell, so the cheap ones land first)."""
    from syncmod.modules.bases import open_bases

    tasks = {**tasks, Path(cfg.second_task).name: _second_task(where, cfg)}
    rows: dict[str, list] = {}
    ctxs = []
    for seed in where.cfg.seeds:
        for cond in where.cfg.conditions:
            ctx = _Ctx(where, cfg, cond.name, seed, tasks, where.out / "algebra" / f"{cond.name}-s{seed}")
            ctx.bases = open_bases(str(where.out / "pretrain" / ctx.run / "export"))
            costs = ctx.out / "costs.json"
            ctx.costs = json.loads(costs.read_text()) if costs.exists() else {}
            ctxs.append(ctx)
    best: dict[str, dict[str, str]] = {}  # run -> module type -> best multi-task method
    for cell in cfg.cells:
        for ctx in ctxs:
            log.info("algebra: %s on %s", cell, ctx.run)
            t0 = time.perf_counter()
            if cell == "negation":
                new = _negation(ctx, best[ctx.run])
            else:
                new = CELL_FUNCTIONS[cell](ctx)
            if cell == "multi-task":
                best[ctx.run] = {t: _best_method([r for r in new if r["module"] == t]) for t in _merge_types(cfg)}
            rows.setdefault(cell, []).extend({"condition": ctx.condition, "seed": ctx.seed, **r} for r in new)
            log.info("algebra: %s on %s took %.0f s", cell, ctx.run, time.perf_counter() - t0)
            _write(where.out, rows)
    return rows


def _write(out: Path, rows: dict) -> None:
    from syncmod.io import atomic_write, write_json

    write_json(out / "algebra.json", rows)
    with atomic_write(out / "algebra.md") as f:
        f.write(A.tables(rows))


def _second_task(where, cfg: AlgebraConfig) -> Path:
    """The second task's directory; a synthetic world generated before `agent-kind` existed gets it added."""
    path = Path(cfg.second_task)
    if path.is_dir():
        return path
    path = where.world / "tasks" / cfg.second_task
    if not path.exists() and cfg.second_task == "agent-kind" and (where.world / "world.json").exists():
        from syncmod.data.synth.agent_kind import write_agent_kind
        from syncmod.data.synth.world import World, WorldConfig

        spec = json.loads((where.world / "world.json").read_text())["config"]
        spec.pop("typology", None)
        if spec == {k: v for k, v in vars(WorldConfig(seed=spec["seed"])).items() if k != "typology"}:
            write_agent_kind(World(WorldConfig(seed=spec["seed"])), where.world / "tasks")
    if not path.exists():
        from syncmod.errors import InputError

        raise InputError.at("algebra.second_task", f"no task {cfg.second_task!r} in {where.world / 'tasks'}",
                            "give a task directory")
    return path


# -- modules, merges and scores ---------------------------------------------------------------------------------
def _task(ctx: _Ctx, name: str):
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task

    problems = Problems()
    task = load_task(ctx.tasks[name], problems)
    problems.raise_if_any()
    return task


def native(ctx: _Ctx, task: str, lang: str, mtype: str | None = None) -> str:
    """The study's module of `mtype` for `task` trained in `lang` (trained now when missing)."""
    from syncmod.study.runner import _module

    mtype = mtype or ctx.cfg.module
    return _module(ctx.where, ctx.run, ctx.seed, ctx.tasks[task], mtype, lang,
                   f"{ctx.run}/{task}/{mtype}-{lang}", ctx.bases.run_id)


def train(ctx: _Ctx, name: str, argv: list[str]) -> str:
    """A module trained by `syncmod finetune` into OUT/algebra/RUN/modules/NAME, timed (costs.json)."""
    from syncmod.config import parse
    from syncmod.finetune.train import FinetuneConfig, finetune

    out = ctx.out / "modules" / name
    if not (out / "card.json").exists():
        w = ctx.where
        fc = parse(FinetuneConfig, [f"--out={out}", f"--base={w.out / 'pretrain' / ctx.run / 'export'}",
                                    f"--train.seed={ctx.seed}", *w.cfg.module_overrides, *argv,
                                    *w.tracking(f"{ctx.run}/algebra/{name}", ctx.bases.run_id)], "syncmod study")
        t0 = time.perf_counter()
        finetune(fc)
        ctx.costs[name] = time.perf_counter() - t0
        from syncmod.io import write_json

        write_json(ctx.out / "costs.json", ctx.costs)
    return str(out)


def merged(ctx: _Ctx, name: str, inputs: list[tuple[str, float]], method: str, head_from: str | None = None,
           task: str | None = None, knobs: tuple[float, float] | None = None) -> str:
    """A merge written by `syncmod merge`'s code into OUT/algebra/RUN/merged/NAME (`knobs`: (density, lambda),
    default the section's)."""
    from syncmod.algebra.cli import MergeConfig, MergeInputConfig, merge

    out = ctx.out / "merged" / name
    if not (out / "card.json").exists():
        cfg = ctx.cfg
        density, lam = knobs or (cfg.density, cfg.lam)
        merge(MergeConfig(method=method, modules=[MergeInputConfig(d, w) for d, w in inputs], density=density,
                          lam=lam, rank=_merge_rank(cfg, [d for d, _ in inputs]), seed=ctx.seed,
                          base=str(ctx.bases.root), lang=ctx.where.cfg.source, task=task, head_from=head_from,
                          out=str(out)))
    return str(out)


def _merge_rank(cfg: AlgebraConfig, inputs: list[str]) -> int | None:
    """LoRA / RoSA: `rank`, or the sum of the inputs' ranks (the exact merged ΔW); other types have none."""
    from syncmod.modules.files import read_card

    cards = [read_card(d) for d in inputs]
    if cards[0]["type"] not in ("lora", "rosa"):
        return None
    return cfg.rank or sum(int(c["module"]["rank"]) for c in cards)


def _merge_types(cfg: AlgebraConfig) -> list[str]:
    return list(cfg.merge_types or [cfg.module])


def _tag(mtype: str) -> str:
    """Prefix of a merged module's name by type (none for adapters: trees made before `merge_types` resume)."""
    return "" if mtype == "adapter" else f"{mtype}-"


def items(ctx: _Ctx, task_name: str, module: str | None, lang: str, language_modules: str | None = None,
          split: str = "test") -> np.ndarray:
    """Per-item scores of `module` (None: the floor, label tokens on the bare base) on `lang`'s base, on the
    study's test items (or `split`'s: dev for choosing a merge's knobs), sorted by id, the same in every language;
    cached under OUT/algebra/RUN/scores."""
    from syncmod.evaluation.cells import items_digest
    from syncmod.modules.files import read_card

    card = read_card(module) if module else {}
    key = json.dumps([task_name, module, card.get("weights_sha256"), lang, language_modules]
                     + ([split] if split != "test" else []))
    path = ctx.out / "scores" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    task = _task(ctx, task_name)
    rows = sorted(task.split(split, lang), key=lambda r: r.id)[:ctx.where.cfg.max_items]
    digest = items_digest(rows)
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("items_digest", digest) == digest and len(stored["items"]) == len(rows):  # the same items
            return np.array(stored["items"])
    predictions = _predict(ctx, task, module, card, lang, rows, language_modules)
    from syncmod.evaluation.scores import item_scores
    from syncmod.io import write_json

    scores = item_scores(task.kind, predictions, [r.target for r in rows])
    write_json(path, {"key": key, "items_digest": digest, "items": scores.tolist()})
    return scores


def _predict(ctx: _Ctx, task, module, card, lang, rows, language_modules) -> list[str]:
    import torch

    from syncmod.modules import compose
    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.bases import load_base
    from syncmod.modules.files import read_weights
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build

    base, tok = load_base(ctx.bases.path(lang))
    if not module:
        model = build(base, tok, None, HeadConfig(kind="label-tokens"), task, ctx.bases.sync_layers)
    else:
        compose.resolve_swaps([(module, card)], [lang], language_modules)
        under = compose.attach_for(base, tok, card, lang, ctx.bases.sync_layers)
        model = build(base, tok, ModuleConfig(**card["module"]), HeadConfig(**card["head"]), task,
                      card.get("sync_layers") or ctx.bases.sync_layers)
        model.load(read_weights(module, card))
        model.under = under
    with torch.no_grad():
        return model.eval().predict(rows)


def chance(ctx: _Ctx, task_name: str) -> float:
    return 1.0 / len(_task(ctx, task_name).labels)


# -- the cells ------------------------------------------------------------------------------------------------
def _multi_source(ctx: _Ctx) -> list[dict]:
    cfg, langs, out = ctx.cfg, ctx.where.cfg.langs, []
    c = chance(ctx, cfg.task)
    modules = {lang: native(ctx, cfg.task, lang) for lang in langs}
    for t in langs:
        sources = [s for s in langs if s != t]
        single = {s: items(ctx, cfg.task, modules[s], t) for s in sources}
        best = max(sources, key=lambda s: single[s].mean())
        nat = items(ctx, cfg.task, modules[t], t)
        for method in cfg.methods:
            m = merged(ctx, f"{cfg.task}-{method}-{'+'.join(sources)}", [(modules[s], 1.0) for s in sources], method)
            got = items(ctx, cfg.task, m, t)
            out.append({"method": method, "target": t, "sources": sources, "merged": A.score(got, c),
                        "best_source": best, "best": A.score(single[best], c), "delta": A.delta(got, single[best], c),
                        "kept": A.ratio(got, nat, c), "native": A.score(nat, c)})
    return out


def _cross_base(ctx: _Ctx) -> list[dict]:
    cfg, langs, out = ctx.cfg, ctx.where.cfg.langs, []
    c = chance(ctx, cfg.task)
    modules = {lang: native(ctx, cfg.task, lang) for lang in langs}
    for method in cfg.methods:
        m = merged(ctx, f"{cfg.task}-{method}-{'+'.join(langs)}", [(modules[s], 1.0) for s in langs], method)
        for t in langs:
            got, nat = items(ctx, cfg.task, m, t), items(ctx, cfg.task, modules[t], t)
            out.append({"method": method, "lang": t, "merged": A.score(got, c), "native": A.score(nat, c),
                        "kept": A.ratio(got, nat, c)})
    return out


def _multi_task(ctx: _Ctx) -> list[dict]:
    cfg, src, out = ctx.cfg, ctx.where.cfg.source, []
    for mtype in _merge_types(cfg):
        mods = _task_modules(ctx, mtype)
        for method in cfg.methods:
            for task, mod in mods.items():
                m = _multi_task_merge(ctx, mtype, method, task, mods)
                c, single = chance(ctx, task), items(ctx, task, mod, src)
                got = items(ctx, task, m, src)
                out.append({"module": mtype, "method": method, "task": task, "dir": m, "merged": A.score(got, c),
                            "single": A.score(single, c), "kept": A.ratio(got, single, c)})
    return out


def _task_modules(ctx: _Ctx, mtype: str) -> dict[str, str]:
    """The source-language modules of the main and the second task, of `mtype`."""
    cfg, src = ctx.cfg, ctx.where.cfg.source
    second = Path(cfg.second_task).name
    return {cfg.task: native(ctx, cfg.task, src, mtype), second: native(ctx, second, src, mtype)}


def _multi_task_merge(ctx: _Ctx, mtype: str, method: str, task: str, mods: dict[str, str]) -> str:
    """Both tasks' bodies merged by `method`, `task`'s head kept."""
    return merged(ctx, f"{_tag(mtype)}multi-task-{method}-head-{task}", [(d, 1.0) for d in mods.values()], method,
                  head_from=mods[task])


def _best_method(rows: list[dict]) -> str:
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r["kept"]["value"])
    return max(by, key=lambda m: float(np.mean(by[m])))


def _negation(ctx: _Ctx, best: dict[str, str]) -> list[dict]:
    """Task arithmetic: (the multi-task merge by the best method, and by task arithmetic) − (the event-class
    module), read by each task's head; beside it the task's head on the body-less base (`head only`: the module
    minus itself) and the floor (no module: label tokens on the bare base)."""
    cfg, src, out = ctx.cfg, ctx.where.cfg.source, []
    for mtype in _merge_types(cfg):
        mods, tag = _task_modules(ctx, mtype), _tag(mtype)
        negated = mods[cfg.task]
        for method in dict.fromkeys([best[mtype], "task-arithmetic"]):
            for task, mod in mods.items():
                before = _multi_task_merge(ctx, mtype, method, task, mods)
                after = merged(ctx, f"{tag}negate-{cfg.task}-from-{method}-head-{task}", [(before, 1.0), (negated, -1.0)],
                               "task-arithmetic", head_from=before)
                head = merged(ctx, f"{tag}head-only-{task}", [(mod, 1.0), (mod, -1.0)], "task-arithmetic", head_from=mod)
                c = chance(ctx, task)
                b, a = items(ctx, task, before, src), items(ctx, task, after, src)
                h, floor = items(ctx, task, head, src), items(ctx, task, None, src)
                out.append({"module": mtype, "method": method, "task": task, "negated": task == cfg.task,
                            "before": A.score(b, c), "after": A.score(a, c), "head_only": A.score(h, c),
                            "floor": A.score(floor, c), "single": A.score(items(ctx, task, mod, src), c),
                            "kept": A.ratio(a, b, c), "below_head": A.delta(a, h, c)})
    return out


def _module_types(ctx: _Ctx) -> list[dict]:
    cfg, w = ctx.cfg, ctx.where
    src, targets = w.cfg.source, [t for t in w.cfg.langs if t != w.cfg.source]
    task_dir, c = ctx.tasks[cfg.task], chance(ctx, cfg.task)
    ceiling = np.concatenate([items(ctx, cfg.task, native(ctx, cfg.task, t), t) for t in targets])
    out = []
    for mtype in cfg.types:
        steps = f"--train.steps={w.cfg.finetune_steps}"
        swap = None
        if mtype == "mad-x":
            text = cfg.text or str(w.world / "mono" / "train.{lang}.txt")
            langs = {lang: train(ctx, f"lang-{lang}", [f"--task={text.replace('{lang}', lang)}",
                                                       f"--lang={lang}", *cfg.language_module,
                                                       f"--train.steps={cfg.language_steps}"])
                     for lang in w.cfg.langs}
            module = train(ctx, f"mad-x-{src}", [f"--task={task_dir}", f"--lang={src}", "--module.type=adapter",
                                                 f"--stack=[{langs[src]}]", steps])
            swap = str(ctx.out / "modules" / "lang-{lang}")
        else:
            module = train(ctx, f"{mtype}-{src}", [f"--task={task_dir}", f"--lang={src}", f"--module.type={mtype}", steps])
        moved = np.concatenate([items(ctx, cfg.task, module, t, swap) for t in targets])
        own = None if mtype == "mad-x" else np.concatenate(  # the targets' natives of this type
            [items(ctx, cfg.task, native(ctx, cfg.task, t, mtype), t) for t in targets])
        out.append({"module": mtype, "dir": module, "source": A.score(items(ctx, cfg.task, module, src, swap), c),
                    "target": A.score(moved, c), "retained": A.ratio(moved, ceiling, c),
                    "retained_own": None if own is None else A.ratio(moved, own, c),
                    "params": _params(module), "seconds": ctx.costs.get(Path(module).name, float("nan"))})
        if mtype == "mad-x":
            out.append({"module": "mad-x, language module kept (no swap)", "dir": module, "source": out[-1]["source"],
                        "target": A.score(m := np.concatenate([items(ctx, cfg.task, module, t) for t in targets]), c),
                        "retained": A.ratio(m, ceiling, c), "vs_swap": A.delta(m, moved, c), "params": 0,
                        "seconds": 0.0})
            lang_s = [ctx.costs.get(f"lang-{x}", float("nan")) for x in w.cfg.langs]
            out.append({"module": "(each language module, clm)", "dir": langs[src], "source": None, "target": None,
                        "retained": None, "params": _params(langs[src]), "seconds": float(np.mean(lang_s))})
    return out


def _params(module: str) -> int:
    from syncmod.modules.files import read_card

    return int(sum(np.prod(s) for s in read_card(module)["tensors"].values()))


def _multi_task_tuned(ctx: _Ctx) -> list[dict]:
    from syncmod.study.algebra_tune import multi_task_tuned

    return multi_task_tuned(ctx)


CELL_FUNCTIONS = {"multi-source": _multi_source, "cross-base": _cross_base, "multi-task": _multi_task,
                  "multi-task-tuned": _multi_task_tuned,
                  "module-types": _module_types}
