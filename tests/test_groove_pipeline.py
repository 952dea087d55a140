"""Groove MIDI pipeline: split index, tfds window counts, fast path == reference path,
the fast MIDI reader == pretty_midi, caching, bad input, CLI."""

import io
import json
import shutil
import warnings
import zipfile

import numpy as np
import pytest

from conftest import FIXTURES
from flax_musicvae.data import midi_fast
from flax_musicvae.data.groove import GrooveConverter
from flax_musicvae.pipelines import groove

GROOVE_FIXTURES = FIXTURES / "groove"
CONVERTER = GrooveConverter(split_bars=4)
# Fixture files whose reference (pretty_midi) run is short enough for the fast suite.
QUICK_FILES = (
    "drummer1/session1/100_neworleans-secondline_94_beat_4-4.mid",
    "drummer1/session1/145_latin-brazilian-baiao_95_beat_4-4.mid",
    "drummer1/session1/103_funk_95_fill_4-4.mid",
    "drummer1/session1/29_latin-samba_116_fill_4-4.mid",
    "drummer6/session1/3_rock_80_beat_6-8.mid",
    "drummer6/session3/2_rock_100_beat_4-4.mid",
    "drummer10/session1/9_jazz-swing_110_beat_4-4.mid",
)
TFDS_WINDOWS = {4: {"train": 17261, "validation": 2121, "test": 2033},
                2: {"train": 18163, "validation": 2252, "test": 2204}}


@pytest.fixture(autouse=True)
def _quiet_pretty_midi():
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    yield


def _rows(root):
  return {r["midi_filename"]: r for rows in groove.read_split_index(root).values()
          for r in rows}


def assert_same_examples(fast, reference):
  assert fast is not None and not fast.used_reference
  assert fast.windows == reference.windows
  assert fast.dropped == reference.dropped
  assert fast.window_index == reference.window_index
  for name in ("inputs", "outputs", "controls"):
    for a, b in zip(getattr(fast.tensors, name), getattr(reference.tensors, name)):
      np.testing.assert_array_equal(a, b)
  assert fast.tensors.lengths == reference.tensors.lengths


def test_read_split_index_fixtures():
  index = groove.read_split_index(GROOVE_FIXTURES)
  assert {k: len(v) for k, v in index.items()} == {"train": 9, "validation": 2, "test": 2}
  assert index["test"][0]["midi_filename"] == "drummer1/session1/105_funk_95_fill_4-4.mid"
  assert groove.read_split_index(GROOVE_FIXTURES.parent) == index  # folder holding groove/


def test_read_split_index_real(groove_dir):
  index = groove.read_split_index(groove_dir)
  assert {k: len(v) for k, v in index.items()} == {"train": 897, "validation": 124,
                                                   "test": 129}


def test_missing_index_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="info.csv"):
    groove.read_split_index(tmp_path)


@pytest.mark.parametrize("name", sorted(_rows(GROOVE_FIXTURES)))
def test_fast_midi_reader_matches_pretty_midi(name):
  import pretty_midi
  data = (GROOVE_FIXTURES / name).read_bytes()
  pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
  fast = midi_fast.read_midi(data)
  table = fast.tick_to_time()
  assert fast.tick_scales == pm._tick_scales
  assert fast.end_time(table) == pm.get_end_time()
  assert [(t.numerator, t.denominator, t.time) for t in pm.time_signature_changes] == [
      (n, d, table[t]) for n, d, t in fast.time_signatures]
  assert len(fast.instruments) == len(pm.instruments)
  for ours, theirs in zip(fast.instruments, pm.instruments):
    assert (ours.program, ours.is_drum) == (theirs.program, theirs.is_drum)
    assert [(n.start, n.end, n.pitch, n.velocity) for n in theirs.notes] == list(zip(
        table[ours.starts], table[ours.ends], ours.pitches, ours.velocities))


def test_fast_midi_reader_event_loop_matches_vectorised():
  """The per-event fallback decoder gives what the vectorised one gives."""
  data = (GROOVE_FIXTURES / "drummer1/session1/101_dance-disco_120_beat_4-4.mid").read_bytes()
  vectorised = midi_fast.read_midi(data)
  loader, out = midi_fast._Loader(), midi_fast.MidiData(480, [(0, 1 / 960)], 0, [], [], [])
  midi_fast._read_track(data, 22, len(data), 0, loader, out)
  (inst,) = [i.freeze() for i in loader.instruments.values()]
  for field in ("starts", "ends", "pitches", "velocities"):
    np.testing.assert_array_equal(getattr(inst, field),
                                  getattr(vectorised.instruments[0], field))
  assert len(inst.event_ticks) > 100
  np.testing.assert_array_equal(np.sort(inst.event_ticks),
                                np.sort(vectorised.instruments[0].event_ticks))


@pytest.mark.parametrize("data, message", [
    (b"RIFF0000", "MThd"),
    (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x10\x00\x90",
     "truncated"),
    (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xf4\x00\x00",
     "undefined status"),
])
def test_fast_midi_reader_rejects_corrupt_data(data, message):
  with pytest.raises(midi_fast.MidiError, match=message):
    midi_fast.read_midi(data)


