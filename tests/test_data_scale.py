"""Data preparation at scale: worker processes give the same bytes, damaged shards are refused when opened,
and Ctrl-C leaves nothing behind."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from syncmod.data.shard_build import CHUNK, build_shards, word_ends_to_tokens
from syncmod.data.shards import Shards
from syncmod.data.tokenizer import load_tokenizer
from syncmod.errors import InputError


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def big_corpora(world, tmp_path_factory):
    """More than one chunk of N-way annotated units, a pairwise corpus whose sides end in whitespace now and
    then (the offsets path), and the world's monolingual text."""
    tmp = tmp_path_factory.mktemp("big")
    rows = [json.loads(x) for x in (world / "parallel/train.jsonl").read_text().splitlines()]
    nway = tmp / "nway.jsonl"
    nway.write_text("".join(json.dumps(r) + "\n" for _ in range(CHUNK // len(rows) + 2) for r in rows))
    pairs = tmp / "en-xa.jsonl"
    tricky = ["trailing ", "two  spaces", "tab\tin", "Grüße aus Köln ", "emoji 🎉", "new\nline\n"]
    pairs.write_text("".join(json.dumps({"en": r["en"] + random.Random(i).choice(["", " "] + tricky),
                                         "xa": r["xa"] + tricky[i % len(tricky)]}) + "\n"
                             for i, r in enumerate(rows * 8)))
    return [str(nway), str(pairs)], sorted(str(p) for p in (world / "mono").glob("train.*.txt"))


def test_worker_processes_give_the_bytes_of_one_process_and_of_the_fast_tokenizer(big_corpora, tokenizer_dir, tmp_path):
    parallel, mono = big_corpora
    tok = load_tokenizer(tokenizer_dir)
    one = build_shards(tok, tmp_path / "one", parallel=parallel, mono=mono, workers=1)
    two = build_shards(tok, tmp_path / "two", parallel=parallel, mono=mono, workers=2)
    assert _files(one) == _files(two)
    # Without the SentencePiece model the fast tokenizer encodes everything (ids and offsets): same bytes again.
    fast_only = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, fast_only)
    (fast_only / "tokenizer.model").unlink()
    ref = build_shards(load_tokenizer(fast_only), tmp_path / "ref", parallel=parallel, mono=mono, workers=2)
    assert _files(ref) == _files(one)
    meta = json.loads((one / "meta.json").read_text())
    groups = meta["parallel"]["groups"]
    assert [g["languages"] for g in groups] == [["en", "xa", "xb", "xc"], ["en", "xa"]]
    assert [g["prefix"] for g in groups] == ["par", "par1"] and groups[1]["units"] == 8 * 600
    sh = Shards.open(one)
    assert sh.pair_graph == [("en", "xa"), ("en", "xb"), ("en", "xc"), ("xa", "xb"), ("xa", "xc"), ("xb", "xc")]
    # Sentence ends computed independently (fast tokenizer offsets for every unit) match the stored cuts.
    rows = [json.loads(x) for x in open(parallel[1], encoding="utf-8")]
    cuts, index, _ = sh.cuts("en", "xa", "par1")
    assert index.tolist() == list(range(len(rows) + 1))
    for k in range(0, len(rows), 7):
        want = [_end(tok, rows[k][lang]) for lang in ("en", "xa")]
        assert cuts[k].tolist() == want, rows[k]


def _end(tok, text):
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return word_ends_to_tokens(text, offsets, [len(text.split())])[0]


@pytest.mark.parametrize("name,delta", [("par.en.tokens", -2), ("par.en~xa.cuts", 8), ("mono.xb.bytes", -8),
                                        ("par.xa.index", -8)])
def test_shard_file_whose_size_disagrees_with_its_index_is_refused_at_open(shards_dir, tmp_path, name, delta):
    damaged = tmp_path / "sh"
    shutil.copytree(shards_dir, damaged)
    path = damaged / name
    data = path.read_bytes()
    path.write_bytes(data[:delta] if delta < 0 else data + bytes(delta))
    with pytest.raises(InputError) as e:
        Shards.open(damaged)
    assert len(e.value.problems) == 1 and str(path) in str(e.value) and "\n" not in str(e.value)
    assert "build them again" in str(e.value)


def test_ctrl_c_during_prepare_leaves_nothing_and_says_one_line(tmp_path):
    """SIGINT to the process group (what Ctrl-C in a terminal sends) while the shards are being built."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    corpus = tmp_path / "in" / "en-xa.jsonl"
    corpus.parent.mkdir()
    with open(corpus, "w") as f:
        for _ in range(150_000):
            f.write(json.dumps({"en": " ".join(rng.choices(words, k=12)), "xa": " ".join(rng.choices(words, k=12))}) + "\n")
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "syncmod.cli", "data", "prepare", "--parallel", str(corpus),
                             "--out", str(out / "root"), "--vocab-size", "600"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.time() + 300
    while not (out.exists() and any(out.iterdir())) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the temporary output directory appears once validation is done and work starts
    time.sleep(1.5)
    assert proc.poll() is None, "prepare finished before it could be interrupted: make the corpus larger"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, 2), err
    assert "Traceback" not in err and "interrupted" in err.strip().splitlines()[-1]
    assert sum("interrupted" in line for line in err.splitlines()) == 1
    assert (not out.exists() or list(out.iterdir()) == []) and list(scratch.iterdir()) == []
