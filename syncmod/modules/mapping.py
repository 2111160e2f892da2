"""Mapped transfer: move a module to another base through linear maps fitted on parallel unlabelled text.

`syncmod transfer --module M --base B --lang xa --parallel P --out M_B` runs the module's source base (its card's
`base_path`) on one side of the parallel text and base B on the other, collects both bases' states at the
aligned points (crossing-free cuts where the corpus annotates them, else sentence ends; every token when both
sides are one language), and fits a scaled orthogonal Procrustes map h_source ≈ s·Q·h_B at every place of the
residual stream the module reads or writes (latent space translation, Maiorca et al. 2023). The module is then
conjugated with those maps — no task labels, no training:

- `adapter` (after a block, attention or MLP; reads the RMS-normalised state, writes at the state's scale):
  down ← down·Q, up ← Qᵀ·up (and its bias), Q the map of the residual stream there (after the attention for
  `attn`, after the block for `block` and `ffn`): exact when B is a rotated copy of the source base;
- `lora` on a linear layer W (input map s_in·Q_in, output map s_out·Q_out): A ← s_in·A·Q_in, B ← Q_outᵀ·B / s_out,
  still a LoRA of the same rank;
- the linear head (reads the normalised state at its layer): W ← W·Q.

A LoRA's maps on the residual stream are fitted where the stream is: a q/k/v/gate/up input on that input (the
normalised stream), an o/down output on the stream it writes into (the state after the attention, the block's
output) — not on the projection's own output, which can span fewer directions than the stream (a trained o_proj
reached 43 of 64) and leaves the map free exactly where the LoRA writes. The spaces inside a block (attention
heads: q/k/v outputs, o input; MLP neurons: gate/up outputs, down input) do not rotate with the stream, and no
rotation there commutes with RoPE, the heads' softmax or the gate·up product: `inside: fitted` (default) still
fits Procrustes there (the better approximation in 6 of the 9 recipe-study conditions); `inside: identity`
keeps their coordinates (assumes the bases share them, as bases from one initialisation start). Both are exact
on a rotated copy.

The result is an ordinary module directory for base B whose card says `claim: mapped` and records each map's
fit and where it was fitted. Sparse diffs are refused (a conjugated diff is dense).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from syncmod.config import at_least
from syncmod.errors import InputError

log = logging.getLogger(__name__)
MAPPED = ("adapter", "lora")
LORA_KEY = re.compile(r"layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")
READS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
"""Projections that read the (normalised) residual stream: their input is mapped, their output is inside the block."""
WRITES = ("o_proj", "down_proj")
"""Projections that write into the residual stream: their output is mapped, their input is inside the block."""
INSIDE = "inside the block"
REACHED = 1e-5
"""A direction the paired states reach: its singular value of the cross-covariance is above this x the largest."""


@dataclass
class TransferConfig:
    """Move a module to another base through maps fitted on parallel text (no labels, no training)."""

    module: str = "runs/modules/module"
    """The module directory (`syncmod finetune` output): its card names the source base and language."""
    base: str = "runs/pretrain/sync/export"
    """The target bases: a syncmod export directory or a Hugging Face model directory."""
    lang: str = "xa"
    """Target language: its base in an export, and its side of the parallel text."""
    parallel: str = "runs/world/parallel/valid.jsonl"
    """Parallel text with both languages (any format `syncmod data prepare` reads); word cuts are used if given."""
    out: str = "runs/modules/mapped"
    """Output module directory."""
    source_base: str | None = None
    """The module's base (default: `base_path` in its card)."""
    units: int = 1000
    """Parallel units the maps are fitted on."""
    batch_size: int = 32
    """Units per forward."""
    inside: Literal["fitted", "identity"] = "fitted"
    """A LoRA's spaces inside a block (q/k/v/gate/up outputs, o/down inputs), which do not rotate with the stream:
    `fitted` fits Procrustes there too (an approximation: no rotation commutes with RoPE, the heads' softmax or the
    gate·up product; measured the better one on most synced bases), `identity` keeps their coordinates (assumes
    the bases share them, as bases from one initialisation start). Both are exact on a rotated copy."""

    def __post_init__(self) -> None:
        at_least(self, 1, "units", "batch_size")


