"""The `syncmod` command: `syncmod data ...`, `syncmod pretrain ...`, and the rest of the pipeline.

Bad input is one line per problem on stderr — `where: what (how to fix)` — and exit status 2,
before any work starts; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys

from syncmod.errors import InputError

log = logging.getLogger("syncmod")

COMMANDS = {
    "data": "syncmod.data.cli",
    "pretrain": "syncmod.pretrain.cli",
    "tracking": "syncmod.tracking.cli",
    "finetune": "syncmod.finetune.train",
    "eval": "syncmod.evaluation.cli",
    "demo": "syncmod.study.demo",
    "study": "syncmod.study.runner",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="syncmod", description="Cross-lingual modular pre-training.")
        parser.add_argument("command", choices=sorted(COMMANDS))
        parser.add_argument("--debug", action="store_true", help="show tracebacks")
        if not argv or argv[0] in ("-h", "--help"):
            parser.print_help()
            return 0
        parser.parse_args(argv[:1])  # exits 2 with argparse's message
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]])
    try:
        return module.main(argv[1:]) or 0
    except InputError as e:
        if debug:
            raise
        for problem in e.problems:
            print(f"syncmod {argv[0]}: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
