"""Module algebra: merge methods on hand-made tensors, LoRA/sparse deltas, agreement with PEFT's
`add_weighted_adapter`, and `syncmod merge` end to end on tiny modules (merged, loaded, evaluated, refused)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from conftest import ROOT, syncmod
from conftest import random_export as write_random_export
from syncmod.algebra.deltas import LoRADeltas, SparseDeltas
from syncmod.algebra.merge import MERGE_METHODS, MergeParams, drop_and_rescale, get_method, trim

# three hand-made task vectors (TIES paper, fig. 2 in miniature)
D1 = torch.tensor([3.0, -1.0, 0.5, 2.0, -4.0])
D2 = torch.tensor([-2.0, -3.0, 1.0, -0.5, -1.5])
D3 = torch.tensor([1.0, 4.0, -0.2, 0.5, 2.5])


def test_ties_trims_elects_sign_and_takes_the_disjoint_mean():
    # trim to density 0.6 (top 3 of 5 by magnitude)
    assert torch.equal(trim(D1, 0.6), torch.tensor([3.0, 0, 0, 2.0, -4.0]))
    assert torch.equal(trim(D2, 0.6), torch.tensor([-2.0, -3.0, 0, 0, -1.5]))
    assert torch.equal(trim(D3, 0.6), torch.tensor([1.0, 4.0, 0, 0, 2.5]))
    # elected signs from the trimmed sum [2, 1, 0, 2, -3]: + + + + -
    # entry 0: 3 and 1 agree, -2 does not -> 2; entry 1: only 4 -> 4; entry 2: nothing left -> 0;
    # entry 3: only 2 -> 2; entry 4: -4 and -1.5 agree, 2.5 does not -> -2.75
    merged = get_method("ties").merge([D1, D2, D3], [1, 1, 1], MergeParams(density=0.6))
    assert torch.allclose(merged, torch.tensor([2.0, 4.0, 0.0, 2.0, -2.75]))
    # lambda scales the result; weights enter the mean
    assert torch.allclose(get_method("ties").merge([D1, D2, D3], [1, 1, 1], MergeParams(0.6, lam=0.5)),
                          torch.tensor([1.0, 2.0, 0.0, 1.0, -1.375]))
    weighted = get_method("ties").merge([D1, D2, D3], [3, 1, 1], MergeParams(density=0.6))
    assert torch.allclose(weighted, torch.tensor([(9 + 1) / 4, 4.0, 0.0, 2.0, (-12 - 1.5) / 4]))


def test_linear_and_task_arithmetic_and_negation():
    assert torch.allclose(get_method("linear").merge([D1, D2], [1, 3], MergeParams()), (D1 + 3 * D2) / 4)
    ta = get_method("task-arithmetic").merge([D1, D2], [1, -1], MergeParams(lam=0.5))
    assert torch.allclose(ta, 0.5 * (D1 - D2))
    # a negated input votes with its sign flipped in the election
    neg = get_method("ties").merge([D1, D2], [1, -1], MergeParams())
    assert torch.allclose(neg, torch.tensor([2.5, 3.0, -1.0, 1.25, -4.0]))


def test_dare_keeps_the_expectation():
    delta = torch.linspace(-2, 3, 40)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([drop_and_rescale(delta, 0.3, gen) for _ in range(4000)])
    assert torch.allclose(draws.mean(0), delta, atol=0.15)
    kept = (draws != 0).float().mean()
    assert abs(kept.item() - 0.3) < 0.01
    assert torch.allclose(draws[draws != 0].abs(), (delta.expand_as(draws)[draws != 0] / 0.3).abs())
    # dare-linear over many seeds, two inputs: the mean is the task-arithmetic sum
    method = get_method("dare-linear")
    runs = torch.stack([method.merge([D1, D2], [1, 1], MergeParams(0.5), torch.Generator().manual_seed(s))
                        for s in range(4000)])
    assert torch.allclose(runs.mean(0), D1 + D2, atol=0.2)
    # seeded: the same seed, the same merge
    a = method.merge([D1, D2], [1, 1], MergeParams(0.5), torch.Generator().manual_seed(3))
    b = method.merge([D1, D2], [1, 1], MergeParams(0.5), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_methods_are_registered_and_mismatched_shapes_raise():
    assert set(MERGE_METHODS) == {"linear", "task-arithmetic", "ties", "dare-linear", "dare-ties"}
    with pytest.raises(ValueError, match="different shapes"):
        get_method("linear").merge([D1, torch.zeros(4)], [1, 1], MergeParams())
    with pytest.raises(ValueError, match="density"):
        get_method("ties").merge([D1], [1], MergeParams(density=0.0))


def _lora_state(out: int, inp: int, rank: int, seed: int, prefix: str = "m.q_proj") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"{prefix}.lora_A.weight": torch.randn(rank, inp, generator=g),
            f"{prefix}.lora_B.weight": torch.randn(out, rank, generator=g)}


def test_lora_merge_by_svd_equals_the_dense_merge_at_full_rank():
    cfg = {"rank": 4, "alpha": 8.0}
    h = LoRADeltas()
    d1, d2 = (h.deltas(_lora_state(16, 12, 4, s), cfg, None) for s in (1, 2))
    dense = 2.0 * d1["m.q_proj"] - 0.5 * d2["m.q_proj"]  # scale alpha/rank = 2 is inside the deltas
    merged = {"m.q_proj": get_method("task-arithmetic").merge([d1["m.q_proj"], d2["m.q_proj"]], [2.0, -0.5],
                                                              MergeParams())}
    for rank in (12, 8, 20):  # full rank, the rank of the sum (4 + 4), above full rank (zero-padded)
        state, module = h.state(merged, cfg, rank)
        assert module["rank"] == rank and module["alpha"] == rank and state["m.q_proj.lora_A.weight"].shape == (rank, 12)
        again = h.deltas(state, module, None)["m.q_proj"]
        assert torch.allclose(again, dense, atol=1e-4)
    state, module = h.state(merged, cfg, 3)  # truncated: the best rank-3 approximation (Eckart-Young)
    s = torch.linalg.svdvals(dense)
    err = torch.linalg.matrix_norm(h.deltas(state, module, None)["m.q_proj"] - dense)
    assert err == pytest.approx(s[3:].pow(2).sum().sqrt().item(), rel=1e-3)


def test_sparse_deltas_round_trip_on_the_union_of_supports():
    h = SparseDeltas()
    shape = lambda name: torch.Size([4, 5])  # noqa: E731
    a = {"1.q.index": torch.tensor([0, 7]), "1.q.values": torch.tensor([1.0, 2.0])}
    b = {"1.q.index": torch.tensor([7, 19]), "1.q.values": torch.tensor([3.0, -1.0])}
    da, db = h.deltas(a, {}, shape), h.deltas(b, {}, shape)
    assert da["1.q"].shape == (4, 5) and da["1.q"][1, 2] == 2.0
    merged = {"1.q": get_method("task-arithmetic").merge([da["1.q"], db["1.q"]], [1, 1], MergeParams())}
    state, module = h.state(merged, {"density": 0.1}, None)
    assert state["1.q.index"].tolist() == [0, 7, 19] and state["1.q.values"].tolist() == [1.0, 5.0, -1.0]
    assert module["density"] == pytest.approx(3 / 20)


# -- PEFT's add_weighted_adapter on the same LoRA inputs ----------------------------------------------------------
def _peft_two_adapters():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora, adapter_name="a")
    model.add_adapter("b", lora)
    for name, p in model.named_parameters():  # PEFT's "no init" still starts B at small values: make both real
        if "lora_" in name:
            p.data = torch.randn_like(p) * 0.3
    target = model.base_model.model.model.layers[0].self_attn.q_proj
    return model, target


def _ours(model, target, method: str, density: float, seed: int = 0) -> torch.Tensor:
    from peft import get_peft_model_state_dict

    h = LoRADeltas()
    deltas = [next(iter(h.deltas(get_peft_model_state_dict(model, adapter_name=n), {"rank": 4, "alpha": 8}, None)
                        .values())) for n in ("a", "b")]
    assert torch.allclose(deltas[0], target.get_delta_weight("a"), atol=1e-6)
    merged = get_method(method).merge(deltas, [1.0, 1.0], MergeParams(density), torch.Generator().manual_seed(seed))
    state, module = h.state({"q": merged}, {"rank": 4, "alpha": 8}, 32)  # full rank: the SVD loses nothing
    return h.deltas(state, module, None)["q"]


@pytest.mark.parametrize(("peft_type", "ours"), [("svd", "task-arithmetic"), ("ties_svd", "ties")])
def test_peft_svd_combinations_agree_with_ours(peft_type, ours):
    """PEFT's `*_svd` combinations merge the dense ΔW = scale·B·A and re-factor by SVD, as syncmod does; with
    unit weights PEFT's sign election (unweighted) and disjoint mean (by count) equal ours (weighted)."""
    model, target = _peft_two_adapters()
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "m", combination_type=peft_type, svd_rank=32, density=0.5)
    assert torch.allclose(_ours(model, target, ours, 0.5), target.get_delta_weight("m"), atol=1e-4)


