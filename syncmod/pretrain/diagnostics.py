"""Held-out diagnostics during pre-training.

- bits per byte per language on held-out monolingual text (comparable across tokenizers and languages);
- mean cosine between translations' states at the sync points, at the sync layers;
- bitext retrieval top-1 per layer: for each held-out unit in language a, is its nearest neighbour among
  all units in language b (cosine of sentence-end states) its own translation? Averaged over both
  directions and all pairs. Chance is 1 / number of units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from syncmod.data.loader import ParallelStream
from syncmod.data.shards import Shards
from syncmod.data.task_inputs import pad
from syncmod.pretrain.objectives.losses import shifted_nll
from syncmod.pretrain.sync_points import pair_states, select


@torch.no_grad()
def bits_per_byte(forward, shards: Shards, langs: list[str], seq_len: int, max_docs: int,
                  batch_size: int = 16) -> dict[str, float]:
    """Σ NLL (bits) of every token after the language tag, over Σ UTF-8 bytes (+1 per document for </s>).

    Whole documents are scored, in windows of `seq_len + 1` tokens (a long document's later windows start
    without the earlier context, which slightly overstates its NLL, never understates it).
    """
    out = {}
    for lang in langs:
        tokens, index = shards.sequences("mono", lang)
        n_docs = min(max_docs, len(index) - 1)
        byte_count = float(shards.doc_bytes(lang)[:n_docs].sum()) + n_docs
        windows = []
        for i in range(n_docs):
            doc = np.asarray(tokens[index[i]:index[i + 1]], np.int64)
            windows += [doc[s:s + seq_len + 1] for s in range(0, max(1, len(doc) - 1), seq_len)]
        nll = 0.0
        for start in range(0, len(windows), batch_size):
            chunk = windows[start:start + batch_size]
            ids, mask = pad([d.tolist() for d in chunk], 0)
            logits, _ = forward(lang, ids, mask, [])
            losses = shifted_nll(logits, ids)
            nll += float((losses * mask[:, 1:]).sum())
        out[lang] = nll / math.log(2) / byte_count
    return out


@torch.no_grad()
def alignment(forward, shards: Shards, langs: list[str], num_layers: int, sync_layers: list[int], kind: str,
              units: int, max_len: int, pad_id: int, prefix: str = "par") -> dict[str, float]:
    """Retrieval top-1 per layer (sentence-end states) and mean cosine at the sync points of the sync layers
    (on the parallel corpus group `prefix`: "par" is the first, "par1" ... e.g. further pairwise corpora)."""
    n = min(units, len(shards.sequences(prefix, langs[0])[1]) - 1)
    stream = ParallelStream(shards, langs, seed=0, max_len=max_len, pad_id=pad_id, prefix=prefix)
    batch = stream.batch(np.arange(n))  # held-out units in file order
    all_layers = list(range(num_layers + 1))
    states = {lang: forward(lang, batch.ids[lang], batch.mask[lang], all_layers)[1] for lang in langs}
    pairs = [(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]
    out: dict[str, float] = {}
    for layer in all_layers:
        accs = []
        for a, b in pairs:
            c = select(batch, a, b, "eos")
            za = F.normalize(states[a][layer][c[:, 0], c[:, 1]].float(), dim=-1)
            zb = F.normalize(states[b][layer][c[:, 0], c[:, 2]].float(), dim=-1)
            sim = za @ zb.T
            target = torch.arange(len(za))
            accs += [sim.argmax(1).eq(target).float().mean().item(), sim.argmax(0).eq(target).float().mean().item()]
        out[f"retrieval/top1_layer{layer}"] = float(np.mean(accs))
    cos = []
    for layer in sync_layers:
        for a, b in pairs:
            sa = {a: states[a][layer], b: states[b][layer]}
            za, zb = pair_states(batch, sa, a, b, "eos" if kind == "token" else kind)
            cos.append(F.cosine_similarity(za.float(), zb.float(), dim=-1).mean().item())
    out["align/mean_cos"] = float(np.mean(cos))
    out["retrieval/chance"] = 1.0 / n
    return out


def alignment_by_group(forward, shards: Shards, langs: list[str], num_layers: int, sync_layers: list[int],
                       kind: str, units: int, max_len: int, pad_id: int) -> dict[str, float]:
    """`alignment` on the held-out parallel data of a run: one N-way group as before (when it holds every run
    language); several groups (e.g. pairwise en-xx corpora) each on the run languages it holds, with each
    group's metrics under `.../en-xb` and their mean under the plain names."""
    groups = [(g, [lang for lang in langs if lang in g["languages"]]) for g in shards.groups]
    if len(groups) == 1 and len(groups[0][1]) < len(langs):
        return {}
    groups = [(g, have) for g, have in groups if len(have) >= 2]
    results = [alignment(forward, shards, have, num_layers, sync_layers, kind, units, max_len, pad_id, g["prefix"])
               for g, have in groups]
    if len(results) <= 1:
        return results[0] if results else {}
    out = {f"{k}/{'-'.join(have)}": v for (_, have), r in zip(groups, results, strict=True) for k, v in r.items()}
    out.update({k: float(np.mean([r[k] for r in results])) for k in results[0]})
    return out
