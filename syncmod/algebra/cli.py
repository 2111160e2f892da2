"""`syncmod merge CONFIG [--a.b=value ...]`: merge task modules into one module directory (see merge/*.yaml).

    inputs  = read every module (card, checksum) and refuse what cannot be merged   # one line, exit 2
    deltas  = each input's weight delta ΔW (LoRA B·A, sparse scatter, adapter parameters)
    merged  = method(deltas, weights; density, lambda, seed) per tensor           # syncmod/algebra/merge.py
    module  = merged deltas back to the type's state (LoRA: SVD to `rank`), heads averaged
    write out/ (module.safetensors, card.json with the recipe, peft/ for LoRA), loaded once on the base first
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class MergeInputConfig:
    """One module to merge."""

    module: str = ""
    """Module directory (or runs:/ / models:/ URI) written by `syncmod finetune` or `syncmod merge`."""
    weight: float = 1.0
    """Its weight; -1 subtracts its task vector (negation: forgetting its task)."""


@dataclass
class MergeConfig:
    """Merge task modules on their weight deltas into one module."""

    method: str = "ties"
    """`linear` (weighted mean), `task-arithmetic` (weighted sum), `ties`, `dare-linear` or `dare-ties`."""
    modules: list[MergeInputConfig] = field(default_factory=list)
    """The inputs, each with its weight."""
    density: float = 1.0
    """ties: fraction of each delta kept by magnitude; dare-*: probability of keeping an entry."""
    lam: float = 1.0
    """Lambda: scale of the merged delta (task arithmetic's scaling coefficient)."""
    rank: int | None = None
    """LoRA: rank of the merged module (the merged ΔW is re-factored by SVD); default: the largest input rank."""
    seed: int = 0
    """Seed of DARE's random drops."""
    base: str = "runs/pretrain/sync/export"
    """The base the merged module is for (its fingerprint goes on the card; its architecture must match)."""
    lang: str | None = None
    """Which base of a per-language export the card names; default: the first input's language."""
    task: str | None = None
    """The task the merged module answers when its inputs are modules of different tasks (same labels)."""
    head_from: str | None = None
    """Multi-task merge: the input (its `module` path) whose head, task and labels the merged module keeps; the
    inputs may then be modules of other tasks and label sets (their bodies are merged, their heads left out).
    Merge once per task for one module per task, one shared merged body."""
    name: str | None = None
    """Name on the card (default: syncmod-<task>-<type>-<method>)."""
    out: str = "runs/modules/merged"
    """Output module directory."""

    def __post_init__(self) -> None:
        from syncmod.config import require

        require(0.0 < self.density <= 1.0, "density", f"must be in (0, 1], got {self.density}",
                "the fraction of each delta to keep")
        require(self.rank is None or self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")


def merge(cfg: MergeConfig) -> dict:
    from syncmod.algebra.merge import MergeParams
    from syncmod.algebra.modules import check_inputs, head_first, merge_tensors, read_inputs
    from syncmod.modules.bases import fingerprint, load_base, open_bases
    from syncmod.modules.files import check_shape

    _check_out(cfg)
    inputs = read_inputs([(m.module, m.weight) for m in cfg.modules])
    if cfg.head_from is not None:  # a multi-task merge: the head's module goes first, its card is the result's
        inputs = head_first(inputs, cfg.head_from)
    cross_base = check_inputs(inputs, cfg.method, cfg.task, multi_task=cfg.head_from is not None)
    bases = open_bases(cfg.base)
    lang = cfg.lang or inputs[0].card["lang"]
    base, tok = load_base(bases.path(lang))
    check_shape(inputs[0].card, base.config, cfg.base)
    base_fingerprint = fingerprint(base)  # before the merged module is attached to it (inside, for LoRA)
    state, module = merge_tensors(inputs, cfg.method, MergeParams(cfg.density, cfg.lam), cfg.rank, cfg.seed,
                                  _shape_of(base), head_only_from_first=cfg.head_from is not None)
    return _write(cfg, inputs, state, module, (base, tok, base_fingerprint), bases, lang, cross_base)


def _check_out(cfg: MergeConfig) -> None:
    """Not one of the inputs (the rest — a file, someone else's directory — is `claim_output`'s)."""
    from syncmod.errors import InputError

    out = Path(cfg.out).resolve()
    if any(Path(m.module).resolve() == out for m in cfg.modules):
        raise InputError.at("out", f"{cfg.out} is one of the inputs", "write the merged module somewhere else")


def _shape_of(base):
    from syncmod.pretrain.model import decoder_layers

    blocks = decoder_layers(base)

    def shape(name: str):
        layer, sub = name.split(".", 1)
        return blocks[int(layer) - 1].get_submodule(sub).weight.shape
    return shape


def _write(cfg, inputs, state, module, loaded, bases, lang, cross_base) -> dict:
    from syncmod import __version__
    from syncmod.config import to_dict
    from syncmod.data.tasks import Task
    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.files import save_module
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build

    base, tok, base_fingerprint = loaded
    first = inputs[0].card
    task = cfg.task or first["task"]
    # loaded once on the base before writing: a merged state that does not fit is an error here, not at eval
    model = build(base, tok, ModuleConfig(**module), HeadConfig(**first["head"]),
                  Task(task, first["kind"], first.get("labels"), {}), first.get("sync_layers"))
    model.load(state)
    recipe = {"method": cfg.method, "density": cfg.density, "lambda": cfg.lam, "rank": cfg.rank, "seed": cfg.seed,
              "head_from": cfg.head_from,
              "inputs": [{"module": m.where, "weight": m.weight, "card_sha256": m.card_sha256,
                          "name": m.card.get("name"), "task": m.card["task"], "lang": m.card["lang"],
                          "claim": m.card.get("claim"), "base": m.card["base"]["weights_sha256"]} for m in inputs]}
    langs = list(dict.fromkeys(m.card["lang"] for m in inputs))
    claim = f"merged by {cfg.method} from {len(inputs)} modules"
    if any(m.weight < 0 for m in inputs):
        claim += " (negated inputs: their tasks are subtracted)"
    if cross_base:
        claim += "; cross-base merge: the inputs were trained on different bases of one architecture"
    card = {**first, "name": cfg.name or f"syncmod-{task}-{first['type']}-{cfg.method}", "module": module,
            "task": task, "lang": "+".join(langs), "base": base_fingerprint, "base_path": str(bases.path(lang)),
            "claim": claim, "recipe": recipe, "cross_base": cross_base, "syncmod_version": __version__,
            "tracking_run_id": None, "dev_score": None, "best_step": None, "config": to_dict(cfg)}
    for key in ("weights_sha256", "transfer_aware", "versions"):  # the first input's, not the merge's
        card.pop(key, None)
    save_module(Path(cfg.out), card, model.state(), getattr(model.module_type, "save_peft", None))
    log.info("merged %d modules by %s into %s", len(inputs), cfg.method, cfg.out)
    return card


def run(config: MergeConfig) -> int:
    """Merge task modules on their weight deltas into one module (a YAML from merge/ + dotted options)."""
    from syncmod.io import claim_output

    with claim_output(config.out, "module"):
        card = merge(config)
    print(json.dumps({"out": config.out, "method": config.method, "claim": card["claim"]}))
    return 0


if __name__ == "__main__":
    from syncmod.cli import main as cli_main

    sys.exit(cli_main(["merge", *sys.argv[1:]]))
