"""Name -> class registries (objectives, module types): registering a name twice is an error, never a
silent overwrite."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)


def registrar(table: dict[str, T], kind: str) -> Callable[[str], Callable[[T], T]]:
    """A `@register("name")` decorator that records classes in `table` and sets their `name`."""

    def register(name: str) -> Callable[[T], T]:
        def wrap(cls: T) -> T:
            if name in table:
                raise ValueError(f"{kind} {name!r} is registered twice")
            cls.name = name
            table[name] = cls
            return cls
        return wrap
    return register
