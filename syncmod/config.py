"""Configs as documented dataclasses, loaded from commented YAML with dotted command-line overrides.

`syncmod pretrain pretrain/sync.yaml --train.steps=200` reads the YAML, applies the overrides, checks
types (jsonargparse, from the type hints: `Literal[...]` choices included) and ranges (each dataclass's
`__post_init__`), and returns the dataclass. Every mistake is one line that names where it was made: the
YAML file and line, or the command line — a typo'd key also says which key it probably meant.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from syncmod.errors import InputError, Problem

T = TypeVar("T")
COMMAND_LINE = "command line"


class FieldError(InputError):
    """A value out of range, raised by a config's `__post_init__`; `where` is the field's dotted name relative
    to that config, which `build` prefixes and `resolve` turns into the file:line or option that set it."""


def require(ok: bool, key: str, what: str, fix: str = "") -> None:
    """Range checks in `__post_init__`: raise a FieldError for `key` unless `ok`."""
    if not ok:
        raise FieldError(Problem(key, what, fix))


def at_least(config: Any, minimum: float, *names: str) -> None:
    """Each named field (None = unset, allowed) is >= minimum."""
    for name in names:
        value = getattr(config, name)
        require(value is None or value >= minimum, name, f"must be >= {minimum}, got {value}")


def positive(config: Any, *names: str) -> None:
    """Each named field (None = unset, allowed) is > 0."""
    for name in names:
        value = getattr(config, name)
        require(value is None or value > 0, name, f"must be > 0, got {value}")


def one_of(key: str, value: Any, allowed: Any) -> None:
    """A choice whose options live in a registry (objectives, losses, module types): the registry stays the
    source of truth, checked here at start instead of a Literal type."""
    require(value in allowed, key, f"unknown value {value!r}", f"use one of {sorted(allowed)}")


def _load_value(text: str) -> Any:
    """Command-line values: YAML, plus `a,b,c` as a list (for list-typed options; str options keep the text)."""
    import yaml

    value = yaml.safe_load(text)
    if isinstance(value, str) and "," in value and not value.lstrip().startswith(("[", "{", '"', "'")):
        return [yaml.safe_load(x) for x in value.split(",") if x]
    return value


def new_parser(prog: str, description: str = ""):
    """A jsonargparse parser that raises instead of exiting and reads `a,b` as a list."""
    from jsonargparse import ArgumentParser, set_loader, set_parsing_settings

    set_loader("syncmod", _load_value)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False, default_env=False,
                            parser_mode="syncmod")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return parser


def _wants_list(hint, value: str) -> bool:
    """Whether `value`, given alone, means a one-item list for an option of type `hint`: the hint takes a
    list and no scalar that `value` could be (`str`, or a `Literal` choice such as `at`)."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if not any(typing.get_origin(a) is list for a in args) or str in args:
        return False
    return not any(typing.get_origin(a) is typing.Literal and value in map(str, typing.get_args(a)) for a in args)


def single_values_as_lists(argv: list[str], parsers: list) -> list[str]:
    """`--module.targets=q_proj` means `[q_proj]` and `--module.layers=2` means `[2]`: a single value for a
    list-typed option becomes a one-item list (jsonargparse would refuse it); `a,b` and `[a, b]` already are."""
    hints = {o: a._typehint for p in parsers for a in p._actions if hasattr(a, "_typehint") for o in a.option_strings}
    out = []
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if not eq and i and argv[i - 1] in hints and not arg.startswith("-"):
            key, value = argv[i - 1], arg
        if key in hints and value and not value.lstrip().startswith("[") and "," not in value \
                and _wants_list(hints[key], value):
            arg = f"{key}=[{value}]" if eq else f"[{value}]"
        out.append(arg)
    return out


