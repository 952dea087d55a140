"""``load_groove_split``: a split's arrays from an ``.npz`` cache keyed by the settings and
the data, built (:mod:`flax_musicvae.pipelines.groove.build`) and cached on a miss."""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import tempfile

import numpy as np

from flax_musicvae import data_fetch
from flax_musicvae.data.arrays import cache_key
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.groove import GrooveConverter
from flax_musicvae.pipelines.groove import build
from flax_musicvae.pipelines.groove.sources import _Source, read_split_index


CACHE_VERSION = "v1"


def _cache_path(root, split, converter, split_bars, mode, seed, cache_dir) -> pathlib.Path:
  """Cache file named by a hash of the settings, info.csv and the split's files."""
  source = _Source(root)
  midis = (source.read_midi(row["midi_filename"]) or b"<missing>"
           for row in read_split_index(root).get(split, []))
  key = cache_key(CACHE_VERSION, dict(
      converter=repr(converter), split_bars=split_bars, mode=Mode(mode).value, seed=seed),
      itertools.chain([source.read("info.csv")], midis))
  return pathlib.Path(cache_dir) / f"groove_{split}_{split_bars}bar_{key}.npz"


def load_groove_split(root: str | os.PathLike, split: str, converter: GrooveConverter,
                      cache_dir: str | os.PathLike, split_bars: int | None = None,
                      mode: Mode | str = Mode.EVAL, seed: int = 0, workers: int = 2,
                      progress: bool = False) -> dict[str, np.ndarray]:
  """One split's examples, from the cache or built (then cached).

  Args:
    root: the dataset's ``groove/`` folder, the folder holding it, or the zip; when
      it does not exist and is named like the official dataset (or is empty), the
      official zip, downloaded into the cache first if needed (``data_fetch``).
    split: "train", "validation" or "test".
    converter: the representation (its ``split_bars`` is the example length).
    cache_dir: where ``groove_<split>_<bars>bar_<hash>.npz`` files live.
    split_bars: tfds window length in bars (default: ``converter.split_bars``).
    mode: converter mode; with note dropout the draws are seeded by ``seed`` and
      the file index, so a cache holds one fixed draw.
    workers: processes for a build.

  Returns:
    ``inputs``/``outputs``/``controls`` float32 ``[N, T, depth]``, ``lengths`` [N],
    ``window`` (tfds window index in its file) and per-example metadata
    (``id``, ``midi_filename``, ``drummer``, ``session``, ``style``, ``bpm``,
    ``beat_type``, ``time_signature``), plus ``stats`` (a JSON string of counts).
  """
  split_bars = split_bars or converter.split_bars
  root = data_fetch.groove_root(root)
  path = _cache_path(root, split, converter, split_bars, mode, seed, cache_dir)
  if path.exists():
    with np.load(path) as cached:
      arrays = {k: cached[k] for k in cached.files}
    if "inputs" not in arrays:
      arrays["inputs"] = arrays["outputs"]
    return arrays
  arrays, stats = build.build_split(root, split, converter, split_bars, mode, seed, workers,
                                    progress)
  _save(path, arrays, stats)
  return dict(arrays, stats=np.array(json.dumps(stats)))


def _save(path: pathlib.Path, arrays: dict[str, np.ndarray], stats: dict) -> None:
  """Atomic write; ``inputs`` is left out when it equals ``outputs``."""
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = dict(arrays, stats=np.array(json.dumps(stats)))
  if arrays["inputs"] is arrays["outputs"]:
    del arrays["inputs"]
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
    np.savez(f, **arrays)
  os.replace(f.name, path)