@pytest.mark.parametrize("name", QUICK_FILES)
def test_fast_path_equals_reference_path(name):
  row = _rows(GROOVE_FIXTURES)[name]
  midi = (GROOVE_FIXTURES / name).read_bytes()
  for split_bars in (2, 4):
    converter = GrooveConverter(split_bars=split_bars)
    assert_same_examples(
        groove.fast_file_examples(midi, row, split_bars, converter),
        groove.reference_file_examples(midi, row, split_bars, converter))


def test_fast_path_equals_reference_path_with_corruptions():
  name = "drummer6/session3/2_rock_100_beat_4-4.mid"
  row, midi = _rows(GROOVE_FIXTURES)[name], (GROOVE_FIXTURES / name).read_bytes()
  converter = GrooveConverter(split_bars=2, tapify=True, fixed_velocities=True,
                              hits_as_controls=True, max_note_dropout_probability=0.8)
  fast = groove.fast_file_examples(midi, row, 2, converter, "train",
                                   np.random.default_rng(3))
  assert_same_examples(fast, groove.reference_file_examples(
      midi, row, 2, converter, "train", np.random.default_rng(3)))
  assert fast.tensors.controls[0].shape == (32, 9)


def test_load_groove_split_caches_and_keys(tmp_path, monkeypatch):
  arrays = groove.load_groove_split(GROOVE_FIXTURES, "validation", CONVERTER, tmp_path,
                                    workers=1)
  stats = json.loads(str(arrays["stats"]))
  assert stats["files"] == 2 and stats["windows"] == 11
  assert stats["examples"] == len(arrays["outputs"]) == 9
  assert stats["windows_dropped"] == {groove.TOO_SHORT: 2}
  assert arrays["outputs"].shape == arrays["inputs"].shape == (9, 64, 27)
  assert arrays["controls"].shape == (9, 64, 0)
  assert set(arrays["lengths"]) == {64}
  assert set(arrays["style"]) == {"latin/brazilian-baiao"} and set(arrays["bpm"]) == {95}
  assert list(arrays["window"]) == list(range(9))
  # The arrays are the reference path's examples, in file and window order.
  rows = groove.read_split_index(GROOVE_FIXTURES)["validation"]
  reference = [t for r in rows for t in groove.reference_file_examples(
      (GROOVE_FIXTURES / r["midi_filename"]).read_bytes(), r, 4,
      CONVERTER).tensors.outputs]
  np.testing.assert_array_equal(arrays["outputs"], np.stack(reference))
  # Second call: read from the cache, nothing rebuilt.
  monkeypatch.setattr(groove.build, "build_split", lambda *a, **k: pytest.fail("rebuilt"))
  again = groove.load_groove_split(GROOVE_FIXTURES, "validation", CONVERTER, tmp_path)
  np.testing.assert_array_equal(again["outputs"], arrays["outputs"])
  # Other converter settings -> another cache entry.
  with pytest.raises(pytest.fail.Exception, match="rebuilt"):
    groove.load_groove_split(GROOVE_FIXTURES, "validation",
                             GrooveConverter(split_bars=4, humanize=True), tmp_path)


def test_zip_layout_and_data_hash(tmp_path):
  zip_path = tmp_path / "groove-v1.0.0-midionly.zip"
  with zipfile.ZipFile(zip_path, "w") as z:
    for path in sorted(GROOVE_FIXTURES.rglob("*")):
      z.write(path, "groove/" + path.relative_to(GROOVE_FIXTURES).as_posix())
  assert groove.read_split_index(zip_path) == groove.read_split_index(GROOVE_FIXTURES)
  from_zip = groove.load_groove_split(zip_path, "test", CONVERTER, tmp_path / "a",
                                      workers=1)
  folder = groove.load_groove_split(GROOVE_FIXTURES, "test", CONVERTER, tmp_path / "b",
                                    workers=1)
  for key in ("outputs", "lengths", "midi_filename"):
    np.testing.assert_array_equal(from_zip[key], folder[key])
  assert {p.name for p in (tmp_path / "a").iterdir()} == {
      p.name for p in (tmp_path / "b").iterdir()}
  # Changing a data file changes the cache key.
  copy = tmp_path / "copy" / "groove"
  shutil.copytree(GROOVE_FIXTURES, copy)
  name = groove.read_split_index(copy)["test"][0]["midi_filename"]
  (copy / name).write_bytes((copy / name).read_bytes()[:-4] + b"\x00\xff\x2f\x00")
  groove.load_groove_split(copy, "test", CONVERTER, tmp_path / "b", workers=1)
  assert len(list((tmp_path / "b").iterdir())) == 2


