"""MusicRNN (Melody / Drums / Improv RNN): encodings, pipelines and model vs Magenta's goldens.

Goldens: ``../shared/reference/golden_rnn`` (magenta 2.1.4 outputs, see its README).
"""

from __future__ import annotations

import collections
import itertools
import json

import jax
import jax.numpy as jnp
import note_seq
import numpy as np
import pytest
from note_seq import encoder_decoder as ns_encoder_decoder
from note_seq import melody_encoder_decoder as ns_melody_ed
from note_seq.protobuf import music_pb2

from conftest import SHARED
from flax_musicvae.models import music_rnn
from flax_musicvae.music_rnn import data as rnn_data
from flax_musicvae.music_rnn import encodings

GOLDEN_RNN = SHARED / "reference" / "golden_rnn"
GROOVE = SHARED / "data" / "groove-v1.0.0-midionly" / "groove"
CONFIGS = {"basic_rnn": "melody_one_hot", "lookback_rnn": "lookback",
           "attention_rnn": "key_melody", "drum_kit_rnn": "drum_kit",
           "chord_pitches_improv": "chord_pitches_improv"}
CHORD_NAMES = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]


def golden(config: str):
  d = GOLDEN_RNN / config
  if not (d / "golden.npz").exists():
    pytest.skip(f"golden_rnn outputs not found at {d}")
  return np.load(d / "golden.npz"), json.loads((d / "meta.json").read_text())


def item_events(config: str, item: dict) -> list[int]:
  if config == "drum_kit_rnn":
    drum = encodings.MultiDrumOneHotEncoding()
    return [drum.event_from_pitches(e) for e in item["events"]]
  return item["events"]


def add_golden_chords(ns: music_pb2.NoteSequence) -> None:
  """The golden's chords: I IV V7 I, one per bar from t=0, in the first key signature."""
  key = ns.key_signatures[0].key if ns.key_signatures else 0
  ts = ns.time_signatures[0]
  bar = ts.numerator * 4 / ts.denominator * 60 / (ns.tempos[0].qpm if ns.tempos else 120)
  prog = [CHORD_NAMES[key], CHORD_NAMES[(key + 5) % 12], CHORD_NAMES[(key + 7) % 12] + "7",
          CHORD_NAMES[key]]
  t, i = 0.0, 0
  while t < ns.total_time:
    ns.text_annotations.add(time=t, text=prog[i % 4],
                            annotation_type=music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL)
    t, i = t + bar, i + 1


def source_sequence(config: str, meta: dict, source: str) -> music_pb2.NoteSequence:
  if config == "drum_kit_rnn":
    path = GROOVE / source
  else:
    path = GOLDEN_RNN / "inputs" / source.split("/")[-1]
  if not path.exists():
    pytest.skip(f"{path} not found")
  ns = note_seq.midi_file_to_note_sequence(str(path))
  if config == "chord_pitches_improv":
    add_golden_chords(ns)
  return ns


def converter(config: str, meta: dict) -> rnn_data.MusicRNNConverter:
  return rnn_data.MusicRNNConverter(encoding=CONFIGS[config],
                                    transpose_to_key=meta.get("transpose_to_key", 0))


def spec_of(meta: dict) -> music_rnn.RNNSpec:
  hp = meta["hparams"]
  return music_rnn.RNNSpec(meta["input_size"], meta["num_classes"],
                           tuple(hp["rnn_layer_sizes"]), hp["attn_length"])


def golden_params(config: str, meta: dict):
  weights = dict(np.load(GOLDEN_RNN / config / "weights.npz"))
  return music_rnn.params_from_tf(spec_of(meta), weights)


# ----------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("config", list(CONFIGS))
def test_encoder_sizes_and_greedy_event_encodings(config):
  g, meta = golden(config)
  enc = encodings.make_encoder(CONFIGS[config])
  assert (enc.input_size, enc.num_classes, enc.default_event_label) == (
      meta["input_size"], meta["num_classes"], meta["default_event_label"])
  for k, item in enumerate(meta["greedy"]["items"]):
    inputs, labels = enc.encode(item_events(config, item), item["control_events"])
    np.testing.assert_array_equal(inputs, g[f"greedy{k}_inputs"])
    np.testing.assert_array_equal(labels, g[f"greedy{k}_labels"])


