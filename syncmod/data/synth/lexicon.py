"""Lexicons of the synthetic world: concepts, real English words for ``en``, generated words elsewhere.

Every language shares the same concepts; only their forms differ. Proper names are shared by all
languages. Generated words come from a per-language syllable inventory, so each language has its own
look (and its own sub-word statistics for the tokenizer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Verb classes are the labels of the `event-class` task: every language shares them.
VERB_CLASSES: dict[str, list[tuple[str, str, str]]] = {
    # class: [(base, 3rd person present, past), ...]
    "perception": [("see", "sees", "saw"), ("hear", "hears", "heard"), ("watch", "watches", "watched"),
                   ("notice", "notices", "noticed")],
    "motion": [("follow", "follows", "followed"), ("chase", "chases", "chased"), ("visit", "visits", "visited"),
               ("meet", "meets", "met")],
    "possession": [("take", "takes", "took"), ("hold", "holds", "held"), ("buy", "buys", "bought"),
                   ("find", "finds", "found")],
    "conflict": [("attack", "attacks", "attacked"), ("push", "pushes", "pushed"), ("bite", "bites", "bit"),
                 ("hit", "hits", "hit")],
    "care": [("help", "helps", "helped"), ("feed", "feeds", "fed"), ("wash", "washes", "washed"),
             ("hug", "hugs", "hugged")],
}
# What each verb class prefers as agent, patient and place (a soft preference, see WorldConfig.selectional):
# verbs of one class share contexts, as in a real language, so a language model has a reason to tell the
# classes apart — without it every verb is distributionally the same and nothing learns the class.
PREFERENCES: dict[str, dict[str, list[str]]] = {
    "perception": {"agent": ["cat", "bird", "owl", "child", "teacher", "sailor", "king", "queen"],
                   "patient": ["bird", "horse", "fox", "wolf", "letter", "flag", "lamp", "queen"],
                   "place": ["hill", "tower", "lake", "field", "bridge"]},
    "motion": {"agent": ["dog", "horse", "fox", "wolf", "goat", "child", "sailor", "tiger"],
               "patient": ["cat", "goat", "farmer", "doctor", "rabbit", "mouse", "duck", "pig"],
               "place": ["road", "river", "forest", "bridge", "village"]},
    "possession": {"agent": ["farmer", "baker", "child", "king", "queen", "teacher", "monkey", "doctor"],
                   "patient": ["apple", "book", "ball", "stone", "cup", "basket", "hat", "key", "box", "coin"],
                   "place": ["market", "house", "school", "kitchen", "farm"]},
    "conflict": {"agent": ["dog", "cat", "wolf", "bear", "goat", "fox", "tiger", "monkey"],
                 "patient": ["horse", "goat", "sailor", "baker", "king", "cow", "pig", "duck"],
                 "place": ["forest", "field", "hill", "cave", "road"]},
    "care": {"agent": ["farmer", "teacher", "doctor", "baker", "queen", "child", "sailor", "king"],
             "patient": ["dog", "bird", "horse", "child", "teacher", "cow", "rabbit", "goat"],
             "place": ["house", "garden", "kitchen", "farm", "school"]},
}
ANIMATES = ["dog", "cat", "bird", "horse", "fox", "wolf", "bear", "goat", "farmer", "teacher", "doctor", "child",
            "baker", "sailor", "king", "queen", "rabbit", "mouse", "owl", "monkey", "tiger", "duck", "pig", "cow"]
OBJECTS = ["apple", "book", "ball", "stone", "letter", "cup", "basket", "hat", "key", "box", "coin", "rope",
           "bottle", "lamp", "drum", "flag"]
PLACES = ["house", "garden", "forest", "river", "market", "school", "village", "field", "kitchen", "hill",
          "bridge", "cave", "tower", "lake", "road", "farm"]
ADJECTIVES = ["big", "small", "old", "young", "red", "black", "white", "happy", "tired", "quiet", "brown",
              "green", "strong", "clever", "angry", "lazy"]
RELATIONS = ["in", "near", "behind", "under"]
NAMES = ["Maria", "Tomas", "Anna", "Pedro", "Lena", "Omar", "Yuki", "Ivan", "Sara", "Kofi", "Nina", "Paulo",
         "Aiko", "Hugo", "Mira", "Ravi", "Elif", "Jonas", "Zara", "Luca", "Noor", "Ines", "Femi", "Olga"]

# Syllable inventories give each generated language its own look.
_INVENTORIES = [
    ("ptkmnslrbdg", "aeiou"),
    ("kgtdnmrwyh", "aiuoa"),
    ("fvszmnlrtk", "eiouy"),
    ("bpdtgkmnrlsh", "aeio"),
    ("cdfghjklmnprstvz", "aeiouä"),
    ("qtklmnrsxz", "aeiou"),
]


@dataclass(frozen=True)
class Lexicon:
    """Forms of every concept in one language. Keys are the English concept names."""

    nouns: dict[str, str]
    verbs: dict[str, str]
    adjectives: dict[str, str]
    relations: dict[str, str]
    function: dict[str, str]  # question words, question particle, case and tense affixes


def concepts(n_animates: int, n_objects: int, n_places: int, n_adjectives: int) -> dict[str, list[str]]:
    """The concept inventory for a world of the given size (a prefix of each list)."""
    for name, n, pool in [("animates", n_animates, ANIMATES), ("objects", n_objects, OBJECTS),
                          ("places", n_places, PLACES), ("adjectives", n_adjectives, ADJECTIVES)]:
        if not 1 <= n <= len(pool):
            raise ValueError(f"{name} must be between 1 and {len(pool)}, got {n}")
    return {"animates": ANIMATES[:n_animates], "objects": OBJECTS[:n_objects], "places": PLACES[:n_places],
            "adjectives": ADJECTIVES[:n_adjectives]}


def english_lexicon(inventory: dict[str, list[str]]) -> Lexicon:
    nouns = {w: w for key in ("animates", "objects", "places") for w in inventory[key]}
    verbs = {base: base for group in VERB_CLASSES.values() for base, _, _ in group}
    return Lexicon(nouns=nouns, verbs=verbs, adjectives={a: a for a in inventory["adjectives"]},
                   relations={r: r for r in RELATIONS},
                   function={"who": "who", "whom": "whom", "where": "where", "q": "?"})


def generated_lexicon(inventory: dict[str, list[str]], variant: int, rng: random.Random) -> Lexicon:
    """A lexicon of fresh words: unique within the language, never equal to a shared name."""
    consonants, vowels = _INVENTORIES[variant % len(_INVENTORIES)]
    taken = {n.lower() for n in NAMES}

    def word(min_syl: int, max_syl: int) -> str:
        while True:
            w = "".join(rng.choice(consonants) + rng.choice(vowels)
                        for _ in range(rng.randint(min_syl, max_syl)))
            if rng.random() < 0.3:
                w += rng.choice(consonants)
            if w not in taken:
                taken.add(w)
                return w

    def forms(keys: list[str], lo: int, hi: int) -> dict[str, str]:
        return {k: word(lo, hi) for k in keys}

    nouns = forms([w for key in ("animates", "objects", "places") for w in inventory[key]], 2, 3)
    verbs = forms([base for group in VERB_CLASSES.values() for base, _, _ in group], 2, 3)
    function = forms(["who", "whom", "where", "q"], 1, 2)
    # Affixes are short and attach to a word without a space.
    function.update({k: word(1, 1) for k in ("agent", "patient", "past", "present")})
    return Lexicon(nouns=nouns, verbs=verbs, adjectives=forms(inventory["adjectives"], 1, 3),
                   relations=forms(RELATIONS, 1, 2), function=function)
