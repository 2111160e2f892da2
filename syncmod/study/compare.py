"""`syncmod compare A B`: two evaluations of one task's test items — the same cell of two studies, say bases
trained from scratch against bases continued from a checkpoint — compared item by item: A, B and A − B with
paired 95% bootstrap intervals over the test items, chance-corrected figures first (DESIGN §3).

Pairing is only honest on the same items: the two evaluations must be of the same task, split, languages and
number of items per language (parallel test sets: the same ids everywhere), or the command stops with one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from syncmod.errors import InputError
from syncmod.study.stats import Unit, compare, summarise

# (key of Unit.stats, row label); chance-corrected rows lead
ROWS = [("retained_chance", "retained, chance-corrected"), ("transfer_ratio_chance", "transfer ratio, chance-corrected"),
        ("source_chance", "source, chance-corrected"), ("target_chance", "target, chance-corrected"),
        ("source", "source (raw)"), ("target", "target (raw)"), ("retained", "retained (raw)"),
        ("transfer_ratio", "transfer ratio (raw)")]


@dataclass
class CompareArgs:
    """Two evaluations to compare."""

    a: str = field(default="", metadata={"positional": True})
    """An evaluation: `results.json` of `syncmod eval`, or the directory holding it (in a study:
    `OUT/eval/<condition>-s<seed>/<task>/<module type>`)."""
    b: str = field(default="", metadata={"positional": True})
    """The evaluation to compare it with (the same task's test items)."""
    source: str = "en"
    """The language the compared modules were trained in."""
    seed: int = 0
    """Seed of the bootstrap."""


class _Chance(Unit):
    """A `Unit` that also gives source and target chance-corrected, (score − chance) / (1 − chance)."""

    def stats(self, idx: np.ndarray | None) -> dict[str, float]:
        out = super().stats(idx)
        c = self.chance[self.source]
        out["source_chance"] = (out["source"] - c) / (1 - c)
        out["target_chance"] = float(np.mean([(out["target"] - self.chance[t]) / (1 - self.chance[t])
                                              for t in self.targets]))
        return out


def load(path: str, source: str) -> tuple[dict, _Chance]:
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    if not p.is_file():
        raise InputError.at(path, "no results.json here", "give a `syncmod eval` results.json or its directory")
    try:
        results = json.loads(p.read_text())
        langs = list(results["langs"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise InputError.at(str(p), f"not a syncmod evaluation ({e})", "give a `syncmod eval` results.json") from None
    modules = results.get("modules")
    if source not in langs or not isinstance(modules, list) or not any(
            isinstance(m, dict) and m.get("lang") == source for m in modules):
        raise InputError.at(str(p), f"no module trained in {source!r}", "set --source to the modules' language")
    try:
        unit = _Chance(results, source, [x for x in langs if x != source])
    except (KeyError, TypeError, StopIteration) as e:
        raise InputError.at(str(p), f"not a syncmod evaluation (missing {e})", "give a `syncmod eval` results.json") from None
    if not unit.paired:
        raise InputError.at(str(p), "has no per-item scores", "re-run `syncmod eval` with this version")
    return results, unit


def check_same_items(a: tuple[dict, Unit], b: tuple[dict, Unit], paths: tuple[str, str]) -> None:
    (ra, ua), (rb, ub) = a, b
    for key in ("task", "split", "kind"):
        if ra.get(key) != rb.get(key):
            raise InputError.at(paths[1], f"{key} {rb.get(key)!r} differs from {paths[0]}'s {ra.get(key)!r}",
                                "compare evaluations of the same task's test items")
    if sorted(ra["langs"]) != sorted(rb["langs"]):
        raise InputError.at(paths[1], f"languages {rb['langs']} differ from {paths[0]}'s {ra['langs']}",
                            "compare evaluations over the same languages")
    na = {t: len(v) for t, v in ua.src.items()}
    nb = {t: len(v) for t, v in ub.src.items()}
    if na != nb:
        raise InputError.at(paths[1], f"items per language {nb} differ from {paths[0]}'s {na}",
                            "evaluate both with the same --max-items")


def table(ua: Unit, ub: Unit, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    sa, sb, diff = (summarise({0: ua}, rng), summarise({0: ub}, rng),
                    compare({0: ua}, {0: ub}, rng, tuple(k for k, _ in ROWS)))
    lines = ["| | A | B | A − B [95% paired] |", "|---|---|---|---|"]
    for key, label in ROWS:
        if key not in sa or key not in sb or key not in diff:
            continue
        d = diff[key]
        lines.append(f"| {label} | {sa[key]['mean']:.3f} | {sb[key]['mean']:.3f} | "
                     f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] |")
    return lines


def compare_command(args: CompareArgs) -> int:
    """Two evaluations of the same test items, item by item: A, B, A − B with paired intervals."""
    a, b = load(args.a, args.source), load(args.b, args.source)
    check_same_items(a, b, (args.a, args.b))
    print(f"A = {args.a}\nB = {args.b}\ntask {a[0]['task']}, {a[1].n_items} items per language, source "
          f"{args.source}, targets {', '.join(a[1].targets)}; chance {a[1].chance[args.source]:.3f}\n")
    print("\n".join(table(a[1], b[1], args.seed)))
    return 0
