"""Transposition augmentation: array shifts equal converting a transposed NoteSequence."""

import numpy as np
import pytest
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2
from test_melody_converter import MEL_2BAR, sequence, synthetic_melody
from test_trio_converter import TRIO, trio

from flax_musicvae import input_pipeline
from flax_musicvae.data import augment
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.drums import DrumsConverter
from flax_musicvae.data.groove import GrooveConverter
from flax_musicvae.data.melody import MEL_PROGRAMS, OneHotMelodyConverter

MEL_ALL = OneHotMelodyConverter(valid_programs=MEL_PROGRAMS, max_bars=100, slice_bars=2,
                                max_tensors_per_notesequence=None)
MEL_CHORDS = OneHotMelodyConverter(max_bars=100, slice_bars=2, chord_encoding="triad",
                                   max_tensors_per_notesequence=None)


def arrays(converter, ns):
  t = converter.to_tensors(ns, Mode.EVAL)
  return {"inputs": np.stack(t.inputs), "outputs": np.stack(t.outputs),
          "controls": np.stack(t.controls), "lengths": np.asarray(t.lengths)}


def transposed(ns, shift):
  out, deleted = sequences_lib.transpose_note_sequence(ns, shift)
  assert deleted == 0
  return out


def canonical(batch):
  """Examples in a fixed order (converters may order deduplicated windows by content)."""
  order = sorted(range(len(batch["lengths"])), key=lambda i: batch["outputs"][i].tobytes())
  return {k: v[order] for k, v in batch.items()}


def assert_same_examples(a, b):
  assert_batches_equal(canonical(a), canonical(b))


def assert_batches_equal(a, b):
  for k in input_pipeline.FIELDS:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("shift", [-5, -1, 3, 5])
def test_melody_shift_equals_converting_the_transposed_sequence(shift):
  ns = synthetic_melody(3, bars=8)
  transposer = augment.make_transposer(MEL_ALL, 5)
  original = arrays(MEL_ALL, ns)
  shifted = transposer.apply(original, np.full(len(original["lengths"]), shift))
  assert_same_examples(shifted, arrays(MEL_ALL, transposed(ns, shift)))


def chord_melody():
  ns = sequence(*[(60 + 2 * (i % 5), 4 * i, 4 * i + 3) for i in range(16)], total_steps=64)
  for step, figure in ((0, "C"), (16, "Am"), (32, "F#dim"), (48, "Bbaug")):
    ns.text_annotations.add(time=step * 0.125, text=figure,
                            annotation_type=music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL)
  return ns


@pytest.mark.parametrize("shift", [-3, 2])
def test_chord_controls_move_with_the_melody(shift):
  ns = chord_melody()
  original = arrays(MEL_CHORDS, ns)
  assert original["controls"].shape[-1] == 49 and original["controls"].any()
  transposer = augment.make_transposer(MEL_CHORDS, 3)
  shifted = transposer.apply(original, np.full(len(original["lengths"]), shift))
  expected = arrays(MEL_CHORDS, transposed(ns, shift))
  assert_same_examples(shifted, expected)


def test_chord_roots_by_hand():
  src = augment.chord_source_columns(1)
  moved = np.eye(49)[:, src]          # row c: class c moved up a semitone
  assert np.argmax(moved[0]) == 0     # N.C. stays
  assert np.argmax(moved[1]) == 2     # C -> C#
  assert np.argmax(moved[12]) == 1    # B -> C
  assert np.argmax(moved[24]) == 13   # Bm -> Cm
  assert np.argmax(moved[37]) == 38   # Cdim -> C#dim


def test_trio_moves_melody_and_bass_but_not_drums():
  ns = trio(bars=16)
  original = arrays(TRIO, ns)
  transposer = augment.make_transposer(TRIO, 3)
  shifted = transposer.apply(original, np.full(len(original["lengths"]), -2))
  assert_same_examples(shifted, arrays(TRIO, transposed(ns, -2)))
  drums = slice(180, None)
  np.testing.assert_array_equal(shifted["outputs"][..., drums], original["outputs"][..., drums])
  assert not np.array_equal(shifted["outputs"][..., :180], original["outputs"][..., :180])


def test_shifts_stay_inside_the_pitch_range():
  top = OneHotMelodyConverter(max_bars=100, slice_bars=2, max_tensors_per_notesequence=None)
  ns = sequence((107, 0, 8), (106, 8, 16), (105, 16, 31), total_steps=32)  # 107: 1 below the top
  batch = arrays(top, ns)
  transposer = augment.make_transposer(top, 5)
  low, high = transposer.shift_bounds(batch)
  np.testing.assert_array_equal(high, [1])
  np.testing.assert_array_equal(low, [-5])
  shifts = [int(transposer.random_shifts(batch, np.array([u]))[0])
            for u in np.linspace(0, 1, 50, endpoint=False)]
  assert sorted(set(shifts)) == list(range(-5, 2))
  with pytest.raises(ValueError, match="out of the pitch range"):
    transposer.apply(batch, np.array([2]))


def test_only_pitched_representations_can_be_transposed():
  assert augment.make_transposer(MEL_2BAR, 0) is None
  for converter in (DrumsConverter(), GrooveConverter()):
    with pytest.raises(ValueError, match="no pitches to transpose"):
      augment.make_transposer(converter, 3)
  with pytest.raises(ValueError, match=">= 0"):
    augment.make_transposer(MEL_2BAR, -1)


def melody_arrays():
  batches = [arrays(MEL_2BAR, synthetic_melody(seed, bars=6)) for seed in range(4)]
  return {k: np.concatenate([b[k] for b in batches]) for k in input_pipeline.FIELDS}


def test_train_batches_augment_is_resumable_and_host_independent():
  data = melody_arrays()
  transposer = augment.make_transposer(MEL_2BAR, 5)
  straight = input_pipeline.train_batches(data, 8, seed=1, augment=transposer)
  first = [next(straight) for _ in range(6)]
  resumed = input_pipeline.train_batches(data, 8, seed=1, start_step=3, augment=transposer)
  for a, b in zip(first[3:], resumed):
    assert_batches_equal(a, b)
  hosts = [input_pipeline.train_batches(data, 8, seed=1, process_index=p, process_count=2,
                                        augment=transposer) for p in range(2)]
  for want in first:
    parts = [next(h) for h in hosts]
    assert_batches_equal(want, {k: np.concatenate([p[k] for p in parts])
                                for k in input_pipeline.FIELDS})
  plain = input_pipeline.train_batches(data, 8, seed=1)
  changed = 0
  for aug in first:
    ref = next(plain)
    np.testing.assert_array_equal(aug["lengths"], ref["lengths"])
    changed += int(not np.array_equal(aug["outputs"], ref["outputs"]))
  assert changed >= 5   # 8 examples per batch, 10 of 11 shifts move something


def test_mel_config_builds_its_augment():
  from configs import cat_mel_2bar_small, groove_4bar  # pylint: disable=g-import-not-at-top
  transposer = input_pipeline.build_augment(cat_mel_2bar_small.get_config().data)
  assert transposer.max_shift == 5 and not transposer.chord_controls
  assert input_pipeline.build_augment(groove_4bar.get_config().data) is None
