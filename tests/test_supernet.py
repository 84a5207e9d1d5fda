"""The NAO-WS supernet: exact weight sharing, zero gradients of unused weights, no retrace."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nao_jax import spaces
from nao_jax.models import supernet
from nao_jax.spaces.nasnet import NasnetArch, Node

SPACE = spaces.get("nasnet", nodes=2, ops="ws5")
MODEL = supernet.from_space(SPACE, num_cells=1, features=4, drop_path_keep_prob=1.0)
IMAGES = jax.random.normal(jax.random.key(0), (6, 8, 8, 3))
LABELS = jnp.arange(6) % 10


def _arch(normal, reduction):
  return NasnetArch(tuple(Node(*n) for n in normal), tuple(Node(*n) for n in reduction))


# Normal: n0 = sep3(s0) + identity(s1); n1 = max(n0) + sep5(s1): loose s0? no; loose n1 only.
ARCH_A = _arch([(0, 0, 1, 4), (2, 3, 1, 1)], [(0, 4, 1, 0), (0, 2, 2, 4)])
# Shares normal node 0 slot x (sep3 on s0) with ARCH_A; nothing else in node 0 x.
ARCH_B = _arch([(0, 0, 0, 2), (0, 1, 2, 4)], [(1, 1, 1, 3), (2, 0, 1, 4)])
# Never reads s0 with sep3 in normal node 0 slot x.
ARCH_C = _arch([(1, 0, 0, 3), (2, 2, 2, 2)], [(1, 4, 0, 3), (1, 1, 2, 1)])


@pytest.fixture(scope="module")
def params():
  return supernet.init_params(MODEL, seed=0, image_size=8)


@jax.jit
def _loss_and_grad(params, arch):
  def loss(p):
    logits = MODEL.apply({"params": p}, IMAGES, arch)
    return optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean()
  return jax.value_and_grad(loss)(params)


@jax.jit
def _logits(params, arch):
  return MODEL.apply({"params": params}, IMAGES, arch)


def _expected_use(arch):
  """{(cell kind, param path suffix pieces) -> used copies} for branch-level weights."""
  values = supernet.arch_array(SPACE, arch)
  use = {}
  for c, kind in enumerate(("normal", "reduction")):
    for i in range(SPACE.nodes):
      for slot in range(2):
        state, op = values[c, i, 2 * slot], values[c, i, 2 * slot + 1]
        branch = f"node{i}_{'xy'[slot]}"
        if op in (0, 1):
          use[(kind, branch, f"sep{(3, 5)[op]}")] = state
        if op == 4 and kind == "reduction" and state < 2:
          use[(kind, branch, "reduce")] = state
    used = set(values[c, :, 0]) | set(values[c, :, 2])
    use[(kind, "loose")] = [s for s in range(SPACE.nodes + 2) if s not in used]
  return use


def test_parameter_count_matches_reference():
  reference = supernet.from_space(spaces.get("nasnet", nodes=5, ops="ws5"))
  shapes = jax.eval_shape(lambda x, a: reference.init({"params": jax.random.key(0)}, x, a),
                          jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32),
                          jax.ShapeDtypeStruct((2, 5, 4), jnp.int32))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 7_387_350  # §7.2.


@pytest.mark.parametrize("arch", [pytest.param(ARCH_A, marks=pytest.mark.slow), ARCH_B],
                         ids=["A", "B"])
def test_gradient_is_zero_exactly_for_unused_weights(params, arch):
  _, grads = _loss_and_grad(params, jnp.asarray(supernet.arch_array(SPACE, arch)))
  use = _expected_use(arch)
  reductions = (MODEL.num_cells, 2 * MODEL.num_cells + 1)
  checked_zero = checked_used = 0
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    names = [str(getattr(k, "key", k)) for k in path]
    g = np.asarray(g)
    cell = next((n for n in names if n.startswith("cell_")), None)
    if cell is not None and names[1] in ("reduce_s0", "reduce_s1"):
      loose = int(names[1][-1]) in use[("reduction", "loose")]  # FactorizedReduce of a loose input.
      assert np.any(g != 0) == loose, names
      continue
    if cell is None or not any(n.startswith("node") or n.startswith("output") for n in names):
      assert np.any(g != 0), names  # Stem, calibration, classifier: always used.
      continue
    kind = "reduction" if int(cell.split("_")[1]) in reductions else "normal"
    leaf = names[-1]
    if leaf.startswith("output_conv"):
      for s in range(SPACE.nodes + 2):
        loose = s in use[(kind, "loose")]
        assert np.any(g[s] != 0) == loose, (names, s)
      continue
    if leaf.startswith("output"):
      assert np.any(g != 0), names
      continue
    branch = next(n for n in names if n.startswith("node"))
    group = leaf.split("_")[0]  # sep3 | sep5 | reduce
    copy = use.get((kind, branch, group))
    for k in range(g.shape[0]):
      if copy is not None and k == copy:
        assert np.any(g[k] != 0), (names, k)
        checked_used += 1
      else:
        assert np.all(g[k] == 0), (names, k)
        checked_zero += 1
  assert checked_used > 10 and checked_zero > 50


def test_weight_sharing_is_real(params):
  a, b, c = (jnp.asarray(supernet.arch_array(SPACE, x)) for x in (ARCH_A, ARCH_B, ARCH_C))
  # The same tensor: perturbing copy 0 (input s0) of sep3 in node 0 slot x of every normal
  # cell changes A and B (which use it) and not C.
  def perturb(p):
    p = jax.tree.map(lambda x: x, p)
    for cell in ("cell_0", "cell_2", "cell_4"):
      leaf = p[cell]["node0_x"]["sep3_pointwise_0"]
      p[cell]["node0_x"]["sep3_pointwise_0"] = leaf.at[0].multiply(1.5)
    return p
  perturbed = perturb(params)
  for arch, uses in ((a, True), (b, True), (c, False)):
    changed = not np.allclose(_logits(params, arch), _logits(perturbed, arch))
    assert changed == uses
  # One SGD step on A changes B's output (shared weights) through the shared tensor.
  _, grads = _loss_and_grad(params, a)
  stepped = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
  assert not np.allclose(_logits(params, b), _logits(stepped, b))
  shared = params["cell_0"]["node0_x"]["sep3_pointwise_0"]
  assert not np.allclose(shared[0], stepped["cell_0"]["node0_x"]["sep3_pointwise_0"][0])


def test_changing_the_arch_does_not_retrace(params):
  traces = []

  @jax.jit
  def forward(params, arch):
    traces.append(1)
    return MODEL.apply({"params": params}, IMAGES, arch)

  outputs = [forward(params, jnp.asarray(supernet.arch_array(SPACE, x)))
             for x in (ARCH_A, ARCH_B, ARCH_C)]
  assert len(traces) == 1
  assert not np.allclose(outputs[0], outputs[1])


def test_batch_statistics_mode_is_stateless(params):
  arch = jnp.asarray(supernet.arch_array(SPACE, ARCH_A))
  first = _logits(params, arch)
  # The same images scored twice (and after other archs) give the same logits:
  # nothing (no running statistics) is updated by evaluation.
  _logits(params, jnp.asarray(supernet.arch_array(SPACE, ARCH_B)))
  np.testing.assert_array_equal(first, _logits(params, arch))
  variables = jax.eval_shape(lambda a: MODEL.init({"params": jax.random.key(0)}, IMAGES[:2], a),
                             arch)
  assert set(variables) == {"params"}  # No batch_stats collection at all.


def test_rejects_other_spaces():
  with pytest.raises(ValueError, match="ws5"):
    supernet.from_space(spaces.get("nasnet", nodes=5, ops="nao11"))
