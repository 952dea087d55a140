"""Chord symbols of music21's ABC folk tunes survive the conversion to NoteSequences."""

import re

import pytest
from note_seq import chord_symbols_lib
from note_seq.protobuf import music_pb2

from flax_musicvae.data import chords as chords_lib
from flax_musicvae.music_rnn import data as rnn_data

pytest.importorskip("music21")
# pylint: disable=wrong-import-position
from flax_musicvae.pipelines import folk_melodies

CHORD_SYMBOL = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL


def _abc_chords(tune: str) -> list[tuple[str, bool | None]]:
  """(quoted chord, written right after a bar line) of one ABC tune's body, in order.

  The second item is None from the first volta on: music21 lays both endings out one
  after the other, so later bars no longer start at multiples of the bar length.
  """
  body = "".join(line for line in tune.splitlines()[1:]
                 if not re.match(r"[A-Za-z]:|%", line))
  body = re.sub(r"[\s\\:]", "", body)   # spaces, line joins, repeat marks
  volta = re.search(r"\[\d|\|\d", body)
  end = volta.start() if volta else len(body)
  return [(m.group(1), body[:m.start()].endswith("|") if m.start() < end else None)
          for m in re.finditer(r'"([^"]*)"', body)]


def test_nottingham_tunes_keep_their_chord_symbols_on_their_notes_and_bars():
  (path,) = folk_melodies.corpus_files(["nottingham-dataset"])
  tunes = re.split(r"\n(?=X:)", path.read_text())
  tunes = [t for t in tunes if t.startswith("X:")]
  sequences, skips = folk_melodies.convert_file(path, "nottingham-dataset")
  assert not skips and len(sequences) == len(tunes) == 2
  kept_slash_chord = False
  for ns, tune in zip(sequences, tunes):
    written = _abc_chords(tune)
    chords = [ta for ta in ns.text_annotations if ta.annotation_type == CHORD_SYMBOL]
    assert len(written) > 10 and chords
    # Same symbols in the same order (ABC's lower-case bass notes upper-cased, as note_seq
    # reads them); a symbol note_seq cannot read is the only kind left out.
    readable = []
    for figure, at_bar in written:
      figure = re.sub(r"/([a-g])", lambda m: "/" + m.group(1).upper(), figure)
      try:
        chord_symbols_lib.chord_symbol_pitches(figure)
      except chord_symbols_lib.ChordSymbolError:
        continue
      readable.append((figure, at_bar))
    assert [ta.text for ta in chords] == [f for f, _ in readable]
    kept_slash_chord |= any("/" in ta.text for ta in chords)
    # An ABC chord sounds with the note written after it (which starts then, or holds
    # through when tied to the one before: "e2-"Am/c"e2"), and one written right after a
    # bar line starts that bar (the anacrusis shifted so bars fall on bar boundaries).
    (ts,) = ns.time_signatures
    bar_seconds = ts.numerator * 4 / ts.denominator * 60 / folk_melodies.QPM
    times = [ta.time for ta in chords]
    assert times == sorted(times)
    for ta, (_, at_bar) in zip(chords, readable):
      assert any(n.start_time <= ta.time < n.end_time for n in ns.notes), ta
      if at_bar is not None:
        bars = ta.time / bar_seconds
        assert (bars == round(bars)) == at_bar, (ta.text, ta.time)
    # The improv pipeline reads them as they are (no inference) at their steps.
    qns = rnn_data.quantize(ns, 4)
    ids, figures = chords_lib.chords_per_step(qns)
    step_seconds = 60 / folk_melodies.QPM / 4
    for ta in chords:
      assert figures[ids[round(ta.time / step_seconds)]] == ta.text
  assert kept_slash_chord
