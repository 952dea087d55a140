"""A NoteSequence TFRecord collection as cached training arrays (melody, drums, trio).

The collection is what ``python -m pipelines.convert_dir`` or ``pipelines.folk_melodies``
write (Magenta's ``--examples_path`` input). Each NoteSequence goes to ``validation`` or
``train`` by a SHA-256 of its ``id``, so the split does not depend on record order or on
the rest of the collection. Each sequence of the split is converted (train mode samples
with ``np.random.default_rng([seed, id hash])``), and the examples are padded to
``max_seq_len`` steps. The arrays are cached as ``.npz`` keyed by the converter settings,
split, mode, seed, eval fraction, padding length and a SHA-256 of the file's bytes.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

import numpy as np
import tqdm
from note_seq.protobuf import music_pb2

from flax_musicvae.data.arrays import cache_key, pad_tensors
from flax_musicvae.data.converter import Converter, ConverterTensors, Mode
from flax_musicvae.io.digest import file_sha256
from flax_musicvae.pipelines import note_sequence_io

SPLITS = ("train", "validation")
CACHE_VERSION = "v1"
FIELDS = ("inputs", "outputs", "controls", "lengths")


def id_hash(sequence_id: str) -> int:
  """A stable 64-bit hash of a NoteSequence id (first 8 bytes of its SHA-256)."""
  return int.from_bytes(hashlib.sha256(sequence_id.encode()).digest()[:8], "big")


def split_of(sequence_id: str, eval_fraction: float) -> str:
  """``validation`` for ids hashing into the first ``eval_fraction`` of the range."""
  return "validation" if id_hash(sequence_id) < eval_fraction * 2.0**64 else "train"


def split_sequences(path: str | os.PathLike, split: str, eval_fraction: float
                    ) -> list[music_pb2.NoteSequence]:
  """The NoteSequences of ``path`` assigned to ``split``, in file order."""
  _check_split(split, eval_fraction)
  out = []
  for index, ns in enumerate(note_sequence_io.read_note_sequences(path)):
    if not ns.id:
      raise ValueError(f"{os.fspath(path)}: record {index} has no NoteSequence id; the "
                       "train/validation split is made by hashing ids")
    if split_of(ns.id, eval_fraction) == split:
      out.append(ns)
  return out


def _check_split(split: str, eval_fraction: float) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if not 0.0 < eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")


def convert(sequences: list[music_pb2.NoteSequence], converter: Converter, mode: Mode | str,
            seed: int, progress: bool = False) -> ConverterTensors:
  """All examples of ``sequences``; sequence ``ns`` samples with rng ``[seed, id_hash]``."""
  out = ConverterTensors()
  for ns in tqdm.tqdm(sequences, desc="converting", unit="seq", disable=not progress):
    rng = np.random.default_rng([seed, id_hash(ns.id)])
    out.extend(converter.to_tensors(ns, mode, rng))
  return out


def pad_examples(examples: ConverterTensors, converter: Converter, max_seq_len: int
                 ) -> dict[str, np.ndarray]:
  """``{inputs, outputs, controls [N, max_seq_len, depth], lengths [N]}``."""
  lengths = np.array(examples.lengths, np.int32)
  longest = max((len(x) for x in examples.inputs + examples.outputs), default=0)
  if longest > max_seq_len:
    raise ValueError(f"an example has {longest} steps, more than max_seq_len={max_seq_len}; "
                     "the converter and the model config disagree")
  return {"inputs": pad_tensors(examples.inputs, max_seq_len, converter.input_depth),
          "outputs": pad_tensors(examples.outputs, max_seq_len, converter.output_depth),
          "controls": pad_tensors(examples.controls, max_seq_len, converter.control_depth),
          "lengths": lengths}


def cache_path(path: str | os.PathLike, split: str, converter: Converter, cache_dir,
               mode: Mode | str, seed: int, eval_fraction: float, max_seq_len: int
               ) -> pathlib.Path:
  """``<cache_dir>/note_sequences_<stem>_<split>_<key>.npz``; the key hashes the bytes."""
  key = cache_key(CACHE_VERSION, dict(
      converter=repr(converter), split=split, mode=Mode(mode).value, seed=seed,
      eval_fraction=eval_fraction, max_seq_len=max_seq_len, file=file_sha256(path)))
  return pathlib.Path(cache_dir) / f"note_sequences_{pathlib.Path(path).stem}_{split}_{key}.npz"


def _save(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  """Atomic write; ``inputs`` is left out when it equals ``outputs`` (e.g. melodies)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  if np.array_equal(arrays["inputs"], arrays["outputs"]):
    arrays = {k: v for k, v in arrays.items() if k != "inputs"}
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
    np.savez(f, **arrays)
  os.replace(f.name, path)


def _load(path: pathlib.Path) -> dict[str, np.ndarray]:
  with np.load(path) as cached:
    arrays = {k: cached[k] for k in cached.files}
  arrays.setdefault("inputs", arrays["outputs"])
  return arrays


def load_note_sequence_split(path: str | os.PathLike, split: str, converter: Converter,
                             cache_dir: str | os.PathLike, mode: Mode | str = Mode.EVAL,
                             seed: int = 0, eval_fraction: float = 0.1, *,
                             max_seq_len: int, min_examples: int = 1,
                             progress: bool = False) -> dict[str, np.ndarray]:
  """One split's padded examples, from the cache or converted (then cached).

  Args:
    path: NoteSequence TFRecord collection.
    split: ``train`` or ``validation``.
    converter: the representation.
    cache_dir: where the ``.npz`` caches live.
    mode: converter mode (``train`` samples <= max_tensors_per_notesequence per sequence).
    seed: train-mode sampling seed.
    eval_fraction: share of sequence ids that go to ``validation``.
    max_seq_len: padding length (the model's ``max_seq_len``).
    min_examples: fewer examples than this is an error (e.g. one batch).
    progress: show a progress bar while converting.

  Returns:
    float32 ``inputs``/``outputs``/``controls`` ``[N, max_seq_len, depth]`` and int32
    ``lengths`` ``[N]``.
  """
  _check_split(split, eval_fraction)
  if not pathlib.Path(path).is_file():
    raise FileNotFoundError(f"NoteSequence collection {os.fspath(path)} does not exist")
  cache = cache_path(path, split, converter, cache_dir, mode, seed, eval_fraction,
                     max_seq_len)
  if cache.exists():
    arrays = _load(cache)
  else:
    sequences = split_sequences(path, split, eval_fraction)
    arrays = pad_examples(convert(sequences, converter, mode, seed, progress), converter,
                          max_seq_len)
    _save(cache, arrays)
  if len(arrays["lengths"]) < min_examples:
    raise ValueError(
        f"{os.fspath(path)}: the {split} split has {len(arrays['lengths'])} examples for "
        f"{type(converter).__name__}, fewer than the {min_examples} needed; use a larger "
        "collection, another eval_fraction or a smaller batch size")
  return arrays
