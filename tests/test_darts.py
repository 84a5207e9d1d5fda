"""DARTS: mixed ops against the child networks' ops, the exact second-order hypergradient
against finite differences, discretisation, and (slow) the small nb201 search: resume and
its best_arch.json trained by the child trainer."""

import functools
import json
import os
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax import configuration
from nao_jax import spaces
from nao_jax.models import nb201 as nb201_model
from nao_jax.models import ops
from nao_jax.oneshot import darts
from nao_jax.oneshot import mixed
from nao_jax.spaces import nb201 as nb201_space
from nao_jax.spaces.nasnet import NasnetArch, Node
from nao_jax.training import loop
from tests.conftest import REPO
from tests.conftest import tensorboard_scalars

sys.path.insert(0, str(REPO))
from configs import cifar_final as cifar_final_config  # noqa: E402
from configs import darts_nb201 as darts_nb201_config  # noqa: E402

NB201 = spaces.get("nb201")
EDGE_NAMES = [f"edge_{a}_{b}" for a, b in nb201_space.EDGES]  # The child cell's module names.


def _images(n=4, size=8, seed=0, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), (n, size, size, 3), dtype)


def _one_hot(op_ids, num_ops):
  return jnp.asarray(np.eye(num_ops, dtype=np.float32)[np.asarray(op_ids)])


# ---- mixed ops equal the chosen ops for one-hot weights ----------------------------------------


def test_mixed_nb201_network_with_one_hot_weights_is_the_chosen_cells_network():
  arch = NB201.from_string(
      "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|")
  images = _images()
  model = mixed.MixedNb201Network(num_cells=1, features=4)
  params = darts.init_params(model, NB201, seed=0, image_size=8)
  child = nb201_model.Nb201Network(arch, num_cells=1, features=4)
  child_params = child.init(jax.random.key(1), images, train=False)["params"]

  def from_mixed(path, leaf):
    """The child's parameter at ``path`` taken from the mixed network's."""
    keys = [p.key for p in path]
    if keys[0].startswith("cell_"):  # cell_s_i / edge_a_b / conv / kernel | norm / bn / *
      if keys[2] != "conv":
        return leaf  # Affine-free BN in the mixed cell: the child's scale 1, bias 0.
      op_name = NB201.ops[arch.ops[EDGE_NAMES.index(keys[1])]]
      return params[keys[0]][f"{keys[1]}_{op_name}"]
    node = params
    for key in keys:
      node = node[key]
    return node

  child_params = jax.tree_util.tree_map_with_path(from_mixed, child_params)
  (expected, _), _ = child.apply({"params": child_params}, images, train=True,
                                 mutable=["batch_stats"])
  got = mixed.logits(model, params, images, {"cell": _one_hot(arch.ops, 5)})
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  uniform = mixed.logits(model, params, images, {"cell": jnp.full((6, 5), 0.2)})
  assert np.abs(np.asarray(uniform) - np.asarray(expected)).max() > 1e-2


