"""Shared test setup: 8 fake CPU devices (for data-parallel tests) and paths."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def nb201_table_path() -> pathlib.Path:
  """The offline NAS-Bench-201 table beside the repo (../shared/data)."""
  path = SHARED_DATA / "nasbench201" / "nb201_acc.npz"
  if not path.exists():
    pytest.skip(f"NAS-Bench-201 table not found at {path}")
  return path
