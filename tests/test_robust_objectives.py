"""The robust-training objectives as pure functions: the properties the issue asks for, on small tensors."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F

from syncmod.config import FieldError
from syncmod.finetune.objectives import scheduled_sampling as ss
from syncmod.finetune.objectives.debias import DebiasConfig, poe_loss, reweighted_loss
from syncmod.finetune.objectives.sam import SamConfig, ascent, perturbed
from syncmod.finetune.objectives.soft_align import cosine_similarity, token_align_loss, token_align_targets
from syncmod.finetune.objectives.uda import UdaConfig, consistency, token_dropout, word_swap
from syncmod.finetune.robust import ObjectiveConfig
from syncmod.modules.runtime import _lm_loss


def _batch(seed=0, b=3, t=7, v=13):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    ids = torch.randint(0, v, (b, t), generator=g)
    loss_mask = torch.zeros(b, t, dtype=torch.bool)
    loss_mask[:, 3:] = True
    return logits, ids, loss_mask


def test_token_align_with_one_hot_similarity_is_cross_entropy():
    logits, ids, loss_mask = _batch()

    def one_hot(cands, ref):
        return (cands == ref[..., None]).float()

    for k in (1, 4, 13):  # k = vocab: the reference is always among the top-k too
        torch.testing.assert_close(token_align_loss(logits, ids, loss_mask, one_hot, k), _lm_loss(logits, ids, loss_mask))


def test_token_align_spreads_mass_to_similar_candidates():
    emb = torch.eye(5)
    emb[1] = emb[0] + 0.1 * emb[1]  # token 1 nearly equals token 0
    logits = torch.tensor([[0.0, 5.0, 4.0, -9.0, -9.0]])
    cands, q = token_align_targets(logits, torch.tensor([0]), cosine_similarity(emb), k=2)
    weights = dict(zip(cands[0].tolist(), q[0].tolist(), strict=True))
    assert weights[1] > 0.45 and weights[2] == 0.0 and abs(sum(q[0].tolist()) - 1) < 1e-6


def test_sam_perturbation_moves_along_the_normalised_gradient_by_rho():
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5)),
              torch.nn.Parameter(torch.randn(2))]
    grads = [torch.randn(4, 3), torch.randn(5), None]  # the last one got no gradient
    before = [p.detach().clone() for p in params]
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None))
    rho = 0.05
    with perturbed(params, grads, rho):
        moved = [p.detach() - w for p, w in zip(params, before, strict=True)]
        for m, g in zip(moved[:2], grads[:2], strict=True):
            torch.testing.assert_close(m, rho * g / norm)
        assert torch.equal(moved[2], torch.zeros(2))
        step = torch.sqrt(sum((m ** 2).sum() for m in moved))
        assert abs(step.item() - rho) < 1e-6
    for p, w in zip(params, before, strict=True):
        assert torch.equal(p.detach(), w)  # restored bit for bit


def test_sam_of_a_zero_gradient_does_not_move():
    assert torch.equal(ascent([torch.zeros(3)], 0.1)[0], torch.zeros(3))


def test_sam_step_through_deepspeed_matches_a_hand_written_sam_step():
    from syncmod.finetune.objectives.sam import sam_step
    from syncmod.finetune.train import FinetuneConfig, _engine

    torch.manual_seed(0)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, batch):
            return F.cross_entropy(self.lin(batch[0]), batch[1]), {}

    net, ref = Net(), None
    ref = copy.deepcopy(net)
    cfg = FinetuneConfig()
    cfg.train.lr, cfg.train.batch_size = 0.01, 8
    engine = _engine(net, list(net.parameters()), cfg)
    sam_step(engine, list(net.parameters()), (x, y), rho=0.5)

    params = list(ref.parameters())
    grads = torch.autograd.grad(ref((x, y))[0], params)
    with perturbed(params, list(grads), 0.5):
        sam_grads = torch.autograd.grad(ref((x, y))[0], params)
    opt = torch.optim.AdamW(params, lr=0.01, weight_decay=0.0)
    for p, g in zip(params, sam_grads, strict=True):
        p.grad = g
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    for a, b in zip(net.parameters(), params, strict=True):
        torch.testing.assert_close(a.detach(), b.detach())


def test_poe_with_a_uniform_bias_model_is_the_plain_loss():
    logits, target = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 0])
    uniform = torch.full((6, 4), -torch.log(torch.tensor(4.0)))
    plain = F.cross_entropy(logits, target)
    torch.testing.assert_close(poe_loss(logits, uniform, target, weight=1.0), plain)
    torch.testing.assert_close(poe_loss(logits, uniform, target, weight=3.0), plain)
    confident = F.one_hot(target, 4).float().mul(5).log_softmax(-1)  # a bias model that knows the answers
    assert poe_loss(logits, confident, target) < plain  # it explains the examples: less left for the module


def test_reweighting_downweights_what_the_bias_model_solves():
    logits, target = torch.zeros(2, 3), torch.tensor([0, 1])
    bias = torch.tensor([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]]).log()  # right on the first, wrong on the second
    per = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(reweighted_loss(logits, bias, target), ((1 - torch.tensor([0.9, 0.05])) * per).mean())
    torch.testing.assert_close(reweighted_loss(logits, bias, target, weight=0.0), per.mean())


def test_scheduled_sampling_replaces_only_answer_inputs():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    loss_mask = torch.tensor([[False, False, False, True, True, True]])
    predicted = torch.tensor([[9, 9, 9, 9, 9, 9]]) * torch.arange(1, 7)
    assert torch.equal(ss.mix_inputs(ids, loss_mask, predicted, 0.0), ids)
    mixed = ss.mix_inputs(ids, loss_mask, predicted, 1.0)
    assert mixed.tolist() == [[1, 2, 3, 4, predicted[0, 3].item(), predicted[0, 4].item()]]
    assert ss.rate(0, 100, 0.25) == 0.0 and ss.rate(50, 100, 0.25) == 0.125 and ss.rate(200, 100, 0.25) == 0.25


def test_uda_augmentations_and_consistency():
    rng = random.Random(0)
    text = "the big dog chased the cat near the river."
    assert token_dropout(text, 0.99, rng)  # never empty
    swapped = word_swap(text, 1, rng)
    assert sorted(swapped.split()) == sorted(text.split()) and swapped != text
    logp = torch.randn(4, 5).log_softmax(-1)
    assert consistency(logp, logp).abs() < 1e-6
    assert consistency(logp, torch.randn(4, 5).log_softmax(-1)) > 0


@pytest.mark.parametrize("make", [lambda: SamConfig(rho=-1.0), lambda: UdaConfig(augment=["translate"]),
                                  lambda: DebiasConfig(method="poe-ish"), lambda: ObjectiveConfig(name="bleu")])
def test_configs_refuse_bad_values(make):
    with pytest.raises(FieldError):
        make()