@pytest.mark.parametrize(("peft_fn", "ours"), [("dare_linear", "dare-linear"), ("dare_ties", "dare-ties")])
def test_peft_dare_agrees_with_ours_mask_for_mask(peft_fn, ours):
    """`add_weighted_adapter(..., "dare_*_svd")` applies PEFT's `merge_utils.dare_*` to the ΔW of each adapter;
    it draws its masks from the global generator after initialising the new adapter (random draws of their
    own), so the same masks are reached by calling that function on the same ΔW with the same seed."""
    from peft.utils import merge_utils

    model, target = _peft_two_adapters()
    deltas = [target.get_delta_weight(n) for n in ("a", "b")]
    torch.manual_seed(5)
    theirs = getattr(merge_utils, peft_fn)(deltas, torch.tensor([1.0, 1.0]), 0.5)
    assert torch.allclose(_ours(model, target, ours, 0.5, seed=5), theirs, atol=1e-4)


@pytest.mark.parametrize(("peft_type", "ours"), [("ties", "ties"), ("dare_linear", "dare-linear"),
                                                 ("linear", "task-arithmetic")])
def test_peft_factorwise_combinations_differ_from_a_merge_of_deltas(peft_type, ours):
    """PEFT's non-svd `ties`/`dare_linear`/`linear` merge the A factors and the B factors separately (weights
    split as √w on each side), so the merged product B_m·A_m carries cross terms B_a·A_b and trims/drops factor
    entries, not entries of ΔW. syncmod merges ΔW itself; the two are different merges on the same inputs."""
    model, target = _peft_two_adapters()
    torch.manual_seed(5)
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "m", combination_type=peft_type, density=0.5)
    theirs = target.get_delta_weight("m")
    a, b = target.lora_A, target.lora_B
    factorwise = 2.0 * (b["a"].weight + b["b"].weight) @ (a["a"].weight + a["b"].weight)  # √2 on each side
    if peft_type == "linear":
        assert torch.allclose(theirs, factorwise, atol=1e-5)  # PEFT's linear is exactly the factor-wise sum
    assert not torch.allclose(_ours(model, target, ours, 0.5, seed=5), theirs, atol=1e-2)


