"""convert_dir: Magenta's fields, parallel == serial, and a corpus of bad inputs built in tmp."""

import io
import json
import os
import pathlib

import mido
import numpy as np
import pytest
from note_seq import midi_io

from flax_musicvae.data import converter as converter_lib
from flax_musicvae.data import drums as drums_lib
from flax_musicvae.data import groove as groove_lib
from flax_musicvae.pipelines import convert_dir, note_sequence_io

_SCORE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1">
  <part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>
  <part id="P1"><measure number="1">
    <attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>
    <note><pitch><step>C</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note>
  </measure></part>
</score-partwise>
"""


def _midi(num_notes: int = 16, *, channel: int = 9, tempos=((0, 120),),
          time_signature=(4, 4), ppq: int = 480) -> bytes:
  """A one-track MIDI file: ``num_notes`` eighth notes, tempo changes at (tick, bpm)."""
  events = [(tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
            for tick, bpm in tempos]
  events.append((0, mido.MetaMessage("time_signature", numerator=time_signature[0],
                                     denominator=time_signature[1])))
  for i in range(num_notes):
    pitch = (36, 42, 38, 46)[i % 4]  # kick, closed hi-hat, snare, open hi-hat
    events.append((i * ppq // 2, mido.Message("note_on", channel=channel, note=pitch,
                                              velocity=1 + i % 127)))
    events.append((i * ppq // 2 + ppq // 4, mido.Message("note_off", channel=channel,
                                                         note=pitch)))
  events.sort(key=lambda e: e[0])
  track, now = mido.MidiTrack(), 0
  for tick, message in events:
    track.append(message.copy(time=tick - now))
    now = tick
  midi = mido.MidiFile(ticks_per_beat=ppq)
  midi.tracks.append(track)
  buffer = io.BytesIO()
  midi.save(file=buffer)
  return buffer.getvalue()


# Files that convert (with the observations expected) and files skipped (with the reason).
GOOD = {
    "beat.mid": (),
    "sub/beat2.MID": (),
    "sub/deeper/beat3.midi": (),
    "score.musicxml": (convert_dir.Observation.NO_DRUM_NOTES,),
    "three_four.mid": (convert_dir.Observation.NOT_4_4,),
    "tempo_changes.mid": (convert_dir.Observation.TEMPO_CHANGES,),
    "no_drums.mid": (convert_dir.Observation.NO_DRUM_NOTES,),
    "no_notes.mid": (convert_dir.Observation.NO_NOTES,),
    "huge.mid": (),
}
BAD = {
    "empty.mid": convert_dir.SkipReason.EMPTY,
    "truncated.mid": convert_dir.SkipReason.TRUNCATED,
    "sub/truncated_header.mid": convert_dir.SkipReason.TRUNCATED,
    "random.mid": convert_dir.SkipReason.CORRUPT,
    "garbage.midi": convert_dir.SkipReason.CORRUPT,
    "broken.xml": convert_dir.SkipReason.CORRUPT,
    "broken.mxl": convert_dir.SkipReason.CORRUPT,
    "dangling.mid": convert_dir.SkipReason.UNREADABLE,
}
IGNORED = ["notes.txt", "sub/README"]
HUGE_NOTES = 20000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp("corpus") / "my_collection"
  (root / "sub" / "deeper").mkdir(parents=True)
  rng = np.random.default_rng(0)
  good_midi = _midi()
  files = {
      "beat.mid": good_midi,
      "sub/beat2.MID": _midi(9),
      "sub/deeper/beat3.midi": _midi(5),
      "score.musicxml": _SCORE_XML.encode(),
      "three_four.mid": _midi(time_signature=(3, 4)),
      "tempo_changes.mid": _midi(tempos=((0, 120), (4 * 480, 90))),
      "no_drums.mid": _midi(channel=0),
      "no_notes.mid": _midi(0),
      "huge.mid": _midi(HUGE_NOTES),
      "empty.mid": b"",
      "truncated.mid": good_midi[:len(good_midi) // 2],
      "sub/truncated_header.mid": good_midi[:10],
      "random.mid": rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
      "garbage.midi": b"MThd" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
      "broken.xml": b"<<<not xml",
      "broken.mxl": b"PK not a zip",
      "notes.txt": b"not music",
      "sub/README": b"not music",
  }
  for name, data in files.items():
    (root / name).write_bytes(data)
  (root / "dangling.mid").symlink_to(root / "does_not_exist.mid")
  return root


@pytest.fixture(scope="module")
def converted(corpus):
  return convert_dir.convert_directory(corpus, num_workers=2, progress=False)


def test_every_file_accounted_for(converted):
  sequences, report = converted
  assert sorted(report.converted) == sorted(GOOD)
  assert len(sequences) == len(GOOD)
  assert {n: r for r, files in report.skipped.items() for n, _ in files} == BAD
  assert report.skip_counts == {"empty": 1, "truncated": 2, "corrupt": 4, "unreadable": 1}
  assert report.num_skipped == len(BAD)
  assert sorted(report.ignored) == IGNORED
  for _, message in (f for files in report.skipped.values() for f in files):
    assert message  # every skip carries the parser's error


def test_observations_are_not_skips(converted):
  """No drums / 3/4 / tempo changes / no notes convert; they are only flagged."""
  sequences, report = converted
  expected = {}
  for name, observations in GOOD.items():
    for observation in observations:
      expected.setdefault(observation, []).append(name)
  assert {o: sorted(f) for o, f in report.observations.items()} == {
      o: sorted(f) for o, f in expected.items()}
  by_name = {ns.filename: ns for ns in sequences}
  assert len(by_name["huge.mid"].notes) == HUGE_NOTES
  assert not by_name["no_notes.mid"].notes


def test_magenta_fields_and_contents(corpus, converted):
  sequences, _ = converted
  ns = {s.filename: s for s in sequences}[os.path.join("sub", "deeper", "beat3.midi")]
  assert ns.collection_name == "my_collection"
  assert ns.id == convert_dir.generate_note_sequence_id(ns.filename, "my_collection", "midi")
  assert ns.id.startswith("/id/midi/my_collection/") and len(ns.id.rsplit("/", 1)[1]) == 40
  direct = midi_io.midi_to_note_sequence((corpus / ns.filename).read_bytes())
  direct.filename, direct.collection_name, direct.id = ns.filename, ns.collection_name, ns.id
  assert ns == direct
  xml = {s.filename: s for s in sequences}["score.musicxml"]
  assert xml.id.startswith("/id/musicxml/my_collection/") and xml.notes[0].pitch == 60


def test_order_is_walk_order_and_serial_equals_parallel(corpus, converted):
  sequences, report = converted
  serial, serial_report = convert_dir.convert_directory(corpus, num_workers=1, progress=False)
  assert serial == sequences
  assert serial_report.converted == report.converted
  root_files = [n for n in report.converted if os.sep not in n]
  assert report.converted[:len(root_files)] == sorted(root_files)


def test_tfrecord_output_equals_returned_sequences(corpus, converted, tmp_path):
  out = tmp_path / "nested" / "out.tfrecord"
  count, report = convert_dir.convert_directory(corpus, out, num_workers=1, progress=False)
  assert count == len(GOOD) == len(report.converted)
  assert list(note_sequence_io.read_note_sequences(out)) == converted[0]


def test_not_recursive(corpus):
  sequences, report = convert_dir.convert_directory(corpus, recursive=False, num_workers=1,
                                                    progress=False)
  assert all(os.sep not in ns.filename for ns in sequences)
  assert len(sequences) == len([n for n in GOOD if "/" not in n])
  assert "sub/truncated_header.mid" not in {n for f in report.skipped.values() for n, _ in f}


def test_bad_arguments(tmp_path):
  with pytest.raises(NotADirectoryError, match="does_not_exist"):
    convert_dir.convert_directory(tmp_path / "does_not_exist")
  with pytest.raises(ValueError, match="num_workers"):
    convert_dir.convert_directory(tmp_path, num_workers=0)


def test_cli(corpus, tmp_path, capsys):
  out, report_json = tmp_path / "out.tfrecord", tmp_path / "report.json"
  convert_dir.main(["--input_dir", str(corpus), "--output_file", str(out), "--num_workers",
                    "1", "--no_progress", "--report_json", str(report_json)])
  assert f"converted {len(GOOD)} files, skipped {len(BAD)}" in capsys.readouterr().out
  assert len(list(note_sequence_io.read_note_sequences(out))) == len(GOOD)
  saved = json.loads(report_json.read_text())
  assert saved["skip_counts"]["corrupt"] == 4 and saved["num_converted"] == len(GOOD)
  with pytest.raises(SystemExit) as exit_info:
    convert_dir.main(["--help"])
  assert exit_info.value.code == 0
  assert "--num_workers" in capsys.readouterr().out


class _PieceRecorder(converter_lib.Converter):
  """Records what the shared presplit stage hands a representation; one example per piece."""

  input_depth = output_depth = 1

  def __init__(self):
    self.pieces = []

  def _to_tensors(self, ns, mode, rng):
    self.pieces.append(ns)
    return converter_lib.ConverterTensors(
        [np.zeros((1, 1), np.float32)], [np.zeros((1, 1), np.float32)],
        [np.zeros((1, 0), np.float32)], [1])

  def from_tensors(self, samples, controls=None):
    return []


def test_time_changes_at_the_representation_stage(converted):
  """Tempo changes split the sequence before a representation sees it; 3/4 reaches it whole
  with its time signature (a 4/4-only representation like GrooVAE then drops it)."""
  by_name = {ns.filename: ns for ns in converted[0]}
  recorder = _PieceRecorder()
  assert len(recorder.to_tensors(by_name["tempo_changes.mid"])) == 2
  assert [p.tempos[0].qpm for p in recorder.pieces] == pytest.approx([120.0, 90.0])
  recorder.pieces.clear()
  assert len(recorder.to_tensors(by_name["three_four.mid"])) == 1
  assert [(t.numerator, t.denominator) for t in recorder.pieces[0].time_signatures] == [(3, 4)]


def test_no_drums_at_the_representation_stage(converted):
  """Files without drum notes convert, then a drums representation yields no examples."""
  by_name = {ns.filename: ns for ns in converted[0]}
  drums = drums_lib.DrumsConverter(max_bars=100, slice_bars=2)
  assert len(drums.to_tensors(by_name["beat.mid"])) >= 1
  assert len(drums.to_tensors(by_name["no_drums.mid"])) == 0
  assert len(drums.to_tensors(by_name["no_notes.mid"])) == 0


def test_groove_representation_stage(converted):
  """GrooVAE (2 bars) drops 3/4 and tempo-change files; like Magenta's GrooveConverter it
  ignores is_drum, so drum pitches on a melodic channel still give examples."""
  by_name = {ns.filename: ns for ns in converted[0]}
  groove = groove_lib.GrooveConverter(split_bars=2)
  assert len(groove.to_tensors(by_name["beat.mid"])) == 1
  assert len(groove.to_tensors(by_name["three_four.mid"])) == 0
  assert len(groove.to_tensors(by_name["tempo_changes.mid"])) == 0
  assert len(groove.to_tensors(by_name["no_notes.mid"])) == 0
  assert len(groove.to_tensors(by_name["no_drums.mid"])) == 1
