"""The study's per-language section: retrieval from each language's own pair group (or the N-way group that holds
it), ΔBPB per language at equal tokens against the reference, transfer and retained chance-corrected first."""

from __future__ import annotations

import json
from types import SimpleNamespace

from syncmod.study.per_language import markdown, per_language


def _metrics(path, evals):
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"step": i, "kind": "eval", **e}) + "\n" for i, e in enumerate(evals)))


def _results(scores, natives):
    src = {"lang": "en", "scores": {t: {"score": s} for t, s in scores.items()},
           "transfer_ratio_chance": {"de": 0.5, "es": 0.25}, "transfer_ratio": {"de": 0.6, "es": 0.4},
           "retained_chance": {"de": 0.4, "es": 0.2}, "retained": {"de": 0.5, "es": 0.3}}
    return {"sync_layers": [2], "modules": [src, *({"lang": t, "scores": {t: {"score": s}}} for t, s in natives.items())]}


def test_per_language_rows(tmp_path):
    cfg = SimpleNamespace(langs=["en", "de", "es"], source="en", reference="independent")
    lm = {"retrieval/top1_layer2/en-de": 0.8, "retrieval/chance/en-de": 0.005,
          "retrieval/top1_layer2/en-es-de": 0.1, "retrieval/top1_layer2/en-es": 0.6,
          "retrieval/top1_layer2/en-fr-es-it": 0.7, "retrieval/chance/en-fr-es-it": 0.005}
    _metrics(tmp_path / "pretrain/sync-s0/metrics.jsonl",
             [{"train/tokens": 100, "bpb/en": 3.0, "bpb/de": 3.5, "bpb/es": 3.2}])
    _metrics(tmp_path / "pretrain/independent-s0/metrics.jsonl",
             [{"train/tokens": 50, "bpb/en": 2.0, "bpb/de": 4.0, "bpb/es": 3.0},
              {"train/tokens": 150, "bpb/en": 1.0, "bpb/de": 3.0, "bpb/es": 3.0}])
    res = _results({"en": 0.8, "de": 0.5, "es": 0.4}, {"de": 0.7, "es": 0.6})
    cells = [{"condition": "sync", "seed": 0, "task": "t", "module": "adapter", "results": res, "lm": lm}]
    rows = {r["lang"]: r for r in per_language(cells, cfg, tmp_path)}
    assert rows["de"]["retrieval"] == 0.8 and rows["de"]["retrieval_group"] == "en-de"  # its own pair, not en-es-de
    assert rows["es"]["retrieval"] == 0.6 and rows["es"]["retrieval_group"] == "en-es"
    assert "retrieval" not in rows["en"] or rows["en"]["retrieval"] is None
    assert abs(rows["de"]["delta_bpb"] - 0.0) < 1e-9 and abs(rows["es"]["delta_bpb"] - 0.2) < 1e-9  # ref at 100 tokens
    assert abs(rows["en"]["delta_bpb"] - 1.5) < 1e-9
    assert rows["de"]["transfer_ratio_chance"] == 0.5 and rows["de"]["retained"] == 0.5 and rows["de"]["native"] == 0.7
    text = "\n".join(markdown(list(rows.values()), cfg))
    assert "| sync | adapter | de | 0.80 (en-de) / 0.005 | +0.0000 |" in text and "**0.50** / 0.60" in text
