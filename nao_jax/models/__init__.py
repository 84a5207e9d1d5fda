"""Child networks of the ``nasnet`` space: ops, cells and the NASNet-style stack.

``from_space(space, arch, **settings)`` builds the network of an architecture
with its own op set, e.g. ``from_space(*known.get('NAONet-A'), num_cells=6)``.
"""

from typing import Any

from nao_jax.models.network import NasnetNetwork, abstract_variables, count_params
from nao_jax.spaces.nasnet import NasnetArch, NasnetSpace


def from_space(space: NasnetSpace, arch: NasnetArch, **settings: Any) -> NasnetNetwork:
  """The ``NasnetNetwork`` of ``arch`` (checked against ``space``)."""
  if not isinstance(space, NasnetSpace):
    raise ValueError(f"child networks need a 'nasnet' space, got {space.signature()}.")
  return NasnetNetwork(arch=space.check(arch), op_names=space.ops, op_set=space.op_set.name,
                       **settings)


__all__ = ["NasnetNetwork", "abstract_variables", "count_params", "from_space"]
