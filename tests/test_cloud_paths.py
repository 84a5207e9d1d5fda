"""A ``gs://`` workdir, through the same code a real bucket goes through.

``etils.epath``'s backend for ``gs://`` is replaced by one that keeps the
bucket in a local directory (object-store semantics kept where they matter: no
append, no file lock). Orbax reaches buckets through TensorStore's own GCS
driver, not epath, so only orbax's directory is redirected to the same local
bucket; everything nao_jax writes itself goes through epath.
"""

import json
import os
import pathlib

from etils.epath import backend as backend_lib
from etils.epath import gpath
import pytest

from configs import nb201 as nb201_config
from nao_jax import checkpoint
from nao_jax import configuration
from nao_jax import history
from nao_jax import main

BUCKET = "gs://bucket/runs/nb201"


class _LocalBucket(backend_lib.Backend):
  """The ``gs://`` backend of epath, stored under ``root``."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    self.local = backend_lib.os_backend

  def _path(self, path) -> str:
    text = os.fspath(path)
    assert text.startswith("gs://"), text
    return str(self.root / text[len("gs://"):])

  def open(self, path, mode):
    assert "a" not in mode and "+" not in mode, f"object stores cannot {mode!r}"
    return self.local.open(self._path(path), mode)

  def exists(self, path):
    return self.local.exists(self._path(path))

  def isdir(self, path):
    return self.local.isdir(self._path(path))

  def listdir(self, path):
    return self.local.listdir(self._path(path))

  def glob(self, path):
    return ["gs://" + os.path.relpath(p, self.root) for p in self.local.glob(self._path(path))]

  def walk(self, top, *, top_down=True, on_error=None):
    raise NotImplementedError

  def makedirs(self, path, *, exist_ok=False, mode=None):
    return self.local.makedirs(self._path(path), exist_ok=exist_ok)

  def mkdir(self, path, *, exist_ok=False, mode=None):
    return self.local.mkdir(self._path(path), exist_ok=exist_ok)

  def rmtree(self, path):
    return self.local.rmtree(self._path(path))

  def remove(self, path):
    return self.local.remove(self._path(path))

  def rename(self, path, dst):
    return self.local.rename(self._path(path), self._path(dst))

  def replace(self, path, dst):
    return self.local.replace(self._path(path), self._path(dst))

  def copy(self, path, dst, overwrite):
    return self.local.copy(self._path(path), self._path(dst), overwrite=overwrite)

  def stat(self, path):
    return self.local.stat(self._path(path))


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """The local directory behind ``gs://``."""
  root = tmp_path / "gcs"
  root.mkdir()
  store = _LocalBucket(root)
  monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "gs", store)  # pylint: disable=protected-access
  manager = checkpoint.ocp.CheckpointManager

  def redirected(directory, *args, **kwargs):
    return manager(store._path(directory), *args, **kwargs)  # pylint: disable=protected-access

  monkeypatch.setattr(checkpoint.ocp, "CheckpointManager", redirected)
  return root / "bucket" / "runs" / "nb201"


def test_a_search_in_a_bucket_writes_every_record_there_and_resumes(bucket, nb201_table_path):
  config = nb201_config.get_config("small")
  config.budget = 20
  main.run(config, BUCKET)
  records = history.read(f"{BUCKET}/history.jsonl")
  assert len(records) == 20
  assert json.loads((bucket / "config.json").read_text())["budget"] == 20
  best = json.loads((bucket / "best_arch.json").read_text())
  assert best["hash"] == max(records, key=lambda r: r["score"])["hash"]
  assert (bucket / "plots" / "search.png").read_bytes()[:4] == b"\x89PNG"
  (events,) = (bucket / "tb" / "search").glob("events.out.tfevents.*")
  assert events.stat().st_size > 0
  assert list((bucket / "checkpoints").iterdir())
  assert not list(bucket.rglob("*.tmp.*")) and not pathlib.Path("gs:").exists()

  # A resume with a larger budget continues the recorded search in the bucket.
  config.budget = 30
  main.run(config, BUCKET)
  again = history.read(f"{BUCKET}/history.jsonl")
  assert len(again) == 30 and again[:20] == records
  # A setting that changes results is refused, as on a local disk.
  config.seed = 1
  with pytest.raises(configuration.ConfigError, match="seed"):
    main.run(config, BUCKET)


def test_a_damaged_last_record_in_a_bucket_is_set_aside(bucket):
  line = {"index": 0, "round": 0, "hash": "a", "tokens": [1], "score": 0.5, "report": {},
          "cost": 1.0}
  bucket.mkdir(parents=True)
  (bucket / "history.jsonl").write_text(json.dumps(line) + "\n" + '{"index": 1, "rou')
  assert history.read(f"{BUCKET}/history.jsonl") == [line]
  assert (bucket / "history.jsonl").read_text() == json.dumps(line) + "\n"
  assert (bucket / "history.jsonl.corrupt").read_text() == '{"index": 1, "rou\n'
  writer = history.Writer(f"{BUCKET}/history.jsonl")
  writer.append({**line, "index": 1})
  writer.close()
  assert [r["index"] for r in history.read(f"{BUCKET}/history.jsonl")] == [0, 1]