# -- `syncmod merge` end to end -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_export(tokenizer_dir, tmp_path_factory):
    """Two tiny per-language bases of one architecture (random weights, other seeds): a syncmod export."""
    return write_random_export(tmp_path_factory.mktemp("merge-bases") / "export", tokenizer_dir)


def _train_module(export, task, lang: str, kind: str, seed: int, out) -> None:
    """A module trained for a few steps in-process and saved with the card `syncmod finetune` writes (the
    finetune command itself runs once, for rosa, in `trained`)."""
    from syncmod.config import to_dict
    from syncmod.modules.base import ModuleConfig, ModuleType
    from syncmod.modules.bases import fingerprint, load_base
    from syncmod.modules.files import save_module
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import build

    base, tok = load_base(export / lang)
    fp = fingerprint(base)
    torch.manual_seed(seed)
    module, head = ModuleConfig(type=kind, density=0.05), HeadConfig()
    model = build(base, tok, module, head, task, [1], max_len=64)
    rows = task.split("train", lang)
    batches = [rows[i:i + 16] for i in range(0, 96, 16)]
    if type(model.module_type).prepare is not ModuleType.prepare:
        model.module_type.prepare(model.model, lambda: (model.loss(b) for b in batches[:2]))
    optimizer = torch.optim.AdamW(model.trainable(), lr=1e-2)
    for batch in batches:
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    card = {"name": f"test-{kind}-{lang}", "type": kind, "module": to_dict(module), "head": to_dict(head),
            "task": task.name, "kind": task.kind, "labels": task.labels, "lang": lang,
            "layer_map": model.module_type.layer_map(), "sync_layers": [1], "head_layer": model.head_layer,
            "base": fp, "base_path": str(export / lang),
            "claim": "trained once on one base; plug into any base of the same shape"}
    save_module(out, card, model.state(), getattr(model.module_type, "save_peft", None))


