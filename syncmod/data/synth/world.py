"""The synthetic world: a seeded generator of languages that share meaning and differ in form.

`generate(config, out_dir)` writes N-way parallel text with exact sync cuts and word alignments,
monolingual text per language (other events), and parallel task sets (`qa`, `event-class`, `agent-kind`).
The same config and seed give the same bytes.

Meaning has structure a language model can learn: each verb class prefers its own agents, patients and
places (`selectional`), and a monolingual document keeps a topic (`topic`) and a cast (`coherence`). Without
these every verb is distributionally the same, and no base learns the `event-class` labels (measured: a probe
on the sentence-end state stayed at chance at every layer, with bitext retrieval at 0.997).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from syncmod.data.synth.agent_kind import write_agent_kind
from syncmod.data.synth.grammar import (
    ENGLISH,
    PRESETS,
    Entity,
    Event,
    Renderer,
    Typology,
    alignment,
    sync_cuts,
    text,
)
from syncmod.data.synth.lexicon import (
    NAMES,
    PREFERENCES,
    RELATIONS,
    VERB_CLASSES,
    concepts,
    english_lexicon,
    generated_lexicon,
)
from syncmod.errors import InputError
from syncmod.io import atomic_dir, write_json, write_jsonl

log = logging.getLogger(__name__)
LANG_CODE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"


@dataclass
class WorldConfig:
    """Knobs of the synthetic world. Every count is per language unless it says otherwise."""

    languages: list[str] = field(default_factory=lambda: ["en", "xa", "xb", "xc"])
    """Language codes. `en` is rendered with real English words; any other code gets a generated lexicon."""
    seed: int = 0
    """Seed of everything: lexicons, typologies, events. Same seed, same bytes."""
    typology: dict[str, Typology] = field(default_factory=dict)
    """Per-language typology overrides; languages not named take the presets in turn."""
    animates: int = 16
    """Number of animate noun concepts (agents and patients)."""
    objects: int = 10
    """Number of object noun concepts (patients only)."""
    places: int = 10
    """Number of place noun concepts (locations)."""
    adjectives: int = 10
    """Number of adjective concepts."""
    names: int = 12
    """Number of proper names, shared by all languages."""
    parallel_train: int = 20000
    """N-way parallel sentences for training."""
    parallel_valid: int = 500
    """N-way parallel sentences held out (alignment diagnostics)."""
    mono_train: int = 20000
    """Monolingual documents per language for training (1-4 sentences each, events not in the parallel set)."""
    mono_valid: int = 500
    """Monolingual documents per language held out (bits per byte)."""
    task_train: int = 2000
    """Training examples per task and language."""
    task_dev: int = 200
    """Dev examples per task and language."""
    task_test: int = 500
    """Test examples per task and language (identical ids in every language)."""
    story_events: int = 3
    """Sentences in a `qa` story."""
    selectional: float = 0.8
    """Probability that a role is filled from its verb class's preferred fillers (lexicon.PREFERENCES), else
    from the whole pool. 0 makes every verb distributionally the same (no model can then learn the classes)."""
    coherence: float = 0.5
    """Probability that a later sentence of a monolingual document has an earlier participant as its agent:
    documents have a cast, so a language model learns to look back and copy names — what `qa` asks for."""
    topic: float = 0.8
    """Probability that the next sentence of a monolingual document keeps the document's verb class: what a
    sentence was about predicts the next one, so its sentence-end state has a reason to remember it."""

    def check(self) -> None:
        import re

        seen = set()
        for code in self.languages:
            if not re.match(LANG_CODE, code):
                raise InputError.at("world.languages", f"language code {code!r} is not a valid code",
                                    "use 2-3 lowercase letters, optionally with -Region, e.g. en, xa, pt-BR")
            if code in seen:
                raise InputError.at("world.languages", f"language {code!r} appears twice", "list each code once")
            seen.add(code)
        if len(self.languages) < 2:
            raise InputError.at("world.languages", "a world needs at least two languages", "add a language code")
        for code, typ in self.typology.items():
            typ.check(f"world.typology.{code}")
        for name in ("selectional", "topic", "coherence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError.at(f"world.{name}", f"{name}={getattr(self, name)} is not a probability",
                                    "use a value between 0 and 1")
        if not 1 <= self.names <= len(NAMES):
            raise InputError.at("world.names", f"names must be 1..{len(NAMES)}", "lower world.names")


def _rng(seed: int, *stream: str) -> random.Random:
    """An independent, stable random stream (no use of Python's salted `hash`)."""
    digest = hashlib.sha256(repr((seed, *stream)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


class World:
    """Lexicons, typologies and renderers of every language, plus an event sampler."""

    def __init__(self, config: WorldConfig):
        config.check()
        self.config = config
        self.inventory = concepts(config.animates, config.objects, config.places, config.adjectives)
        self.names = NAMES[: config.names]
        self.renderers: dict[str, Renderer] = {}
        generated = 0
        for code in config.languages:
            if code == "en":
                typ, lex = config.typology.get(code, ENGLISH), english_lexicon(self.inventory)
            else:
                typ = config.typology.get(code, PRESETS[generated % len(PRESETS)])
                lex = generated_lexicon(self.inventory, generated, _rng(config.seed, "lexicon", code))
                generated += 1
            self.renderers[code] = Renderer(code, typ, lex)
        self.verbs = {base: cls for cls, group in VERB_CLASSES.items() for base, _, _ in group}
        self.classes = sorted(VERB_CLASSES)

    # -- sampling -----------------------------------------------------------------------------------------
    def _entity(self, rng: random.Random, pool: list[str]) -> Entity:
        if pool is self.inventory["animates"] and rng.random() < 0.35:
            return Entity(rng.choice(self.names), is_name=True)
        adj = rng.choice(self.inventory["adjectives"]) if rng.random() < 0.4 else None
        return Entity(rng.choice(pool), adjective=adj)

    def _filler(self, rng: random.Random, cls: str, role: str, pool: list[str]) -> Entity:
        """A participant for `role`: usually one the verb class prefers, else anyone from `pool`."""
        inv = self.inventory
        nouns = inv["places"] if role == "place" else inv["animates"] + inv["objects"]
        preferred = [w for w in PREFERENCES[cls][role] if w in nouns]
        if not preferred or rng.random() >= self.config.selectional:
            return self._entity(rng, pool)
        if role != "place" and any(w in inv["animates"] for w in preferred) and rng.random() < 0.35:
            return Entity(rng.choice(self.names), is_name=True)  # names can act and be acted on in any class
        adj = rng.choice(inv["adjectives"]) if rng.random() < 0.4 else None
        return Entity(rng.choice(preferred), adjective=adj)

    def event(self, rng: random.Random, with_location: float = 0.6, verb_class: str | None = None) -> Event:
        cls = verb_class or rng.choice(self.classes)
        inv = self.inventory
        agent = self._filler(rng, cls, "agent", inv["animates"])
        pool = inv["animates"] if rng.random() < 0.6 else inv["objects"]
        patient = self._filler(rng, cls, "patient", pool)
        while patient.head == agent.head:
            patient = self._filler(rng, cls, "patient", pool)
        relation = place = None
        if rng.random() < with_location:
            relation, place = rng.choice(RELATIONS), self._filler(rng, cls, "place", inv["places"])
        verb = rng.choice([base for base, _, _ in VERB_CLASSES[cls]])
        return Event(agent, verb, patient, rng.choice(["past", "present"]), relation, place)

    # -- corpora ------------------------------------------------------------------------------------------
    def parallel(self, n: int, stream: str) -> Iterator[dict]:
        rng = _rng(self.config.seed, "parallel", stream)
        codes = self.config.languages
        for k in range(n):
            ev = self.event(rng)
            words = {c: self.renderers[c].event(ev) for c in codes}
            row: dict = {"id": f"{stream}-{k:07d}", **{c: text(w) for c, w in words.items()}}
            pairs = [(a, b) for i, a in enumerate(codes) for b in codes[i + 1:]]
            row["sync"] = {f"{a}-{b}": [list(c) for c in sync_cuts(words[a], words[b])] for a, b in pairs}
            row["align"] = {f"{a}-{b}": " ".join(f"{i}-{j}" for i, j in alignment(words[a], words[b]))
                            for a, b in pairs}
            yield row

    def monolingual(self, code: str, n: int, stream: str) -> Iterator[str]:
        rng = _rng(self.config.seed, "mono", stream, code)
        for _ in range(n):
            topic, sentences, cast = rng.choice(self.classes), [], []
            for _ in range(rng.randint(1, 4)):
                cls = topic if rng.random() < self.config.topic else rng.choice(self.classes)
                ev = self.event(rng, verb_class=cls)
                if cast and rng.random() < self.config.coherence:
                    agent = rng.choice(cast)
                    if agent.head != ev.patient.head:
                        ev = replace(ev, agent=agent)
                cast += [ev.agent, ev.patient]
                sentences.append(text(self.renderers[code].event(ev)))
            yield " ".join(sentences)

    def qa(self, n: int, stream: str) -> Iterator[dict[str, dict]]:
        """Stories with one question each; yields {lang: example} with one id across languages."""
        rng = _rng(self.config.seed, "qa", stream)
        for k in range(n):
            events = self._story(rng)
            target = rng.randrange(len(events))
            roles = ["S", "O"] + (["L"] if events[target].place else [])
            role = rng.choice(roles)
            out = {}
            for code, r in self.renderers.items():
                story = " ".join(text(r.event(ev)) for ev in events)
                out[code] = {"id": f"qa-{stream}-{k:06d}", "lang": code,
                             "input": f"{story} {text(r.question(events[target], role))}",
                             "target": r.answer(events[target], role)}
            yield out

    def _story(self, rng: random.Random) -> list[Event]:
        """Events with distinct verbs, so a question names exactly one of them."""
        events: list[Event] = []
        while len(events) < self.config.story_events:
            ev = self.event(rng)
            if all(ev.verb != e.verb for e in events):
                events.append(ev)
        return events

    def event_class(self, n: int, stream: str) -> Iterator[dict[str, dict]]:
        rng = _rng(self.config.seed, "event-class", stream)
        for k in range(n):
            ev = self.event(rng)
            yield {code: {"id": f"ec-{stream}-{k:06d}", "lang": code, "text": text(r.event(ev)),
                          "label": self.verbs[ev.verb]} for code, r in self.renderers.items()}

    def spec(self) -> dict:
        return {"config": asdict(self.config),
                "languages": {c: {"typology": asdict(r.typ), "lexicon": asdict(r.lex)}
                              for c, r in self.renderers.items()}}


def generate(config: WorldConfig, out_dir: str | Path) -> Path:
    """Write the whole world under `out_dir` (built under a temporary name, renamed when complete)."""
    world = World(config)
    out_dir = Path(out_dir)
    c = config
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "world.json", world.spec())
        write_jsonl(tmp / "parallel" / "train.jsonl", world.parallel(c.parallel_train, "train"))
        write_jsonl(tmp / "parallel" / "valid.jsonl", world.parallel(c.parallel_valid, "valid"))
        for code in c.languages:
            for split, n in [("train", c.mono_train), ("valid", c.mono_valid)]:
                _write_lines(tmp / "mono" / f"{split}.{code}.txt", world.monolingual(code, n, split))
        for task, make, kind in [("qa", world.qa, "generate"), ("event-class", world.event_class, "classify")]:
            for split, n in [("train", c.task_train), ("dev", c.task_dev), ("test", c.task_test)]:
                rows = list(make(n, split))
                for code in c.languages:
                    write_jsonl(tmp / "tasks" / task / f"{split}.{code}.jsonl", (r[code] for r in rows))
            card = {"name": task, "kind": kind}
            if kind == "classify":
                card["labels"] = sorted(VERB_CLASSES)
            write_json(tmp / "tasks" / task / "task.json", card)
        write_agent_kind(world, tmp / "tasks")
    log.info("wrote synthetic world (%d languages, seed %d) to %s", len(c.languages), c.seed, out_dir)
    return out_dir


def _write_lines(path: Path, lines: Iterator[str]) -> None:
    from syncmod.io import atomic_write

    with atomic_write(path) as f:
        for line in lines:
            f.write(line + "\n")
