"""The transfer matrix: every module (trained in a source language on its base) applied to every target
language on that language's base, beside the no-module floor, the majority-class baseline and chance.

- score(m, t) with a bootstrap 95% interval (the metric `--metric` picks; all of the kind's are kept);
- transfer ratio TR(s->t) = score_t / score_s, and chance- and majority-corrected (score_t - b) / (score_s - b);
  transfer gap = score_s - mean over other targets;
- cross-base retained fraction = score(module moved to t's base) / score(module of the same type trained
  natively in t), raw and corrected the same way — natively trained modules double as the ceiling.

Each base is loaded once per language and serves the floor and every module in turn (a module is attached,
scored, and detached again). Cells are written as they finish (see `cells.py`), so `resume` continues an
interrupted evaluation; a progress bar on stderr shows cells, items/s and the time left.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from syncmod.data.tasks import Task, TaskExample
from syncmod.evaluation import scores as S
from syncmod.evaluation.cells import CellStore, base_files, cell_names, items_digest
from syncmod.evaluation.token_cache import TokenCache
from syncmod.modules import compose
from syncmod.modules.base import ModuleConfig
from syncmod.modules.bases import BaseSet, load_base
from syncmod.modules.files import check_base, check_shape, read_card, read_weights
from syncmod.modules.heads import HeadConfig
from syncmod.modules.prefix import PrefixCache
from syncmod.modules.runtime import build
from syncmod.pretrain.model import decoder_layers

log = logging.getLogger(__name__)
MAX_LEN = 256  # tokens per scored sequence (longer inputs are cut from the left)


@dataclass
class Scoring:
    """How cells are scored: where, in which precision, in batches of how many items."""

    device: torch.device
    dtype: torch.dtype
    batch_size: int = 64
    compile: bool = False
    """`torch.compile` each decoder block's forward (hooks stay outside it, as in pre-training). Off unless
    asked: on small bases its compile time outweighs what it saves (bench/results.md)."""
    threads: int | None = None
    """CPU threads for torch (None: leave torch's setting)."""

    @classmethod
    def auto(cls, device: str | None = None, batch_size: int = 64, compile: bool = False,
             threads: int | None = None) -> Scoring:
        """The GPU when there is one, in bf16 where it supports it; the CPU stays fp32."""
        from syncmod.errors import InputError

        try:
            dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError as e:
            raise InputError.at("--device", f"not a device: {device!r} ({e})", "use cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError.at("--device", f"{device} asked for, but torch sees no GPU here", "use --device cpu")
        bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
        return cls(dev, torch.bfloat16 if bf16 else torch.float32, batch_size, compile, threads)

    def prepare(self, base: torch.nn.Module) -> None:
        base.to(self.dtype)
        if self.compile:
            for block in decoder_layers(base):
                block.forward = torch.compile(block.forward, dynamic=True)


def free_cores() -> int:
    """torch's thread count, capped by the cores this process may use minus the 1-minute load average (at
    least 1). Torch's threads meet at a barrier after every operation: on a machine whose cores are busy
    with other processes, a thread that waits for its core stalls the others, and a small model's
    operations run several times slower on two threads than on one (bench/results.md)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(torch.get_num_threads(), int(cores - busy + 0.5)))


def transfer_matrix(bases: BaseSet, task: Task, module_dirs: list[str], langs: list[str], split: str = "test",
                    max_items: int | None = None, *, metric: str | None = None, cells: Path | None = None,
                    resume: bool = False, scoring: Scoring | None = None, language_modules: str | None = None) -> dict:
    """Evaluate every module on every language; returns the results document (JSON-ready). With `cells`, every
    finished cell is written there; with `resume` too, cells already there (for the same inputs) are reused.
    A module stacked on a language module runs on `language_modules` ({lang}: the target's; compose.py)."""
    cards = [(str(d), read_card(d)) for d in module_dirs]
    compose.resolve_swaps(cards, langs, language_modules)
    check_modules(bases, task, cards, langs)
    metric = S.check_metric(task.kind, metric)
    scoring = scoring or Scoring.auto()
    if scoring.threads:
        torch.set_num_threads(scoring.threads)
        log.info("scoring on %s, %d CPU thread(s)", scoring.device, scoring.threads)
    rows = {lang: sorted(task.split(split, lang), key=lambda r: r.id)[:max_items] for lang in langs}  # same ids
    jobs = [("floor", None, None), *((n, d, c) for n, (d, c) in zip(cell_names(module_dirs), cards, strict=True))]
    store = CellStore(cells, resume)
    predictions: dict[tuple[str, str], dict] = {}
    total = sum(len(rows[lang]) for lang in langs) * len(jobs)
    with tqdm(total=total, unit="item", desc=f"eval {task.name}", file=sys.stderr, dynamic_ncols=True,
              mininterval=1.0) as bar:
        for lang in langs:
            predictions.update(_score_language(bases, task, lang, rows[lang], jobs, store, scoring, bar))
    return assemble(task, langs, split, metric, jobs, predictions, rows, bases)


def _score_language(bases: BaseSet, task: Task, lang: str, rows: list[TaskExample], jobs: list, store: CellStore,
                    scoring: Scoring, bar: tqdm) -> dict[tuple[str, str], dict]:
    """Every cell of one language, on one load of its base."""
    path = bases.path(lang)
    common = {"task": task.name, "lang": lang, "items": items_digest(rows), "base": str(path),
              "base_files": base_files(path), "dtype": str(scoring.dtype).removeprefix("torch.")}
    keys = {name: {**common, "module": d, "weights_sha256": card and card["weights_sha256"],
                   **compose.cell_key(card, lang)} for name, d, card in jobs}
    found = {name: store.get(name, lang, keys[name]) for name, _, _ in jobs}
    out: dict[tuple[str, str], dict] = {}
    base = tok = None
    transfer: dict[str, bool] = {}
    prefix = PrefixCache()  # the blocks below the modules, run once for all of them on this base
    enc = None
    if any(cell is None for cell in found.values()):
        base, tok = load_base(path, str(scoring.device))
        # before any cast: the weights' fingerprint says whether a module meets its own base or moves
        transfer = {name: check_base(card, base, d) for name, d, card in jobs if card is not None}
        scoring.prepare(base)
        enc = TokenCache(tok, MAX_LEN, [r.text for r in rows])  # every cell reads the same items
    for name, d, card in jobs:
        cell = found[name]
        if cell is None:
            cell = {"predictions": _predict(base, enc, task, bases, d, card, rows, scoring, prefix),
                    "transfer": transfer.get(name, False)}
            store.put(name, lang, keys[name], cell)
            log.debug("%s -> %s scored", name, lang)
        out[(name, lang)] = {"predictions": cell["predictions"], "transfer": cell["transfer"]}
        bar.update(len(rows))
        bar.set_postfix_str(f"cell {name} {lang}")
    return out


def _predict(base, enc: TokenCache, task: Task, bases: BaseSet, module_dir: str | None, card: dict | None,
             rows: list[TaskExample], scoring: Scoring, prefix: PrefixCache | None = None) -> list[str]:
    """One cell's predictions: the floor (label tokens for classify, the raw LM for generate) or one module,
    attached to the shared base for this cell only (with `prefix`, the blocks below it reuse earlier cells')."""
    if card is None:
        model = build(base, enc.tok, None, HeadConfig(kind="label-tokens"), task, bases.sync_layers, enc.max_len)
    else:
        under = compose.attach_for(base, enc.tok, card, rows[0].lang, bases.sync_layers)  # MAD-X: language module first
        model = build(base, enc.tok, ModuleConfig(**card["module"]), HeadConfig(**card["head"]), task,
                      card.get("sync_layers") or bases.sync_layers, enc.max_len)
        model.load(read_weights(module_dir, card))
        model.under = under
        if under is not None:
            prefix = None  # the blocks below the task module are not the plain base's: nothing to share
    model.enc, model.prefix = enc, prefix
    try:
        model.to(device=scoring.device, dtype=scoring.dtype).eval()
        return model.predict(rows, batch_size=scoring.batch_size)
    finally:
        if model.module_type is not None:
            model.module_type.detach()  # the base serves the next module as it was loaded
        if getattr(model, "under", None) is not None:
            model.under.detach()


def assemble(task: Task, langs: list[str], split: str, metric: str, jobs: list, predictions: dict,
             rows: dict[str, list[TaskExample]], bases: BaseSet) -> dict:
    """The results document from every cell's predictions (the same whether cells were resumed or not)."""
    targets = {lang: [r.target for r in rows[lang]] for lang in langs}
    results: dict = {"task": task.name, "kind": task.kind, "split": split, "metric": metric, "langs": langs,
                     "labels": task.labels, "modules": [], "floor": {}, "majority": {}, "chance": {},
                     "majority_answer": {}, "base": str(bases.root), "sync_layers": bases.sync_layers}
    for lang in langs:
        answer, source = _majority_answer(task, lang, split, targets[lang])
        results["majority_answer"][lang] = {"answer": answer, "from": source}
        results["floor"][lang] = cell_json(task, metric, predictions[("floor", lang)]["predictions"], targets[lang])
        results["majority"][lang] = cell_json(task, metric, [answer] * len(targets[lang]), targets[lang])
        results["chance"][lang] = S.chance(task.kind, metric, targets[lang], task.labels)
    for name, d, card in jobs[1:]:
        entry = {"dir": d, "name": card.get("name"), "cell": name, "type": card["type"], "lang": card["lang"],
                 "claim": card.get("claim"), "scores": {}}
        for lang in langs:
            p = predictions[(name, lang)]
            entry["scores"][lang] = cell_json(task, metric, p["predictions"], targets[lang], p["transfer"])
            log.info("%s %s -> %s: %s %.3f", card["type"], card["lang"], lang, metric, entry["scores"][lang]["score"])
        results["modules"].append(entry)
    for entry in results["modules"]:
        _ratios(entry, results, langs)
    _retained(results, langs)
    return results


def _majority_answer(task: Task, lang: str, split: str, test_targets: list[str]) -> tuple[str, str]:
    """The training split's most frequent answer in this language (the test split's when there is no training
    split: then the baseline knows the test prior, an upper bound of what the prior alone scores)."""
    train = [r.target for r in task.split("train", lang)] if split != "train" else []
    return (S.majority(train), "train") if train else (S.majority(test_targets), split)


def _ratios(entry: dict, results: dict, langs: list[str]) -> None:
    scores = {t: entry["scores"][t]["score"] for t in langs}
    src_lang = entry["lang"]
    src = scores.get(src_lang)
    others = [scores[t] for t in langs if t != src_lang]
    entry["transfer_ratio"] = {t: (scores[t] / src if src else None) for t in langs}
    for kind, ref in (("chance", results["chance"]), ("majority", {t: results["majority"][t]["score"] for t in langs})):
        entry[f"transfer_ratio_{kind}"] = {
            t: S.corrected(scores[t], src, ref[t], ref[src_lang]) if src is not None else None for t in langs}
    entry["gap"] = (src - float(np.mean(others))) if src is not None and others else None


def _retained(results: dict, langs: list[str]) -> None:
    natives = {(m["type"], m["lang"]): m for m in results["modules"]}
    for m in results["modules"]:
        m["retained"], m["retained_chance"], m["retained_majority"] = {}, {}, {}
        for t in langs:
            native = natives.get((m["type"], t))
            if not native or t == m["lang"]:
                continue
            moved, ceiling = m["scores"][t]["score"], native["scores"][t]["score"]
            if ceiling > 0:
                m["retained"][t] = moved / ceiling
            for kind, b in (("chance", results["chance"][t]), ("majority", results["majority"][t]["score"])):
                value = S.corrected(moved, ceiling, b, b)
                if value is not None:
                    m[f"retained_{kind}"][t] = value


def cell_json(task: Task, metric: str, predictions: list[str], targets: list[str], transfer: bool = False) -> dict:
    """A cell of results.json: the score, its interval, all of the kind's metrics, per-item scores (items in id
    order, the same ids in every language) and, for classify, the confusion counts."""
    s = S.score(task.kind, predictions, targets, metric)
    items = S.item_scores(task.kind, predictions, targets, metric)
    ci = S.bootstrap_macro_f1(predictions, targets) if metric == "macro_f1" else S.bootstrap_ci(items)
    out = {**s, "ci": list(ci), "transfer": transfer, "items": [round(float(x), 4) for x in items]}
    if task.kind == "classify":
        out["confusion"] = S.confusion(predictions, targets, task.labels)
    return out


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