def _ws5_child_variables(op_name, sep, reduce, stride):
  """The variables of ``models.ops``' module of ``op_name`` holding the mixed op's weights."""
  if op_name.startswith("sep_conv"):
    size = int(op_name[-1])
    return {f"{kind}_{i}": {"kernel": sep[size][f"{kind}_{i}"]}
            for i in range(2) for kind in ("depthwise", "pointwise")} | {
                f"norm_{i}": {"bn": {"scale": sep[size][f"scale_{i}"],
                                     "bias": sep[size][f"bias_{i}"]}} for i in range(2)}
  if op_name == "identity" and stride == 2:
    return {"reduce": {"conv_1": {"kernel": reduce["conv_1"]},
                       "conv_2": {"kernel": reduce["conv_2"]},
                       "norm": {"bn": {"scale": reduce["scale"], "bias": reduce["bias"]}}}}
  return {}


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_ws5_op_with_one_hot_weights_is_the_chosen_op(stride):
  c = 4
  rng = np.random.default_rng(0)

  def draw(*shape):
    return jnp.asarray(rng.standard_normal(shape).astype(np.float32))

  sep = {size: {name: value for i in range(2) for name, value in (
      (f"depthwise_{i}", draw(size, size, 1, c)), (f"pointwise_{i}", draw(1, 1, c, c)),
      (f"scale_{i}", 1 + draw(c)), (f"bias_{i}", draw(c)))} for size in (3, 5)}
  reduce = {"conv_1": draw(1, 1, c, c // 2), "conv_2": draw(1, 1, c, c // 2),
            "scale": 1 + draw(c), "bias": draw(c)}
  x = _images(size=8)[..., :3]
  x = jnp.concatenate([x, x[..., :1]], -1)  # 4 channels.
  space = spaces.get("nasnet", nodes=2, ops="ws5")
  outputs = []
  for op_id, op_name in enumerate(space.ops):
    got = mixed.mixed_ws5_op(x, _one_hot(op_id, 5), sep, reduce if stride == 2 else None,
                             stride, None)
    module = ops.make_op(op_name, c, stride, "ws5")
    variables = {"params": _ws5_child_variables(op_name, sep, reduce, stride)}
    expected, _ = module.apply(variables, x, True, mutable=["batch_stats"])
    assert got.shape == (4, 8 // stride, 8 // stride, c)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=op_name)
    outputs.append(expected)
  weights = jnp.asarray([0.1, 0.2, 0.3, 0.25, 0.15])
  np.testing.assert_allclose(
      mixed.mixed_ws5_op(x, weights, sep, reduce if stride == 2 else None, stride, None),
      sum(w * y for w, y in zip(weights, outputs)), rtol=1e-5, atol=1e-5)


def test_mixed_supernet_reads_every_edge_and_op():
  space = spaces.get("nasnet", nodes=2, ops="ws5")
  # num_cells=0: two cells, both reductions (at N = 0 and 2N + 1 = 1): no normal cell.
  model = mixed.network(space, num_classes=10, num_cells=0, features=4)
  params = darts.init_params(model, space, seed=0, image_size=8)
  alphas = mixed.init_alphas(space, np.random.default_rng(0), 1e-3)
  images, labels = _images(), jnp.arange(4)
  grads = jax.jit(jax.grad(functools.partial(darts.loss_and_accuracy, model), 1, has_aux=True))(
      params, alphas, (images, labels))[0]
  assert mixed.alpha_shapes(space) == {"normal": (5, 5), "reduction": (5, 5)}  # 2 + 3 edges.
  assert np.all(np.abs(np.asarray(grads["reduction"])) > 0)
  assert not np.any(np.asarray(grads["normal"]))


# ---- the second-order hypergradient --------------------------------------------------------


def _mixed_mlp_loss(params, alphas, batch):
  """A smooth float64 'supernet': two layers whose hidden units are a mixed op (softmax of
  ``alphas["cell"]`` ``[2, 4]`` over tanh, sin, identity, zero) per layer."""
  x, labels = batch
  ops_ = (jnp.tanh, jnp.sin, lambda h: h, jnp.zeros_like)
  for layer in range(2):
    h = x @ params[f"w{layer}"]
    weights = jax.nn.softmax(alphas["cell"][layer])
    x = sum(w * op(h) for w, op in zip(weights, ops_))
  logits = x @ params["out"]
  loss = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels])
  return loss, jnp.zeros(())


def test_second_order_hypergradient_matches_finite_differences_of_the_unrolled_loss():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    params = {"w0": rng.normal(0, 0.7, (5, 6)), "w1": rng.normal(0, 0.5, (6, 6)),
              "out": rng.normal(0, 0.5, (6, 3))}
    params = jax.tree.map(jnp.asarray, params)
    alphas = {"cell": jnp.asarray(rng.normal(0, 0.5, (2, 4)))}
    train = (jnp.asarray(rng.normal(size=(8, 5))), jnp.arange(8) % 3)
    valid = (jnp.asarray(rng.normal(size=(8, 5))), (jnp.arange(8) + 1) % 3)
    xi = 0.5

    @jax.jit
    def unrolled_loss(a):
      grad_w = jax.grad(lambda p: _mixed_mlp_loss(p, a, train)[0])(params)
      return _mixed_mlp_loss(jax.tree.map(lambda p, g: p - xi * g, params, grad_w), a, valid)[0]

    hyper, (loss, _) = jax.jit(darts.unrolled_gradient, static_argnums=0)(
        _mixed_mlp_loss, params, alphas, train, valid, xi)
    assert float(loss) == pytest.approx(float(unrolled_loss(alphas)), rel=1e-12)
    step = 1e-5  # Central differences in float64: error ~1e-10 (truncation and rounding).
    for i in np.ndindex(2, 4):
      bump = jnp.zeros((2, 4)).at[i].set(step)
      difference = (unrolled_loss({"cell": alphas["cell"] + bump})
                    - unrolled_loss({"cell": alphas["cell"] - bump})) / (2 * step)
      assert float(hyper["cell"][i]) == pytest.approx(float(difference), rel=1e-6, abs=1e-9), i
    first_order = jax.grad(lambda a: _mixed_mlp_loss(params, a, valid)[0])(alphas)["cell"]
    assert np.abs(np.asarray(hyper["cell"] - first_order)).max() > 1e-2  # Not first order.


