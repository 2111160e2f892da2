"""`agent-kind`: the synthetic world's second classification task — who acts in the event: a proper name
(`named`), a person named by a noun (`person`: farmer, teacher, king, ...), or an `animal`.

The answer sits in the agent's words, but which words are the agent depends on each language's word order and
case marking (the patient is drawn from the same pool), so a model has to find the agent, not spot a word. The
label is a fact of the event, rendered in every language with one id, so the language predicts nothing about it.
Its events come from their own random stream: `event-class`, `qa` and the corpora are unchanged by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from syncmod.data.synth.grammar import Entity, text

LABELS = ["animal", "named", "person"]
PERSONS = frozenset({"farmer", "teacher", "doctor", "child", "baker", "sailor", "king", "queen"})


def kind_of(agent: Entity) -> str:
    if agent.is_name:
        return "named"
    return "person" if agent.head in PERSONS else "animal"


def agent_kind(world, n: int, stream: str) -> Iterator[dict[str, dict]]:
    """`n` events; yields {lang: example} with one id across languages."""
    from syncmod.data.synth.world import _rng

    rng = _rng(world.config.seed, "agent-kind", stream)
    for k in range(n):
        ev = world.event(rng)
        yield {code: {"id": f"ak-{stream}-{k:06d}", "lang": code, "text": text(r.event(ev)),
                      "label": kind_of(ev.agent)} for code, r in world.renderers.items()}


def write_agent_kind(world, tasks: Path) -> Path:
    """tasks/agent-kind/ (task.json + SPLIT.LANG.jsonl) for `world`; also adds it to a world generated before
    this task existed (the rest of the world is untouched)."""
    from syncmod.io import atomic_dir, write_json, write_jsonl

    c = world.config
    with atomic_dir(tasks / "agent-kind") as tmp:
        for split, n in [("train", c.task_train), ("dev", c.task_dev), ("test", c.task_test)]:
            rows = list(agent_kind(world, n, split))
            for code in c.languages:
                write_jsonl(tmp / f"{split}.{code}.jsonl", (r[code] for r in rows))
        write_json(tmp / "task.json", {"name": "agent-kind", "kind": "classify", "labels": LABELS})
    return tasks / "agent-kind"
