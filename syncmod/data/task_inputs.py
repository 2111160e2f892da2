"""Turning task examples into model inputs, the same way for training and evaluation.

classify:  [<lang_xx>] text [</s>]                      (a head reads a state; or label tokens follow <sep>)
generate:  [<lang_xx>] input [<sep>] target [</s>]      (loss on the target and </s> only)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from syncmod.data.tasks import TaskExample
from syncmod.data.tokenizer import SEP, lang_tag

_LEFT = "padding_side" in inspect.signature(pad_sequence).parameters  # torch >= 2.6


def pad(rows: Sequence[Sequence[int] | np.ndarray | torch.Tensor], pad_id: int,
        left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows (lists, arrays, or tensors, which keep their device) padded to the longest with `pad_id`
    (on the left for generation prompts): (ids as int64, mask). The one padding of token rows in syncmod."""
    seqs = [torch.as_tensor(r, dtype=torch.long) for r in rows]
    ones = [torch.ones(len(s), dtype=torch.bool, device=s.device) for s in seqs]
    if not left:
        return pad_sequence(seqs, batch_first=True, padding_value=pad_id), pad_sequence(ones, batch_first=True)
    if _LEFT:
        return (pad_sequence(seqs, batch_first=True, padding_value=pad_id, padding_side="left"),
                pad_sequence(ones, batch_first=True, padding_side="left"))
    # older torch has no padding_side: pad the reversed rows on the right, then reverse back
    ids = pad_sequence([s.flip(0) for s in seqs], batch_first=True, padding_value=pad_id).flip(1)
    return ids, pad_sequence(ones, batch_first=True).flip(1)


class Encoder:
    """Token ids for task examples with one tokenizer; `max_len` truncates the input from the left."""

    def __init__(self, tokenizer, max_len: int):
        self.tok, self.max_len = tokenizer, max_len
        self.sep, self.eos, self.pad_id = tokenizer.convert_tokens_to_ids(SEP), tokenizer.eos_token_id, tokenizer.pad_token_id
        if SEP not in tokenizer.get_vocab():  # a checkpoint's own tokenizer (continued pre-training): </s> separates
            self.sep = self.eos

    def tag(self, lang: str) -> int:
        return self.tok.convert_tokens_to_ids(lang_tag(lang))

    def text(self, s: str) -> list[int]:
        return self.tok.encode(s, add_special_tokens=False)

    def classify(self, examples: list[TaskExample]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[self.tag(e.lang), *self.text(e.text)[-(self.max_len - 2):], self.eos] for e in examples]
        return pad(rows, self.pad_id)

    def prompt(self, e: TaskExample, budget: int) -> list[int]:
        return [self.tag(e.lang), *self.text(e.text)[-(budget - 2):], self.sep]

    def generate_train(self, examples: list[TaskExample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, attention mask, loss mask): the loss covers the answer tokens and </s>."""
        return self._with_answers([(e, e.target) for e in examples], max_answer=16)

    def label_choices(self, examples: list[TaskExample], labels: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every (example, label) continuation, for scoring labels as text: (ids, mask, loss mask)."""
        return self._with_answers([(e, label) for e in examples for label in labels])

    def _with_answers(self, pairs: list[tuple[TaskExample, str]], max_answer: int | None = None):
        rows, loss_rows = [], []
        for e, text in pairs:
            answer = [*self.text(" " + text)[:max_answer], self.eos]
            prompt = self.prompt(e, self.max_len - len(answer))
            rows.append(prompt + answer)
            loss_rows.append([0] * len(prompt) + [1] * len(answer))
        ids, mask = pad(rows, self.pad_id)
        loss_mask, _ = pad(loss_rows, 0)
        return ids, mask, loss_mask.bool()
