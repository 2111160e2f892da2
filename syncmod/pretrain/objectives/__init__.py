"""Objectives: what a step computes from its batch and the captured states.

An objective is registered by name; `syncmod pretrain` picks the one for sync steps by
`sync.objective`, and asynchronous steps always run `clm`. A new objective is one file with
`@register("name")` on a subclass of :class:`Objective`.
"""

from syncmod.pretrain.objectives import clm, parallel_text, sync  # noqa: F401  (registration)
from syncmod.pretrain.objectives.base import OBJECTIVES, Objective, StepContext, register

__all__ = ["OBJECTIVES", "Objective", "StepContext", "register"]
