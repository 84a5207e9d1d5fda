"""The NAO-WS weight-sharing supernet of the ``nasnet`` space with ``ws5`` ops (reference §7.2).

The architecture is *data*: ``Supernet.__call__(images, arch)`` takes ``arch``
as an int32 array ``[2, B, 4]`` (``arch_array``; normal then reduction cell,
per node ``(input1, op1, input2, op2)``), so one compiled function serves every
architecture. The ``2 * B`` branches of a cell run as one ``lax.scan`` (one
compiled branch body per cell, so compile time does not grow with ``B``): per
branch the chosen input state is gathered by index from a buffer of the cell's
states and a ``lax.switch`` on the op id runs only the chosen op. The weights
each branch reads are gathered (by its input index) for all branches at once,
before the scan. Outside ``vmap`` (training, and scoring with ``lax.map``) the
switch executes one op per branch.

Weight sharing is per (cell, node, branch slot, op, input index) as in the
reference: sep convs hold ``i + 2`` copies (node ``i``) of their depthwise and
pointwise kernels and BN affine parameters; pools have no parameters; the
identity of a reduction cell on input 0 or 1 is a ``FactorizedReduce`` with one
copy per input *and per slot* (the reference's y branch used the x branch's,
§9 item 11). The cell output is ReLU, a 1x1 conv over *all* ``B + 2`` states
whose per-state blocks of unused (non-loose) states are skipped (a
``lax.cond`` per state: zero contribution, zero gradient), then BN; loose
inputs 0/1 of a reduction cell are ``FactorizedReduce``d first. Two archs thus
read the same tensor iff they put the same op on the same input in the same
cell type, node and slot.

BatchNorm always uses the statistics of the batch it sees and keeps no running
statistics: the supernet is only ever evaluated in batch-statistics mode
(reference §7.2), so evaluation cannot disturb any state (§9 item 12).

Macro (reference §7.1-7.2): stem Conv3x3(3 -> 3C)+BN, ``3 * num_cells + 2``
cells with reductions at ``num_cells`` and ``2 * num_cells + 1`` (channels
double), input calibration (``MaybeCalibrateSize``), drop path on every branch
during training, global average pool, linear classifier.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nao_jax.models import cells
from nao_jax.models import host_init
from nao_jax.models import layers
from nao_jax.models import ops
from nao_jax.spaces.nasnet import NasnetArch, NasnetSpace

SEP_SIZES = (3, 5)  # ws5 op ids 0 and 1.
AVG_POOL, MAX_POOL, IDENTITY = 2, 3, 4  # The other ws5 op ids.
NUM_OPS = 5
EPSILON = 1e-5

# Kaiming normal (fan in) of a kernel stacked on a leading copy axis.
stacked_kaiming = nn.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=-2,
                                                   out_axis=-1, batch_axis=(0,))


def check_space(space: NasnetSpace) -> None:
  """Raises ``ValueError`` unless ``space`` is a ``nasnet`` space with ``ws5`` ops."""
  if getattr(space, "name", None) != "nasnet" or space.op_set.name != "ws5":
    raise ValueError(f"the supernet needs a nasnet space with ws5 ops, got "
                     f"{space.signature() if hasattr(space, 'signature') else space!r}.")


def arch_array(space: NasnetSpace, arch: NasnetArch) -> np.ndarray:
  """int32 ``[2, B, 4]``: (normal, reduction) x nodes x (input1, op1, input2, op2)."""
  return space.to_values(space.check(arch)).astype(np.int32).reshape(2, space.nodes, 4)


def arch_arrays(space: NasnetSpace, archs: Sequence[NasnetArch]) -> np.ndarray:
  """int32 ``[N, 2, B, 4]`` of ``archs``."""
  return np.stack([arch_array(space, a) for a in archs]).astype(np.int32)


def batch_norm(x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray,
               axis_name: str | None) -> jnp.ndarray:
  """BatchNorm with the statistics of this batch (over ``axis_name`` devices if set),
  with ``layers.batch_norm_train``'s two-pass backward (autodiff's makes about twice
  the passes; benchmarks/results/supernet.md)."""
  return layers.batch_norm_train(x, scale, bias, EPSILON, axis_name)[0]


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1, groups: int = 1) -> jnp.ndarray:
  """Bias-free NHWC conv with HWIO ``kernel`` padded by ``k // 2`` (PyTorch padding),
  dense or depthwise (``groups`` = channels)."""
  kernel = kernel.astype(x.dtype)
  if groups > 1:
    return layers.depthwise_conv2d(x, kernel, stride)
  return layers.conv2d(x, kernel, (stride, stride))


def factorized_reduce(x: jnp.ndarray, p: dict[str, jnp.ndarray],
                      axis_name: str | None) -> jnp.ndarray:
  """``ops.FactorizedReduce`` as a function of its parameters ``conv_1``, ``conv_2``
  (``[1, 1, C_in, C/2]``), ``scale``, ``bias``: halves H and W."""
  first = conv2d(x, p["conv_1"], 2)
  shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
  second = conv2d(shifted, p["conv_2"], 2)
  return batch_norm(jnp.concatenate([first, second], -1), p["scale"], p["bias"], axis_name)


def sep_conv(x: jnp.ndarray, p: dict[str, jnp.ndarray], stride: int,
             axis_name: str | None) -> jnp.ndarray:
  """``ops.SepConv`` (twice ReLU, depthwise, pointwise, BN; stride on the first)
  as a function of one copy of its parameters."""
  channels = x.shape[-1]
  for i, s in enumerate((stride, 1)):
    x = conv2d(nn.relu(x), p[f"depthwise_{i}"], s, groups=channels)
    x = conv2d(x, p[f"pointwise_{i}"])
    x = batch_norm(x, p[f"scale_{i}"], p[f"bias_{i}"], axis_name)
  return x


def _factorized_reduce_params(module: nn.Module, name: str, copies: int, c_in: int,
                              c_out: int) -> dict[str, jnp.ndarray]:
  half = c_out // 2
  return {
      "conv_1": module.param(f"{name}_conv_1", stacked_kaiming, (copies, 1, 1, c_in, half)),
      "conv_2": module.param(f"{name}_conv_2", stacked_kaiming, (copies, 1, 1, c_in, half)),
      "scale": module.param(f"{name}_scale", nn.initializers.ones, (copies, c_out)),
      "bias": module.param(f"{name}_bias", nn.initializers.zeros, (copies, c_out)),
  }


def _index(params: dict[str, jnp.ndarray], i: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Copy ``i`` of stacked parameters (a gather: other copies get zero gradient)."""
  return {k: v[i] for k, v in params.items()}


