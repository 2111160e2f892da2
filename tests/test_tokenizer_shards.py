import json
import re

import numpy as np
import pytest
from transformers import AutoTokenizer

from conftest import syncmod
from syncmod.data.loader import MonoStream, ParallelStream
from syncmod.data.shards import Shards
from syncmod.data.tokenizer import train_tokenizer

TRICKY = [" leading space", "two  spaces", "tab\there", "new\nline", "Grüße aus Köln", "日本語のテキスト", "emoji 🎉",
          "trailing ", ""]


def _texts(world, lang):
    return [ln.rstrip("\n") for ln in open(world / f"mono/valid.{lang}.txt", encoding="utf-8")]


@pytest.mark.parametrize("kind,sp_model", [("sentencepiece", "bpe"), ("sentencepiece", "unigram"), ("bpe", "bpe")])
def test_round_trip_is_lossless_in_every_language(world, tmp_path, kind, sp_model):
    langs = ["en", "xa", "xb", "xc"]
    corpus = [t for lang in langs for t in _texts(world, lang)]
    out = train_tokenizer(corpus, langs, tmp_path / "tok", kind=kind, vocab_size=600, sp_model=sp_model)
    tok = AutoTokenizer.from_pretrained(str(out))  # plain transformers, no syncmod code
    for lang in langs:
        assert tok.convert_tokens_to_ids(f"<lang_{lang}>") != tok.unk_token_id
        for text in _texts(world, lang)[:200] + TRICKY:
            ids = tok.encode(text, add_special_tokens=False)
            assert tok.decode(ids) == text
    assert {"<sync>", "<sep>"} <= set(tok.all_special_tokens)


def test_cuts_map_to_the_last_subtoken_of_each_word(world, tokenizer_dir, shards_dir):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    sh = Shards.open(shards_dir)
    rows = [json.loads(x) for x in open(world / "parallel/train.jsonl")]
    stream = ParallelStream(sh, ["en", "xa"], seed=0, max_len=128, pad_id=sh.meta["pad_id"])
    batch = stream.next(32)
    units = np.random.default_rng([0, 0]).permutation(len(rows))[:32]
    for row, pa, pb in batch.cuts[("en", "xa")].tolist():
        unit = rows[units[row]]
        (a, b) = next((a, b) for a, b in unit["sync"]["en-xa"]
                      if _prefix(tok, batch.ids["en"][row], pa) == " ".join(unit["en"].split()[:a]))
        assert _prefix(tok, batch.ids["xa"][row], pb) == " ".join(unit["xa"].split()[:b])


def _prefix(tok, ids, pos):
    return tok.decode(ids[1:pos + 1].tolist()).strip()


def test_stream_position_restores_exactly_and_ranks_partition(shards_dir):
    sh = Shards.open(shards_dir)
    a = MonoStream(sh, "en", 16, seed=3)
    for _ in range(5):
        a.next(8)
    state = a.state_dict()
    expected = [a.next(8) for _ in range(40)]  # crosses an epoch boundary
    b = MonoStream(sh, "en", 16, seed=3)
    b.load_state_dict(json.loads(json.dumps(state)))
    assert all((x == b.next(8)).all() for x in expected)
    whole = MonoStream(sh, "en", 16, seed=3).next(8)
    parts = [MonoStream(sh, "en", 16, seed=3, rank=r, world_size=2).next(8) for r in range(2)]
    assert sorted(map(tuple, whole.tolist())) == sorted(map(tuple, np.concatenate(parts).tolist()))


def test_shard_counts_match_corpus(world, shards_dir):
    meta = json.loads((shards_dir / "meta.json").read_text())
    assert meta["parallel"]["units"] == 600 and meta["parallel"]["annotated"]
    assert meta["mono"]["en"]["docs"] == 600
    assert meta["dtype"] == "uint16"
    sh = Shards.open(shards_dir)
    texts = [ln.rstrip("\n") for ln in open(world / "mono/train.en.txt", encoding="utf-8")]
    assert sh.doc_bytes("en").tolist() == [len(t.encode()) for t in texts]  # exact bytes for bits per byte


def test_inspect_shows_counts_and_sync_points(world):
    out = syncmod("data", "inspect", str(world / "parallel/valid.jsonl"), check=True).stdout
    assert re.search(r"en:\s+100 units", out) and "sync points" in out and "‖" in out


def test_prepare_mixes_nway_corpora_with_pairwise_catalogs_as_monolingual_text(world, tmp_path):
    """An N-way corpus syncs; pairwise en-xx catalogs add monolingual text (each distinct text once); a small
    corpus gives at most a tenth of itself to the validation split."""
    rows = [json.loads(x) for x in (world / "parallel/train.jsonl").read_text().splitlines()[:30]]
    nway = tmp_path / "nway.jsonl"
    nway.write_text("".join(json.dumps({"id": r["id"], "en": r["en"], "xa": r["xa"], "xb": r["xb"]}) + "\n" for r in rows))
    pairs = tmp_path / "en-xa.jsonl"
    cat = [{"id": f"m{i}", "en": f"Open file {i % 5}", "xa": f"pakota {i % 5}"} for i in range(12)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in cat))
    out = tmp_path / "root"
    args = ["data", "prepare", "--parallel", str(nway), "--mono-parallel", str(pairs), "--languages", "en,xa,xb",
            "--holdout", "100", "--mono-from-parallel", "--out", str(out)]
    proc = syncmod(*args, "--vocab-size", "100")
    assert proc.returncode == 2 and "--vocab-size: 100 is smaller than the" in proc.stderr and not out.exists()
    syncmod(*args, "--vocab-size", "800", check=True)
    train = json.loads((out / "train/meta.json").read_text())
    valid = json.loads((out / "valid/meta.json").read_text())
    assert valid["parallel"]["units"] == 3 and train["parallel"]["units"] == 27  # holdout capped at 30 // 10
    assert train["mono"]["en"]["docs"] == 27 + 5 and train["mono"]["xb"]["docs"] == 27  # 5 distinct catalog texts
    bad = tmp_path / "de-fr.jsonl"
    bad.write_text(json.dumps({"id": "x", "de": "Datei", "fr": "Fichier"}) + "\n")
    proc = syncmod("data", "prepare", "--parallel", str(nway), "--mono-parallel", str(bad), "--languages", "en,xa",
                   "--out", str(tmp_path / "bad"))
    assert proc.returncode == 2 and "has none of the languages" in proc.stderr and not (tmp_path / "bad").exists()
