"""The transfer matrix: every module (trained in a source language on its base) applied to every target
language on that language's base, plus the no-module floor.

- score(m, t) with a bootstrap 95% interval;
- transfer ratio TR(s->t) = score_t / score_s and transfer gap = score_s - mean over other targets;
- cross-base retained fraction = score(module moved to t's base) / score(module of the same type trained
  natively in t) — natively trained modules double as the translate-train ceiling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from syncmod.data.tasks import Task
from syncmod.evaluation.scores import bootstrap_ci, item_scores, score
from syncmod.modules.base import ModuleConfig
from syncmod.modules.bases import BaseSet, load_base
from syncmod.modules.files import check_base, check_shape, read_card, read_weights
from syncmod.modules.heads import HeadConfig
from syncmod.modules.runtime import build

log = logging.getLogger(__name__)


@dataclass
class Cell:
    score: float
    ci: tuple[float, float]
    n: int
    transfer: bool
    extra: dict
    items: np.ndarray  # per-item main score, items sorted by id (the same ids in every language)


def evaluate_cell(bases: BaseSet, task: Task, module_dir: str | None, card: dict | None, lang: str, split: str,
                  max_items: int | None = None, max_len: int = 256) -> tuple[Cell, np.ndarray]:
    base, tok = load_base(bases.path(lang))
    rows = sorted(task.split(split, lang), key=lambda r: r.id)[:max_items]  # the same ids in every language
    if card is None:  # the floor: the base with no module (label tokens for classify, raw LM for generate)
        model = build(base, tok, None, HeadConfig(kind="label-tokens"), task, bases.sync_layers, max_len)
        transfer = False
    else:
        transfer = check_base(card, base, module_dir)
        model = build(base, tok, ModuleConfig(**card["module"]), HeadConfig(**card["head"]), task,
                      card.get("sync_layers") or bases.sync_layers, max_len)
        model.load(read_weights(module_dir, card))
    model.eval()
    predictions = model.predict(rows)
    targets = [r.target for r in rows]
    items = item_scores(task.kind, predictions, targets)
    s = score(task.kind, predictions, targets)
    extra = {k: v for k, v in s.items() if k not in ("score", "n")}
    return Cell(s["score"], bootstrap_ci(items), len(items), transfer, extra, items), items


def transfer_matrix(bases: BaseSet, task: Task, module_dirs: list[str], langs: list[str], split: str = "test",
                    max_items: int | None = None) -> dict:
    """Evaluate every module on every language; returns the results document (JSON-ready)."""
    cards = [(d, read_card(d)) for d in module_dirs]
    check_modules(bases, task, cards, langs)
    results: dict = {"task": task.name, "kind": task.kind, "split": split, "langs": langs, "modules": [], "floor": {},
                     "base": str(bases.root), "sync_layers": bases.sync_layers}
    for lang in langs:
        cell, _ = evaluate_cell(bases, task, None, None, lang, split, max_items)
        results["floor"][lang] = _cell_json(cell)
    for d, card in cards:
        entry = {"dir": str(d), "name": card.get("name"), "type": card["type"], "lang": card["lang"],
                 "claim": card.get("claim"), "scores": {}}
        for lang in langs:
            cell, _ = evaluate_cell(bases, task, d, card, lang, split, max_items)
            entry["scores"][lang] = _cell_json(cell)
            log.info("%s %s -> %s: %.3f", card["type"], card["lang"], lang, cell.score)
        src = entry["scores"].get(card["lang"], {}).get("score")
        others = [entry["scores"][t]["score"] for t in langs if t != card["lang"]]
        entry["transfer_ratio"] = {t: (entry["scores"][t]["score"] / src if src else None) for t in langs}
        entry["gap"] = (src - float(np.mean(others))) if src is not None and others else None
        results["modules"].append(entry)
    natives = {(m["type"], m["lang"]): m for m in results["modules"]}
    for m in results["modules"]:
        m["retained"] = {}
        for t in langs:
            native = natives.get((m["type"], t))
            if native and t != m["lang"] and native["scores"][t]["score"] > 0:
                m["retained"][t] = m["scores"][t]["score"] / native["scores"][t]["score"]
    return results


def check_modules(bases: BaseSet, task: Task, cards: list[tuple[str, dict]], langs: list[str]) -> None:
    """Everything that can be wrong with the modules, before any evaluation: task, files, base shapes."""
    from transformers import AutoConfig

    from syncmod.errors import InputError

    configs = {lang: AutoConfig.from_pretrained(str(bases.path(lang))) for lang in langs}
    for d, card in cards:
        if card["task"] != task.name:
            raise InputError.at(d, f"module was trained for task {card['task']!r}, not {task.name!r}",
                                "evaluate it on its own task")
        read_weights(d, card)
        for lang in langs:
            check_shape(card, configs[lang], d)


def _cell_json(cell: Cell) -> dict:
    return {"score": cell.score, "ci": list(cell.ci), "n": cell.n, "transfer": cell.transfer, **cell.extra,
            "items": [round(float(x), 4) for x in cell.items]}
