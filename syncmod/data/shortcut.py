"""A bias model and the Think-Twice shortcut split (Mikula et al., EACL 2024).

The bias model is a shallow classifier: multinomial naive Bayes over the words of an input, restricted to the
`features` it may read (a known shortcut, e.g. marker words) or over every word (a weak model for unknown
biases). `shortcut_split` divides test items into those the bias model solves (it reads a feature and predicts
the right label) and the rest; a module that learned the task scores the same on both, one that rides the
shortcut scores high on the first and low on the second — the report gives both and the gap.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from syncmod.data.tasks import TaskExample


def words(text: str) -> list[str]:
    return [w.strip(".,?!;:").lower() for w in text.split() if w.strip(".,?!;:")]


class BiasModel:
    """Naive Bayes p(label | feature words of the input), Laplace-smoothed, fitted on labelled rows."""

    def __init__(self, rows: list[TaskExample], labels: list[str], features: list[str] | None = None,
                 smoothing: float = 1.0):
        self.labels = labels
        self.features = {f.lower() for f in features} if features else None
        counts = {c: Counter() for c in labels}
        prior = Counter(r.target for r in rows)
        for r in rows:
            counts[r.target].update(self.read(r.text))
        vocab = set().union(*counts.values())
        self.vocab = {w: i for i, w in enumerate(sorted(vocab))}
        self.log_prior = np.log(np.array([prior[c] + smoothing for c in labels]) / (len(rows) + smoothing * len(labels)))
        table = np.array([[counts[c][w] + smoothing for w in self.vocab] for c in labels]).reshape(len(labels), -1)
        self.log_lik = np.log(table / table.sum(1, keepdims=True)) if table.size else table

    def read(self, text: str) -> list[str]:
        """The words this model sees in a text (only its features, when it has them)."""
        ws = words(text)
        return ws if self.features is None else [w for w in ws if w in self.features]

    def log_probs(self, rows: list[TaskExample]) -> np.ndarray:
        """(items, labels) log-posteriors."""
        out = np.tile(self.log_prior, (len(rows), 1))
        for i, r in enumerate(rows):
            for w in self.read(r.text):
                if w in self.vocab:
                    out[i] += self.log_lik[:, self.vocab[w]]
        return out - np.logaddexp.reduce(out, axis=1, keepdims=True)

    def solves(self, row: TaskExample) -> bool:
        """The model reads at least one feature it knows and predicts the item's label."""
        if not any(w in self.vocab for w in self.read(row.text)):
            return False
        return self.labels[int(self.log_probs([row])[0].argmax())] == row.target


def shortcut_split(rows: list[TaskExample], bias: BiasModel) -> dict[str, list[str]]:
    """Item ids the bias model solves (`shortcut`) and the rest (`no_shortcut`)."""
    split: dict[str, list[str]] = {"shortcut": [], "no_shortcut": []}
    for r in rows:
        split["shortcut" if bias.solves(r) else "no_shortcut"].append(r.id)
    return split

