"""Pairwise parallel corpora drive synchronous steps: the pair graph is read from the data, a step covers
the pairs by the schedule's rule, every pair is synced, streams resume exactly and split across ranks."""

import json
from functools import partial

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY_PRETRAIN, pretrain_killed_at, syncmod
from syncmod.data.loader import MixedBatch, ParallelBatch, ParallelMix
from syncmod.data.shards import Shards
from syncmod.data.tokenizer import load_tokenizer
from syncmod.pretrain.diagnostics import alignment
from syncmod.pretrain.model import Bases, ModelConfig
from syncmod.pretrain.objectives import OBJECTIVES, StepContext
from syncmod.pretrain.objectives.sync import SyncConfig
from syncmod.pretrain.schedule import pair_rows

PAIRS = ["xa", "xb", "xc"]


def _split(src, out_dir, split, langs_per_file):
    """The world's N-way file as pairwise / smaller N-way files (keys: language codes only)."""
    rows = [json.loads(x) for x in src.read_text().splitlines()]
    paths = []
    for langs in langs_per_file:
        path = out_dir / f"{split}.{'-'.join(langs)}.jsonl"
        path.write_text("".join(json.dumps({"id": r["id"], **{k: r[k] for k in langs}}) + "\n" for r in rows))
        paths.append(str(path))
    return paths


def _prepare(world, out_dir, langs_per_file):
    out_dir.mkdir(parents=True, exist_ok=True)
    train = _split(world / "parallel/train.jsonl", out_dir, "train", langs_per_file)
    valid = _split(world / "parallel/valid.jsonl", out_dir, "valid", langs_per_file)
    mono = sorted(str(p) for p in (world / "mono").glob("train.*.txt"))
    vmono = sorted(str(p) for p in (world / "mono").glob("valid.*.txt"))
    root = out_dir / "root"
    syncmod("data", "prepare", "--parallel", *train, "--valid-parallel", *valid, "--mono", *mono,
            "--valid-mono", *vmono, "--vocab-size", "600", "--out", str(root), check=True)
    return root


@pytest.fixture(scope="module")
def pair_root(world, tmp_path_factory):
    """Three en-xx corpora, no N-way unit."""
    return _prepare(world, tmp_path_factory.mktemp("pairs"), [["en", x] for x in PAIRS])


def test_pair_graph_is_read_from_the_data(pair_root):
    for split in ("train", "valid"):
        sh = Shards.open(pair_root / split)
        assert [g["languages"] for g in sh.groups] == [["en", x] for x in PAIRS]
        assert sh.pair_graph == [("en", x) for x in PAIRS]
    assert [g["units"] for g in Shards.open(pair_root / "train").groups] == [600] * 3


def _mix(sh, rank=0, world_size=1, rule="all", seed=5):
    rows = partial(pair_rows, rule, 1.0, seed=seed)
    return ParallelMix(sh, ["en", *PAIRS], seed, 64, sh.meta["pad_id"], rank, world_size, rows)


def test_every_pair_each_step_or_sampled_and_streams_resume_exactly(pair_root):
    sh = Shards.open(pair_root / "train")
    batch = _mix(sh).next(8)
    assert isinstance(batch, MixedBatch) and batch.pairs == [("en", x) for x in PAIRS]
    assert all(p.ids["en"].shape[0] == 8 for p in batch.parts)
    sampled = _mix(sh, rule="sample")
    seen = set()
    for _ in range(20):
        b = sampled.next(8)
        parts = b.parts if isinstance(b, MixedBatch) else [b]
        assert sum(p.ids["en"].shape[0] for p in parts) == 8
        seen.update(tuple(p.ids) for p in parts)
    assert seen == {("en", x) for x in PAIRS}
    a = _mix(sh, rule="sample")
    for _ in range(7):
        a.next(8)
    state = json.loads(json.dumps(a.state_dict()))
    expected = [a.next(8) for _ in range(300)]  # crosses epoch boundaries of every corpus
    b = _mix(sh, rule="sample")
    b.load_state_dict(state)
    for x in expected:
        _same(x, b.next(8))


