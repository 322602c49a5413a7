"""Adversarial training on the embeddings (FGM: Goodfellow et al. 2015, Miyato et al. 2017).

After the clean backward pass each embedding table is moved by ``eps`` along its own gradient
(normalised), the loss is taken again there and its gradient added, and the table is put back.
The network learns to keep its answer under the worst small change of its input vectors, which
Miyato et al. found regularises recurrent text classifiers on a few thousand documents better
than dropout alone. Written here because it is ten lines around an optimiser step; torch has no
FGM, and the libraries that do carry whole training frameworks with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def embedding_tables(net: nn.Module) -> list[nn.Parameter]:
    """The encoder's character and bigram tables: what the perturbation moves."""
    encoder = net.get_submodule("encoder")
    return [encoder.get_submodule(name).weight for name in ("char_emb", "bigram_emb")]


@contextmanager
def perturbed(tables: list[nn.Parameter], eps: float) -> Iterator[None]:
    """Each table shifted by ``eps * g / ||g||`` (its current gradient), restored on exit."""
    shifts: list[tuple[nn.Parameter, torch.Tensor]] = []
    with torch.no_grad():
        for table in tables:
            if table.grad is None:
                continue
            norm = torch.linalg.vector_norm(table.grad)
            if norm > 0 and torch.isfinite(norm):
                shift = eps * table.grad / norm
                table.add_(shift)
                shifts.append((table, shift))
    try:
        yield
    finally:
        with torch.no_grad():
            for table, shift in shifts:
                table.sub_(shift)


def adversarial_backward(net: nn.Module, loss_fn: Callable[[], torch.Tensor], eps: float) -> None:
    """Add the gradient of the loss at the perturbed embeddings to the clean gradient."""
    with perturbed(embedding_tables(net), eps):
        loss_fn().backward()