@pytest.mark.parametrize("config", list(CONFIGS))
def test_pipeline_matches_golden_sequence_examples(config):
  """MIDI -> extraction -> squash -> encode gives Magenta's SequenceExamples exactly."""
  g, meta = golden(config)
  conv = converter(config, meta)
  for b, source in enumerate(meta["input_sources"]["used_in_batch_order"]):
    tensors = conv.to_tensors(source_sequence(config, meta, source))
    assert len(tensors) == meta["examples_per_source_from_pipeline"][b]
    n = int(g["lengths"][b])
    assert tensors.lengths[0] == n
    np.testing.assert_array_equal(tensors.inputs[0], g["inputs"][b, :n])
    np.testing.assert_array_equal(np.argmax(tensors.outputs[0], -1), g["labels"][b, :n])


def _note_seq_encoder(name: str):
  one_hot = note_seq.MelodyOneHotEncoding(48, 84)
  if name == "melody_one_hot":
    return ns_encoder_decoder.OneHotEventSequenceEncoderDecoder(one_hot)
  if name == "lookback":
    return ns_encoder_decoder.LookbackEventSequenceEncoderDecoder(one_hot)
  return ns_melody_ed.KeyMelodyEncoderDecoder(48, 84)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["melody_one_hot", "lookback", "key_melody"])
def test_melody_encodings_match_note_seq_on_folk_tunes(name):
  """Our vectorised encoders == note_seq's per-step encoders on real folk melodies."""
  music21 = pytest.importorskip("music21")
  from flax_musicvae.pipelines import folk_melodies  # pylint: disable=import-outside-toplevel
  conv = rnn_data.MusicRNNConverter(encoding=name)
  ours, theirs = conv.encoder, _note_seq_encoder(name)
  del music21
  checked = 0
  tunes = folk_melodies.iter_corpus(("ryansMammoth",), None, collections.Counter(),
                                    limit_files=40, progress=False)
  for ns in itertools.islice(tunes, 40):
    for events, _ in conv.all_event_sequences(ns):
      melody = note_seq.Melody(events.tolist())
      x, y = ours.encode(events)
      tx, ty = theirs.encode(melody)
      np.testing.assert_array_equal(x, np.array(tx, np.float32))
      np.testing.assert_array_equal(y, np.array(ty))
      for label in range(ours.num_classes):
        assert ours.class_to_event(label, events.tolist()) == theirs.class_index_to_event(
            label, melody)
      checked += 1
  assert checked >= 5


@pytest.mark.slow
def test_drum_kit_encoding_matches_note_seq_on_groove():
  if not GROOVE.exists():
    pytest.skip("Groove MIDI Dataset not found")
  from note_seq import drums_encoder_decoder  # pylint: disable=import-outside-toplevel
  theirs = ns_encoder_decoder.LookbackEventSequenceEncoderDecoder(
      drums_encoder_decoder.MultiDrumOneHotEncoding(), lookback_distances=[],
      binary_counter_bits=6)
  conv = rnn_data.MusicRNNConverter(encoding="drum_kit")
  drum = encodings.MultiDrumOneHotEncoding()
  files = sorted(GROOVE.glob("drummer1/session1/*.mid"))[:6]
  checked = 0
  for path in files:
    ns = note_seq.midi_file_to_note_sequence(str(path))
    for events, _ in conv.all_event_sequences(ns):
      sets = [frozenset(drum.pitches_from_event(int(e))) for e in events]
      x, y = conv.encoder.encode(events)
      tx, ty = theirs.encode(note_seq.DrumTrack(sets))
      np.testing.assert_array_equal(x, np.array(tx, np.float32))
      np.testing.assert_array_equal(y, np.array(ty))
      checked += 1
  assert checked >= 3


def test_lookback_decoding_round_trip():
  enc = encodings.make_encoder("lookback")
  rng = np.random.default_rng(0)
  events = rng.choice([-2, -1, 60, 62, 64, 65, 67], size=80).tolist()
  events = [e if i % 16 else events[i % 16] for i, e in enumerate(events)]
  labels = enc.labels(events)
  assert enc.labels_to_events(labels[1:], events[:1]) == events[1:]


