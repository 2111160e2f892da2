"""The `syncmod` command: one jsonargparse parser with a subcommand per entry of `COMMANDS`.

A command is a function whose parameters are documented dataclasses (as in litgpt's `__main__`):
- a parameter named `config`: an optional YAML file as the first argument plus dotted `--a.b=value` options
  over the dataclass's (nested) fields (`syncmod pretrain pretrain/sync.yaml --train.steps=200`);
- any other dataclass parameter: its fields are `--dashed-name` options; `field(metadata={"positional": True})`
  makes one positional, `metadata={"flags": [...]}` gives it other spellings (`--local_rank`). List fields take
  several values (`--module A B`) or a comma list (`--langs en,xa`).
Adding a command is one `Command` entry. Only the chosen command's module is imported (torch takes seconds).

Bad input is one line on stderr — `where: what (how to fix)` — and exit status 2, before any work starts;
`--debug` shows the traceback instead. Ctrl-C is one line and exit status 130.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

from syncmod.config import (
    COMMAND_LINE,
    FieldError,
    command_line_error,
    config_parser,
    new_parser,
    resolve,
    single_values_as_lists,
)
from syncmod.errors import InputError, Problem

log = logging.getLogger("syncmod")


@dataclass(frozen=True)
class Command:
    """One `syncmod` subcommand: a function to run, or a group of subcommands."""

    target: str = ""
    """`module:function`; its parameters declare the command's arguments."""
    help: str = ""
    """One line for `syncmod --help`."""
    subcommands: dict[str, Command] = field(default_factory=dict)
    """Nested subcommands (`syncmod data synth`)."""


COMMANDS: dict[str, Command] = {
    "data": Command(help="generate, import, validate, inspect corpora; train the tokenizer; build shards", subcommands={
        "synth": Command("syncmod.data.cli:synth", "generate the synthetic world"),
        "robust-tasks": Command("syncmod.data.synth.robust:robust_tasks",
                                "genre (in/out-of-domain) and shortcut tasks of the synthetic world"),
        "validate": Command("syncmod.data.cli:validate", "check corpora; one line per problem, exit 2 on any"),
        "inspect": Command("syncmod.data.cli:inspect", "counts, lengths, examples, and sync points of corpora"),
        "tokenizer": Command("syncmod.data.cli:tokenizer", "train the study tokenizer over all languages"),
        "shards": Command("syncmod.data.cli:shards", "pre-tokenize corpora into memory-mapped shards"),
        "prepare": Command("syncmod.data.cli:prepare", "tokenizer + train/valid shards under one root"),
        "task-from-parallel": Command("syncmod.data.cli:task_from_parallel",
                                      "a parallel classify task from a labelled parallel corpus"),
        "task-from-pairs": Command("syncmod.data.cli:task_from_pairs",
                                   "a parallel classify task from pairwise corpora joined on their pivot text"),
        "import-gettext": Command("syncmod.data.cli:import_gettext", "gettext catalogs (.po/.mo) -> en-XX JSONL"),
    }),
    "pretrain": Command("syncmod.pretrain.cli:pretrain", "pre-train bases (a YAML from pretrain/ + dotted options)"),
    "finetune": Command("syncmod.finetune.train:run", "train a task module in one language on a frozen base"),
    "eval": Command("syncmod.evaluation.cli:evaluate", "every module on every language's base: the transfer table"),
    "merge": Command("syncmod.algebra.cli:run", "merge task modules on their weight deltas (a YAML from merge/)"),
    "transfer": Command("syncmod.modules.mapping:run", "move a module to another base by maps fitted on parallel text"),
    "tracking": Command(help="a local MLflow server; upload what a run logged offline", subcommands={
        "serve": Command("syncmod.tracking.cli:serve_command", "start a local MLflow tracking server"),
        "sync": Command("syncmod.tracking.cli:sync_command", "upload a run's tracking_fallback.jsonl"),
    }),
    "demo": Command("syncmod.study.demo:demo", "a small study on the synthetic world, end to end (make demo)"),
    "study": Command("syncmod.study.runner:run", "conditions x seeds x tasks x module types, one report"),
    "compare": Command("syncmod.study.compare:compare_command",
                       "two evaluations of the same test items, item by item (e.g. one cell of two studies)"),
}


def _target(command: Command):
    module, name = command.target.split(":")
    return getattr(importlib.import_module(module), name)


def _params(fn) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(fn)
    return [(name, hints[name]) for name in inspect.signature(fn).parameters]


def _doc(fn) -> str:
    return inspect.cleandoc(fn.__doc__ or "")