# -- fitting ------------------------------------------------------------------------------------------------
def procrustes(xs: torch.Tensor, xt: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Scaled orthogonal Procrustes: (s, Q) minimising ||s·xt·Qᵀ − xs|| over orthogonal Q and s > 0
    (rows are paired points; h_source ≈ s·Q·h_target)."""
    xs, xt = xs.double(), xt.double()
    u, sig, vh = torch.linalg.svd(xs.T @ xt)
    rank = int((sig > sig[0] * REACHED).sum()) if sig[0] > 0 else 0
    q = u[:, :rank] @ vh[:rank]
    if rank < len(sig):
        # directions the states never reach (e.g. an up projection's output spans at most the hidden size):
        # there any rotation fits, and a module may still write there; take the one closest to the identity
        uc, vc = u[:, rank:], vh[rank:].T
        a, _, bh = torch.linalg.svd(uc.T @ vc)
        q = q + uc @ a @ bh @ vc.T
    s = float(sig.sum() / xt.pow(2).sum().clamp_min(1e-12))
    return s, q


@dataclass(frozen=True)
class Site:
    """A place whose states are paired: what to hook, and where in the base that is (the card's `fitted_on`)."""

    module: nn.Module
    side: Literal["in", "out", "mid"]
    """The module's input, its output, or (`mid`, `module` an attention) the residual stream after it: the
    block's input plus the attention's output."""
    where: str
    block: nn.Module | None = None
    """The block whose input `mid` adds."""


def _sites(card: dict, model: nn.Module) -> dict[str, Site]:
    """Where the module reads and writes: site name -> Site."""
    from syncmod.pretrain.architectures import block_part
    from syncmod.pretrain.model import decoder_layers

    blocks = decoder_layers(model)
    sites = {}
    if card.get("head") and card["head"].get("kind") == "linear" and card.get("head_layer"):
        sites["head"] = Site(blocks[card["head_layer"] - 1], "out", "block output")
    if card["type"] == "adapter":
        for layer in card["layer_map"]["blocks"]:
            block = blocks[layer - 1]
            for pos in card["layer_map"].get("positions", ["block"]):
                # an adapter reads and writes the stream: after the attention, or after the block (block, ffn)
                sites[f"{layer}_{pos}"] = (Site(block_part(model, block, "attn"), "mid", "after attention", block)
                                           if pos == "attn" else Site(block, "out", "block output"))
    elif card["type"] == "lora":
        for layer in card["layer_map"]["blocks"]:
            sites.update(_lora_sites(model, blocks[layer - 1], layer, card["module"]["targets"]))
    return sites


def _lora_sites(model: nn.Module, block: nn.Module, layer: int, targets: list[str]) -> dict[str, Site]:
    """Each targeted linear's input and output: the stream it reads or writes into, or a space inside the block."""
    from syncmod.pretrain.architectures import block_part, is_linear, layout, projections

    aliases, wanted = layout(model).aliases, projections(model, targets)  # what the LoRA wraps (GPT-2's c_attn ...)
    attn = block_part(model, block, "attn")
    sites = {}
    for name, mod in block.named_modules():
        if not (is_linear(mod) and any(name == w or name.endswith("." + w) for w in wanted)):
            continue
        role = next((r for r in READS + WRITES if name.split(".")[-1] == r or name in aliases.get(r, ())), None)
        if role is None:
            raise InputError.at("module.targets", f"mapped transfer does not know whether {name!r} reads or writes "
                                "the residual stream", f"map a LoRA on {', '.join(READS + WRITES)}")
        key = f"{layer - 1}.{name}"
        if role in READS:
            sites[f"{key}:in"] = Site(mod, "in", "input (normalised stream)")
            sites[f"{key}:out"] = Site(mod, "out", INSIDE)
        else:
            sites[f"{key}:in"] = Site(mod, "in", INSIDE)
            in_attn = any(m is mod for m in attn.modules())
            sites[f"{key}:out"] = (Site(attn, "mid", "after attention", block) if in_attn
                                   else Site(block, "out", "block output"))
    return sites


@contextlib.contextmanager
def _record(sites: dict[str, Site]) -> Iterator[dict[str, torch.Tensor]]:
    seen: dict[str, torch.Tensor] = {}
    block_in: dict[str, torch.Tensor] = {}
    handles = []

    def first(x):
        return x[0] if isinstance(x, tuple) else x

    for key, site in sites.items():
        def hook(_m, inputs, output, key=key, side=site.side):
            x = first(inputs[0] if side == "in" else output).detach()
            seen[key] = x + block_in.pop(key) if side == "mid" else x

        def pre(_m, args, kwargs, key=key):
            block_in[key] = first(args[0] if args else kwargs["hidden_states"]).detach()

        if site.side == "mid":
            handles.append(site.block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(site.module.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _encode(tok, lang: str, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from syncmod.data.task_inputs import pad
    from syncmod.data.tokenizer import lang_tag

    tag = tok.convert_tokens_to_ids(lang_tag(lang))
    rows = [[tag, *tok(t, add_special_tokens=False)["input_ids"], tok.eos_token_id] for t in texts]
    return pad(rows, tok.pad_token_id)


def _points(tok_s, tok_t, src: str, tgt: str, examples) -> list[list[tuple[int, int]]]:
    """Per unit: (position in the source sequence, position in the target sequence) of each aligned point."""
    from syncmod.data.shard_build import word_ends_to_tokens

    out = []
    for ex in examples:
        if src == tgt:
            n = len(tok_s(ex.texts[src], add_special_tokens=False)["input_ids"])
            out.append([(i, i) for i in range(1, n + 1)])
            continue
        cuts = ex.cuts(src, tgt)
        offs = [t(ex.texts[lang], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
                for t, lang in ((tok_s, src), (tok_t, tgt))]
        pa = word_ends_to_tokens(ex.texts[src], offs[0], [a for a, _ in cuts])
        pb = word_ends_to_tokens(ex.texts[tgt], offs[1], [b for _, b in cuts])
        out.append(list(zip(pa, pb, strict=True)))
    return out


@torch.no_grad()
def collect(source, target, card: dict, examples, src: str, tgt: str, batch_size: int
            ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Paired states (source rows, target rows) at every site of the module, over the aligned points."""
    (ms, tok_s), (mt, tok_t) = source, target
    sites_s, sites_t = _sites(card, ms), _sites(card, mt)
    pts = _points(tok_s, tok_t, src, tgt, examples)
    acc: dict[str, tuple[list, list]] = {k: ([], []) for k in sites_s}
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        rows = [(r, a, b) for r, unit in enumerate(pts[start:start + batch_size]) for a, b in unit]
        r = torch.tensor([x[0] for x in rows])
        states = []
        for model, tok, lang, sites, col in ((ms, tok_s, src, sites_s, 1), (mt, tok_t, tgt, sites_t, 2)):
            ids, mask = _encode(tok, lang, [ex.texts[lang] for ex in chunk])
            with _record(sites) as seen:
                model(input_ids=ids, attention_mask=mask, use_cache=False)
            pos = torch.tensor([x[col] for x in rows])
            states.append({k: v[r, pos].float() for k, v in seen.items()})
        for k in acc:
            acc[k][0].append(states[0][k])
            acc[k][1].append(states[1][k])
    return {k: (torch.cat(a), torch.cat(b)) for k, (a, b) in acc.items()}


def fit_maps(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], where: dict[str, str] | None = None,
             inside: str = "fitted") -> tuple[dict, dict]:
    """Per site: (s, Q), and how well it fits (mean cosine of mapped target states to source states), where it
    was fitted and how many directions the states reach there (the rest: the rotation closest to the identity).
    Sites `where` says are inside a block keep their coordinates (s = 1, Q = I) when `inside` is `identity`."""
    maps, fit = {}, {}
    for key, (xs, xt) in pairs.items():
        site = (where or {}).get(key, "")
        keep = site == INSIDE and inside == "identity"
        s, q = (1.0, torch.eye(xs.shape[1], dtype=torch.float64)) if keep else procrustes(xs, xt)
        mapped = s * xt.double() @ q.T
        cos = torch.nn.functional.cosine_similarity(mapped, xs.double(), dim=-1).mean()
        before = torch.nn.functional.cosine_similarity(xt.double(), xs.double(), dim=-1).mean()
        sig = torch.linalg.svdvals(xs.double().T @ xt.double())
        maps[key] = (s, q)
        fit[key] = {"map": "identity (kept)" if keep else "procrustes", "fitted_on": site,
                    "scale": round(s, 6), "cos_mapped": round(float(cos), 4), "cos_unmapped": round(float(before), 4),
                    "points": len(xs), "dims": xs.shape[1], "reached": int((sig > sig[0] * REACHED).sum())}
    return maps, fit


# -- conjugating --------------------------------------------------------------------------------------------
def conjugate(card: dict, tensors: dict[str, torch.Tensor], maps: dict) -> dict[str, torch.Tensor]:
    """The module's tensors for the target base (see the module docstring)."""
    out = {}
    for key, t in tensors.items():
        t64 = t.double()
        if key.startswith("head."):
            _, q = maps["head"]
            out[key] = (t64 @ q if key.endswith("weight") else t64).to(t.dtype)
        elif card["type"] == "adapter":
            site, part = re.match(r"module\.(\d+_\w+?)\.(down|up)\.", key).groups()
            _, q = maps[site]
            if part == "down":
                out[key] = (t64 @ q if key.endswith("weight") else t64).to(t.dtype)
            else:
                out[key] = (q.T @ t64).to(t.dtype)  # weight (d, w) and bias (d,)
        else:
            m = LORA_KEY.search(key)
            if m is None:
                raise InputError.at(key, "a LoRA tensor this code does not know how to map", "re-train the module")
            site = f"{m.group(1)}.{m.group(2)}"
            if m.group(3) == "A":
                s, q = maps[f"{site}:in"]
                out[key] = (s * t64 @ q).to(t.dtype)
            else:
                s, q = maps[f"{site}:out"]
                out[key] = (q.T @ t64 / s).to(t.dtype)
    return out


def map_module(cfg: TransferConfig) -> dict:
    """Fit the maps, conjugate the module, write it for the target base; returns its card."""
    from syncmod.modules.base import ModuleConfig
    from syncmod.modules.bases import fingerprint, load_base, open_bases
    from syncmod.modules.files import read_card, read_weights, save_module
    from syncmod.modules.heads import HeadConfig
    from syncmod.modules.runtime import TaskModel

    card = read_card(cfg.module)
    if card["type"] not in MAPPED:
        raise InputError.at(cfg.module, f"mapped transfer handles {' and '.join(MAPPED)} modules, not {card['type']!r}",
                            "map an adapter or a LoRA module (a conjugated sparse diff is dense)")
    if not (cfg.source_base or card.get("base_path")):
        raise InputError.at(cfg.module, "the card does not name its base", "give --source_base")
    sources, targets = open_bases(cfg.source_base or card["base_path"]), open_bases(cfg.base)
    examples = _units(cfg, card["lang"])
    source, target = load_base(sources.path(card["lang"])), load_base(targets.path(cfg.lang))
    where = {k: site.where for k, site in _sites(card, source[0]).items()}
    maps, fit = fit_maps(collect(source, target, card, examples, card["lang"], cfg.lang, cfg.batch_size), where,
                         cfg.inside)
    tensors = conjugate(card, read_weights(cfg.module, card), maps)
    base_fingerprint = fingerprint(target[0])  # before attaching: PEFT puts the module's weights inside
    model = TaskModel(target[0], target[1], ModuleConfig(**card["module"]), HeadConfig(**(card.get("head") or {})),
                      card.get("kind", "classify"), card.get("labels"), card.get("sync_layers") or targets.sync_layers)
    model.load(tensors)
    new = {**{k: v for k, v in card.items() if k not in ("tensors", "weights_sha256", "tracking_run_id")},
           "base": base_fingerprint, "base_path": str(targets.path(cfg.lang)),
           "claim": "mapped: trained once on another base, moved here by linear maps fitted on parallel unlabelled "
                    "text (no labels, no training)",
           "mapped": {"from_base": card["base"], "from_base_path": str(sources.path(card["lang"])),
                      "from_lang": card["lang"], "to_lang": cfg.lang, "parallel": str(cfg.parallel),
                      "units": len(examples), "inside": cfg.inside, "sites": fit}}
    save_module(Path(cfg.out), new, model.state(), getattr(model.module_type, "save_peft", None))
    model.module_type.detach()
    return new


def _units(cfg: TransferConfig, src: str) -> list:
    """The first `units` parallel units holding both languages."""
    from syncmod.data.lines import Problems
    from syncmod.data.parallel import read_parallel

    problems, examples = Problems(), []
    for ex in read_parallel(cfg.parallel, problems):
        if src in ex.texts and cfg.lang in ex.texts:
            examples.append(ex)
        if len(examples) == cfg.units:
            break
    problems.raise_if_any()
    if not examples:
        raise InputError.at(cfg.parallel, f"no parallel units with both {src!r} and {cfg.lang!r}",
                            "give parallel text that holds both languages")
    return examples


def run(config: TransferConfig) -> int:
    """Move a module to another base by maps fitted on parallel unlabelled text (mapped transfer)."""
    from syncmod.io import claim_output

    with claim_output(config.out, "module"):
        card = map_module(config)
    fits = card["mapped"]["sites"]
    worst = min(fits.items(), key=lambda kv: kv[1]["cos_mapped"])
    print(f"mapped {config.module} ({card['mapped']['from_lang']}) onto {config.base} ({config.lang}): "
          f"{len(fits)} maps on {card['mapped']['units']} units; worst fit {worst[0]} cos {worst[1]['cos_mapped']:.3f} "
          f"(unmapped {worst[1]['cos_unmapped']:.3f}) -> {config.out}")
    return 0
