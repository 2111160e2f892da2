"""The loop's counters, saved in every checkpoint like the model, the optimizer and the data position."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TrainState:
    """Where a run stands. Its `state_dict` keys sit at the top of the checkpoint's `client_state`."""

    step: int = 0
    """Optimizer steps done."""
    tokens: int = 0
    """Training tokens processed, all ranks together (evaluations log it, so runs compare at equal tokens)."""
    run_id: str | None = None
    """The tracking run this job logs to; a resumed job continues it."""
    _pending: list[torch.Tensor] = field(default_factory=list, repr=False)

    def add_tokens(self, n: int | torch.Tensor) -> None:
        """Count `n` more tokens. A count still on the device is kept there until it is read (no host sync
        inside a step)."""
        if isinstance(n, torch.Tensor):
            self._pending.append(n.detach())
        else:
            self.tokens += int(n)

    def settle(self) -> int:
        """Fold device-side counts into `tokens` (one transfer) and return it."""
        if self._pending:
            self.tokens += int(torch.stack([t.to(self._pending[0].device) for t in self._pending]).sum())
            self._pending.clear()
        return self.tokens

    def state_dict(self) -> dict:
        return {"step": self.step, "tokens": self.settle(), "run_id": self.run_id}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.tokens, self.run_id = int(state["step"]), int(state.get("tokens", 0)), state.get("run_id")
        self._pending.clear()