class BranchParams(nn.Module):
  """The weights of one branch slot (x or y) of one node: every candidate op's
  weights, one copy per input state the node may read.

  Attributes:
    node: the node's index ``i`` (it may read states ``0..i+1``: ``i + 2`` copies).
    features: channels ``C``.
    reduction: a reduction cell (its identity on inputs 0/1 is a FactorizedReduce).
  """
  node: int
  features: int
  reduction: bool

  @nn.compact
  def __call__(self) -> dict[str, jnp.ndarray]:
    """Returns ``{name: [copies, ...]}``: ``sep{3,5}_*`` with ``i + 2`` copies and, in a
    reduction cell, ``reduce_*`` with 2 copies (one per cell input)."""
    copies, c = self.node + 2, self.features
    params = {}
    for size in SEP_SIZES:
      for i in range(2):
        for name, init, shape in (
            (f"depthwise_{i}", stacked_kaiming, (size, size, 1, c)),
            (f"pointwise_{i}", stacked_kaiming, (1, 1, c, c)),
            (f"scale_{i}", nn.initializers.ones, (c,)),
            (f"bias_{i}", nn.initializers.zeros, (c,))):
          params[f"sep{size}_{name}"] = self.param(f"sep{size}_{name}", init, (copies, *shape))
    if self.reduction:
      params.update({f"reduce_{k}": v for k, v in
                     _factorized_reduce_params(self, "reduce", 2, c, c).items()})
    return params


