"""Transfer-aware module training: the same module weights are applied in the source base and in the
bases of other languages; besides its task loss, the module is trained so that the source base's state
on a sentence and another base's state on its translation agree (1 - cos at the deepest sync layer, at
the sentence end), on parallel unlabelled text. The module card records that it was trained this way:
a different, weaker claim than "train once, plug into any synced base"."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from syncmod.config import at_least
from syncmod.data.lines import Problems
from syncmod.data.parallel import read_parallel
from syncmod.data.tasks import TaskExample
from syncmod.errors import InputError
from syncmod.modules.bases import BaseSet, load_base
from syncmod.pretrain.model import capture
from syncmod.pretrain.sync_points import sentence_end


@dataclass
class TransferAwareConfig:
    """Train with other bases in the loop (off when `langs` is empty)."""

    langs: list[str] = field(default_factory=list)
    """Languages whose bases carry the same module weights during training."""
    parallel: str | None = None
    """Parallel corpus with the training language and every language in `langs` (unlabelled)."""
    weight: float = 1.0
    """Weight of the consistency loss."""
    units: int = 2000
    """Parallel units read from the corpus."""
    batch_size: int = 16
    """Parallel units per step."""

    def __post_init__(self) -> None:
        at_least(self, 0, "weight")
        at_least(self, 1, "units", "batch_size")


class TransferAware:
    def __init__(self, config: TransferAwareConfig, model, bases: BaseSet, source: str):
        if not config.parallel:
            raise InputError.at("transfer_aware.parallel", "transfer-aware training needs a parallel corpus",
                                "set transfer_aware.parallel to a JSONL with the languages")
        self.config, self.model, self.source = config, model, source
        problems = Problems()
        units = []
        for ex in read_parallel(config.parallel, problems):
            if all(lang in ex.texts for lang in [source, *config.langs]):
                units.append(ex.texts)
            if len(units) >= config.units:
                break
        problems.raise_if_any()
        if not units:
            raise InputError.at(config.parallel, f"no units with {[source, *config.langs]}", "use a corpus with them")
        self.units = units
        self.others = {}
        for lang in config.langs:
            base, _ = load_base(bases.path(lang), str(model.device))
            self.others[lang] = model.module_type.attach_shared(base)
        self.rng = np.random.default_rng(0)
        self.layer = max(model.sync_layers)

    def _states(self, net, lang: str, texts: list[str]) -> torch.Tensor:
        examples = [TaskExample(str(i), lang, t, "") for i, t in enumerate(texts)]
        ids, mask = (t.to(self.model.device) for t in self.model.enc.classify(examples))
        with capture(net, [self.layer]) as states:
            net(input_ids=ids, attention_mask=mask)
        return sentence_end(states[self.layer], mask)

    def loss(self) -> torch.Tensor:
        pick = self.rng.integers(0, len(self.units), self.config.batch_size)
        rows = [self.units[i] for i in pick]
        src = self._states(self.model.model, self.source, [r[self.source] for r in rows])
        total = 0.0
        for lang, net in self.others.items():
            tgt = self._states(net, lang, [r[lang] for r in rows])
            total = total + (1 - F.cosine_similarity(src, tgt, dim=-1)).mean()
        return total / len(self.others)
