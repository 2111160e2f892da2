"""Step metrics: averaged over the steps since the last log line, with tokens/s and MFU, appended to
`<out>/metrics.jsonl` (one JSON object a line: step, kind, time, metrics) and sent to the tracker.

Step values may be device tensors: they are summed where they are and fetched in one transfer per log line,
so a step never waits for the host. Every rank but 0 gets `Metrics`, which does nothing, so the loop never asks.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from syncmod.pretrain.throughput import Meter
from syncmod.tracking.tracker import Tracker

log = logging.getLogger(__name__)
Value = float | torch.Tensor
SHOWN = ("clm/", "sync/acc", "sync/loss", "perf/tokens_per_s", "bpb/", "retrieval/top1")  # on the progress bar


class Metrics:
    """The do-nothing metrics logger."""

    def step(self, step: int, kind: str, values: dict[str, Value], tokens: int | torch.Tensor) -> None: ...
    def log(self, step: int, kind: str, values: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class MetricsLogger(Metrics):
    """Logs every `log_every` steps and at `last_step`: the mean of each metric over the steps that had it."""

    def __init__(self, out: Path, log_every: int, start: int, last_step: int, tracker: Tracker, meter: Meter,
                 extras: Callable[[], dict[str, float]]):
        self.out, self.log_every, self.last_step, self.tracker = out, log_every, last_step, tracker
        self.meter, self.extras = meter, extras  # extras: read at log time only (learning rate, gradient norm)
        self.sums: dict[str, Value] = {}
        self.counts: dict[str, int] = {}
        self.progress = _progress(start, last_step)

    def step(self, step: int, kind: str, values: dict[str, Value], tokens: int | torch.Tensor) -> None:
        """Record step `step` (1-based: steps done) of `kind`; log when a line is due."""
        for k, v in values.items():
            v = v.detach().double() if isinstance(v, torch.Tensor) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.meter.add(tokens)
        if step % self.log_every == 0 or step == self.last_step:
            self.log(step, kind, {**self._means(), **self.meter.read(), **self.extras()})
        if self.progress is not None:
            self.progress.update(1)

    def _means(self) -> dict[str, float]:
        keys = list(self.sums)
        on_device = [k for k in keys if isinstance(self.sums[k], torch.Tensor)]
        fetched = dict(zip(on_device, torch.stack([self.sums[k] for k in on_device]).tolist(), strict=True)) \
            if on_device else {}  # one transfer for all of them
        out = {k: fetched.get(k, self.sums[k]) / self.counts[k] for k in keys}
        self.sums.clear()
        self.counts.clear()
        return out

    def log(self, step: int, kind: str, values: dict[str, float]) -> None:
        """Write one line now (training lines come through `step`; evaluations call this directly)."""
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "kind": kind, "time": time.time(), **values}) + "\n")
        self.tracker.log_metrics(values, step)
        shown = {k: v for k, v in values.items() if k.startswith(SHOWN)}
        text = " ".join(f"{k}={v:.3g}" for k, v in list(shown.items())[:8])
        if self.progress is not None and not self.progress.disable:
            self.progress.set_postfix_str(text[:120])
        log.info("step %d [%s] %s", step, kind, text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


def _progress(start: int, steps: int):
    from tqdm import tqdm

    return tqdm(total=steps, initial=start, desc="pretrain", unit="step", dynamic_ncols=True,
                disable=not os.isatty(2) and os.environ.get("SYNCMOD_PROGRESS") != "1")


def read_metrics(path: Path, kind: str | None = None) -> list[dict]:
    """The lines `Metrics.log` wrote to a `metrics.jsonl`, in order (only those of `kind` when given)."""
    rows = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    return [r for r in rows if kind is None or r["kind"] == kind]
