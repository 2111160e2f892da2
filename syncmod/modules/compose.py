"""Composition (MAD-X, Pfeiffer et al. 2020): a language module stacked under a task module.

- A *language module* is a module trained with the `clm` objective on one language's monolingual text:
  `syncmod finetune finetune/language.yaml --task=runs/world/mono/train.xa.txt --lang=xa`. The task is then a
  text file, one document a line; `valid.LANG.txt` beside a `train.LANG.txt` (else its last 200 lines) is the dev
  set, scored by negative NLL per token.
- A task module trained on top of one: `syncmod finetune ... --stack=[runs/modules/lang-en]` (the `module:
  [lang-en, task]` of the MAD-X recipe). The language module is frozen under it (its hooks run first, the task
  module reads what it writes) and the task module's card records it under `stack`.
- At inference the language module is swapped for the target language's: `syncmod eval ...
  --language_modules=runs/modules/lang-{lang}`; without it, the card's own language module stays under it.

Language modules are adapters (as in MAD-X): hooks on the blocks, so a task module of any type stacks on top.
Stacks that cannot work are refused in one line before any work.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from syncmod.data.lines import Problems
from syncmod.data.tasks import Task, TaskExample
from syncmod.errors import InputError

CLM = "clm"
FIX = "stack one language module (`syncmod finetune --task=TEXT.txt`, an adapter) under a task module"


# -- the clm objective ------------------------------------------------------------------------------------
def is_text(path: str) -> bool:
    return str(path).endswith(".txt")


def text_task(path: str, lang: str, problems: Problems, dev: int = 200) -> Task | None:
    """One language's monolingual text as a `clm` task: train and dev documents in `lang`."""
    p = Path(path)
    if not p.is_file():
        problems.add(str(p), "text file does not exist", "give a monolingual text file, one document a line")
        return None

    def lines(f: Path) -> list[str]:
        return [x.strip() for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]

    train = lines(p)
    valid = p.with_name(p.name.replace("train.", "valid.", 1))
    held = lines(valid) if valid != p and valid.is_file() else []
    if not held:
        train, held = train[:-dev], train[-dev:]
    if not train or not held:
        problems.add(str(p), f"too little text for a language module ({len(train)} + {len(held)} lines)",
                     "give more lines of monolingual text")
        return None

    def rows(split: str, docs: list[str]) -> list[TaskExample]:
        return [TaskExample(f"{split}-{i}", lang, d, "") for i, d in enumerate(docs)]

    return Task(CLM, CLM, None, {"train": {lang: rows("train", train)}, "dev": {lang: rows("dev", held[:dev])}})


def clm_loss(model, examples: list[TaskExample]) -> torch.Tensor:
    """Mean next-token NLL over each text's tokens (its language tag first, `</s>` last)."""
    from syncmod.modules.runtime import _lm_loss

    ids, mask = (t.to(model.device) for t in model.enc.classify(examples))
    return _lm_loss(model.model(input_ids=ids, attention_mask=mask).logits, ids, mask).mean()


@torch.no_grad()
def clm_dev(model, rows: list[TaskExample], batch_size: int = 32) -> dict:
    """The dev score of a language module: minus the mean NLL per text (higher is better)."""
    losses = [clm_loss(model, rows[i:i + batch_size]).item() * len(rows[i:i + batch_size])
              for i in range(0, len(rows), batch_size)]
    nll = sum(losses) / max(1, len(rows))
    return {"score": -nll, "nll": nll}


# -- stacks ---------------------------------------------------------------------------------------------------
def read_language_module(directory: str, lang: str | None, where: str) -> dict:
    """A language module's card, checked: a `clm` adapter, of `lang` when one is asked for."""
    from syncmod.modules.files import read_card

    card = read_card(directory)
    if card.get("kind") != CLM:
        raise InputError.at(where, f"{directory} is a {card['task']!r} module, not a language module (objective clm)",
                            FIX)
    if card["type"] != "adapter":
        raise InputError.at(where, f"{directory} is a {card['type']} language module; language modules are adapters",
                            "train it with --module.type=adapter")
    if lang is not None and card["lang"] != lang:
        raise InputError.at(where, f"{directory} is a language module for {card['lang']!r}, not {lang!r}",
                            f"stack the language module of {lang!r}")
    return card