def _same(x, y):
    xs, ys = (v.parts if isinstance(v, MixedBatch) else [v] for v in (x, y))
    assert len(xs) == len(ys)
    for p, q in zip(xs, ys, strict=True):
        assert p.ids.keys() == q.ids.keys() and all(torch.equal(p.ids[k], q.ids[k]) for k in p.ids)
        assert all(torch.equal(p.cuts[k], q.cuts[k]) for k in p.cuts)


def test_two_ranks_take_the_rows_of_one_rank(pair_root):
    sh = Shards.open(pair_root / "train")
    whole = _mix(sh, rule="sample")  # the draw does not depend on the world size
    ranks = [_mix(sh, r, 2, "sample") for r in range(2)]
    uneven = 0
    for _ in range(10):
        full, halves = whole.next(8), [m.next(8) for m in ranks]
        fulls = full.parts if isinstance(full, MixedBatch) else [full]
        halves = [h.parts if isinstance(h, MixedBatch) else [h] for h in halves]
        assert all(len(h) == len(fulls) for h in halves)  # the same groups on every rank
        for g, part in enumerate(fulls):
            for lang in part.ids:
                assert sorted(_rows(part, lang)) == sorted(_rows(halves[0][g], lang) + _rows(halves[1][g], lang))
            uneven += part.ids["en"].shape[0] % 2
    assert uneven  # odd group sizes happened: a rank's share is then uneven (or empty), not rounded away


def _rows(part, lang):
    return [tuple(ids[m].tolist()) for ids, m in zip(part.ids[lang], part.mask[lang], strict=True)]