class TinySupernet(nn.Module):
  """A stem conv, one mixed NAS-Bench-201 cell, global pooling, a classifier."""

  @nn.compact
  def __call__(self, images, weights):
    x = ops.conv(4, (3, 3), name="stem")(images)
    x = mixed.MixedNb201Cell(name="cell")(x, weights["cell"])
    return nn.Dense(10, name="classifier")(jnp.mean(x, (1, 2)))


def test_hypergradient_of_a_mixed_cell_equals_reverse_mode_autodiff_of_the_unrolled_loss():
  # The forward-over-reverse product through models.layers' custom_vjp ops against
  # reverse-over-reverse of the unrolled loss (finite differences of a ReLU network
  # jump where the unrolled gradient crosses a kink). Tolerance: layers.batch_norm_train
  # keeps float32 statistics, and the two orders round them differently.
  model = TinySupernet()
  images = _images(8, 6, seed=1)
  params = model.init(jax.random.key(0), images, {"cell": jnp.full((6, 5), 0.2)})["params"]
  alphas = {"cell": jnp.asarray(np.random.default_rng(0).normal(0, 0.5, (6, 5)), jnp.float32)}
  train, valid = (images[:4], jnp.arange(4)), (images[4:], jnp.arange(4, 8))
  loss_fn = functools.partial(darts.loss_and_accuracy, model)
  xi = 0.5

  def unrolled_loss(a):
    grad_w = jax.grad(lambda p: loss_fn(p, a, train)[0])(params)
    return loss_fn(jax.tree.map(lambda p, g: p - xi * g, params, grad_w), a, valid)[0]

  hyper, _ = jax.jit(darts.unrolled_gradient, static_argnums=0)(
      loss_fn, params, alphas, train, valid, xi)
  reverse = jax.jit(jax.grad(unrolled_loss))(alphas)["cell"]
  np.testing.assert_allclose(hyper["cell"], reverse, rtol=1e-3, atol=1e-5)
  assert np.abs(np.asarray(reverse)).max() > 1e-3


# ---- discretisation ------------------------------------------------------------------------


@pytest.mark.parametrize("space", [spaces.get("nasnet", nodes=5, ops="ws5"),
                                   spaces.get("nasnet", nodes=2, ops="ws5"), NB201],
                         ids=["nasnet5", "nasnet2", "nb201"])
def test_discretisation_of_random_alphas_is_a_valid_arch(space):
  for seed in range(20):
    alphas = mixed.init_alphas(space, np.random.default_rng(seed), 3.0)
    arch = mixed.discretize(space, alphas)
    assert space.is_valid_tokens(space.encode(arch))
    assert space.decode(space.encode(arch)) == arch
    if space.name == "nasnet":
      for cell in (arch.normal, arch.reduction):
        assert cell[0][0::2] == (0, 1) or cell[0][0::2] == (1, 0)
        assert all(node.input1 != node.input2 for node in cell)


def test_discretisation_of_hand_set_alphas():
  space = spaces.get("nasnet", nodes=3, ops="ws5")  # ops: sep3 sep5 avg max identity.
  alphas = {name: np.zeros(shape, np.float32) for name, shape in mixed.alpha_shapes(space).items()}
  assert alphas["normal"].shape == (9, 5)  # Edges: node 0 <- 0,1; node 1 <- 0..2; node 2 <- 0..3.
  normal = alphas["normal"]
  normal[1, 3] = 2.0  # Node 0: max_pool(s1) strongest, then s0's best op.
  normal[0, 1] = 1.0
  normal[2 + 2, 0] = 3.0  # Node 1: sep3(n0) strongest, identity(s0) second, s1 weaker.
  normal[2 + 0, 4] = 2.5
  normal[2 + 1, 2] = 1.0
  normal[5 + 3, 4] = 1.5  # Node 2: identity(n1) and, tied at 1.2, avg(s1) before avg(n0).
  normal[5 + 1, 2] = 1.2
  normal[5 + 2, 2] = 1.2
  reduction = alphas["reduction"]
  reduction[:, 4] = 1.0  # Every edge prefers identity; node i keeps its two lowest inputs.
  expected = NasnetArch(
      normal=(Node(1, 3, 0, 1), Node(2, 0, 0, 4), Node(3, 4, 1, 2)),
      reduction=(Node(0, 4, 1, 4), Node(0, 4, 1, 4), Node(0, 4, 1, 4)))
  assert mixed.discretize(space, alphas) == expected

  cell = np.zeros((6, 5), np.float32)
  cell[np.arange(6), [0, 3, 1, 4, 2, 3]] = 1.0  # `none` is kept where it is the argmax.
  assert NB201.to_string(mixed.discretize(NB201, {"cell": cell})) == (
      "|none~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|")