def strip_prefix(params: dict[str, jnp.ndarray], prefix: str) -> dict[str, jnp.ndarray]:
  """The entries of ``params`` named ``prefix + name``, keyed by ``name``."""
  return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def _remat_switch(index: jnp.ndarray, branches: list, *operands: jnp.ndarray) -> jnp.ndarray:
  """``lax.switch(index, branches, *operands)`` whose backward pass recomputes the
  chosen branch. Differentiating a plain switch saves the residuals of *every*
  branch (zeros for those not taken): for 5-10 candidate ops per branch slot
  that is tens of activation-sized buffers per branch written and read for
  nothing, which dominated the supernet's train step at C=20 on 32x32 images."""
  return jax.checkpoint(lambda i, *xs: jax.lax.switch(i, branches, *xs))(index, *operands)


def gather_branch_params(branches: list[dict[str, jnp.ndarray]], cell: jnp.ndarray,
                         reduction: bool) -> dict[str, jnp.ndarray]:
  """The copy of every branch's weights that ``cell`` selects, stacked per branch.

  Args:
    branches: the ``2 * nodes`` branches' ``BranchParams`` (node-major, x before y).
    cell: int32 ``[nodes, 4]``, per node (input1, op1, input2, op2).
    reduction: whether the cell is a reduction cell.

  Returns:
    ``{name: [2 * nodes, ...]}``: the sep convs' copy for the branch's input and,
    in a reduction cell, the FactorizedReduce copy of input 0 or 1 (for an input
    above 1 it is unused).

  Gathering here, once per cell, instead of inside the branch loop (where the
  remat switch would gather them again in the backward pass) makes the train
  step faster (benchmarks/results/supernet.md).
  """
  states_in = cell[:, 0::2].reshape(-1)
  gathered = []
  for params, state in zip(branches, states_in):
    copy = {k: v[state] for k, v in params.items() if k.startswith("sep")}
    if reduction:
      copy.update({k: v[jnp.minimum(state, 1)] for k, v in params.items()
                   if k.startswith("reduce")})
    gathered.append(copy)
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *gathered)


