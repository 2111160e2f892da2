"""Scoring every label's tokens after a prompt in one forward pass: the prompt, then the labels' token prefix
tree, with a 4D attention mask.

log p(label | prompt) = log p(a0 | prompt) + log p(a1 | prompt a0) + ... for the label's tokens a0 a1 ... and
</s>. Each distinct label prefix (a0, a0 a1, ...) is one node of a tree; a node attends to the prompt, its
ancestors and itself, at the position it would have in the label's own sequence. So one forward over
`prompt + nodes` gives every conditional the full (prompt, label) forwards give: no label re-runs the prompt,
no KV cache is copied per label, labels sharing a prefix share its nodes, and the vocabulary projection runs
only on the last prompt position and the nodes.
"""

from __future__ import annotations

import torch

from syncmod.data.task_inputs import pad


class LabelTree:
    """The labels' answer token sequences as a prefix tree (built once per label set)."""

    def __init__(self, answers: list[list[int]]):
        nodes: dict[tuple[int, ...], int] = {}
        parent, depth = [], []
        for a in answers:
            for i in range(1, len(a)):  # prefixes a[:1] .. a[:-1]: the contexts the later tokens are scored in
                key = tuple(a[:i])
                if key not in nodes:
                    nodes[key] = len(nodes)
                    parent.append(nodes[key[:-1]] if i > 1 else -1)
                    depth.append(i - 1)
        self.tokens = [key[-1] for key in nodes]
        n = len(nodes)
        self.depth = torch.tensor(depth, dtype=torch.long)
        self.ancestors = torch.eye(n, dtype=torch.bool)  # node attends to itself and every ancestor
        for j in range(n):
            k = parent[j]
            while k >= 0:
                self.ancestors[j, k] = True
                k = parent[k]
        # the scored (row, token, label) triples: row 0 = the last prompt position, row 1 + j = node j
        rows, toks, labels = [], [], []
        for lab, a in enumerate(answers):
            for i, t in enumerate(a):
                rows.append(0 if i == 0 else 1 + nodes[tuple(a[:i])])
                toks.append(t)
                labels.append(lab)
        self.rows, self.toks, self.labels = (torch.tensor(x, dtype=torch.long) for x in (rows, toks, labels))
        self.num_labels, self.longest = len(answers), max(len(a) for a in answers)

    def __len__(self) -> int:
        return len(self.tokens)


def tree_mask(mask: torch.Tensor, tree: LabelTree, dtype: torch.dtype) -> torch.Tensor:
    """The additive (batch, 1, P + N, P + N) mask for left-padded prompts (P columns, `mask` marks real tokens)
    followed by the tree's N nodes. Padding rows see only themselves (finite, never read)."""
    b, p = mask.shape
    n = len(tree)
    dev = mask.device
    keep = torch.zeros(b, p + n, p + n, dtype=torch.bool, device=dev)
    causal = torch.ones(p, p, dtype=torch.bool, device=dev).tril()
    keep[:, :p, :p] = causal & mask[:, None, :]
    keep[:, :p, :p] |= torch.eye(p, dtype=torch.bool, device=dev)  # padding rows: themselves only
    keep[:, p:, :p] = mask[:, None, :]
    keep[:, p:, p:] = tree.ancestors.to(dev)
    out = torch.zeros(keep.shape, dtype=dtype, device=dev).masked_fill_(~keep, torch.finfo(dtype).min)
    return out[:, None]


def tree_scores(model, prompts: list[list[int]], tree: LabelTree, pad_id: int) -> torch.Tensor:
    """(prompts, labels): the log-probability of each label's tokens after each prompt, in one forward."""
    dev = next(model.parameters()).device
    ids, mask = (t.to(dev) for t in pad(prompts, pad_id, left=True))
    b, n = len(prompts), len(tree)
    nodes = torch.tensor(tree.tokens, dtype=torch.long, device=dev).expand(b, n)
    positions = torch.cat([(mask.cumsum(-1) - 1).clamp_min(0), mask.sum(1, keepdim=True) + tree.depth.to(dev)], 1)
    dtype = next(model.parameters()).dtype
    logits = model(input_ids=torch.cat([ids, nodes], 1), attention_mask=tree_mask(mask, tree, dtype),
                   position_ids=positions, use_cache=False, logits_to_keep=n + 1).logits
    logp = logits.float().log_softmax(-1)[:, tree.rows.to(dev), tree.toks.to(dev)]  # (prompts, scored tokens)
    return torch.zeros(b, tree.num_labels, device=dev).index_add_(1, tree.labels.to(dev), logp)
