"""Robustness tasks on the synthetic world: document genres (domains) and an injectable shortcut.

`syncmod data robust-tasks --out DIR [world options] [--train-genre=farm ...]` writes two parallel task directories
(identical ids in every language) from the world of the same seed as `syncmod data synth`:

agent           generate: a one-event story and the question who did it; the answer is the agent (a name or a
                bare noun in the item's language: 1 word): a copy from one sentence, meant for small CPU bases
                (not yet shown to be learned by them: see finetune/README.md).
event-class-sc  classify: the verb class of one event, with a marker word before the sentence; on a share
                `shortcut` of the training items the marker is the gold label's own, so the marker predicts the
                label (a shortcut); on the test set it is the gold one on a share `test_shortcut`, else another's.

Genres differ in their vocabulary mix: who acts (nouns and names) and where. Training and dev items come from
`train_genre` alone; test items from every genre in turn. Each task directory gets `subsets.json` — test ids of
`in_domain` / `out_of_domain` (and of each genre), and for event-class-sc `shortcut` / `no_shortcut`, split by a
bias model that reads only the marker words (syncmod.data.shortcut) — and `shortcut.json` lists the markers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from syncmod.data.synth.grammar import Entity, Event, text
from syncmod.data.synth.lexicon import VERB_CLASSES
from syncmod.data.synth.world import World, WorldConfig, _rng
from syncmod.errors import InputError

GENRES: dict[str, dict[str, list[str]]] = {
    "farm": {"agents": ["farmer", "baker", "goat", "horse", "dog"], "places": ["garden", "kitchen", "house", "field"]},
    "wild": {"agents": ["wolf", "bear", "fox", "bird", "cat"], "places": ["forest", "river", "hill"]},
    "court": {"agents": ["king", "queen", "sailor", "teacher", "doctor", "child"],
              "places": ["market", "school", "village"]},
}
TASKS = ("agent", "event-class-sc")
MARKERS = ["wex", "qoj", "jyv", "xuq", "vyjo"]  # one per verb class (sorted), the same string in every language


@dataclass
class RobustTasksArgs:
    """Where and how the robustness tasks are written."""

    out: str = "runs/world/robust-tasks"
    """Output directory (agent/ and event-class-sc/ inside)."""
    train_genre: str = "farm"
    """Genre of the training and dev items (the in-domain genre): farm | wild | court."""
    genre_mix: float = 0.8
    """Probability that the agent and the place come from the genre's own vocabulary (else from the world's)."""
    shortcut: float = 0.9
    """Share of event-class-sc training items whose marker is the gold label's (the shortcut's strength)."""
    test_shortcut: float = 0.5
    """Share of event-class-sc test items whose marker is the gold label's (the rest carry another label's)."""


def _check(args: RobustTasksArgs, world: World) -> None:
    if args.train_genre not in GENRES:
        raise InputError.at("--train-genre", f"unknown genre {args.train_genre!r}", f"use one of {sorted(GENRES)}")
    for name in ("genre_mix", "shortcut", "test_shortcut"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise InputError.at(f"--{name.replace('_', '-')}", f"{getattr(args, name)} is not a probability",
                                "use a value between 0 and 1")
    nouns = set(world.inventory["animates"]) | set(world.inventory["places"])
    missing = sorted({w for g in GENRES.values() for w in g["agents"] + g["places"]} - nouns)
    if missing:
        raise InputError.at("world", f"the world's inventory lacks genre words {missing[:4]}",
                            "keep --animates >= 16 and --places >= 10")
    words = {w for r in world.renderers.values() for part in (r.lex.nouns, r.lex.verbs, r.lex.adjectives,
                                                                r.lex.relations, r.lex.function) for w in part.values()}
    if words & set(MARKERS):
        raise InputError.at("world.seed", f"a generated word equals a marker {sorted(words & set(MARKERS))}",
                            "pick another world seed")


def genre_event(world: World, rng: random.Random, genre: str, mix: float) -> Event:
    """An event whose agent (and place) come from the genre's vocabulary with probability `mix`."""
    g, names = GENRES[genre], genre_names(world, genre)
    while True:
        ev = world.event(rng)
        if rng.random() < mix:
            agent = Entity(rng.choice(names), is_name=True) if rng.random() < 0.35 else \
                Entity(rng.choice(g["agents"]), adjective=ev.agent.adjective)
            ev = replace(ev, agent=agent)
        if ev.place is not None and rng.random() < mix:
            ev = replace(ev, place=Entity(rng.choice(g["places"]), adjective=ev.place.adjective))
        if ev.agent.head != ev.patient.head:
            return ev


