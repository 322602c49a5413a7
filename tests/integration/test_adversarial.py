"""Adversarial training (FGM): the perturbation is eps along the gradient, raises the loss, and
leaves the embedding tables exactly as they were."""

from __future__ import annotations

import copy

import torch

from nluserve.runtime.lexicon import N_FEATURES
from nluserve.train.adversarial import adversarial_backward, embedding_tables, perturbed
from nluserve.train.net import Net, NetConfig


def _net_and_batch() -> tuple[Net, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    net = Net(NetConfig(n_chars=40, n_bigrams=60, n_labels=2, task="classification", hidden=8))
    net.eval()  # no dropout: the same inputs give the same loss
    chars = torch.randint(1, 40, (3, 7))
    bigrams = torch.randint(1, 60, (3, 7))
    lexicon = torch.rand(3, 7, N_FEATURES)
    lengths = torch.tensor([7, 5, 2])
    return net, [chars, bigrams, lexicon, lengths], torch.tensor([0, 1, 1])


def _loss(net: Net, inputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(net(*inputs), target)


def test_the_perturbation_is_eps_along_the_gradient_and_is_undone() -> None:
    net, inputs, target = _net_and_batch()
    tables = embedding_tables(net)
    assert [t.shape[0] for t in tables] == [40, 60]
    clean = _loss(net, inputs, target)
    clean.backward()
    before = [t.detach().clone() for t in tables]
    with perturbed(tables, 0.5):
        for table, old in zip(tables, before, strict=True):
            shift = table.detach() - old
            assert abs(torch.linalg.vector_norm(shift).item() - 0.5) < 1e-4
            assert table.grad is not None
            cosine = torch.nn.functional.cosine_similarity(
                shift.flatten(), table.grad.flatten(), dim=0
            )
            assert cosine.item() > 0.999
        with torch.no_grad():
            worse = _loss(net, inputs, target)
    assert worse.item() > clean.item()  # uphill: the gradient's direction raises the loss
    for table, old in zip(tables, before, strict=True):
        torch.testing.assert_close(table.detach(), old, rtol=0, atol=1e-6)


def test_adversarial_backward_adds_the_gradient_at_the_perturbed_point() -> None:
    net, inputs, target = _net_and_batch()
    _loss(net, inputs, target).backward()
    twin = copy.deepcopy(net)
    with torch.no_grad():  # the perturbed point, built by hand on a copy
        for table, grad in zip(
            embedding_tables(twin), [t.grad for t in embedding_tables(net)], strict=True
        ):
            assert grad is not None
            table.add_(0.5 * grad / torch.linalg.vector_norm(grad))
    twin.zero_grad()
    _loss(twin, inputs, target).backward()

    clean = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    adversarial_backward(net, lambda: _loss(net, inputs, target), 0.5)
    at_point = dict(twin.named_parameters())
    moved = 0
    for name, param in net.named_parameters():
        if name not in clean:
            continue
        extra = at_point[name].grad
        assert param.grad is not None and extra is not None
        torch.testing.assert_close(param.grad, clean[name] + extra, rtol=1e-4, atol=1e-6)
        moved += int(not torch.allclose(extra, clean[name]))
    assert moved > 0  # the perturbed point's gradient is not the clean one
