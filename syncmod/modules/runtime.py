"""A task model: a frozen base + one task module + (for classify) a head. The same object trains a
module, evaluates it, and — loaded onto another base of the same shape — evaluates its transfer."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as P
from torch import nn

from syncmod.data.task_inputs import Encoder, pad
from syncmod.data.tasks import Task, TaskExample
from syncmod.modules.base import MODULE_TYPES, ModuleConfig, resolve_layers
from syncmod.modules.heads import HeadConfig, LinearHead
from syncmod.pretrain.architectures import layout
from syncmod.pretrain.model import capture, decoder_layers
from syncmod.pretrain.objectives.losses import shifted_nll


class TaskModel(nn.Module):
    prefix = None
    """A `PrefixCache` when several models score the same items on this base (evaluation): the blocks below
    the module run once for all of them."""

    def __init__(self, base: nn.Module, tokenizer, module: ModuleConfig | None, head: HeadConfig, kind: str,
                 labels: list[str] | None, sync_layers: list[int] | None, max_len: int = 256):
        super().__init__()
        from syncmod.errors import InputError

        layers = base.config.num_hidden_layers
        self.sync_layers = sync_layers or [max(1, layers // 2)]
        self.kind, self.labels, self.head_cfg = kind, labels, head
        self.enc = Encoder(tokenizer, max_len)
        self.module_type = None
        self.model = base
        if module is not None:
            if module.type not in MODULE_TYPES:
                raise InputError.at("module.type", f"unknown module type {module.type!r}", f"use one of {sorted(MODULE_TYPES)}")
            self.module_type = MODULE_TYPES[module.type](module, resolve_layers(module.layers, self.sync_layers, layers))
            self.model = self.module_type.attach(base)
            self.module_type.blocks_path = layout(base).blocks  # where the blocks are, in the module card
            self.owned = self.module_type.owned()  # registered here, so the engine (clipping, devices) sees it
        self.head_layer = head.layer or max(self.sync_layers)
        self.head = None
        if kind == "classify" and head.kind == "linear":
            self.head = LinearHead(base.config.hidden_size, len(labels)).to(next(base.parameters()).device)
        elif kind == "classify" and head.kind != "label-tokens":
            raise InputError.at("head.kind", f"unknown head {head.kind!r}", "use linear or label-tokens")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- parameters and state ------------------------------------------------------------------------------
    def trainable(self) -> list[nn.Parameter]:
        params = list(self.module_type.parameters()) if self.module_type else []
        return params + (list(self.head.parameters()) if self.head is not None else [])

    def state(self) -> dict[str, torch.Tensor]:
        out = {f"module.{k}": v for k, v in (self.module_type.state_dict() if self.module_type else {}).items()}
        if self.head is not None:
            out.update({f"head.{k}": v.detach().clone() for k, v in self.head.state_dict().items()})
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.module_type:
            self.module_type.load_state_dict({k[7:]: v.to(self.device) for k, v in tensors.items() if k.startswith("module.")})
        if self.head is not None:
            self.head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})

    # -- training -----------------------------------------------------------------------------------------
    def loss(self, examples: list[TaskExample]) -> torch.Tensor:
        if self.kind == "clm":  # a language module (syncmod.modules.compose)
            from syncmod.modules.compose import clm_loss

            return clm_loss(self, examples)
        if self.kind == "generate":
            ids, mask, loss_mask = (t.to(self.device) for t in self.enc.generate_train(examples))
            return _lm_loss(self.model(input_ids=ids, attention_mask=mask).logits, ids, loss_mask).mean()
        if self.head is not None:
            logits = self._head_logits(examples)
        else:
            logits = self._label_scores(examples)
        target = torch.tensor([self.labels.index(e.target) for e in examples], device=self.device)
        return F.cross_entropy(logits, target)

    def class_logits(self, examples: list[TaskExample]) -> torch.Tensor:
        """(examples, labels) scores of a classify task, with gradient (what `loss` trains)."""
        return self._head_logits(examples) if self.head is not None else self._label_scores(examples)

    def _head_logits(self, examples: list[TaskExample]) -> torch.Tensor:
        ids, mask = (t.to(self.device) for t in self.enc.classify(examples))
        with self.prefix.reuse(self.model, self._unchanged(), ids, mask) if self.prefix else contextlib.nullcontext():
            state = hidden_at(self.model, self.head_layer, ids, mask)
        return self.head(state, mask, self.head_cfg.position)

    def _unchanged(self) -> int:
        """How many blocks from the bottom the module leaves as the base's (up to the head's layer)."""
        if self.module_type is None:
            return self.head_layer
        return min(min(getattr(self.module_type, "layers", None) or [1]) - 1, self.head_layer)

    def _label_scores(self, examples: list[TaskExample]) -> torch.Tensor:
        """Log-probability of each label's tokens after the prompt: (examples, labels). Every (example, label)
        sequence in full: the training path (it needs no cache); prediction uses `_label_scores_shared`."""
        ids, mask, loss_mask = (t.to(self.device) for t in self.enc.label_choices(examples, self.labels))
        nll = _lm_loss(self.model(input_ids=ids, attention_mask=mask).logits, ids, loss_mask, mean=False)
        return (-nll).view(len(examples), len(self.labels))

    def _label_scores_shared(self, examples: list[TaskExample]) -> torch.Tensor:
        """The same scores with the prompt run once: one forward over the (left-padded) prompts followed by the
        labels' token prefix tree (`label_tree.py`). Prompts get the budget of the longest label (the full path
        gives each label its own), which differs only for prompts truncated to `max_len`. Attention kernels
        that take no 4D mask (flash attention) use the full path."""
        from syncmod.modules.label_tree import LabelTree, tree_scores

        if getattr(self.model.config, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
            return self._label_scores(examples)
        if getattr(self, "_tree", None) is None:
            self._tree = LabelTree([[*self.enc.text(" " + label), self.enc.eos] for label in self.labels])
        prompts = [self.enc.prompt(e, self.enc.max_len - self._tree.longest) for e in examples]
        return tree_scores(self.model, prompts, self._tree, self.enc.pad_id)

    # -- prediction ---------------------------------------------------------------------------------------
    def _length(self, e: TaskExample) -> int:
        return len(self.enc.text(e.text))

    @torch.no_grad()
    def predict(self, examples: list[TaskExample], batch_size: int = 64, max_new_tokens: int = 8) -> list[str]:
        """Predictions in the order of `examples`. Batches are cut from the examples sorted by length (little
        padding), and sparse diffs are applied to their weights once for the whole call, not once per forward."""
        order = sorted(range(len(examples)), key=lambda i: self._length(examples[i]))
        out: list[str] = [""] * len(examples)
        with P.cached():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                for i, answer in zip(idx, self._predict_batch([examples[i] for i in idx], max_new_tokens), strict=True):
                    out[i] = answer
        return out

    def _predict_batch(self, chunk: list[TaskExample], max_new_tokens: int) -> list[str]:
        if self.kind != "classify":
            return self.generate(chunk, max_new_tokens)
        scores = self._head_logits(chunk) if self.head is not None else self._label_scores_shared(chunk)
        return [self.labels[j] for j in scores.argmax(-1).tolist()]

    @torch.no_grad()
    def generate(self, examples: list[TaskExample], max_new_tokens: int = 8) -> list[str]:
        """Greedy answers for a batch (left-padded prompts, KV cache)."""
        prompts = [self.enc.prompt(e, self.enc.max_len - max_new_tokens) for e in examples]
        ids, mask = (t.to(self.device) for t in pad(prompts, self.enc.pad_id, left=True))
        seqs = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                   eos_token_id=self.enc.eos, pad_token_id=self.enc.pad_id, use_cache=True)
        return [self.enc.tok.decode(s[ids.shape[1]:], skip_special_tokens=True).strip() for s in seqs]


class _Reached(Exception):
    """Raised by a block's forward hook once the state a head reads exists: nothing above it runs."""


