"""Tokenizing the items of one language once for every cell that scores them."""

from __future__ import annotations

from syncmod.data.task_inputs import Encoder


class TokenCache(Encoder):
    """An encoder that tokenizes each distinct text once (the items in one batch call up front), so the cells
    of one language share the work."""

    def __init__(self, tokenizer, max_len: int, texts: list[str]):
        super().__init__(tokenizer, max_len)
        texts = list(dict.fromkeys(texts))
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        self.memo: dict[str, list[int]] = dict(zip(texts, ids, strict=True))

    def text(self, s: str) -> list[int]:
        if s not in self.memo:
            self.memo[s] = super().text(s)
        return self.memo[s]
