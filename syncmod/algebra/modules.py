"""Merging module directories: every check first (one line each, nothing written), then the deltas of every
input are merged tensor by tensor with one method, and the result is written as an ordinary module directory
whose card records the recipe and its inputs (card hashes, claims, bases)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from syncmod.algebra.deltas import DELTAS
from syncmod.algebra.merge import MERGE_METHODS, MergeParams, get_method
from syncmod.errors import InputError
from syncmod.modules.files import CARD, read_card, read_weights

log = logging.getLogger(__name__)


@dataclass
class Input:
    """One module read from disk: its directory, weight, card, card hash and tensors."""

    where: str
    weight: float
    card: dict
    card_sha256: str
    tensors: dict[str, torch.Tensor]


def read_inputs(specs: list[tuple[str, float]]) -> list[Input]:
    from syncmod.modules.bases import resolve_uri

    out = []
    for spec, weight in specs:
        d = resolve_uri(spec)
        card = read_card(d)
        digest = hashlib.sha256((Path(d) / CARD).read_bytes()).hexdigest()
        out.append(Input(spec, weight, card, digest, read_weights(d, card)))
    return out


def head_first(inputs: list[Input], head_from: str) -> list[Input]:
    """The inputs with the one named by `head_from` first (a multi-task merge keeps its head and task)."""
    first = [m for m in inputs if m.where == head_from]
    if not first:
        raise InputError.at("head_from", f"{head_from} is not one of the inputs",
                            "name the `module` of the input whose head the merged module keeps")
    return first[:1] + [m for m in inputs if m is not first[0]]


def check_inputs(inputs: list[Input], method: str, task: str | None, multi_task: bool = False) -> bool:
    """Refuse what cannot be merged; returns True for a cross-base merge (same architecture, other weights).
    `multi_task`: inputs of other tasks and label sets are allowed (only the first input's head is kept)."""
    if method not in MERGE_METHODS:
        raise InputError.at("method", f"unknown merge method {method!r}", f"use one of {sorted(MERGE_METHODS)}")
    if not inputs:
        raise InputError.at("modules", "no modules to merge", "list at least one module with its weight")
    first = inputs[0]
    kind = first.card["type"]
    if kind not in DELTAS:
        raise InputError.at(first.where, f"modules of type {kind!r} cannot be merged (no weight delta defined)",
                            f"merge modules of type {sorted(DELTAS)}")
    free = set(DELTAS[kind].free)
    for m in inputs[1:]:
        _same(m, first, "type", "module type", lambda c: c["type"])
        if multi_task:
            _same(m, first, "task kind", "task kind", lambda c: c.get("kind"))
        else:
            _same(m, first, "label set", "task's labels", lambda c: (c.get("kind"), c.get("labels")))
        _same(m, first, "architecture", "base architecture", lambda c: c["base"]["architecture"])
        _same(m, first, "placement", "module config", lambda c: {k: v for k, v in c["module"].items() if k not in free})
        _same(m, first, "layer map", "layer map", lambda c: c.get("layer_map"))
        _same(m, first, "head", "head config and layer",
              lambda c: (c.get("head"), c.get("head_layer"), c.get("sync_layers")))
    tasks = sorted({m.card["task"] for m in inputs})
    if len(tasks) > 1 and task not in tasks and not multi_task:
        raise InputError.at("task", f"inputs are modules of different tasks {tasks}",
                            "name the task the merged module answers with `task:` (one of theirs)")
    _check_tensors(inputs, multi_task)
    return len({m.card["base"]["weights_sha256"] for m in inputs}) > 1


def _same(m: Input, first: Input, what: str, label: str, key) -> None:
    a, b = key(first.card), key(m.card)
    if a != b:
        raise InputError.at(m.where, f"{label} differs from {first.where}'s: {_short(b)} vs {_short(a)}",
                            f"merge only modules with the same {what}")


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_tensors(inputs: list[Input], multi_task: bool = False) -> None:
    first = inputs[0]
    for m in inputs[1:]:
        if set(m.tensors) != set(first.tensors):
            odd = sorted(set(m.tensors) ^ set(first.tensors))
            raise InputError.at(m.where, f"tensors differ from {first.where}'s: {odd[:3]}",
                                "merge modules with the same placement and targets")
        for k, v in first.tensors.items():  # module tensors are compared as deltas (LoRA ranks may differ)
            if k.startswith("head.") and m.tensors[k].shape != v.shape and not multi_task:
                raise InputError.at(m.where, f"tensor {k} has shape {tuple(m.tensors[k].shape)}, "
                                    f"{first.where}'s has {tuple(v.shape)}", "merge modules of the same size")


def merge_tensors(inputs: list[Input], method: str, params: MergeParams, rank: int | None, seed: int,
                  shape, head_only_from_first: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """The merged module state (`module.*` and `head.*` tensors) and its module config; with
    `head_only_from_first` (a multi-task merge) the head is the first input's, as it is."""
    kind = inputs[0].card["type"]
    handler, merger = DELTAS[kind](), get_method(method)
    deltas = []
    for m in inputs:
        state = {k[7:]: v for k, v in m.tensors.items() if k.startswith("module.")}
        try:
            deltas.append(handler.deltas(state, m.card["module"], shape))
        except (IndexError, RuntimeError) as e:  # sparse indices outside the matrix, ill-shaped factors
            raise InputError.at(m.where, f"module weights do not fit the base: {str(e).splitlines()[0][:120]}",
                                "merge modules trained for this base's architecture") from e
    generator = torch.Generator().manual_seed(seed)  # one stream, tensors in name order: the merge is reproducible
    weights = [m.weight for m in inputs]
    merged = {}
    for key in sorted(deltas[0]):
        if len({tuple(d[key].shape) for d in deltas}) != 1:
            raise InputError.at(inputs[0].where, f"deltas of {key} have different shapes "
                                f"{sorted({tuple(d[key].shape) for d in deltas})}", "merge modules of the same size")
        merged[key] = merger.merge([d[key] for d in deltas], weights, params, generator)
    state, module = handler.state(merged, inputs[0].card["module"], rank)
    out = {f"module.{k}": v for k, v in state.items()}
    out.update({k: v for k, v in inputs[0].tensors.items() if k.startswith("head.")} if head_only_from_first
               else merge_heads(inputs))
    return out, module


def merge_heads(inputs: list[Input]) -> dict[str, torch.Tensor]:
    """A linear head is a readout, not a task vector: the weighted mean of the heads of the inputs added with
    a positive weight (a negated module takes its task away and brings no readout)."""
    keys = sorted(k for k in inputs[0].tensors if k.startswith("head."))
    plus = [m for m in inputs if m.weight > 0]
    if not keys:
        return {}
    if not plus:
        raise InputError.at("modules", "every input is negated, so no classify head is left to read the result",
                            "add at least one module with a positive weight")
    method, params = get_method("linear"), MergeParams()
    return {k: method.merge([m.tensors[k] for m in plus], [m.weight for m in plus], params) for k in keys}
