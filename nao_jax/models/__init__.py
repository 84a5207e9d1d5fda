"""Child networks: the NASNet-style stack of ``nasnet`` cells, and the
NAS-Bench-201 and NAS-Bench-Macro networks of their spaces' archs.

``from_space(space, arch, **settings)`` builds the network of an architecture,
e.g. ``from_space(*known.get('NAONet-A'), num_cells=6)``. The benchmark spaces'
networks are built at the size their tables were measured with (their own
``num_cells``/``features`` defaults); settings that do not apply to them (the
auxiliary head, dropout, drop path, the nasnet stack's size) are ignored.
"""

from typing import Any

from nao_jax.models.macro import MacroNetwork
from nao_jax.models.nb201 import Nb201Network
from nao_jax.models.network import NasnetNetwork, abstract_variables, count_params
from nao_jax.spaces.macro import MacroSpace
from nao_jax.spaces.nasnet import NasnetArch, NasnetSpace
from nao_jax.spaces.nb201 import Nb201Space

# Settings every network takes; the nasnet stack takes all of ``from_space``'s.
_COMMON = ("num_classes", "bn_axis_name", "dtype")


def from_space(space: Any, arch: Any, **settings: Any) -> Any:
  """The child network of ``arch`` (checked against ``space``): a ``NasnetNetwork``,
  ``Nb201Network`` or ``MacroNetwork``; ``ValueError`` for a space without one."""
  if isinstance(space, NasnetSpace):
    return NasnetNetwork(arch=space.check(arch), op_names=space.ops, op_set=space.op_set.name,
                         **settings)
  common = {k: v for k, v in settings.items() if k in _COMMON}
  if isinstance(space, Nb201Space):
    return Nb201Network(arch=space.check(arch), **common)
  if isinstance(space, MacroSpace):
    return MacroNetwork(arch=space.check(arch), **common)
  raise ValueError(f"child networks exist for the nasnet, nb201 and macro spaces, not "
                   f"{space.signature()}.")


__all__ = ["MacroNetwork", "NasnetArch", "NasnetNetwork", "Nb201Network", "abstract_variables",
           "count_params", "from_space"]
