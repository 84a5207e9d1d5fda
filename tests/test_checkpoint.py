"""Orbax checkpoints: round trip, latest step, retention, clear errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax.checkpoint import Checkpointer


def make_state(value):
  return {"params": {"w": jnp.full((3, 2), value, jnp.float32)},
          "step": np.int64(value), "pool": np.arange(5, dtype=np.int32) * value}


def test_round_trip_and_latest_step(tmp_path):
  with Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2) as ckpt:
    assert ckpt.latest_step() is None
    for step in (1, 2, 3):
      ckpt.save(step, make_state(step), {"round": step, "note": "x"})
    assert ckpt.all_steps() == [2, 3]
  with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
    state, metadata = ckpt.restore(make_state(0))
    assert metadata == {"round": 3, "note": "x"}
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 3.0))
    np.testing.assert_array_equal(state["pool"], np.arange(5) * 3)
    assert int(state["step"]) == 3
    older, _ = ckpt.restore(make_state(0), step=2)
    assert int(older["step"]) == 2


def test_missing_and_mismatched_checkpoints_raise_clear_errors(tmp_path):
  with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
      ckpt.restore(make_state(0))
    ckpt.save(1, make_state(1))
    with pytest.raises(ValueError, match="cannot be restored"):
      ckpt.restore({"other": np.zeros(2)})
