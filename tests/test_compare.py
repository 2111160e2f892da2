"""`syncmod compare`: two evaluations of the same test items, item by item, chance-corrected first."""

import json
import subprocess
import sys

import numpy as np
import pytest

from syncmod.errors import InputError
from syncmod.study.compare import CompareArgs, compare_command, load

LANGS = ["en", "xa"]


def _results(path, src_items, native_items, n=200):
    """A `syncmod eval` results.json of two modules (en, xa) with per-item scores."""
    def cell(items):
        items = [float(x) for x in items]
        return {"items": items, "score": float(np.mean(items)), "n": len(items)}
    mods = [{"lang": "en", "scores": {lang: cell(src_items[lang]) for lang in LANGS}},
            {"lang": "xa", "scores": {"xa": cell(native_items)}}]
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({"task": "t", "split": "test", "kind": "classify", "langs": LANGS,
                                                   "chance": {x: 0.25 for x in LANGS}, "modules": mods}))
    return path


def _draw(seed, p, n=200):
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_an_evaluation_against_itself_differs_by_zero_and_a_better_one_wins(tmp_path, capsys):
    a = _results(tmp_path / "a", {"en": _draw(0, 0.7), "xa": _draw(1, 0.6)}, _draw(2, 0.7))
    assert compare_command(CompareArgs(str(a), str(a))) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and "A − B" not in r]
    assert rows[0].startswith("| retained, chance-corrected")  # chance-corrected figures lead
    assert all("+0.000 [+0.000, +0.000]" in r for r in rows)
    better = _results(tmp_path / "b", {"en": np.ones(200), "xa": np.ones(200)}, _draw(2, 0.7))
    compare_command(CompareArgs(str(better), str(a / "results.json")))
    out = capsys.readouterr().out
    source = next(r for r in out.splitlines() if r.startswith("| source, chance-corrected"))
    diff, lo = source.split("|")[4].split()[0], source.split("[")[1].split(",")[0]
    assert float(diff) > 0 and float(lo) > 0  # the paired interval excludes 0
    # (1 - 0.25) / (1 - 0.25) = 1 for a perfect source
    assert source.split("|")[2].strip() == "1.000"


def test_evaluations_of_different_items_are_refused_in_one_line(tmp_path):
    a = _results(tmp_path / "a", {"en": _draw(0, 0.7), "xa": _draw(1, 0.6)}, _draw(2, 0.7))
    short = _results(tmp_path / "b", {"en": _draw(0, 0.7, 150), "xa": _draw(1, 0.6, 150)}, _draw(2, 0.7, 150))
    proc = subprocess.run([sys.executable, "-m", "syncmod.cli", "compare", str(a), str(short)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "items per language" in lines[0] and "--max-items" in lines[0]
    (tmp_path / "junk.json").write_text("{not json")
    for bad, what in [(tmp_path / "nothing", "no results.json"), (tmp_path / "junk.json", "not a syncmod evaluation")]:
        with pytest.raises(InputError, match=what):
            load(str(bad), "en")
    with pytest.raises(InputError, match="no module trained in 'xb'"):
        load(str(a), "xb")
