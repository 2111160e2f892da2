"""Typology and rendering: how one language turns an event into words.

Every rendered word carries the event role it expresses (S agent, V verb, O patient, L location) and
its slot inside the constituent (det, adj, noun, name, adp, verb, wh). Roles give the exact sync cuts;
slots give word alignments. Constituents are contiguous in every language, so a cut between
constituents whose prefixes hold the same roles is crossing-free by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

from syncmod.data.synth.lexicon import VERB_CLASSES, Lexicon

ORDERS = ["".join(p) for p in permutations("SVO")]
_EN_VERBS = {base: (s3, past) for group in VERB_CLASSES.values() for base, s3, past in group}


@dataclass(frozen=True)
class Entity:
    """A participant: a shared proper name, or a noun concept with an optional adjective."""

    head: str
    is_name: bool = False
    adjective: str | None = None


@dataclass(frozen=True)
class Event:
    agent: Entity
    verb: str
    patient: Entity
    tense: str  # "past" | "present"
    relation: str | None = None  # locative relation, with `place`
    place: Entity | None = None


@dataclass(frozen=True)
class Typology:
    """Word-order and morphology of one language (documented knobs of the synthetic world)."""

    order: str = "SVO"
    """Order of agent (S), verb (V) and patient (O): any permutation of SVO."""
    adposition: str = "pre"
    """Locative adposition before (`pre`) or after (`post`) its noun phrase."""
    adjective: str = "before"
    """Adjective `before` or `after` the noun."""
    location: str = "end"
    """Locative phrase at the sentence `start` or `end`."""
    case_suffixes: bool = False
    """Mark agent and patient nouns with case suffixes (free-order languages need them)."""

    def check(self, where: str) -> None:
        from syncmod.errors import InputError

        for name, value, allowed in [("order", self.order, ORDERS), ("adposition", self.adposition, ["pre", "post"]),
                                     ("adjective", self.adjective, ["before", "after"]),
                                     ("location", self.location, ["start", "end"])]:
            if value not in allowed:
                raise InputError.at(where, f"typology {name}={value!r} is not allowed", f"use one of {allowed}")


# Typologies given to generated languages in turn, so a 4-language world has four different orders.
PRESETS = [
    Typology(order="SOV", adposition="post", adjective="after", location="start", case_suffixes=True),
    Typology(order="VSO", adposition="pre", adjective="after", location="end"),
    Typology(order="OSV", adposition="post", adjective="before", location="start", case_suffixes=True),
    Typology(order="VOS", adposition="pre", adjective="before", location="end"),
    Typology(order="OVS", adposition="post", adjective="after", location="end", case_suffixes=True),
    Typology(order="SVO", adposition="post", adjective="after", location="start"),
]
ENGLISH = Typology()

Word = tuple[str, str, str]  # (form, role, slot)


class Renderer:
    """Renders events and questions in one language."""

    def __init__(self, code: str, typology: Typology, lexicon: Lexicon):
        self.code, self.typ, self.lex = code, typology, lexicon
        self.english = code == "en"

    # -- constituents -------------------------------------------------------------------------------------
    def _np(self, e: Entity, role: str, case: str | None) -> list[Word]:
        if e.is_name:
            words = [(e.head, role, "name")]
        else:
            words = [(self.lex.nouns[e.head], role, "noun")]
            if e.adjective:
                adj = (self.lex.adjectives[e.adjective], role, "adj")
                words = [adj, *words] if self.typ.adjective == "before" else [*words, adj]
            if self.english:
                words = [("the", role, "det"), *words]
        if case and self.typ.case_suffixes and not self.english:
            i = next(k for k, w in enumerate(words) if w[2] in ("noun", "name"))
            form, r, slot = words[i]
            words[i] = (form + self.lex.function[case], r, slot)
        return words

    def _verb(self, ev: Event, form: str = "finite") -> list[Word]:
        if self.english:
            s3, past = _EN_VERBS[ev.verb]
            text = ev.verb if form == "base" else (past if ev.tense == "past" else s3)
        else:
            text = self.lex.verbs[ev.verb] + self.lex.function[ev.tense]
        return [(text, "V", "verb")]

    def _location(self, ev: Event) -> list[Word]:
        if ev.relation is None or ev.place is None:
            return []
        adp = (self.lex.relations[ev.relation], "L", "adp")
        np = self._np(ev.place, "L", None)
        return [adp, *np] if self.typ.adposition == "pre" else [*np, adp]

    def _clause(self, parts: dict[str, list[Word]], loc: list[Word]) -> list[Word]:
        words = [w for role in self.typ.order for w in parts[role]]
        if loc:
            words = [*loc, *words] if self.typ.location == "start" else [*words, *loc]
        return words

    # -- sentences ----------------------------------------------------------------------------------------
    def event(self, ev: Event) -> list[Word]:
        """The event as a declarative sentence; the final word carries the full stop."""
        parts = {"S": self._np(ev.agent, "S", "agent"), "V": self._verb(ev), "O": self._np(ev.patient, "O", "patient")}
        return _finish(self._clause(parts, self._location(ev)), ".", self.english)

    def question(self, ev: Event, role: str) -> list[Word]:
        """A question about one role (S, O or L) of the event."""
        if self.english:
            words = self._english_question(ev, role)
        else:
            wh = {"S": "who", "O": "whom", "L": "where"}[role]
            parts = {"S": self._np(ev.agent, "S", "agent"), "V": self._verb(ev),
                     "O": self._np(ev.patient, "O", "patient")}
            loc = self._location(ev)
            if role == "L":
                loc = [(self.lex.function[wh], "L", "wh")]
            else:
                parts[role] = [(self.lex.function[wh], role, "wh")]
            words = [*self._clause(parts, loc), (self.lex.function["q"], "Q", "q")]
        return _finish(words, "?", self.english)

    def _english_question(self, ev: Event, role: str) -> list[Word]:
        loc = self._location(ev)
        if role == "S":
            return [("who", "S", "wh"), *self._verb(ev), *self._np(ev.patient, "O", None), *loc]
        aux = [("did" if ev.tense == "past" else "does", "V", "aux")]
        subj, verb = self._np(ev.agent, "S", None), self._verb(ev, form="base")
        if role == "O":
            return [("whom", "O", "wh"), *aux, *subj, *verb, *loc]
        return [("where", "L", "wh"), *aux, *subj, *verb, *self._np(ev.patient, "O", None)]

    def answer(self, ev: Event, role: str) -> str:
        """The bare answer to a question about `role`: a name or a noun, in this language."""
        e = {"S": ev.agent, "O": ev.patient, "L": ev.place}[role]
        assert e is not None
        return e.head if e.is_name else self.lex.nouns[e.head]


def _finish(words: list[Word], mark: str, capitalise: bool) -> list[Word]:
    words = list(words)
    form, role, slot = words[-1]
    words[-1] = (form + mark, role, slot)
    if capitalise:
        form, role, slot = words[0]
        words[0] = (form[:1].upper() + form[1:], role, slot)
    return words


def text(words: list[Word]) -> str:
    return " ".join(w[0] for w in words)


def sync_cuts(x: list[Word], y: list[Word]) -> list[tuple[int, int]]:
    """All crossing-free cuts (a, b) between constituents: x[:a] and y[:b] express the same roles.

    Cuts are word counts (1-based ends); the sentence end is always one of them.
    """
    def boundaries(words: list[Word]) -> dict[frozenset[str], int]:
        out: dict[frozenset[str], int] = {}
        for i in range(1, len(words) + 1):
            if i == len(words) or words[i][1] != words[i - 1][1]:
                out[frozenset(w[1] for w in words[:i])] = i
        return out

    bx, by = boundaries(x), boundaries(y)
    return sorted((a, by[roles]) for roles, a in bx.items() if roles in by)


def alignment(x: list[Word], y: list[Word]) -> list[tuple[int, int]]:
    """Word alignment links (i, j), 0-based: words of the same role and slot (articles stay unaligned)."""
    links = []
    for i, (_, rx, sx) in enumerate(x):
        for j, (_, ry, sy) in enumerate(y):
            if rx == ry and sx == sy and sx not in ("det", "q", "aux"):
                links.append((i, j))
    return links
