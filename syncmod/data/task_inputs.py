"""Turning task examples into model inputs, the same way for training and evaluation.

classify:  [<lang_xx>] text [</s>]                      (a head reads a state; or label tokens follow <sep>)
generate:  [<lang_xx>] input [<sep>] target [</s>]      (loss on the target and </s> only)
"""

from __future__ import annotations

import torch

from syncmod.data.tasks import TaskExample
from syncmod.data.tokenizer import SEP, lang_tag


def pad(rows: list[list[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl], mask[i, sl] = torch.tensor(r, dtype=torch.long), True
    return ids, mask


class Encoder:
    """Token ids for task examples with one tokenizer; `max_len` truncates the input from the left."""

    def __init__(self, tokenizer, max_len: int):
        self.tok, self.max_len = tokenizer, max_len
        self.sep, self.eos, self.pad_id = tokenizer.convert_tokens_to_ids(SEP), tokenizer.eos_token_id, tokenizer.pad_token_id

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