def run_branches(inputs: jnp.ndarray, params: dict[str, jnp.ndarray], cell: jnp.ndarray,
                 nodes: int, reduction: bool, axis_name: str | None,
                 keep_prob: jnp.ndarray | None, key: jax.Array | None) -> jnp.ndarray:
  """Runs the ``2 * nodes`` branches of a cell as one ``lax.scan`` (one compiled
  branch body per cell instead of one per branch).

  Args:
    inputs: ``[2, batch, H, W, C]``, the calibrated cell inputs s0, s1.
    params: ``gather_branch_params``: each branch's selected weights, stacked on
      a leading axis of ``2 * nodes``.
    cell: int32 ``[nodes, 4]``, per node (input1, op1, input2, op2).
    keep_prob, key: drop path on every branch (None: none); ``key`` draws its
      noise for all branches at once (``cells.drop_path_noise``).

  Returns:
    The node states ``[nodes, batch, H', W', C]`` (``H' = H / 2`` if ``reduction``).
  """
  stride = 2 if reduction else 1
  out_shape = inputs.shape[1:2] + tuple(d // stride for d in inputs.shape[2:4]) + inputs.shape[4:]
  states_in = cell[:, 0::2].reshape(-1)
  ops_in = cell[:, 1::2].reshape(-1)
  index = jnp.arange(2 * nodes)

  def body(carry, xs):
    states, acc = carry  # states: [nodes + 2 (normal) or nodes (reduction), ...]
    p, state, op, i, noise = xs
    sep = {size: strip_prefix(p, f"sep{size}_") for size in SEP_SIZES}

    def candidates(stride: int, reduce: dict[str, jnp.ndarray] | None):
      """The 5 ops (in ws5 id order) on ``x`` with ``stride``."""
      return [
          lambda x: sep_conv(x, sep[3], stride, axis_name),
          lambda x: sep_conv(x, sep[5], stride, axis_name),
          lambda x: ops.pool(x, "avg", 3, stride, include_pad=False),
          lambda x: ops.pool(x, "max", 3, stride, include_pad=False),
          (lambda x: x) if reduce is None else (lambda x: factorized_reduce(x, reduce, axis_name)),
      ]

    if reduction:
      reduce = strip_prefix(p, "reduce_")
      # The switch gets both cell inputs and an index, not the chosen input: its
      # saved residual is then the loop-invariant ``inputs``, which the scan keeps
      # once instead of stacking a copy per branch.
      strided = [lambda cell_inputs, k, node, f=f: f(cell_inputs[k]) for f in candidates(2, reduce)]
      plain = [lambda cell_inputs, k, node, f=f: f(node) for f in candidates(1, None)]
      y = _remat_switch(op + NUM_OPS * (state >= 2).astype(op.dtype), strided + plain,
                        inputs, jnp.minimum(state, 1), states[jnp.clip(state - 2, 0, nodes - 1)])
      write = i // 2
    else:
      y = _remat_switch(op, candidates(1, None), states[state])
      write = i // 2 + 2
    if keep_prob is not None:
      y = cells.drop_path(y, keep_prob, noise)
    acc = jnp.where(i % 2 == 0, y, acc + y)
    return (jax.lax.dynamic_update_index_in_dim(states, acc, write, 0), acc), None

  zeros = jnp.zeros((nodes,) + out_shape, inputs.dtype)
  states = zeros if reduction else jnp.concatenate([inputs, zeros])
  noise = None if key is None else cells.drop_path_noise(key, 2 * nodes, inputs.shape[1])
  (states, _), _ = jax.lax.scan(body, (states, zeros[0]),
                                (params, states_in, ops_in, index, noise))
  return states if reduction else states[2:]


class ReLUConvBN(nn.Module):
  """ReLU, 1x1 conv, batch-statistics BN (the supernet's input calibration)."""
  features: int
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param("conv", ops.kaiming_normal, (1, 1, x.shape[-1], self.features))
    scale = self.param("scale", nn.initializers.ones, (self.features,))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return batch_norm(conv2d(nn.relu(x), kernel), scale, bias, self.bn_axis_name)


class FactorizedReduce(nn.Module):
  """``ops.FactorizedReduce`` with batch-statistics BN (one copy of parameters)."""
  features: int
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    p = _factorized_reduce_params(self, "reduce", 1, x.shape[-1], self.features)
    return factorized_reduce(x, _index(p, 0), self.bn_axis_name)


class SharedCell(nn.Module):
  """One supernet cell; the cell's nodes are the data ``cell`` int32 ``[B, 4]``.

  Attributes:
    nodes: ``B``.
    features: ``C`` channels of every state and of the output.
    reduction: whether this is a reduction cell.
    bn_axis_name: pmap axis of the BatchNorm statistics.
  """
  nodes: int
  features: int
  reduction: bool
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, s0: jnp.ndarray, s1: jnp.ndarray, cell: jnp.ndarray,
               keep_prob: jnp.ndarray | None) -> jnp.ndarray:
    """``s0``, ``s1``: the previous cells' outputs; ``keep_prob``: drop-path keep
    probability (None: no drop path). Returns ``[B, H', W', C]``."""
    c, axis = self.features, self.bn_axis_name
    if s0.shape[1] == 2 * s1.shape[1]:
      s0 = FactorizedReduce(c, axis, name="calibrate_s0")(nn.relu(s0))
    elif s0.shape[-1] != c:
      s0 = ReLUConvBN(c, axis, name="calibrate_s0")(s0)
    if s1.shape[-1] != c:
      s1 = ReLUConvBN(c, axis, name="calibrate_s1")(s1)
    branches = [BranchParams(i, c, self.reduction, name=f"node{i}_{slot}")()
                for i in range(self.nodes) for slot in "xy"]
    stacked = gather_branch_params(branches, cell, self.reduction)
    key = self.make_rng("dropout") if keep_prob is not None else None
    states = list(run_branches(jnp.stack([s0, s1]), stacked, cell, self.nodes, self.reduction,
                               axis, keep_prob, key))

    # Loose ends: states no node reads. Each adds its block of the 1x1 conv only
    # when loose (a cond per state: the others compute no conv and get zero gradient).
    used = jnp.zeros((self.nodes + 2,), jnp.bool_).at[cell[:, 0]].set(True).at[cell[:, 2]].set(True)
    if self.reduction:
      s0, s1 = (FactorizedReduce(c, axis, name=f"reduce_s{k}")(s) for k, s in enumerate((s0, s1)))
    kernel = self.param("output_conv", stacked_kaiming, (self.nodes + 2, c, c))

    def add_block(out, state, block):
      return out + jnp.einsum("bhwc,cd->bhwd", nn.relu(state), block.astype(state.dtype))

    out = jnp.zeros_like(s1)
    for k, state in enumerate([s0, s1] + states):
      out = jax.lax.cond(used[k], lambda out, state, block: out, add_block, out, state, kernel[k])
    scale = self.param("output_scale", nn.initializers.ones, (c,))
    bias = self.param("output_bias", nn.initializers.zeros, (c,))
    return batch_norm(out, scale, bias, axis)


