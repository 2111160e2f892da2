"""Configs as documented dataclasses, loaded from commented YAML with dotted command-line overrides.

`syncmod pretrain pretrain/sync.yaml --train.steps=200` reads the YAML, applies the overrides, checks
types, and returns the dataclass. Unknown keys and wrong types are one clear line, exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from syncmod.errors import InputError

T = TypeVar("T")


def parse(cls: type[T], argv: list[str], prog: str, extra: dict[str, dict[str, Any]] | None = None) -> tuple[T, dict]:
    """Parse `[CONFIG.yaml] [--a.b=value ...]` into an instance of `cls` (plus any `extra` flags)."""
    from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(prog=prog, exit_on_error=False, default_env=False,
                            description=(cls.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file (also accepted as the first argument)")
    for name, kwargs in (extra or {}).items():
        parser.add_argument(name, **kwargs)
    parser.add_class_arguments(cls, nested_key=None, as_group=False)
    if argv and not argv[0].startswith("-"):
        path = Path(argv[0])
        if not path.is_file():
            raise InputError.at(argv[0], "config file does not exist", f"see the YAML files under {prog.split()[-1]}/")
        argv = ["--config", argv[0], *argv[1:]]
    where = argv[1] if argv[:1] == ["--config"] else "command line"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ns = parser.parse_args(argv)
            init = parser.instantiate_classes(ns)
    except Exception as e:  # jsonargparse raises ArgumentError / ValueError / TypeError with its message
        msg = " ".join(str(e).split())
        raise InputError.at(where, f"invalid config: {msg}", f"see `{prog} --help`") from e
    values = {k: v for k, v in vars(init).items() if k != "config" and not k.startswith("__")}
    extras = {k.lstrip("-").replace("-", "_"): values.pop(k.lstrip("-").replace("-", "_"), None) for k in (extra or {})}
    return cls(**values), extras


def to_dict(config: Any) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))


def config_hash(config: Any) -> str:
    """A stable hash of a config (a dataclass or a dict): a resumed run must have the same one."""
    d = config if isinstance(config, dict) else to_dict(config)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