def check_stack(stack: list[str], lang: str, task_kind: str) -> list[tuple[str, dict]]:
    """The language modules of `--stack` for a task module trained in `lang` (at most one, of that language)."""
    if not stack:
        return []
    if task_kind == CLM:
        raise InputError.at("stack", "a language module cannot be stacked on another language module", FIX)
    if len(stack) > 1:
        raise InputError.at("stack", f"{len(stack)} language modules given; a stack has one under its task module",
                            "give one language module in --stack")
    return [(stack[0], read_language_module(stack[0], lang, "stack"))]


class Under(nn.Module):
    """A language module attached to a base, frozen, so that a task module attached afterwards runs on top."""

    def __init__(self, base, tokenizer, directory: str, card: dict, sync_layers: list[int] | None):
        super().__init__()
        from syncmod.modules.base import ModuleConfig
        from syncmod.modules.files import check_base, read_weights
        from syncmod.modules.heads import HeadConfig
        from syncmod.modules.runtime import TaskModel

        check_base(card, base, directory)
        self.directory, self.card = directory, card
        self.lm = TaskModel(base, tokenizer, ModuleConfig(**card["module"]), HeadConfig(), CLM, None,
                            card.get("sync_layers") or sync_layers)
        self.lm.load(read_weights(directory, card))
        for p in self.lm.trainable():
            p.requires_grad_(False)

    def detach(self) -> None:
        self.lm.module_type.detach()

    def record(self) -> dict:
        return {"module": self.directory, "lang": self.card["lang"], "type": self.card["type"],
                "weights_sha256": self.card["weights_sha256"], "card_sha256": _card_sha(self.directory)}


def _card_sha(directory: str) -> str:
    from syncmod.modules.files import CARD

    return hashlib.sha256((Path(directory) / CARD).read_bytes()).hexdigest()


def attach_stack(base, tokenizer, stack: list[tuple[str, dict]], sync_layers) -> Under | None:
    return Under(base, tokenizer, *stack[0], sync_layers) if stack else None


def card_fields(under: Under | None) -> dict:
    """What a task module's card says about the language module it was trained on."""
    return {"stack": [under.record()]} if under is not None else {}


# -- evaluation: the language module under each target ------------------------------------------------------
def resolve_swaps(cards: list[tuple[str, dict]], langs: list[str], pattern: str | None) -> None:
    """For every stacked module, the language module each target language gets (`card["under"][lang]`): the
    target's own from `pattern` ({lang} in a path), or the card's own when no pattern is given (no swap)."""
    for d, card in cards:
        stack = card.get("stack") or []
        if not stack:
            continue
        if pattern is not None and "{lang}" not in pattern:
            raise InputError.at("language_modules", f"{pattern!r} has no {{lang}}",
                                "give a path pattern like runs/modules/lang-{lang}")
        card["under"] = {}
        for lang in langs:
            where = pattern.replace("{lang}", lang) if pattern else stack[0]["module"]
            lm = read_language_module(where, lang if pattern else None, f"language module of {d} for {lang}")
            card["under"][lang] = {"module": where, "weights_sha256": lm["weights_sha256"], "card": lm}


def cell_key(card: dict | None, lang: str) -> dict:
    """The language module a cell ran on, for its key (nothing for an unstacked module: keys stay as they were)."""
    if not card or "under" not in card:
        return {}
    u = card["under"][lang]
    return {"under": [u["module"], u["weights_sha256"]]}


def attach_for(base, tokenizer, card: dict | None, lang: str, sync_layers) -> Under | None:
    """Attach the language module this cell's task module runs on (None for an unstacked module)."""
    if not card or "under" not in card:
        return None
    u = card["under"][lang]
    return Under(base, tokenizer, u["module"], u["card"], sync_layers)