def test_bad_events_raise():
  enc = encodings.make_encoder("melody_one_hot")
  with pytest.raises(encodings.EncodingError):
    enc.encode([60, 90, -2])
  with pytest.raises(encodings.EncodingError):
    enc.encode([60])
  with pytest.raises(encodings.EncodingError):
    encodings.make_encoder("chord_pitches_improv").encode([60, 62], ["C"])
  with pytest.raises(encodings.EncodingError):
    encodings.chord_pitches(["not a chord"])
  with pytest.raises(ValueError):
    encodings.make_encoder("nope")


def test_squash_and_transpose_match_note_seq():
  rng = np.random.default_rng(1)
  for _ in range(30):
    events = rng.choice([-2, -1] + list(range(30, 110)), size=40)
    for key in (None, 0, 5):
      melody = note_seq.Melody(events.tolist())
      amount = melody.squash(48, 84, key)
      ours, our_amount = rnn_data.squash(np.asarray(melody_events(events)), 48, 84, key)
      assert our_amount == amount
      np.testing.assert_array_equal(ours, list(melody))


def melody_events(events):
  """``events`` as note_seq's Melody stores them (leading note-offs become no-events)."""
  return list(note_seq.Melody(list(map(int, events))))


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("config", list(CONFIGS))
def test_teacher_forced_logits_and_loss_match_golden(config):
  g, meta = golden(config)
  spec = spec_of(meta)
  params = golden_params(config, meta)
  batch = {"inputs": jnp.asarray(g["inputs"]), "lengths": jnp.asarray(g["lengths"]),
           "outputs": jax.nn.one_hot(g["labels"], spec.num_classes)}
  out = music_rnn.MusicRNN(spec).apply({"params": params}, batch)
  mask = np.asarray(out["mask"]) > 0
  assert np.abs(np.asarray(out["logits"]) - g["logits"])[mask].max() < 1e-5
  np.testing.assert_allclose(np.asarray(out["step_loss"])[mask], g["sce"][mask], atol=1e-5)
  loss, metrics = music_rnn.compute_loss(out)
  np.testing.assert_allclose(float(loss), float(g["loss"]), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["accuracy"]), float(g["accuracy"]), atol=1e-7)


@pytest.mark.parametrize("config", ["lookback_rnn", "attention_rnn"])
def test_step_function_equals_teacher_forced_run(config):
  g, meta = golden(config)
  spec = spec_of(meta)
  params = golden_params(config, meta)
  x = jnp.asarray(g["greedy0_inputs"][None])
  full, _ = music_rnn.run(params, spec, x, None)
  state = music_rnn.zero_state(params, spec, 1)
  outs = []
  for t in range(x.shape[1]):
    state, logits = music_rnn.step(params, spec, state, x[:, t])
    outs.append(logits)
  np.testing.assert_allclose(np.stack(outs, 1), full, atol=1e-5)


