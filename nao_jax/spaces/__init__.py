"""Search spaces: architectures <-> token sequences (pure numpy).

``get('nasnet', nodes=5, ops='ws5')`` or ``from_config(config.space)`` build a
space by name; ``known.get('NAONet-A')`` gives a published architecture;
``register(name, build)`` adds a user's space (a ``SearchSpace`` subclass or a
function of its settings returning one), which ``config.space.name = name``
then selects.
"""

from typing import Any, Callable

from nao_jax.spaces.base import SearchSpace
from nao_jax.spaces.macro import MacroArch, MacroSpace
from nao_jax.spaces.nasnet import NasnetArch, NasnetSpace, Node, loose_ends
from nao_jax.spaces.nb201 import Nb201Arch, Nb201Space
from nao_jax.spaces.rnn import RnnArch, RnnNode, RnnSpace

SPACES: dict[str, Callable[..., SearchSpace]] = {
    "nasnet": NasnetSpace,
    "nb201": Nb201Space,
    "rnn": RnnSpace,
    "macro": MacroSpace,
}


def register(name: str, build: Callable[..., SearchSpace]) -> None:
  """Makes ``get(name, **settings)`` (and ``config.space.name = name``) build
  ``build(**settings)``."""
  if not callable(build):
    raise TypeError(f"register({name!r}, ...): build must be a SearchSpace class or a "
                    "function returning a SearchSpace.")
  SPACES[name] = build


def get(name: str, **kwargs: Any) -> SearchSpace:
  """Builds the space ``name`` with its settings, e.g. ``get('rnn', activations='nao_ws')``."""
  if name not in SPACES:
    raise ValueError(f"unknown search space {name!r}; choose one of {sorted(SPACES)}.")
  try:
    return SPACES[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"search space {name!r}: bad settings {kwargs} ({e}).") from None


def from_config(space_config: Any) -> SearchSpace:
  """Builds a space from a config section ``{name: ..., <settings>}``."""
  settings = dict(space_config)
  name = settings.pop("name", None)
  return get(name, **settings)


__all__ = [
    "SearchSpace", "NasnetArch", "NasnetSpace", "Node", "loose_ends", "Nb201Arch",
    "Nb201Space", "RnnArch", "RnnNode", "RnnSpace", "SPACES", "get", "from_config",
    "register",
]