def hidden_at(model: nn.Module, layer: int, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state after block `layer` (1-based; 0 = embeddings), computed without the blocks above it and
    without the LM head (a classify head reads one layer; the vocabulary projection is most of the FLOPs of a
    small base). Gradients flow through it as through a full forward."""
    with capture(model, [layer]) as states:
        target = model.get_input_embeddings() if layer == 0 else decoder_layers(model)[layer - 1]

        def stop(_module, _inputs, _output):
            raise _Reached

        handle = target.register_forward_hook(stop)  # after capture's hook (and a module's own), so it sees both
        try:
            model(input_ids=ids, attention_mask=mask, use_cache=False)
        except _Reached:
            pass
        finally:
            handle.remove()
    return states[layer]


def _lm_loss(logits: torch.Tensor, ids: torch.Tensor, loss_mask: torch.Tensor, mean: bool = True) -> torch.Tensor:
    """Per-sequence mean (or sum) NLL over the positions `loss_mask` marks."""
    nll = shifted_nll(logits, ids)
    m = loss_mask[:, 1:].to(nll.dtype)
    total = (nll * m).sum(1)
    return total / m.sum(1).clamp_min(1) if mean else total


def build(base, tokenizer, module: ModuleConfig | None, head: HeadConfig, task: Task,
          sync_layers: list[int] | None, max_len: int = 256) -> TaskModel:
    return TaskModel(base, tokenizer, module, head, task.kind, task.labels, sync_layers, max_len)