def config_parser(cls: type, prog: str, description: str | None = None):
    """`[CONFIG.yaml] [--a.b=value ...]` over the fields of dataclass `cls`."""
    parser = new_parser(prog, description if description is not None else _first_line(cls.__doc__))
    parser.add_argument("config", nargs="?", type=str | None, default=None,
                        help="YAML config file (see the YAML files in the repository); options override it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser.add_class_arguments(cls, nested_key=None, as_group=False)
    return parser


def parse(cls: type[T], argv: list[str], prog: str) -> T:
    """Parse `[CONFIG.yaml] [--a.b=value ...]` into an instance of `cls` (the study runner's overrides)."""
    parser = config_parser(cls, prog)
    try:
        ns = parser.parse_args(single_values_as_lists(argv, [parser]), defaults=False)
    except Exception as e:  # jsonargparse raises ArgumentError / ValueError / TypeError with its message
        raise command_line_error(e, [parser]) from e
    given = ns.as_dict()
    given.pop("debug", None)
    return resolve(cls, parser, given.pop("config", None), given)


def resolve(cls: type[T], parser, path: str | None, given: dict) -> T:
    """The config: dataclass defaults <- the YAML at `path` <- `given` (typed command-line values)."""
    data, lines = ({}, {}) if path is None else read_yaml(path)
    problems = [Problem(lines.get(key, str(path)), f"unknown key `{key}`",
                        f"did you mean `{near[0]}`?" if near else "see --help for the keys")
                for key, near in unknown_keys(cls, data)]
    if problems:
        raise InputError(problems)
    try:
        typed = parser.parse_object(data, defaults=False).as_dict() if data else {}
    except Exception as e:
        key = _error_key(e)
        raise InputError.at(lines.get(key, str(path)), f"{key}: {_error_text(e)}", "fix the file") from e
    typed.pop("config", None)
    explicit = flatten(given)
    try:
        return build(cls, _merge(typed, given))
    except FieldError as e:
        raise InputError([_locate(p, explicit, lines, path) for p in e.problems]) from e


def _locate(problem: Problem, explicit: dict, lines: dict[str, str], path: str | None) -> Problem:
    key = problem.where
    if key in explicit:
        return Problem(COMMAND_LINE, f"--{key}={explicit[key]}: {problem.what}", problem.fix)
    where = lines.get(key) or path or "defaults"
    return Problem(where, f"{key}: {problem.what}", problem.fix)


def build(cls: type[T], values: dict, prefix: str = "") -> T:
    """`cls(**values)` with nested dataclasses (dicts, also in lists and dicts) built too; a FieldError names
    the dotted field."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value, (sub, container) = values[f.name], _dataclass_of(hints[f.name])
        key = f"{prefix}{f.name}."
        if sub and container is list and isinstance(value, list):
            value = [build(sub, v, f"{key}{i}.") if isinstance(v, dict) else v for i, v in enumerate(value)]
        elif sub and container is dict and isinstance(value, dict):
            value = {k: build(sub, v, f"{key}{k}.") if isinstance(v, dict) else v for k, v in value.items()}
        elif sub and isinstance(value, dict):
            value = build(sub, value, key)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise FieldError([Problem(prefix + p.where, p.what, p.fix) for p in e.problems]) from None


def _dataclass_of(tp: Any) -> tuple[type | None, type | None]:
    """(the dataclass in a hint like `X`, `X | None`, `list[X]` or `dict[str, X]`, its container or None)."""
    if dataclasses.is_dataclass(tp):
        return tp, None
    args, origin = typing.get_args(tp), typing.get_origin(tp)
    if origin in (list, dict) and args and dataclasses.is_dataclass(args[-1]):
        return args[-1], origin
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if dataclasses.is_dataclass(arg):
                return arg, None
    return None, None


def unknown_keys(cls: type, data: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, closest known key) for every key of `data` that `cls` has no field for."""
    if not isinstance(data, dict):
        return []
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out = []
    for key, value in data.items():
        if key not in names:
            out.append((f"{prefix}{key}", difflib.get_close_matches(str(key), names, 1, 0.6)))
            continue
        sub, container = _dataclass_of(hints[key])
        if sub and container is list and isinstance(value, list):
            for i, item in enumerate(value):
                out += unknown_keys(sub, item, f"{prefix}{key}.{i}.")
        elif sub and container is dict and isinstance(value, dict):
            for name, item in value.items():
                out += unknown_keys(sub, item, f"{prefix}{key}.{name}.")
        elif sub:
            out += unknown_keys(sub, value, f"{prefix}{key}.")
    return out


def read_yaml(path: str, _seen: tuple[str, ...] = ()) -> tuple[dict, dict[str, str]]:
    """The YAML mapping at `path` and where (`file:line`) each dotted key was set. A top-level
    `include: base.yaml` (relative to the file) reads that file first; this file's keys override it."""
    data, lines = _read_one(path)
    include = data.pop("include", None)
    if include is None:
        return data, lines
    where = lines.pop("include")
    parent = str(Path(path).parent / str(include))
    if parent in _seen:
        raise InputError.at(where, f"`include: {include}` includes itself", "remove the cycle")
    if not Path(parent).is_file():
        raise InputError.at(where, f"included file {parent} does not exist", "fix the `include:` path")
    base, base_lines = read_yaml(parent, (*_seen, path))
    return _merge(base, data), {**base_lines, **lines}


def _read_one(path: str) -> tuple[dict, dict[str, str]]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError.at(path, "config file does not exist" if not p.exists() else "is not a file",
                            "give a YAML config (see pretrain/, finetune/, studies/)")
    text = p.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InputError.at(f"{path}{line}", f"invalid YAML: {getattr(e, 'problem', None) or e}", "fix the file") from e
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise InputError.at(f"{path}:1", "a config is a mapping of keys to values", "e.g. `train: {steps: 100}`")
    lines: dict[str, str] = {}
    _node_lines(node, "", lines, path)
    return data, lines


def _node_lines(node: Any, prefix: str, lines: dict[str, str], path: str) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[f"{prefix}{key.value}"] = f"{path}:{key.start_mark.line + 1}"
            _node_lines(value, f"{prefix}{key.value}.", lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            lines[f"{prefix}{i}"] = f"{path}:{value.start_mark.line + 1}"
            _node_lines(value, f"{prefix}{i}.", lines, path)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _error_key(e: Exception) -> str:
    m = re.search(r'(?:Parser key|key) "([^"]+)"', str(e))
    return m.group(1) if m else ""


def _error_text(e: Exception) -> str:
    """jsonargparse's multi-line type error as one phrase: what was expected, what was given."""
    text = str(e)
    expected = re.findall(r"Expected an? (.+?)(?:\. Got value|$)", text, re.M)
    subtypes = re.search(r"Subtypes: (.+)", text)
    given = re.search(r"(?:Got value|Given value): (.+)", text)
    want = subtypes.group(1) if subtypes else (expected[0] if expected else " ".join(text.split())[:200])
    want = _readable(want.replace("<class '", "").replace("'>", "").replace("typing.", ""))
    hint = " (a list: `a,b` or `[a]`)" if "list" in want else ""
    return f"expected {want}{hint}" + (f", got {given.group(1).strip()!r}" if given else "")


def _readable(want: str) -> str:
    """`[Literal['at', 'all'], list[int]]` -> `one of at, all, or a list of int`."""
    want = re.sub(r"Literal\[([^\]]*)\]", lambda m: "one of " + m.group(1).replace("'", ""), want)
    want = re.sub(r"list\[([^\]]*)\]", r"a list of \1", want).replace("NoneType", "null (in YAML)")
    if want.startswith("[") and want.endswith("]"):
        want = ", or ".join(x.strip() for x in re.split(r",\s*(?=one of|a list|int|str|float|bool|None)", want[1:-1]))
    return want


def command_line_error(e: Exception, parsers: list) -> InputError:
    """A jsonargparse error on the command line as one line, with the option probably meant."""
    text = str(e)
    m = re.search(r"[Uu]nrecognized arguments: (.+)", text)
    if m:
        option = m.group(1).split()[0].split("=")[0]
        known = [o for p in parsers for a in p._actions for o in a.option_strings]
        near = difflib.get_close_matches(option, known, 1, 0.6)
        return InputError.at(COMMAND_LINE, f"unknown option {option}",
                             f"did you mean {near[0]}?" if near else "see --help")
    key = _error_key(e)
    if key:
        return InputError.at(COMMAND_LINE, f"--{key}: {_error_text(e)}", "see --help")
    return InputError.at(COMMAND_LINE, " ".join(text.split()), "see --help")


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


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
