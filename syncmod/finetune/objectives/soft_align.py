"""Soft-alignment objectives for generation (Štefánik, Kadlčík, Sojka, ACL 2023), with static token embeddings
taken from the base's input embedding matrix (frozen; the paper uses a separate static model).

token-align: at every answer position the cross-entropy target is not the reference token alone but a
  distribution over the model's top-k candidates (plus the reference), each weighted by the cosine similarity of
  its embedding to the reference token's (negative similarities count 0). With a one-hot similarity it is the
  usual cross-entropy.
seq-align: the model generates an answer itself (sampled, no teacher forcing); each generated token is scored by
  its best embedding alignment to the reference tokens, and the model is trained on its own output with that
  score as the weight of the token's log-likelihood.
SRand: seq-align with random scores (uniform in [0, 1]): what training on own output gives without the signal.

Both are added to the teacher-forced loss with a weight (`robust.objective_weight`), as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from syncmod.data.task_inputs import pad
from syncmod.data.tasks import TaskExample

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cosine_similarity(embeddings: torch.Tensor) -> Similarity:
    """sim(candidates, reference) from a (vocab, dim) embedding matrix: cos of the rows, clamped at 0."""
    unit = F.normalize(embeddings.detach().float(), dim=-1)

    def sim(cands: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        cands, ref = cands.to(unit.device), ref.to(unit.device)
        return (unit[cands] * unit[ref][..., None, :]).sum(-1).clamp_min(0.0)

    return sim


def token_align_targets(logits: torch.Tensor, ref: torch.Tensor, sim: Similarity, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(candidates (..., k+1), target weights (..., k+1) summing to 1): the reference first, then the model's
    top-k tokens (a top-k token equal to the reference gets weight 0: it is counted once, in the first slot)."""
    top = logits.detach().topk(k, dim=-1).indices
    cands = torch.cat([ref[..., None], top], dim=-1)
    w = sim(cands, ref)
    w[..., 1:] = w[..., 1:] * (top != ref[..., None])
    w[..., 0] = w[..., 0].clamp_min(1e-6)  # the reference always keeps some mass (a zero embedding has cos 0)
    return cands, w / w.sum(-1, keepdim=True)


def token_align_loss(logits: torch.Tensor, ids: torch.Tensor, loss_mask: torch.Tensor, sim: Similarity,
                     k: int = 8) -> torch.Tensor:
    """Per-sequence mean of -sum_c q(c) log p(c) over the positions `loss_mask` marks (next-token layout as
    `shifted_nll`: logits[:, t] predicts ids[:, t+1])."""
    logp = logits[:, :-1].float().log_softmax(-1)
    cands, q = token_align_targets(logp, ids[:, 1:], sim, k)
    nll = -(logp.gather(-1, cands) * q).sum(-1)
    m = loss_mask[:, 1:].to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1).clamp_min(1)


def with_answers(enc, examples: list[TaskExample], answers: list[list[int]]):
    """(ids, mask, loss mask) of prompts followed by given answer token rows (own generations)."""
    rows, loss_rows = [], []
    for e, answer in zip(examples, answers, strict=True):
        prompt = enc.prompt(e, enc.max_len - len(answer))
        rows.append(prompt + answer)
        loss_rows.append([0] * len(prompt) + [1] * len(answer))
    ids, mask = pad(rows, enc.pad_id)
    return ids, mask, pad(loss_rows, 0)[0].bool()


@torch.no_grad()
def own_answers(model, examples: list[TaskExample], max_new_tokens: int, sample: bool = True) -> list[list[int]]:
    """The model's own answers as token rows (ending at </s> when it produced one)."""
    enc = model.enc
    prompts = [enc.prompt(e, enc.max_len - max_new_tokens) for e in examples]
    ids, mask = (t.to(model.device) for t in pad(prompts, enc.pad_id, left=True))
    seqs = model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=sample,
                                top_k=0, eos_token_id=enc.eos, pad_token_id=enc.pad_id, use_cache=True)
    out = []
    for s in seqs[:, ids.shape[1]:].tolist():
        out.append(s[: s.index(enc.eos) + 1] if enc.eos in s else s)
    return [a or [enc.eos] for a in out]


def alignment_scores(answers: list[list[int]], refs: list[list[int]], sim: Similarity) -> list[torch.Tensor]:
    """Each generated token's best embedding alignment (cosine, clamped at 0) to any reference token."""
    out = []
    for a, r in zip(answers, refs, strict=True):
        cands = torch.tensor(r)[None, :].expand(len(a), -1)
        out.append(sim(cands, torch.tensor(a)).max(-1).values)
    return out


def seq_align_loss(model, examples: list[TaskExample], sim: Similarity | None, max_new_tokens: int = 8,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """-mean over own tokens of score * log p(token): seq-align with `sim`, SRand when `sim` is None."""
    enc = model.enc
    answers = own_answers(model, examples, max_new_tokens)
    if sim is None:
        scores = [torch.rand(len(a), generator=generator) for a in answers]
    else:
        refs = [[*enc.text(" " + e.target), enc.eos] for e in examples]
        scores = alignment_scores(answers, refs, sim)
    ids, mask, loss_mask = (t.to(model.device) for t in with_answers(enc, examples, answers))
    weights = torch.zeros(loss_mask.shape, device=model.device)
    for i, s in enumerate(scores):
        weights[i, loss_mask[i]] = s.to(model.device)
    logp = model.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
    tok = logp.gather(-1, ids[:, 1:, None])[..., 0]
    m = loss_mask[:, 1:].float()
    return (-(tok * weights[:, 1:]).sum(1) / m.sum(1).clamp_min(1)).mean()