def add_options(parser, cls: type) -> None:
    """A `--dashed-name` option (or a positional) per field of dataclass `cls`, documented by its docstring."""
    import docstring_parser

    hints = typing.get_type_hints(cls)
    docs = {p.arg_name: p.description for p in docstring_parser.parse_from_object(cls).params}
    for f in dataclasses.fields(cls):
        tp, positional = hints[f.name], f.metadata.get("positional", False)
        flags = f.metadata.get("flags") or ([f.name] if positional else [f"--{f.name.replace('_', '-')}"])
        kwargs: dict[str, Any] = {"help": docs.get(f.name, "")}
        elem = _list_element(tp)
        if tp is bool:
            kwargs["action"] = "store_true"
        elif elem is not None:
            kwargs.update(nargs="+" if positional else "*", type=elem)
        else:
            kwargs["type"] = tp
        if not positional:
            kwargs["dest"] = f.name
            if f.default is not dataclasses.MISSING:
                kwargs["default"] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                kwargs["default"] = f.default_factory()
            else:
                kwargs["required"] = True
        parser.add_argument(*flags, **kwargs)


def _list_element(tp: Any) -> type | None:
    for t in [tp, *[a for a in typing.get_args(tp) if a is not type(None)]]:
        if typing.get_origin(t) is list:
            return typing.get_args(t)[0]
    return None


def build_options(cls: type, given: dict) -> Any:
    """The options dataclass from the parsed values; comma lists split; range errors name the option."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            value = given[f.name]
            if _list_element(hints[f.name]) is str and isinstance(value, list):
                value = [part for v in value for part in str(v).split(",") if part]
            values[f.name] = value
    try:
        return cls(**values)
    except FieldError as e:
        raise InputError([Problem(COMMAND_LINE, f"--{p.where.replace('_', '-')}: {p.what}", p.fix)
                          for p in e.problems]) from None


def _chosen(argv: list[str]) -> list[str]:
    """The command path named in argv (`data synth`): only its parser is built in full."""
    path, table = [], COMMANDS
    for arg in argv:
        if arg in table:
            path.append(arg)
            table = table[arg].subcommands
            if not table:
                break
        elif not arg.startswith("-"):
            break
    return path


def _parser(command: Command, prog: str, chosen: list[str] | None, built: list, parser=None):
    """The parser of one command; subcommands off the chosen path get a stub (their help line only)."""
    if command.subcommands:
        parser = parser or new_parser(prog, command.help)
        subs = parser.add_subcommands(required=True, dest="command")
        for name, sub in command.subcommands.items():
            full = chosen is not None and chosen[:1] == [name]
            if full and not sub.subcommands:
                subs.add_subcommand(name, _parser(sub, f"{prog} {name}", chosen[1:], built), help=sub.help)
                continue
            child = new_parser(f"{prog} {name}", sub.help)
            subs.add_subcommand(name, child, help=sub.help)  # a group is added before its own subcommands
            if full:
                _parser(sub, f"{prog} {name}", chosen[1:], built, child)
        built.append(parser)
        return parser
    fn = _target(command)
    params = _params(fn)
    config = dict(params).get("config")
    parser = config_parser(config, prog, _doc(fn)) if config else new_parser(prog, _doc(fn))
    for name, cls in params:
        if name != "config":
            add_options(parser, cls)
    built.append(parser)
    return parser


def arguments(argv: list[str], debug: bool = False) -> tuple[Any, dict[str, Any]]:
    """(the command's function, its arguments) for a command line, without running it: `main` calls it,
    tests use it to check that documented command lines parse."""
    top = Command(help="Cross-lingual modular pre-training.", subcommands=COMMANDS)
    built: list = []
    parser = _parser(top, "syncmod", _chosen(argv), built)
    try:
        ns = parser.parse_args(single_values_as_lists(argv, built), defaults=False).as_dict()
    except Exception as e:  # jsonargparse's ArgumentError / TypeError / ValueError carry its message
        if debug:
            raise
        raise command_line_error(e, built) from e
    command = top
    while command.subcommands:
        name = ns["command"]
        command, ns = command.subcommands[name], ns.get(name) or {}
    fn = _target(command)
    kwargs = {}
    for name, cls in _params(fn):
        if name == "config":
            names = {f.name for f in dataclasses.fields(cls)}
            given = {k: v for k, v in ns.items() if k in names}
            kwargs[name] = resolve(cls, built[0], ns.get("config"), given)  # built[0]: the leaf
        else:
            kwargs[name] = build_options(cls, ns)
    return fn, kwargs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # known before parsing, so a parse error also honours it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    prog = " ".join(["syncmod", *_chosen(argv)])
    try:
        fn, kwargs = arguments(argv or ["--help"], debug)
        return fn(**kwargs) or 0
    except InputError as e:
        if debug:
            raise
        for problem in e.problems:
            print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted; nothing half-written was left", file=sys.stderr)
        return 130

if __name__ == "__main__":
    sys.exit(main())