@pytest.fixture(scope="module")
def trained(random_export, world, tmp_path_factory):
    """Event-class modules: LoRA in en (two seeds) and xa; adapter, sparse in en; RoSA through `syncmod finetune`."""
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task

    problems = Problems()
    task = load_task(world / "tasks/event-class", problems)
    problems.raise_if_any()
    root = tmp_path_factory.mktemp("merge-mods")
    out = {}
    for name, kind, lang, seed in [("lora-en", "lora", "en", 0), ("lora-en-2", "lora", "en", 1),
                                   ("lora-xa", "lora", "xa", 0), ("adapter-en", "adapter", "en", 0),
                                   ("sparse-en", "sparse", "en", 0)]:
        out[name] = root / name
        _train_module(random_export, task, lang, kind, seed, out[name])
    out["rosa-en"] = root / "rosa-en"
    syncmod("finetune", f"--base={random_export}", f"--task={world / 'tasks/event-class'}", "--lang=en",
            f"--out={out['rosa-en']}", "--module.type=rosa", "--module.density=0.05", "--train.steps=6",
            "--train.eval_every=3", "--train.batch_size=16", "--train.dev_examples=20", "--tracking.enabled=false",
            cwd=ROOT, check=True)
    return out


def _config(path, modules: list[tuple], **keys) -> str:
    import yaml

    cfg = {"modules": [{"module": str(m), "weight": w} for m, w in modules], **keys}
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _logits(module_dir, base_dir, text: str = "The dog saw Maria.") -> tuple[torch.Tensor, torch.Tensor]:
    """(LM logits, head logits) of a module on one base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syncmod.data.tasks import TaskExample
    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.files import read_card, read_weights
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import TaskModel

    card = read_card(module_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = TaskModel(AutoModelForCausalLM.from_pretrained(base_dir).eval(), tok, ModuleConfig(**card["module"]),
                      HeadConfig(**card["head"]), card["kind"], card["labels"], card["sync_layers"])
    model.load(read_weights(module_dir, card))
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model.model(input_ids=ids).logits, model._head_logits([TaskExample("x", "en", text, card["labels"][0])])


def test_merge_end_to_end_and_eval(trained, random_export, world, tmp_path):
    cfg = _config(tmp_path / "ties.yaml", [(trained["lora-en"], 1.0), (trained["lora-en-2"], 1.0)], method="ties",
                  density=0.5, base=str(random_export), lang="en", out=str(tmp_path / "merged"))
    proc = syncmod("merge", cfg, cwd=ROOT, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["method"] == "ties"
    card = json.loads((tmp_path / "merged/card.json").read_text())
    assert card["type"] == "lora" and card["module"]["rank"] == 8 and card["cross_base"] is False
    recipe = card["recipe"]
    assert recipe["method"] == "ties" and recipe["density"] == 0.5 and len(recipe["inputs"]) == 2
    assert recipe["inputs"][0]["card_sha256"] == hashlib.sha256((trained["lora-en"] / "card.json").read_bytes()).hexdigest()
    assert "merged by ties from 2 modules" in card["claim"] and "plug into any base" in recipe["inputs"][0]["claim"]
    assert (tmp_path / "merged/peft/adapter_model.safetensors").exists()
    out = tmp_path / "eval"
    syncmod("eval", "--base", str(random_export), "--module", str(tmp_path / "merged"), "--task",
            str(world / "tasks/event-class"), "--langs", "en,xa", "--out", str(out), "--no-tracking", cwd=ROOT,
            check=True)
    res = json.loads((out / "results.json").read_text())
    assert res["modules"][0]["scores"]["en"]["n"] == 60 and res["modules"][0]["claim"] == card["claim"]
    # the card names the clean en base (not the base with the module inside): on en it is no transfer
    assert res["modules"][0]["scores"]["en"]["transfer"] is False and res["modules"][0]["scores"]["xa"]["transfer"]


def test_a_single_module_merged_linearly_is_itself_and_minus_itself_is_the_base(trained, random_export, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora = trained["lora-en"]
    syncmod("merge", _config(tmp_path / "one.yaml", [(lora, 1.0)], method="linear", base=str(random_export),
                             out=str(tmp_path / "one")), cwd=ROOT, check=True)
    (lm, head), (lm1, head1) = _logits(lora, random_export / "en"), _logits(tmp_path / "one", random_export / "en")
    assert torch.allclose(lm, lm1, atol=1e-4) and torch.allclose(head, head1, atol=1e-5)
    syncmod("merge", _config(tmp_path / "neg.yaml", [(lora, 1.0), (lora, -1.0)], method="task-arithmetic",
                             base=str(random_export), out=str(tmp_path / "zero")), cwd=ROOT, check=True)
    ids = AutoTokenizer.from_pretrained(random_export / "en")("The dog saw Maria.", return_tensors="pt").input_ids
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(random_export / "en")(input_ids=ids).logits
    assert torch.allclose(_logits(tmp_path / "zero", random_export / "en")[0], plain, atol=1e-5)
    assert not torch.allclose(lm, plain, atol=1e-4)  # the module itself does change the base


@pytest.mark.parametrize("kind", ["rosa", "sparse", "adapter"])
def test_a_module_averaged_with_itself_is_itself(kind, trained, random_export, tmp_path):
    """Every type's delta goes there and back exactly (RoSA: both parts; sparse: the support kept)."""
    d = trained[f"{kind}-en"]
    syncmod("merge", _config(tmp_path / "m.yaml", [(d, 0.5), (d, 0.5)], method="linear", base=str(random_export),
                             out=str(tmp_path / "m")), cwd=ROOT, check=True)
    (lm, head), (lm1, head1) = _logits(d, random_export / "en"), _logits(tmp_path / "m", random_export / "en")
    assert torch.allclose(lm, lm1, atol=1e-4) and torch.allclose(head, head1, atol=1e-5)
    assert json.loads((tmp_path / "m/card.json").read_text())["type"] == kind


