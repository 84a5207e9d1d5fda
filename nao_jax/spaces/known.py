"""Published architectures (reference §8), each decoded with its own op table.

``get(name)`` returns ``(space, arch)``; ``NAMES`` lists what is known.
"""

from __future__ import annotations

import dataclasses

from nao_jax.spaces import base
from nao_jax.spaces.nasnet import NasnetSpace
from nao_jax.spaces.rnn import RnnSpace


@dataclasses.dataclass(frozen=True)
class KnownArch:
  """A published architecture as its authors' integer string.

  Attributes:
    space: the space (with the op / activation table) the string is written in.
    reference: the integers as published (reference op ids).
    source: where the string comes from and what was reported for it.
  """
  space: base.SearchSpace
  reference: str
  source: str


_KNOWN = {
    "NAONet-A": KnownArch(
        NasnetSpace(ops="nao11"),
        "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 / "
        "0 7 1 13 0 6 0 14 0 9 1 10 0 14 2 6 1 11 0 7",
        "NAO, PyTorch train_NAONet_A_36_cifar10.sh; 2.48% (F=36, cutout), 1.93% (F=128)"),
    # The TF code base's NAONet: reduction node 3 reads (s1 conv 1x7+7x1, s0 max
    # pool 2x2) instead of NAONet-A's (s0 conv 1x7+7x1, s1 max pool 2x2).
    "NAONet-TF": KnownArch(
        NasnetSpace(ops="nao11"),
        "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 / "
        "0 7 1 13 0 6 0 14 1 9 0 10 0 14 2 6 1 11 0 7",
        "NAO, TF dag.NAONet.json; paper 2.11% (F=128 + cutout)"),
    "NAONet-B": KnownArch(
        NasnetSpace(ops="ws5"),
        "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 / "
        "1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2",
        "NAO-WS, PyTorch train_NAONet_B_36_cifar10.sh; 2.93% (F=36, cutout)"),
    "NAONet-WS": KnownArch(
        NasnetSpace(ops="ws5"),
        "0 1 0 4 2 2 1 3 1 0 2 0 2 3 1 3 1 2 0 4 / "
        "1 1 0 3 2 3 2 3 1 0 0 1 0 4 2 4 2 3 2 3",
        "NAO-WS, TF train_final.sh; paper 3.53%, 2.5M params"),
    "NAO-PTB": KnownArch(
        RnnSpace(activations="nao"),
        "0 1 0 1 1 1 3 0 4 1 4 1 5 1 1 1 7 1 1 1 1 2",
        "NAO RNN, TF train_ptb_final.sh; PTB test perplexity 56.02"),
    "NAO-WS-PTB": KnownArch(
        RnnSpace(activations="nao_ws"),
        "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1",
        "NAO-WS RNN, TF train_final.sh; paper PTB test perplexity 56.6"),
}

NAMES = tuple(_KNOWN)


def get(name: str):
  """``(space, arch)`` of a published architecture, e.g. ``get('NAONet-A')``."""
  if name not in _KNOWN:
    raise ValueError(f"unknown architecture {name!r}; known: {list(NAMES)}.")
  known = _KNOWN[name]
  return known.space, known.space.from_reference(known.reference)


def source(name: str) -> str:
  """Where the published string comes from and what was reported for it."""
  get(name)
  return _KNOWN[name].source