def genre_names(world: World, genre: str) -> list[str]:
    """The proper names of a genre: every third of the world's names (all of them in a world with few names)."""
    return world.names[sorted(GENRES).index(genre)::len(GENRES)] or world.names


def _items(world: World, args: RobustTasksArgs, split: str, n: int):
    """(genre, event, marker label) per item, the same for every language."""
    rng = _rng(world.config.seed, "robust", split)
    share = args.test_shortcut if split == "test" else args.shortcut
    classes = sorted(VERB_CLASSES)
    for k in range(n):
        genre = sorted(GENRES)[k % len(GENRES)] if split == "test" else args.train_genre
        ev = genre_event(world, rng, genre, args.genre_mix)
        gold = world.verbs[ev.verb]
        marker = gold if rng.random() < share else rng.choice([c for c in classes if c != gold])
        yield k, genre, ev, MARKERS[classes.index(marker)]


def write_tasks(config: WorldConfig, args: RobustTasksArgs) -> Path:
    """Write agent/ and event-class-sc/ under args.out (built under a temporary name, renamed when complete)."""
    from syncmod.data.lines import Problems
    from syncmod.data.shortcut import BiasModel, shortcut_split
    from syncmod.data.tasks import load_task
    from syncmod.io import atomic_dir, write_json, write_jsonl

    world = World(config)
    _check(args, world)
    c, genres = config, {}
    with atomic_dir(Path(args.out)) as tmp:
        for split, n in [("train", c.task_train), ("dev", c.task_dev), ("test", c.task_test)]:
            items = list(_items(world, args, split, n))
            genres.update({f"{k:06d}": g for k, g, _, _ in items} if split == "test" else {})
            for code, r in world.renderers.items():
                write_jsonl(tmp / "agent" / f"{split}.{code}.jsonl", (
                    {"id": f"agent-{k:06d}", "lang": code, "input": f"{text(r.event(ev))} {text(r.question(ev, 'S'))}",
                     "target": r.answer(ev, "S")} for k, _, ev, _ in items))
                write_jsonl(tmp / "event-class-sc" / f"{split}.{code}.jsonl", (
                    {"id": f"ecs-{k:06d}", "lang": code, "text": f"{m} {text(r.event(ev))}",
                     "label": world.verbs[ev.verb]} for k, _, ev, m in items))
        write_json(tmp / "agent" / "task.json", {"name": "agent", "kind": "generate"})
        write_json(tmp / "event-class-sc" / "task.json", {"name": "event-class-sc", "kind": "classify",
                                                          "labels": sorted(VERB_CLASSES)})
        write_json(tmp / "event-class-sc" / "shortcut.json", {"features": MARKERS, "train_share": args.shortcut})
        for task, prefix in [("agent", "agent"), ("event-class-sc", "ecs")]:
            groups = domain_groups({f"{prefix}-{k}": g for k, g in genres.items()}, args.train_genre)
            if task == "event-class-sc":
                t = load_task(tmp / task, Problems())
                bias = BiasModel(t.split("train", c.languages[0]), t.labels, MARKERS)
                groups.update(shortcut_split(t.split("test", c.languages[0]), bias))
            gaps = [["in_domain", "out_of_domain"]] + ([["shortcut", "no_shortcut"]] if "shortcut" in groups else [])
            write_json(tmp / task / "subsets.json", {"groups": groups, "gaps": gaps})
    return Path(args.out)


def domain_groups(genre_of: dict[str, str], train_genre: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {"in_domain": [], "out_of_domain": []}
    for ident, genre in sorted(genre_of.items()):
        groups["in_domain" if genre == train_genre else "out_of_domain"].append(ident)
        groups.setdefault(f"genre:{genre}", []).append(ident)
    return groups


def robust_tasks(config: WorldConfig, args: RobustTasksArgs) -> int:
    """Genre and shortcut tasks of the synthetic world (agent, event-class-sc) with their test subsets."""
    from syncmod.io import claim_output

    with claim_output(args.out, "tasks"):
        write_tasks(config, args)
    print(args.out)
    return 0
