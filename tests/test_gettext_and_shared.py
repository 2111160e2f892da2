import json
from pathlib import Path

import pytest

from conftest import ROOT, syncmod
from syncmod.data.lines import Problems
from syncmod.data.validate import validate

LOCALE = ROOT / "tests/fixtures/locale"


def test_gettext_import_reads_po_and_mo(tmp_path):
    out = tmp_path / "en-de.jsonl"
    syncmod("data", "import-gettext", str(LOCALE), "--lang", "de", "--out", str(out), check=True)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    pairs = {r["en"]: r["de"] for r in rows}
    # accelerators stripped, fuzzy / identical / letterless entries dropped, msgids de-duplicated across catalogs
    assert pairs == {"Open file": "Datei öffnen", "Save": "Speichern", "%s files": "%s Dateien", "Help": "Hilfe"}
    assert syncmod("data", "validate", str(out)).returncode == 0


def test_gettext_unknown_language_is_a_clear_error(tmp_path):
    proc = syncmod("data", "import-gettext", str(LOCALE), "--lang", "fr", "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "no .po/.mo catalogs for language 'fr'" in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()


SHARED = ["udhr/udhr.jsonl", "udhr/udhr_paragraphs.jsonl", "bible/bible.jsonl.gz",
          *(f"gettext/en-{x}.jsonl.gz" for x in ["de", "fr", "es", "cs", "ru", "it", "pl", "uk"])]


@pytest.mark.slow
@pytest.mark.parametrize("rel", SHARED)
def test_shared_corpora_load_and_validate(shared_data, rel):
    problems = Problems()
    summary = validate(shared_data / rel, problems)
    assert not problems, problems.items
    assert summary.kind == "parallel" and len(summary.units) >= 2


@pytest.mark.slow
def test_shared_corpora_tokenize(shared_data, tmp_path):
    tok = tmp_path / "tok"
    syncmod("data", "tokenizer", str(shared_data / "udhr/udhr.jsonl"), str(shared_data / "gettext/en-de.jsonl.gz"),
            "--out", str(tok), "--vocab-size", "8000", "--max-sentences", "50000", check=True)
    out = tmp_path / "sh"
    syncmod("data", "shards", "--tokenizer", str(tok), "--parallel", str(shared_data / "udhr/udhr.jsonl"),
            "--out", str(out), check=True)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["parallel"]["units"] == 31 and len(meta["parallel"]["languages"]) == 50
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(str(tok))
    from syncmod.data.parallel import read_parallel

    for rel in SHARED:  # every corpus round-trips (languages outside the training sample fall back to bytes)
        for k, ex in enumerate(read_parallel(shared_data / rel, Problems())):
            for lang, text in ex.texts.items():
                assert t.decode(t.encode(text, add_special_tokens=False)) == text, (rel, lang)
            if k == 20:
                break


def test_all_shared_files_are_covered(shared_data):
    found = {str(p.relative_to(shared_data)) for p in Path(shared_data).rglob("*.jsonl*")}
    assert found == set(SHARED)