class Supernet(nn.Module):
  """The NAO-WS supernet.

  Attributes:
    nodes: ``B`` nodes per cell.
    num_cells: ``N`` normal cells per stage (``3N + 2`` cells; reference 3 -> 11).
    features: ``C`` of the first stage (stem ``3C``; reference 20).
    num_classes: classifier outputs.
    drop_path_keep_prob: final keep probability of drop path (reference 0.9);
      1.0 disables it.
    bn_axis_name: pmap axis of the BatchNorm statistics (None: this device's batch).
    dtype: compute dtype (parameters are float32).
  """
  nodes: int = 5
  num_cells: int = 3
  features: int = 20
  num_classes: int = 10
  drop_path_keep_prob: float = 0.9
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @property
  def total_cells(self) -> int:
    return 3 * self.num_cells + 2

  @nn.compact
  def __call__(self, images: jnp.ndarray, arch: jnp.ndarray, train: bool = False,
               step: jnp.ndarray | int = 0, total_steps: int = 1) -> jnp.ndarray:
    """Args: ``images`` float ``[B, H, W, 3]`` (normalised); ``arch`` int32
    ``[2, nodes, 4]``; ``train`` enables drop path (needs a 'dropout' rng);
    ``step`` / ``total_steps`` set its ramp. Returns float32 logits ``[B, classes]``."""
    axis = self.bn_axis_name
    x = images.astype(self.dtype)
    stem = self.param("stem_conv", ops.kaiming_normal, (3, 3, x.shape[-1], 3 * self.features))
    x = batch_norm(conv2d(x, stem), self.param("stem_scale", nn.initializers.ones,
                                               (3 * self.features,)),
                   self.param("stem_bias", nn.initializers.zeros, (3 * self.features,)), axis)
    s0 = s1 = x
    features = self.features
    reductions = (self.num_cells, 2 * self.num_cells + 1)
    for index in range(self.total_cells):
      reduction = index in reductions
      features *= 2 if reduction else 1
      keep = None
      if train and self.drop_path_keep_prob < 1.0:
        keep = cells.drop_path_keep_prob(index, self.total_cells, self.drop_path_keep_prob,
                                         step, total_steps)
      cell = SharedCell(self.nodes, features, reduction, axis, name=f"cell_{index}")
      s0, s1 = s1, cell(s0, s1, arch[1 if reduction else 0], keep)
    x = jnp.mean(s1.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=ops.kaiming_normal, name="classifier")(x)


def init_params(model: Supernet, seed: int, image_size: int = 32) -> Any:
  """The model's parameters, drawn on the host by ``host_init.draw`` (compiling
  the flax init of a net with ~200 conditionals takes minutes on CPU): BN scales
  ones, biases zeros, every kernel Kaiming normal (stacked kernels count their
  fan in without the copy axis). Returns a pytree of float32 ``jax.Array``s."""
  images = jax.ShapeDtypeStruct((2, image_size, image_size, 3), jnp.float32)
  arch = jax.ShapeDtypeStruct((2, model.nodes, 4), jnp.int32)
  shapes = jax.eval_shape(lambda x, a: model.init({"params": jax.random.key(0)}, x, a),
                          images, arch)
  return host_init.draw(shapes["params"], np.random.default_rng(seed))


def from_space(space: NasnetSpace, **settings: Any) -> Supernet:
  """The supernet of ``space`` (``nasnet`` with ``ws5`` ops)."""
  check_space(space)
  return Supernet(nodes=space.nodes, **settings)
