"""Short real-data training runs of the 8 MusicRNN configs through the normal trainer.

Melody configs (basic_rnn, mono_rnn, lookback_rnn, attention_rnn) train on the music21
folk tunes of ``flax_musicvae.pipelines.folk_melodies`` (``--folk``, made by ``python -m
pipelines.folk_melodies --collections ryansMammoth oneills1850 airdsAirs miscFolk
--output_file=/work/runs/folk_4col.tfrecord``: 4,433 tunes, about 9 min), the
improv configs on the same tunes with their chord symbols (kept by folk_melodies since
its cache v2; these two collections have next to none) or, for a tune without any, the
chords note_seq infers (what the improv converter would do, seconds a tune; done once per
subset and cached in ``--work``), drum_kit_rnn on Groove MIDI files. Each run:
``train.train_and_evaluate`` for 1 step (eval right after the first update: "start"),
resumed to 21 steps (times a step), then to ``--steps`` or what ``--budget_seconds`` per
config allows (eval at the end); ``--resume`` continues an earlier run of ``--work`` by
that many steps or seconds instead. Magenta's full-size hparams (layer sizes, attention
length, dropout, clip, learning rate) with only the batch size and step budget reduced.
Records train loss first->last, eval loss/accuracy first->last, the majority-class
accuracy of the evaluated targets and, as Magenta's eval does, the accuracy on the steps
whose target is / is not the encoder's default event (no new note; no drum hit).

  nice -n 19 python bench/music_rnn_real_data.py --steps 150 --batch 16
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import sys
import time

import numpy as np
import tqdm
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# pylint: disable=wrong-import-position
from flax_musicvae import config_lib
from flax_musicvae import input_pipeline
from flax_musicvae import train
from flax_musicvae import workdir
from flax_musicvae.data import chords as chords_lib
from flax_musicvae.data.arrays import cache_key
from flax_musicvae.models import music_rnn as music_rnn_model
from flax_musicvae.music_rnn import data as rnn_data
from flax_musicvae.pipelines import note_sequence_io

NAMES = ["basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn",
         "basic_improv", "attention_improv", "chord_pitches_improv"]
FOLK = pathlib.Path("/work/runs/folk_4col.tfrecord")
GROOVE = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
    "groove-v1.0.0-midionly" / "groove"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "music_rnn_real_data.json"


def subset_tfrecord(out: pathlib.Path, every: int, folk: pathlib.Path) -> int:
  """Every ``every``-th tune of the folk TFRecord (deterministic), written to ``out``."""
  seqs = [ns for i, ns in enumerate(note_sequence_io.read_note_sequences(folk))
          if i % every == 0]
  note_sequence_io.write_note_sequences(out, seqs)
  return len(seqs)


IMPROV_CACHE_VERSION = "v1"


def improv_pieces(serialized: bytes) -> tuple[list[bytes], collections.Counter]:
  """One tune's pieces between time changes, with the chords the improv converter reads.

  Each piece is quantized; a piece without chord symbols gets note_seq's inferred chords
  (a piece where inference fails is left out, as the converter would), which are stored
  with it. Returns the serialized pieces kept and the counts by outcome.
  """
  ns = music_pb2.NoteSequence.FromString(serialized)
  stats = collections.Counter(tunes=1)
  pieces = []
  for piece in sequences_lib.split_note_sequence_on_time_changes(ns):
    qns = rnn_data.quantize(piece, 4)
    if qns is None:
      stats["pieces_unquantizable"] += 1
    elif chords_lib.has_chords(piece):
      stats["pieces_with_chord_symbols"] += 1
      pieces.append(piece.SerializeToString())
    elif chords_lib.infer_chords_if_missing(qns):
      stats["pieces_chords_inferred"] += 1
      for ta in qns.text_annotations:
        piece.text_annotations.add(time=ta.time, text=ta.text,
                                   annotation_type=ta.annotation_type)
      pieces.append(piece.SerializeToString())
    else:
      stats["pieces_inference_failed"] += 1
  return pieces, stats


def improv_tfrecord(work: pathlib.Path, every: int, folk: pathlib.Path
                    ) -> tuple[pathlib.Path, dict]:
  """Every ``every``-th folk tune through ``improv_pieces`` (cached; one process per core).

  Returns the TFRecord (named by a key of ``every`` and the folk file) and the counts.
  """
  key = cache_key(IMPROV_CACHE_VERSION, {"every": every}, [folk.read_bytes()])
  out = work / f"folk_improv_{key}.tfrecord"
  stats_file = out.with_suffix(".json")
  if out.exists() and stats_file.exists():
    return out, json.loads(stats_file.read_text())
  stats = collections.Counter(dict.fromkeys(
      ("tunes", "pieces_with_chord_symbols", "pieces_chords_inferred",
       "pieces_inference_failed", "pieces_unquantizable"), 0))
  t0 = time.time()
  tunes = [ns.SerializeToString()
           for i, ns in enumerate(note_sequence_io.read_note_sequences(folk)) if i % every == 0]
  pieces = []
  with concurrent.futures.ProcessPoolExecutor(
      os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
    for kept, counts in tqdm.tqdm(pool.map(improv_pieces, tunes, chunksize=4),
                                  total=len(tunes), desc="improv chords", unit="tune"):
      pieces += [music_pb2.NoteSequence.FromString(b) for b in kept]
      stats.update(counts)
  stats = {**stats, "seconds": round(time.time() - t0, 1)}
  note_sequence_io.write_note_sequences(out, pieces)
  stats_file.write_text(json.dumps(stats))
  return out, stats


def groove_tfrecord(out: pathlib.Path, every: int) -> int:
  """Every ``every``-th Groove MIDI file (4/4 beats and fills of all drummers)."""
  import note_seq  # pylint: disable=import-outside-toplevel
  files = sorted(GROOVE.resolve().glob("drummer*/*/*.mid"))[::every]
  seqs = []
  for f in files:
    ns = note_seq.midi_file_to_note_sequence(str(f))
    ns.id = str(f.relative_to(GROOVE.resolve()))
    seqs.append(ns)
  note_sequence_io.write_note_sequences(out, seqs)
  return len(seqs)


def majority(arrays) -> tuple[float, int]:
  """(accuracy of always predicting the most frequent target, that target's label)."""
  mask = np.arange(arrays["outputs"].shape[1])[None] < arrays["lengths"][:, None]
  counts = np.bincount(np.argmax(arrays["outputs"], -1)[mask])
  return float(counts.max() / counts.sum()), int(np.argmax(counts))


def event_accuracies(c, run: pathlib.Path, arrays, batch: int) -> dict:
  """Magenta's eval split of the accuracy of the run's newest checkpoint on ``arrays``.

  ``event_accuracy``: on the steps whose target is not the encoder's default event
  (``default_event_label``: no new note for melodies, no drum hit for the drum kit);
  ``no_event_accuracy``: on the steps whose target is; ``accuracy_step_weighted``: on all
  steps, as Magenta's streaming accuracy and the majority rate count them (the trainer's
  eval accuracy is a mean of per-batch means, which weighs the steps of short batches more).
  """
  default = config_lib.make_converter(c.data).encoder.default_event_label
  _, params, _ = workdir.load(run)
  model = music_rnn_model.build(c)
  hits = np.zeros(2)
  counts = np.zeros(2)
  for i in range(0, len(arrays["lengths"]), batch):
    part = {k: v[i:i + batch] for k, v in arrays.items()}
    out = model.apply({"params": params}, part)
    mask = np.asarray(out["mask"]) > 0
    correct = np.asarray(out["step_correct"])[mask]
    is_default = np.argmax(part["outputs"], -1)[mask] == default
    for j, where in enumerate((~is_default, is_default)):
      hits[j] += correct[where].sum()
      counts[j] += where.sum()
  return {"default_event_label": default,
          "accuracy_step_weighted": float(hits.sum() / counts.sum()),
          "event_accuracy": float(hits[0] / counts[0]),
          "no_event_accuracy": float(hits[1] / counts[1]),
          "event_steps": int(counts[0]), "no_event_steps": int(counts[1])}


def run_one(name: str, data_path: pathlib.Path, work: pathlib.Path, steps: int, batch: int,
            eval_examples: int, budget_seconds: float, eval_fraction: float,
            resume: bool, eval_every: int = 0) -> dict:
  c = config_lib.load(name)
  c.data.path = str(data_path)
  c.data.cache_dir = str(work / "cache")
  c.data.eval_fraction = eval_fraction
  c.train.batch_size = batch
  c.train.eval_num_batches = 0
  c.train.eval_samples = 0
  t0 = time.time()
  train_data = input_pipeline.load_split(c, "train")
  eval_data = input_pipeline.load_split(c, "validation")
  # Whole batches only: the evaluation drops a partial tail batch.
  keep = min(eval_examples, len(eval_data["lengths"])) // batch * batch
  eval_data = {k: v[:keep] for k, v in eval_data.items()}
  data_seconds = time.time() - t0
  run = work / name
  load_before = os.getloadavg()
  # The newest logged or saved step (a run stopped by a signal saves past its last log line).
  done = [r["step"] for r in workdir.read_metrics(run) if r.get("split") == "train"]
  saved = run / workdir.CHECKPOINTS
  done += [int(p.name) for p in saved.iterdir() if p.name.isdigit()] if saved.is_dir() else []
  start = max(done) if resume and done else 0
  walls = []
  # 1 step (eval "at start"), 21 steps (the 11..20 log window times a compiled step), then
  # as many steps as the remaining wall budget of this config allows (at least ``steps``
  # when ``budget_seconds`` is 0); a resumed run only does the last part, from ``start``.
  for n, every in ((1, 1), (21, 10), (None, 25))[2 if start else 0:]:
    budgeted = n is None
    if budgeted:
      sps = [r for r in workdir.read_metrics(run)
             if r.get("split") == "train" and r["step"] == 20][0]["steps_per_second"]
      left = budget_seconds - (time.time() - t0) - 20   # eval + checkpoint + compile
      n = max(22, start + (int(left * sps) if budget_seconds else steps))
    c.train.num_train_steps = n
    c.train.log_every_steps = every
    c.train.eval_every_steps = eval_every if eval_every and budgeted else n
    c.train.checkpoint_every_steps = n
    t = time.time()
    train.train_and_evaluate(c, run, train_data=train_data, eval_data=eval_data)
    walls.append(time.time() - t)
  steps = n
  rows = workdir.read_metrics(run)
  tr = [r for r in rows if r.get("split") == "train"]
  ev = [r for r in rows if r.get("split") == "eval"]
  majority_rate, majority_label = majority(eval_data)
  out = {
      "config": name, "data": str(data_path),
      "train_examples": int(len(train_data["lengths"])),
      "eval_examples": int(len(eval_data["lengths"])), "eval_fraction": eval_fraction,
      "eval_target_steps": int(eval_data["lengths"].sum()),
      "rnn_layer_sizes": list(c.model.rnn_layer_sizes), "attn_length": c.model.attn_length,
      "batch_size": batch, "steps": steps, "resumed_from_step": start,
      "data_seconds": round(data_seconds, 1),
      "wall_seconds": round(sum(walls), 1), "first_call_seconds": round(walls[0], 1),
      "seconds_per_step": round(1 / sps, 3),
      "uniform_loss": float(np.log(c.model.output_depth)),
      "train_loss_first": tr[0]["loss"], "train_loss_last": tr[-1]["loss"],
      "train_loss_curve": [(r["step"], round(r["loss"], 4)) for r in tr],
      "eval_loss_first": ev[0]["loss"], "eval_loss_last": ev[-1]["loss"],
      "eval_accuracy_first": ev[0]["accuracy"], "eval_accuracy_last": ev[-1]["accuracy"],
      "eval_curve": [(r["step"], round(r["loss"], 4), round(r["accuracy"], 4)) for r in ev],
      "majority_class_accuracy": majority_rate, "majority_label": majority_label,
      **event_accuracies(c, run, eval_data, batch),
      "load_average_before": load_before, "load_average_after": os.getloadavg(),
  }
  out["loss_fell"] = bool(out["train_loss_last"] < out["train_loss_first"]
                          and out["eval_loss_last"] < out["eval_loss_first"])
  out["beats_majority"] = bool(out["accuracy_step_weighted"] > majority_rate)
  return out


def per_config(pairs: list[str], kind: type) -> dict:
  """``["NAME=VALUE", ...]`` -> ``{NAME: kind(VALUE)}``."""
  return {k: kind(v) for k, v in (s.split("=") for s in pairs)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--configs", nargs="*", default=NAMES)
  p.add_argument("--steps", type=int, default=150)
  p.add_argument("--steps_for", nargs="*", default=[], help="NAME=STEPS overrides")
  p.add_argument("--budget_seconds", type=float, default=0,
                 help="wall seconds per config (data, compile, steps, evals); 0: --steps")
  p.add_argument("--budget_for", nargs="*", default=[], help="NAME=SECONDS overrides")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--batch_for", nargs="*", default=[], help="NAME=BATCH overrides")
  p.add_argument("--resume", action="store_true",
                 help="continue the runs in --work by --steps / the budget")
  p.add_argument("--folk", default=str(FOLK), help="folk NoteSequence TFRecord")
  p.add_argument("--folk_every", type=int, default=3, help="every n-th folk tune")
  p.add_argument("--improv_every", type=int, default=12, help="every n-th tune (x12 keys)")
  p.add_argument("--groove_every", type=int, default=4)
  p.add_argument("--eval_examples", type=int, default=64)
  p.add_argument("--eval_fraction", type=float, default=0.1, help="id-hash validation share")
  p.add_argument("--eval_every", type=int, default=0,
                 help="also evaluate every N steps of the budgeted part (eval_curve; 0: end only)")
  p.add_argument("--work", default="/tmp/music_rnn_real_data")
  p.add_argument("--output", default=str(RESULTS))
  a = p.parse_args()
  work = pathlib.Path(a.work)
  work.mkdir(parents=True, exist_ok=True)
  steps_for = per_config(a.steps_for, int)
  budget_for = per_config(a.budget_for, float)
  batch_for = per_config(a.batch_for, int)
  folk = pathlib.Path(a.folk)
  load_before = os.getloadavg()
  sources = {}
  if any(n in ("basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn") for n in a.configs):
    sources["melody"] = (work / "folk.tfrecord",
                         subset_tfrecord(work / "folk.tfrecord", a.folk_every, folk))
  if any(n.endswith("improv") for n in a.configs):
    sources["improv"] = improv_tfrecord(work, a.improv_every, folk)
  if "drum_kit_rnn" in a.configs:
    sources["drums"] = (work / "groove.tfrecord", groove_tfrecord(work / "groove.tfrecord",
                                                                  a.groove_every))
  results = []
  stopped = None
  previous = json.loads(pathlib.Path(a.output).read_text()) \
      if pathlib.Path(a.output).exists() else {"runs": [], "invocations": []}
  for name in a.configs:
    kind = "drums" if name == "drum_kit_rnn" else "improv" if name.endswith("improv") \
        else "melody"
    path, count = sources[kind]
    try:
      r = run_one(name, path, work, steps_for.get(name, a.steps), batch_for.get(name, a.batch),
                  a.eval_examples, budget_for.get(name, a.budget_seconds), a.eval_fraction,
                  a.resume, a.eval_every)
      r["source_sequences" if kind != "improv" else "improv_chords"] = count
      r["invocation"] = len(previous["invocations"])
    except train.Interrupted as e:  # the trainer saved a checkpoint: keep what is done
      print(f"{name}: {e}, checkpoint saved in {work / name}; `--resume --steps 1` "
            "evaluates it", file=sys.stderr)
      stopped = e
      break
    except Exception as e:  # pylint: disable=broad-except  # report, go on to the next
      r = {"config": name, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps({k: v for k, v in r.items() if not k.endswith("_curve")}), flush=True)
    results.append(r)
  merged = {r["config"]: r for r in previous["runs"]}
  merged.update({r["config"]: r for r in results})
  invocation = {"command": f"nice -n {os.nice(0)} python " + " ".join(sys.argv),
                "configs": a.configs,
                "niceness": os.nice(0), "load_average_before": load_before,
                "load_average_after": os.getloadavg()}
  report = {
      "invocations": previous["invocations"] + [invocation],
      "note": ("Magenta's full-size hparams except batch size and steps; improv chords: a "
               "tune's chord symbols, else note_seq's inferred chords (improv_chords counts "
               "them); eval set: first eval_examples of the id-hash validation split "
               "(eval_fraction); 'first' eval is after 1 training step; the machine is "
               "shared, so each run records the load average before and after it"),
      "runs": [merged[n] for n in NAMES if n in merged],
  }
  pathlib.Path(a.output).write_text(json.dumps(report, indent=1) + "\n")
  print(f"\n{'config':22s} {'steps':>5s} {'wall s':>7s} {'train loss':>15s} "
        f"{'eval loss':>15s} {'eval acc':>8s} {'major.':>7s} {'event':>6s} fell beats")
  for r in report["runs"]:
    if "error" in r:
      print(f"{r['config']:22s} ERROR {r['error']}")
      continue
    print(f"{r['config']:22s} {r['steps']:5d} {r['wall_seconds']:7.0f} "
          f"{r['train_loss_first']:6.3f}->{r['train_loss_last']:6.3f} "
          f"{r['eval_loss_first']:6.3f}->{r['eval_loss_last']:6.3f} "
          f"{r['eval_accuracy_last']:8.4f} {r['majority_class_accuracy']:7.4f} "
          f"{r.get('event_accuracy', float('nan')):6.3f} "
          f"{'yes' if r['loss_fell'] else 'NO':4s} {'yes' if r['beats_majority'] else 'NO'}")
  if stopped:
    sys.exit(128 + stopped.signum)


if __name__ == "__main__":
  main()
