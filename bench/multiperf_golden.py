r"""Golden tensors of Magenta's own MultiInstrumentPerformanceConverter.

Two steps, two virtualenvs:

  # 1. (this project's venv) inputs: real NoteSequences + random decoder outputs
  python bench/multiperf_golden.py prepare --out /tmp/multiperf_inputs.npz
  # 2. (Magenta 2.1.4's venv, /work/shared/peers/README.md) Magenta converts them
  TF_USE_LEGACY_KERAS=1 ~/.cache/musicvae-peers/magenta/venv/bin/python \
    bench/multiperf_golden.py magenta --inputs /tmp/multiperf_inputs.npz \
    --out tests/fixtures/multiperf/golden.npz

Inputs: the first bars of a few Bach chorales from music21's corpus (four parts,
programs 40-43, via ``flax_musicvae.pipelines.multipart_scores``), one of them with a
real Groove MIDI drum performance (velocities, drums) added as a fifth instrument, and a few random
one-hot decoder outputs (and chord controls). The golden file holds, for the med and
med_chords converters of ``hier-multiperf_vel_1bar``, the eval-mode ``to_tensors`` of
each sequence (one-hots stored as token ids, -1 on all-zero rows) and the serialized
NoteSequences ``from_tensors`` gives back for those tensors and for the random outputs.
``tests/test_multiperf_converter.py`` checks this project's converter against it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

CHORALES = ("bwv10.7.mxl", "bwv101.7.mxl", "bwv102.7.mxl")
GROOVE_DRUMS = "drummer1/session1/1_funk_80_beat_4-4.mid"
NUM_BARS = 4
NUM_RANDOM = 3
CONVERTERS = {
    "med": dict(num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8,
                max_events_per_instrument=64),
    "med_chords": dict(num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8,
                       max_events_per_instrument=64, chord_encoding="triad"),
}
DEPTH, SEGMENTS, EVENTS, CHORD_DEPTH = 490, 8, 64, 49


def token_ids(onehots: np.ndarray) -> np.ndarray:
  """``[..., depth]`` one-hots -> int16 ids, -1 where a row is all zero."""
  onehots = np.asarray(onehots)
  return np.where(onehots.any(-1), onehots.argmax(-1), -1).astype(np.int16)


def one_hots(ids: np.ndarray, depth: int) -> np.ndarray:
  """Inverse of :func:`token_ids` (float32)."""
  out = np.zeros(ids.shape + (depth,), np.float32)
  idx = np.nonzero(ids >= 0)
  out[idx + (ids[idx],)] = 1.0
  return out


def pack(blobs) -> dict[str, np.ndarray]:
  """Byte strings -> ``{bytes: uint8 [total], offsets: int64 [n+1]}`` (no pickling)."""
  blobs = list(blobs)
  offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
  return {"bytes": np.frombuffer(b"".join(blobs), np.uint8), "offsets": offsets}


def unpack(data, key: str) -> list[bytes]:
  """Inverse of :func:`pack` for ``data[key + '/bytes']`` and ``key + '/offsets'``."""
  raw, offsets = data[f"{key}/bytes"].tobytes(), data[f"{key}/offsets"]
  return [raw[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def _packed(key: str, blobs) -> dict[str, np.ndarray]:
  return {f"{key}/{k}": v for k, v in pack(blobs).items()}


def _first_bars(ns, seconds: float):
  from note_seq import sequences_lib  # pylint: disable=import-outside-toplevel
  return sequences_lib.extract_subsequence(ns, 0.0, seconds)


def prepare(out: pathlib.Path) -> None:
  """Real sequences and random decoder outputs -> ``out`` (this project's venv)."""
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  import note_seq  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from flax_musicvae.pipelines import folk_melodies, multipart_scores
  files = {p.name: p for p in multipart_scores.score_files(["bach"])}
  seconds = NUM_BARS * 4 * 60.0 / multipart_scores.folk_melodies.QPM
  sequences = []
  for name in CHORALES:
    (ns,), _ = folk_melodies.convert_file(files[name], "bach")
    sequences.append(_first_bars(multipart_scores.assign_programs(ns), seconds))
  groove = pathlib.Path(__file__).resolve().parents[1] / "../shared/data/groove-v1.0.0-midionly/groove"
  drums = note_seq.midi_file_to_note_sequence(str(groove / GROOVE_DRUMS))
  mixed = note_seq.NoteSequence()
  mixed.CopyFrom(sequences[0])
  for note in drums.notes:
    if note.start_time < seconds:
      new = mixed.notes.add()
      new.CopyFrom(note)
      new.instrument = 9
      new.end_time = min(new.end_time, seconds)
  mixed.total_time = max(mixed.total_time, max(n.end_time for n in mixed.notes))
  sequences.append(mixed)
  rng = np.random.default_rng(0)
  random_ids = rng.integers(0, DEPTH, (NUM_RANDOM, SEGMENTS * EVENTS)).astype(np.int16)
  random_chords = rng.integers(0, CHORD_DEPTH, (NUM_RANDOM, SEGMENTS * EVENTS)).astype(np.int16)
  # A program token at the start of most segments, as a trained model emits.
  starts = np.arange(SEGMENTS) * EVENTS
  random_ids[:, starts] = np.where(rng.random((NUM_RANDOM, SEGMENTS)) < 0.8,
                                   rng.integers(360, 489, (NUM_RANDOM, SEGMENTS)),
                                   random_ids[:, starts])
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(out, **_packed("sequences", [s.SerializeToString() for s in sequences]),
                      random_ids=random_ids, random_chords=random_chords)
  print(f"{out}: {len(sequences)} sequences, {NUM_RANDOM} random outputs")


def _ragged_size_shim() -> None:
  """Magenta tests ``np.size(control)`` on ragged nested lists (chord controls): numpy
  1.21, its pinned version, made an object array (size > 0); numpy >= 1.24 raises. Same
  answer here: a ragged (hence non-empty) list has a non-zero size."""
  size = np.size

  def ragged_size(a, axis=None):
    try:
      return size(a, axis)
    except ValueError:
      return len(a)
  np.size = ragged_size


def run_magenta(inputs: pathlib.Path, out: pathlib.Path) -> None:
  """Magenta's converter on the prepared inputs -> golden ``out`` (Magenta's venv)."""
  import note_seq  # pylint: disable=import-outside-toplevel
  from magenta.models.music_vae import data_hierarchical  # pylint: disable=import-outside-toplevel
  _ragged_size_shim()
  data = np.load(inputs)
  blobs = unpack(data, "sequences")
  sequences = [note_seq.NoteSequence.FromString(b) for b in blobs]
  golden = {**_packed("sequences", blobs), "random_ids": data["random_ids"],
            "random_chords": data["random_chords"]}
  for name, kwargs in CONVERTERS.items():
    if kwargs.get("chord_encoding") == "triad":
      kwargs = dict(kwargs, chord_encoding=note_seq.TriadChordOneHotEncoding())
    conv = data_hierarchical.MultiInstrumentPerformanceConverter(**kwargs)
    conv.set_mode("eval")
    counts, ids, chord_ids, lengths, decoded = [], [], [], [], []
    for ns in sequences:
      t = conv.to_tensors(ns)
      counts.append(len(t.outputs))
      for x, c, n in zip(t.outputs, t.controls, t.lengths):
        ids.append(token_ids(x))
        chord_ids.append(token_ids(c) if np.size(c) else np.full(len(x), -1, np.int16))
        lengths.append(np.asarray(n, np.int32))
      controls = [np.asarray(c, np.float32) for c in t.controls] if np.size(
          t.controls) else None
      decoded += [s.SerializeToString() for s in conv.from_tensors(
          [np.asarray(x, np.float32) for x in t.outputs], controls)]
    rand = [one_hots(r, DEPTH) for r in data["random_ids"]]
    rand_c = [one_hots(r, CHORD_DEPTH) for r in data["random_chords"]]
    rand_decoded = conv.from_tensors(rand, rand_c if kwargs.get("chord_encoding") else None)
    golden.update({
        f"{name}/counts": np.array(counts, np.int32),
        f"{name}/ids": np.array(ids, np.int16).reshape(-1, SEGMENTS * EVENTS),
        f"{name}/chord_ids": np.array(chord_ids, np.int16).reshape(-1, SEGMENTS * EVENTS),
        f"{name}/lengths": np.array(lengths, np.int32).reshape(-1, SEGMENTS),
        **_packed(f"{name}/decoded", decoded),
        **_packed(f"{name}/random_decoded", [s.SerializeToString() for s in rand_decoded]),
    })
    print(f"{name}: {counts} examples per sequence")
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(out, **golden)
  print(f"wrote {out}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="step", required=True)
  p = sub.add_parser("prepare")
  p.add_argument("--out", type=pathlib.Path, required=True)
  m = sub.add_parser("magenta")
  m.add_argument("--inputs", type=pathlib.Path, required=True)
  m.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args(argv)
  if args.step == "prepare":
    prepare(args.out)
  else:
    run_magenta(args.inputs, args.out)


if __name__ == "__main__":
  main()
