"""Task modules: small parameter sets added to a frozen base. A new type is one file that registers a
subclass of :class:`ModuleType` with `@register("name")`."""

from syncmod.modules import (  # noqa: F401  (registration)
    adapter,
    lora,
    rosa,  # noqa: F401  (registration; after lora and sparse, which it combines)
    sparse,
)
from syncmod.modules.base import MODULE_TYPES, ModuleConfig, ModuleType, register

__all__ = ["MODULE_TYPES", "ModuleConfig", "ModuleType", "register"]
