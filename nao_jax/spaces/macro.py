"""The NAS-Bench-Macro space (Su et al., CVPR 2021): 8 layers x 3 choices (6,561 nets).

Each searchable layer is 0 = identity, 1 = MobileNetV2 block (kernel 3,
expansion 3) or 2 = MobileNetV2 block (kernel 5, expansion 6). The string form
is the benchmark's key, e.g. ``'22212220'``. Tokens: choice + 1 (length 8,
vocab 4 with the start token 0). ``canonical`` is the identity: nets that
differ only in where identity layers sit are separate benchmark records.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from nao_jax.spaces import base

CHOICES = ("identity", "mbv2_k3_e3", "mbv2_k5_e6")
LAYERS = 8


@dataclasses.dataclass(frozen=True)
class MacroArch:
  """Choice id (index into ``CHOICES``) of each of the 8 searchable layers."""
  layers: tuple[int, ...]


class MacroSpace(base.SearchSpace[MacroArch]):
  """NAS-Bench-Macro's space; see the module docstring."""

  def __init__(self):
    self.name = "macro"
    self.choices = CHOICES
    self.vocab_size = 1 + len(CHOICES)
    self.sizes = np.full(LAYERS, len(CHOICES), dtype=np.int64)
    self.offsets = np.ones(LAYERS, dtype=np.int64)

  def describe_position(self, position: int) -> str:
    return f"layer {position} choice"

  def to_values(self, arch: MacroArch) -> np.ndarray:
    return np.array(arch.layers, dtype=np.int64)

  def from_values(self, values: Sequence[int]) -> MacroArch:
    return MacroArch(layers=tuple(int(v) for v in values))

  def check(self, arch: Any) -> MacroArch:
    if not isinstance(arch, MacroArch):
      raise ValueError(f"macro: expected a MacroArch, got {type(arch).__name__}.")
    if len(arch.layers) != LAYERS:
      raise ValueError(f"macro: an arch has {LAYERS} layers, got {len(arch.layers)}.")
    for position, choice in enumerate(arch.layers):
      base.check_int(choice, 0, len(CHOICES) - 1, f"macro {self.describe_position(position)}",
                     "choice id")
    return arch

  def to_string(self, arch: MacroArch) -> str:
    """The benchmark's key, one digit per layer."""
    return "".join(str(c) for c in self.check(arch).layers)

  def from_string(self, text: str) -> MacroArch:
    if not isinstance(text, str) or len(text.strip()) != LAYERS \
        or any(c not in "012" for c in text.strip()):
      raise ValueError(f"macro: expected {LAYERS} digits in 0..2 such as '22212220', "
                       f"got {text!r:.200}.")
    return MacroArch(layers=tuple(int(c) for c in text.strip()))

  def to_dict(self, arch: MacroArch) -> dict[str, Any]:
    return {"arch_str": self.to_string(arch)}

  def from_dict(self, data: dict[str, Any]) -> MacroArch:
    if set(data) != {"arch_str"}:
      raise ValueError(f"macro: JSON needs exactly the field 'arch_str', got {sorted(data)}.")
    return self.from_string(data["arch_str"])