def test_attention_training_gradients_equal_autodiff_of_the_step_function():
  """The teacher-forced run sums the attention matrices' gradients after the recurrence
  (a custom VJP); they equal plain autodiff through a scan of the generation step."""
  spec = music_rnn.RNNSpec(input_size=9, num_classes=7, rnn_layer_sizes=(12, 6),
                           attn_length=4)
  rng = np.random.default_rng(0)
  batch = {"inputs": jnp.asarray(rng.normal(size=(3, 10, 9)), jnp.float32),
           "outputs": jax.nn.one_hot(rng.integers(0, 7, (3, 10)), 7),
           "lengths": jnp.array([10, 6, 2])}
  model = music_rnn.MusicRNN(spec)
  params = model.init(jax.random.key(0), batch)["params"]
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(1), p.shape),
                        params)   # non-zero biases and attn_v: every term matters

  def model_loss(p):
    return music_rnn.compute_loss(model.apply({"params": p}, batch))[0]

  def step_loss(p):
    state = music_rnn.zero_state(p, spec, 3)
    _, logits = jax.lax.scan(lambda s, x: music_rnn.step(p, spec, s, x), state,
                             jnp.swapaxes(batch["inputs"], 0, 1))
    mask = (jnp.arange(10)[None, :] < batch["lengths"][:, None]).astype(jnp.float32)
    ce = -jnp.sum(batch["outputs"] * jax.nn.log_softmax(jnp.swapaxes(logits, 0, 1)), -1)
    return jnp.sum(ce * mask) / jnp.sum(mask)

  (loss, grads), (want_loss, want) = (jax.value_and_grad(f)(params)
                                      for f in (model_loss, step_loss))
  np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
  for (path, got), expected in zip(jax.tree_util.tree_leaves_with_path(grads),
                                   jax.tree.leaves(want)):
    assert np.abs(expected).max() > 0, path
    np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_params_round_trip_and_shape_errors():
  _, meta = golden("attention_rnn")
  spec = spec_of(meta)
  weights = dict(np.load(GOLDEN_RNN / "attention_rnn" / "weights.npz"))
  params = music_rnn.params_from_tf(spec, weights)
  back = music_rnn.params_to_tf(spec, params)
  assert set(back) == set(weights)
  for k, v in weights.items():
    np.testing.assert_array_equal(back[k], v)
  with pytest.raises(ValueError, match="shape"):
    music_rnn.params_from_tf(music_rnn.RNNSpec(60, 40, (32, 32), 40), weights)
  with pytest.raises(KeyError):
    music_rnn.params_from_tf(music_rnn.RNNSpec(74, 40, (32, 32), 0), weights)


# ----------------------------------------------------------------------------- generation


def golden_generator(config: str):
  from flax_musicvae.music_rnn import generator  # pylint: disable=import-outside-toplevel
  g, meta = golden(config)
  gen = generator.MusicRNNGenerator(spec_of(meta), golden_params(config, meta),
                                    CONFIGS[config],
                                    transpose_to_key=meta.get("transpose_to_key", 0))
  return g, meta, gen


def golden_primer(g, k: int, qpm: float) -> music_pb2.NoteSequence:
  ns = music_pb2.NoteSequence()
  ns.tempos.add(qpm=qpm)
  for pitch, velocity, start, end, drum in g[f"greedy{k}_primer_notes"]:
    ns.notes.add(pitch=int(pitch), velocity=int(velocity), start_time=start, end_time=end,
                 is_drum=bool(drum), instrument=9 if drum else 0)
  ns.total_time = max(n.end_time for n in ns.notes)
  return ns


def _sorted_notes(rows: np.ndarray) -> np.ndarray:
  return rows[np.lexsort((rows[:, 0], rows[:, 2]))]


@pytest.mark.parametrize("config", list(CONFIGS))
def test_greedy_continuations_identical_to_magenta(config):
  """Primer NoteSequence -> generator -> the same events, classes and notes as Magenta's
  generator loaded from the .mag bundle (temperature 1e-6, beam 1)."""
  g, meta, gen = golden_generator(config)
  for k, item in enumerate(meta["greedy"]["items"]):
    events = item_events(config, item)
    primer_len = int(g[f"greedy{k}_primer_len"])
    result = gen.generate_events(events[:primer_len], len(events), temperature=1e-6,
                                 controls=item["control_events"], seed=2024)
    assert result.events == events
    np.testing.assert_array_equal(result.chosen, g[f"greedy{k}_chosen"])
    start, end = item["generate_section"]
    ns, result = gen.continue_sequence(golden_primer(g, k, item["qpm"]), start_time=start,
                                       end_time=end, temperature=1e-6, seed=2024,
                                       chords=item["control_events"], steps_per_chord=1)
    assert result.events == events
    ours = np.array([[n.pitch, n.velocity, n.start_time, n.end_time, n.is_drum]
                     for n in ns.notes])
    want = g[f"greedy{k}_notes"]
    assert ours.shape == want.shape
    np.testing.assert_allclose(_sorted_notes(ours), _sorted_notes(want), atol=1e-6)