def test_entropy_of_uniform_and_one_hot_alphas():
  assert mixed.entropy({"cell": np.zeros((6, 5))}) == pytest.approx(np.log(5))
  assert mixed.entropy({"cell": np.eye(5)[[0, 1, 2, 3, 4, 0]] * 100.0}) == pytest.approx(
      0.0, abs=1e-6)


def test_bad_settings_name_the_config_field(tmp_path):
  config = darts_nb201_config.get_config("small")
  config.darts.order = 3
  with pytest.raises(configuration.ConfigError, match=r"config\.darts\.order: must be 1"):
    darts.search(config, str(tmp_path))
  config = darts_nb201_config.get_config("small")
  config.data.split = "full"
  with pytest.raises(configuration.ConfigError, match=r"config\.data\.split"):
    darts.search(config, str(tmp_path))
  config = darts_nb201_config.get_config("small")
  config.space = {"name": "macro"}
  with pytest.raises(configuration.ConfigError, match=r"config\.space: DARTS relaxes"):
    darts.search(config, str(tmp_path))


# ---- the small nb201 search (slow: compiling the second-order step takes minutes) -----------


def _stable(records):
  return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _records(workdir):
  with open(os.path.join(workdir, "darts_epochs.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def small_search(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("darts_small"))
  return workdir, darts.run(darts_nb201_config.get_config("small"), workdir)


@pytest.mark.slow
def test_small_nb201_search_writes_a_trainable_best_arch(small_search, tmp_path,
                                                         nb201_table_path):
  workdir, summary = small_search
  config = darts_nb201_config.get_config("small")
  with open(os.path.join(workdir, "best_arch.json")) as f:
    assert json.load(f) == summary
  records = _records(workdir)
  assert [r["epoch"] for r in records] == list(range(1, config.darts.epochs + 1))
  assert summary["string"] == records[-1]["string"]
  assert summary["c10_test_200"] == records[-1]["report"]["c10_test_200"]
  assert 0.0 < summary["c10_test_200"] < 100.0
  assert records[-1]["train_loss"] < records[0]["train_loss"]  # The weights learn.
  (events,) = (pathlib.Path(workdir) / "tb" / "search").iterdir()
  scalars = tensorboard_scalars(events)
  assert len(scalars["darts/alpha_entropy"]) == config.darts.epochs
  assert {"darts/valid_loss", "darts/train_loss", "darts/table_c10_test_200"} <= set(scalars)

  child = cifar_final_config.get_config("small")
  child.arch = os.path.join(workdir, "best_arch.json")
  child.train.epochs = 1
  result = loop.run(child, str(tmp_path / "child"))
  assert 0.0 <= result["final_test_accuracy"] <= 1.0


@pytest.mark.slow
def test_resumed_search_equals_an_uninterrupted_one(small_search, tmp_path, monkeypatch):
  workdir, summary = small_search
  config = darts_nb201_config.get_config("small")  # ckpt_every_steps=20, 28 steps an epoch.
  original = darts.Darts.train_steps

  def killed_after_step_20(self, stop):
    if stop > 20:
      raise KeyboardInterrupt
    return original(self, stop)

  monkeypatch.setattr(darts.Darts, "train_steps", killed_after_step_20)
  with pytest.raises(KeyboardInterrupt):
    darts.run(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "darts_epochs.jsonl")  # Killed inside epoch 1.
  monkeypatch.setattr(darts.Darts, "train_steps", original)
  resumed = darts.run(config, str(tmp_path))
  assert resumed == summary
  assert _stable(_records(str(tmp_path))) == _stable(_records(workdir))