def _train(root, langs, steps, seed=0):
    """A few hundred synchronous steps of tiny per-language bases (the sync objective, no engine)."""
    sh = Shards.open(root / "train")
    torch.set_num_threads(1)  # tiny matrices: one thread is as fast, and spins no CPU away on a shared machine
    torch.manual_seed(seed)
    model = Bases(ModelConfig(preset="tiny", max_seq_len=64), langs, sh.meta["vocab_size"], sh.meta["pad_id"], 1,
                  sh.meta["eos_id"], seed)
    mix = ParallelMix(sh, langs, seed, 63, sh.meta["pad_id"])
    objective = OBJECTIVES["sync"](SyncConfig(layers=[1], lam=4.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        ctx = StepContext(forward=model, sync_layers=[1], lam=4.0, special={"pad": sh.meta["pad_id"]})
        loss = objective.loss(mix.next(16), ctx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _retrieval(model, root, layer=1):
    """Held-out sentence-end retrieval top-1 at the synced layer, per language pair."""
    sh = Shards.open(root / "valid")

    def forward(lang, ids, mask, layers):
        return model(lang, ids, mask, layers)

    out = {}
    for g in sh.groups:
        with torch.no_grad():
            r = alignment(forward, sh, g["languages"], 2, [layer], "eos", 100, 63, sh.meta["pad_id"], g["prefix"])
        out[tuple(g["languages"])] = (r[f"retrieval/top1_layer{layer}"], r["retrieval/chance"])
    return out


@pytest.mark.slow
def test_pairwise_only_run_syncs_every_pair(pair_root):
    trained = _retrieval(_train(pair_root, ["en", *PAIRS], steps=150), pair_root)
    untrained = _retrieval(_train(pair_root, ["en", *PAIRS], steps=0), pair_root)
    for pair, (top1, chance) in trained.items():
        assert top1 > 20 * chance and top1 > untrained[pair][0] + 0.2, (pair, top1, untrained[pair])


@pytest.mark.slow
def test_mixed_nway_and_pairwise_corpora(world, tmp_path):
    root = _prepare(world, tmp_path, [["en", "xa", "xb"], ["en", "xc"]])
    sh = Shards.open(root / "train")
    assert sh.pair_graph == [("en", "xa"), ("en", "xb"), ("en", "xc"), ("xa", "xb")]
    batch = ParallelMix(sh, ["en", "xa", "xb", "xc"], 0, 63, sh.meta["pad_id"]).next(4)
    assert isinstance(batch, MixedBatch) and batch.pairs == [("en", "xa"), ("en", "xb"), ("xa", "xb"), ("en", "xc")]
    # A run on a subset takes from each group the languages it has: xc's corpus alone connects nothing here.
    sub = ParallelMix(sh, ["en", "xa"], 0, 63, sh.meta["pad_id"]).next(4)
    assert isinstance(sub, ParallelBatch) and list(sub.ids) == ["en", "xa"]
    for pair, (top1, chance) in _retrieval(_train(root, ["en", "xa", "xb", "xc"], steps=120), root).items():
        assert top1 > 10 * chance, (pair, top1)
    assert np.isfinite(top1)


def test_pairwise_corpora_in_every_format_make_one_pair_graph(world, tmp_path):
    """JSONL with two language keys, TSV, a Moses pair, a saved Hugging Face dataset with a `translation` column."""
    import datasets

    rows = [json.loads(x) for x in (world / "parallel/train.jsonl").read_text().splitlines()][:200]
    (tmp_path / "en-xa.jsonl").write_text("".join(json.dumps({"en": r["en"], "xa": r["xa"]}) + "\n" for r in rows))
    (tmp_path / "en-xb.tsv").write_text("en\txb\n" + "".join(f"{r['en']}\t{r['xb']}\n" for r in rows))
    (tmp_path / "cat.en").write_text("".join(r["en"] + "\n" for r in rows))
    (tmp_path / "cat.xc").write_text("".join(r["xc"] + "\n" for r in rows))
    datasets.Dataset.from_dict({"translation": [{"xa": r["xa"], "xb": r["xb"]} for r in rows]}).save_to_disk(
        str(tmp_path / "xa-xb"))
    out = tmp_path / "root"
    syncmod("data", "prepare", "--parallel", *(str(tmp_path / n) for n in ("en-xa.jsonl", "en-xb.tsv", "cat.en", "xa-xb")),
            "--holdout", "20", "--vocab-size", "600", "--out", str(out), check=True)
    for split, units in (("train", 180), ("valid", 20)):
        sh = Shards.open(out / split)
        assert sh.pair_graph == [("en", "xa"), ("en", "xb"), ("en", "xc"), ("xa", "xb")]
        assert [g["units"] for g in sh.groups] == [units] * 4


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out):
    from safetensors.torch import load_file

    return {f"{b}/{k}": v for b in json.loads((out / "export/bases.json").read_text())["bases"]
            for k, v in load_file(out / "export" / b / "model.safetensors").items()}


@pytest.mark.slow
def test_pretrain_on_pairwise_corpora_syncs_every_pair_and_resumes_bitwise(pair_root, tmp_path):
    """`syncmod pretrain` on three en-xx corpora: retrieval per pair in the evaluation; SIGKILL + resume = straight."""
    args = [f"--data.root={pair_root}", *TINY_PRETRAIN, "--train.steps=120", "--train.batch_size=16",
            "--schedule.pattern=S", "--schedule.pairs=sample", "--train.lr=3e-3", "--sync.layers=[1]",
            "--checkpoint.every=40", "--checkpoint.keep=2", "--eval.every=0"]
    straight = tmp_path / "straight"
    syncmod("pretrain", "pretrain/sync.yaml", f"--out={straight}", *args, cwd=ROOT, check=True)
    final = [m for m in _metrics(straight) if m["kind"] == "eval"][-1]
    for x in PAIRS:
        assert final[f"retrieval/top1_layer1/en-{x}"] > 10 * final[f"retrieval/chance/en-{x}"], (x, final)
    killed = tmp_path / "killed"
    pretrain_killed_at(killed, args, 40, timeout=600)
    syncmod("pretrain", "pretrain/sync.yaml", f"--out={killed}", *args, cwd=ROOT, check=True)
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _one_rank_and_launched(pair_root, tmp_path, steps: int, ranks: int, *extra: str, env: dict | None = None):
    """The same sampled-pairs run by one plain rank and by `ranks` ranks under the DeepSpeed launcher (with
    `extra` options): their output directories."""
    import os
    import socket
    import subprocess
    import sys

    args = ["pretrain/sync.yaml", f"--data.root={pair_root}", *TINY_PRETRAIN, f"--train.steps={steps}",
            "--train.batch_size=8", "--schedule.pattern=SA", "--schedule.pairs=sample", "--eval.every=0",
            "--checkpoint.every=0"]
    one, many = tmp_path / "one", tmp_path / f"ranks{ranks}"
    syncmod("pretrain", *args, f"--out={one}", cwd=ROOT, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(ranks), "--master_port",
                str(port), "--module", "syncmod.pretrain", *args, *extra, f"--out={many}"]
    proc = subprocess.run(launcher, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DS_ACCELERATOR": "cpu", **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return one, many


@pytest.mark.slow
def test_language_parallel_on_pairwise_corpora_matches_one_colocated_rank(pair_root, tmp_path):
    """4 ranks, one base each, on three en-xx corpora with sampled pairs: a part of en-xa leaves the xb and xc
    ranks without a side, yet every rank takes part in its exchange; the same losses as one colocated rank."""
    one, four = _one_rank_and_launched(pair_root, tmp_path, 6, 4, "--model.placement=language-parallel",
                                       env={"OMP_NUM_THREADS": "1"})
    m1, m4 = ([m for m in _metrics(out) if m["kind"] != "eval"] for out in (one, four))
    assert len(m1) == len(m4) == 6
    for a, b in zip(m1, m4, strict=True):
        keys = [k for k in a if k.startswith(("clm/", "sync/loss"))]
        assert keys and set(keys) <= set(b), (a["step"], sorted(b))
        for k in keys:
            assert abs(a[k] - b[k]) <= 1e-4 * abs(a[k]), (a["step"], k, a[k], b[k])


@pytest.mark.parametrize("kind", ["eos", "cut", "mean", "token"])
def test_every_sync_point_kind_works_on_pairs(pair_root, kind):
    """One step of the sync objective on a pairwise batch: a finite loss whose gradient reaches every base."""
    sh = Shards.open(pair_root / "train")
    langs = ["en", *PAIRS]
    model = Bases(ModelConfig(preset="tiny", max_seq_len=64), langs, sh.meta["vocab_size"], sh.meta["pad_id"], 1,
                  sh.meta["eos_id"], 0)
    sync_id = load_tokenizer(pair_root / "tokenizer").convert_tokens_to_ids("<sync>")
    ctx = StepContext(forward=model, sync_layers=[1], lam=1.0, special={"pad": sh.meta["pad_id"], "sync": sync_id})
    loss = OBJECTIVES["sync"](SyncConfig(kind=kind, layers=[1])).loss(_mix(sh).next(4), ctx)
    loss.backward()
    assert torch.isfinite(loss) and 0 < float(ctx.metrics["sync/loss"]) < 10
    for lang in langs:
        grads = [p.grad for p in model.base(lang).parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), lang


@pytest.mark.slow
def test_two_ranks_under_the_launcher_match_one_rank_on_pairwise_corpora(pair_root, tmp_path):
    """`deepspeed --num_gpus 2` on three en-xx corpora with sampled pairs: the same losses as one rank."""
    one, two = _one_rank_and_launched(pair_root, tmp_path, 10, 2)
    assert json.loads((two / "config.json").read_text())["_resolved"]["world_size"] == 2
    m1, m2 = ([m for m in _metrics(out) if m["kind"] != "eval"] for out in (one, two))
    assert len(m1) == len(m2) == 10
    for a, b in zip(m1, m2, strict=True):
        keys = [k for k in a if k.startswith(("clm/", "sync/loss"))]
        assert keys and sorted(keys) == sorted(k for k in b if k.startswith(("clm/", "sync/loss")))
        for k in keys:
            assert abs(a[k] - b[k]) <= 1e-4 * abs(a[k]), (a["step"], k, a[k], b[k])