def test_beam_search_and_sampling_options():
  from flax_musicvae.music_rnn import generator  # pylint: disable=import-outside-toplevel
  g, meta, gen = golden_generator("lookback_rnn")
  events = meta["greedy"]["items"][0]["events"][:33]
  sampled = gen.generate_events(events, 60, temperature=1.0, seed=3)
  again = gen.generate_events(events, 60, temperature=1.0, seed=3)
  assert sampled.events == again.events and len(sampled.events) == 60
  beams = [gen.generate_events(events, 60, temperature=1.0, beam_size=4, branch_factor=3,
                               steps_per_iteration=s, seed=3) for s in (1, 4)]
  for b in beams:
    assert len(b.events) == 60 and b.events[:33] == events
    assert np.isfinite(b.log_likelihood)
  # A beam keeps the best of many samples: higher likelihood than plain sampling.
  assert beams[0].log_likelihood > sampled.log_likelihood
  with pytest.raises(generator.GeneratorError):
    gen.generate_events(events, 20)
  with pytest.raises(generator.GeneratorError):
    gen.generate_events([], 20)
  with pytest.raises(generator.GeneratorError):
    gen.generate_events(events, 60, beam_size=0)
  with pytest.raises(generator.GeneratorError):
    gen.generate_events(events, 60, temperature=0.0)


def test_continue_from_primer_list_and_chords():
  from flax_musicvae.music_rnn import generator  # pylint: disable=import-outside-toplevel
  _, _, gen = golden_generator("basic_rnn")
  primer = generator.primer_list_to_sequence(generator.parse_primer_list("[60]"), "melody")
  ns, result = gen.continue_sequence(primer, num_steps=32, seed=0)
  # Magenta's melody_rnn_generate: the section starts one step after the primer's end,
  # quantized with cutoff 0 (one more step): [60] is primed as [60, note-off, no-event].
  assert len(result.events) == 32 and result.events[:3] == [60, -1, -2]
  assert ns.notes[0].pitch == 60 and ns.notes[0].start_time == 0.0
  with pytest.raises(generator.GeneratorError):
    generator.parse_primer_list("60, x")
  _, _, improv = golden_generator("chord_pitches_improv")
  ns, result = improv.continue_sequence(primer, num_steps=64, chords=["C", "G", "Am", "F"],
                                        seed=0)
  figures = [ta.text for ta in ns.text_annotations]
  assert figures[:4] == ["C", "G", "Am", "F"]
  with pytest.raises(generator.GeneratorError):
    improv.continue_sequence(primer, num_steps=64)
  with pytest.raises(encodings.EncodingError):
    improv.continue_sequence(primer, num_steps=64, chords=["Xq"])
  _, _, drums = golden_generator("drum_kit_rnn")
  ns, result = drums.continue_sequence(None, num_steps=32, seed=0)
  assert all(n.is_drum for n in ns.notes) and ns.notes[0].pitch == 36


@pytest.mark.parametrize("name", ["basic_improv", "attention_improv", "chord_pitches_improv"])
def test_improv_encodings_match_note_seq(name):
  """Triad / chord-pitch conditioning == note_seq's ConditionalEventSequenceEncoderDecoder
  on the golden lead sheets (and all 12 transpositions of their chords)."""
  from note_seq import chords_encoder_decoder as ced  # pylint: disable=import-outside-toplevel
  _, meta = golden("chord_pitches_improv")
  melody = note_seq.MelodyOneHotEncoding(48, 84)
  target = (ns_melody_ed.KeyMelodyEncoderDecoder(48, 84) if name == "attention_improv" else
            ns_encoder_decoder.OneHotEventSequenceEncoderDecoder(melody))
  control = (ced.PitchChordsEncoderDecoder() if name == "chord_pitches_improv" else
             ns_encoder_decoder.OneHotEventSequenceEncoderDecoder(
                 ced.TriadChordOneHotEncoding()))
  theirs = ns_encoder_decoder.ConditionalEventSequenceEncoderDecoder(control, target)
  ours = encodings.make_encoder(name)
  assert (ours.input_size, ours.num_classes) == (theirs.input_size, theirs.num_classes)
  for item in meta["greedy"]["items"]:
    for amount in (0, 3, 7):
      chords = [rnn_data.transpose_chord(c, amount) for c in item["control_events"]]
      x, y = ours.encode(item["events"], chords)
      tx, ty = theirs.encode(note_seq.ChordProgression(chords), note_seq.Melody(item["events"]))
      np.testing.assert_array_equal(x, np.array(tx, np.float32))
      np.testing.assert_array_equal(y, np.array(ty))