def test_corrupt_midi_is_skipped_and_counted(tmp_path):
  root = tmp_path / "groove"
  shutil.copytree(GROOVE_FIXTURES, root)
  rows = groove.read_split_index(root)["validation"]
  truncated = root / rows[1]["midi_filename"]
  truncated.write_bytes(truncated.read_bytes()[:200])
  (root / rows[0]["midi_filename"]).write_bytes(b"not a midi file")
  arrays = groove.load_groove_split(root, "validation", CONVERTER, tmp_path / "cache",
                                    workers=2)
  stats = json.loads(str(arrays["stats"]))
  assert stats["files_skipped"] == {
      "unreadable: MidiError: MThd not found: not a MIDI file": 1,
      "unreadable: MidiError: track 0 is truncated": 1}
  assert stats["examples"] == len(arrays["outputs"]) == 0
  # A file listed in info.csv but absent is skipped too.
  (root / rows[0]["midi_filename"]).unlink()
  stats = json.loads(str(groove.load_groove_split(
      root, "validation", CONVERTER, tmp_path / "cache", workers=1)["stats"]))
  assert stats["files_skipped"]["missing_file"] == 1


def test_cli_help_and_build(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    groove.main(["--help"])
  assert exit_info.value.code == 0
  assert "--cache_dir" in capsys.readouterr().out
  groove.main(["--root", str(GROOVE_FIXTURES), "--cache_dir", str(tmp_path),
               "--splits", "validation", "test", "--workers", "1"])
  out = capsys.readouterr().out
  assert "validation: 2 files, 11 windows, 9 examples (9, 64, 27)" in out
  assert "test: 2 files" in out


@pytest.mark.slow
@pytest.mark.parametrize("split_bars", [4, 2])
def test_window_counts_equal_tfds(groove_dir, split_bars):
  converter = GrooveConverter(split_bars=split_bars)
  for split, expected in TFDS_WINDOWS[split_bars].items():
    _, stats = groove.build_split(groove_dir, split, converter, workers=2)
    assert stats["windows"] == expected, split
    assert stats["files_skipped"] == {} and stats["reference_path_files"] == 0
    assert stats["examples"] + sum(stats["windows_dropped"].values()) == expected


@pytest.mark.slow
def test_fast_path_equals_reference_on_real_sample(groove_dir):
  """A seeded sample of real files of every split, 2- and 4-bar windows.

  Mostly short files: the reference path deep-copies the whole file per window.
  """
  rows = [r for rows in groove.read_split_index(groove_dir).values() for r in rows]
  sizes = np.array([(groove_dir / r["midi_filename"]).stat().st_size for r in rows])
  rng = np.random.default_rng(0)
  sample = np.r_[rng.choice(np.flatnonzero(sizes < 6000), 100, replace=False),
                 rng.choice(np.flatnonzero((sizes >= 6000) & (sizes < 12000)), 6,
                            replace=False)]
  assert {rows[i]["split"] for i in sample} == set(groove.SPLITS)
  examples = 0
  for k, i in enumerate(sample):
    split_bars = 2 + 2 * (k % 2)
    converter = GrooveConverter(split_bars=split_bars)
    midi = (groove_dir / rows[i]["midi_filename"]).read_bytes()
    reference = groove.reference_file_examples(midi, rows[i], split_bars, converter)
    assert_same_examples(
        groove.fast_file_examples(midi, rows[i], split_bars, converter), reference)
    examples += len(reference.tensors)
  assert examples > 300


def test_reread_emulation_matches_pretty_midi_write_and_read():
  """Overlapping notes of one pitch, zero-length and back-to-back notes."""
  import pretty_midi
  notes = [  # (pitch, velocity, on tick, off tick), in instrument order
      (38, 90, 100, 200), (38, 70, 150, 180),  # overlap: one note-off closes both
      (42, 60, 300, 300),  # zero length: never closed by its own note-off
      (42, 61, 400, 450), (42, 62, 450, 500),  # back to back
      (36, 100, 10, 60), (36, 101, 10, 70),  # same onset twice
      (51, 40, 600, 650), (46, 50, 600, 650)]  # simultaneous, different pitches
  pitch, velocity, on, off = (np.array(c) for c in zip(*notes))
  pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120.0)
  drums = pretty_midi.Instrument(0, is_drum=True)
  scale = 60.0 / (120.0 * 480)
  drums.notes = [pretty_midi.Note(int(v), int(p), a * scale, b * scale)
                 for p, v, a, b in notes]
  pm.instruments.append(drums)
  written = io.BytesIO()
  pm.write(written)
  reread = pretty_midi.PrettyMIDI(io.BytesIO(written.getvalue())).instruments[0].notes
  expected = [(n.pitch, n.velocity, round(n.start / scale)) for n in reread]
  # All in one window (replayed), or the last two alone (the simple path).
  for window in (np.zeros(len(notes), int), np.array([1] * 7 + [0] * 2)):
    order = groove.fast._reread_order(window, pitch, velocity, on, off)
    got = [(pitch[i], velocity[i], on[i]) for i in order]
    want = [n for n in expected if notes_in(n, notes, window, 0)] + [
        n for n in expected if notes_in(n, notes, window, 1)]
    assert got == want


def notes_in(note, notes, window, w):
  return any(n[:2] == note[:2] and window[i] == w for i, n in enumerate(notes))