def test_cross_base_merge_says_so(trained, random_export, tmp_path):
    syncmod("merge", _config(tmp_path / "x.yaml", [(trained["lora-en"], 1.0), (trained["lora-xa"], 1.0)],
                             method="dare-ties", density=0.5, seed=3, rank=4, base=str(random_export), lang="en",
                             out=str(tmp_path / "x")), cwd=ROOT, check=True)
    card = json.loads((tmp_path / "x/card.json").read_text())
    assert card["cross_base"] is True and "cross-base merge" in card["claim"] and card["lang"] == "en+xa"
    assert card["module"]["rank"] == 4


def _edited(src, dst, edit) -> str:
    shutil.copytree(src, dst)
    card = json.loads((dst / "card.json").read_text())
    edit(card)
    (dst / "card.json").write_text(json.dumps(card))
    return str(dst)


@pytest.mark.parametrize("case", ["type", "labels", "architecture", "placement", "method", "out"])
def test_what_cannot_be_merged_is_refused_in_one_line(case, trained, random_export, tmp_path):
    def arch(c):
        c["base"]["architecture"]["hidden_size"] = 48

    other, keys = trained["lora-en-2"], {"method": "linear"}
    if case == "type":
        other = trained["adapter-en"]
    elif case == "labels":
        other = _edited(other, tmp_path / "m", lambda c: c.update(labels=[*c["labels"], "extra"]))
    elif case == "architecture":
        other = _edited(other, tmp_path / "m", arch)
    elif case == "placement":
        other = _edited(other, tmp_path / "m", lambda c: c["module"].update(targets=["q_proj"]))
    elif case == "method":
        keys["method"] = "slerp"
    out = tmp_path / "out"
    if case == "out":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    proc = syncmod("merge", _config(tmp_path / "c.yaml", [(trained["lora-en"], 1.0), (other, 1.0)],
                                    base=str(random_export), out=str(out), **keys), cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    expected = {"type": "module type differs", "labels": "task's labels differ", "architecture": "base architecture",
                "placement": "module config differs", "method": "unknown merge method",
                "out": "holds files and is not a previous module output"}
    assert expected[case] in proc.stderr
    assert (not out.exists()) if case != "out" else [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left either


def test_a_multi_task_merge_keeps_the_named_inputs_head_and_task(trained, random_export, world, tmp_path):
    """head_from: the bodies of modules of two tasks (other label sets) merged, one module per task, each with
    its own head; without head_from the label sets are refused."""
    from syncmod.data.lines import Problems
    from syncmod.data.tasks import load_task
    from syncmod.modules.files import read_card, read_weights

    second = load_task(world / "tasks/agent-kind", Problems())
    ak = tmp_path / "ak-adapter-en"
    _train_module(random_export, second, "en", "adapter", 0, ak)
    ec = trained["adapter-en"]
    for head, task in ((ak, "agent-kind"), (ec, "event-class")):
        out = tmp_path / f"mt-{task}"
        syncmod("merge", _config(tmp_path / f"{task}.yaml", [(ec, 1.0), (ak, 1.0)], method="linear",
                                 head_from=str(head), base=str(random_export), lang="en", out=str(out)),
                cwd=ROOT, check=True)
        card, want = read_card(out), read_card(head)
        assert card["task"] == task and card["labels"] == want["labels"] and card["recipe"]["head_from"] == str(head)
        got, a, b = read_weights(out, card), read_weights(ec, read_card(ec)), read_weights(ak, read_card(ak))
        for k, v in got.items():
            if k.startswith("head."):
                assert torch.equal(v, read_weights(head, want)[k])
            else:
                assert torch.allclose(v, (a[k] + b[k]) / 2, atol=1e-6)  # the bodies' mean
    proc = syncmod("merge", _config(tmp_path / "no.yaml", [(ec, 1.0), (ak, 1.0)], method="linear",
                                    base=str(random_export), out=str(tmp_path / "no")), cwd=ROOT)
    assert proc.returncode == 2 and "task's labels differ" in proc.stderr and not (tmp_path / "no").exists()
    proc = syncmod("merge", _config(tmp_path / "bad.yaml", [(ec, 1.0)], head_from=str(ak), base=str(random_export),
                                    out=str(tmp_path / "bad")), cwd=ROOT)
    assert proc.returncode == 2 and "is not one of the inputs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
