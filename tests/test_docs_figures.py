"""docs/make_figures.py end to end on tiny runs trained on the Groove fixture subset."""

import csv
import importlib.util
import json

import matplotlib.image
import numpy as np
import pytest

from conftest import FIXTURES, ROOT
from flax_musicvae import config_lib
from flax_musicvae import train

GROOVE = FIXTURES / "groove"


def _load_module(path, name):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


make_figures = _load_module(ROOT / "docs" / "make_figures.py", "make_figures")


def tiny_config(name: str, cache_dir, steps: int):
  c = config_lib.tiny(name, steps, batch_size=2)
  c.data.update(path=str(GROOVE), cache_dir=str(cache_dir))
  return c


@pytest.fixture(scope="module")
def made(tmp_path_factory):
  """A tiny groove_4bar run, a tiny humanize run, then every figure and table."""
  tmp = tmp_path_factory.mktemp("docs")
  runs, cache = tmp / "runs", tmp / "cache"
  c = tiny_config("groove_4bar", cache, steps=3)
  c.model.free_bits = 48.0
  train.train_and_evaluate(c, runs / "fb48")
  train.train_and_evaluate(tiny_config("groove_2bar_humanize", cache, steps=2),
                           runs / "humanize")
  summary = make_figures.make_all(runs, tmp / "out", encode_limit=16, num_samples=4)
  return runs, tmp / "out", summary


def test_writes_every_figure_table_and_sample(made):
  _, out, summary = made
  figures = {p.name for p in (out / "figures").glob("*.png")}
  assert figures == {
      "data_splits.png", "data_styles.png", "data_tempi.png", "data_instruments.png",
      "data_example.png", "train_sweep.png", "gen_temperature.png",
      "gen_temperature_stats.png", "gen_interpolation.png", "gen_latent_pca.png",
      "task_humanize.png"}
  for name in figures:
    image = matplotlib.image.imread(out / "figures" / name)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0, name
  tables = {p.name for p in (out / "tables").iterdir()}
  assert {"dataset.md", "dataset.json", "sweep.md", "sweep.json", "tasks.json",
          "reproduction.md", "summary.json"} <= tables
  samples = {p.name for p in (out / "samples").glob("*.mid")}
  assert {f"sample_T{t}.mid" for t in make_figures.TEMPERATURES} <= samples
  assert {f"interpolation_{i}.mid" for i in range(6)} <= samples
  assert "humanize_0.mid" in samples
  assert summary["generation_run"] == "fb48"


def test_dataset_table_counts_the_fixture_split(made):
  _, out, _ = made
  with open(GROOVE / "info.csv") as f:
    rows = list(csv.DictReader(f))
  stats = json.loads((out / "tables" / "dataset.json").read_text())
  for split in ("train", "validation", "test"):
    mine = [r for r in rows if r["split"] == split]
    assert stats[split]["files"] == len(mine)
    assert stats[split]["fills"] == sum(r["beat_type"] == "fill" for r in mine)
  assert stats["train"]["examples"] > stats["validation"]["examples"] > 0


def test_sweep_table_repeats_the_last_eval_metrics(made):
  runs, out, _ = made
  rows = {r["run"]: r for r in json.loads((out / "tables" / "sweep.json").read_text())}
  assert set(rows) == {"fb48"}
  lines = [json.loads(l) for l in (runs / "fb48" / "metrics.jsonl").read_text().splitlines()]
  last = [l for l in lines if l["split"] == "eval"][-1]
  row = rows["fb48"]
  assert row["steps"] == last["step"] == 3
  assert row["accuracy_free_running"] == round(last["free_running/accuracy"], 4)
  assert row["kl_bits"] == round(last["teacher_forced/kl_bits"], 3)
  assert row["free_bits"] == 48.0 and 0 <= row["active_units"] <= 4
  assert 0 <= row["dims_over_half_bit"] <= 4 and row["mean_sigma"] > 0
  assert "| 2-bar drums | 0.979 |" in (out / "tables" / "reproduction.md").read_text()


def test_active_units_counts_varying_dimensions():
  mu = np.zeros((100, 3))
  mu[:, 1] = np.linspace(-1, 1, 100)          # variance 0.34: active
  mu[:, 2] = np.linspace(-0.1, 0.1, 100)      # variance 0.0034: inactive
  assert make_figures.active_units(mu) == 1


def test_latent_pca_finds_the_dominant_direction(tmp_path):
  t = np.linspace(-1, 1, 50)
  mu = np.stack([t, 2 * t, np.zeros_like(t)], -1)
  explained = make_figures.plot_latent_pca(mu, np.array(["rock", "funk"] * 25),
                                           tmp_path / "pca.png")
  np.testing.assert_allclose(explained[0], 1.0, atol=1e-6)
  assert (tmp_path / "pca.png").exists()


def test_no_groove_4bar_run_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="no groovae_4bar runs"):
    make_figures.make_all(tmp_path, tmp_path / "out")


def test_pairwise_hamming_by_hand():
  grids = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], bool)
  # pairs: (0,1) 1, (0,2) 3, (1,2) 2 -> mean 2
  assert make_figures.pairwise_hamming(grids) == pytest.approx(2.0)


def test_kl_bits_per_dim_by_hand():
  mu = np.array([[0.0, 1.0], [0.0, -1.0]])
  sigma = np.array([[1.0, 1.0], [1.0, 1.0]])
  # dim 0 is the prior (0 bits); dim 1: 0.5 * mu^2 = 0.5 nats
  np.testing.assert_allclose(make_figures.kl_bits_per_dim(mu, sigma), [0.0, 0.5 / np.log(2)])


def fake_run(root, name, config_name, accuracies):
  """A workdir with the config of ``configs/<config_name>.py`` and eval metric lines."""
  workdir = root / name
  workdir.mkdir()
  c = _load_module(ROOT / "configs" / f"{config_name}.py", config_name).get_config()
  (workdir / "config.json").write_text(c.to_json_best_effort())
  lines = [{"split": "eval", "step": 100 * (i + 1), "teacher_forced/accuracy": tf,
            "free_running/accuracy": fr} for i, (tf, fr) in enumerate(accuracies)]
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
  return make_figures.Run(workdir)


def test_categorical_runs_fill_their_table1_row(tmp_path):
  flat = fake_run(tmp_path, "flat16", "flat_mel_16bar", [(0.5, 0.4), (0.61, 0.52)])
  hier = fake_run(tmp_path, "hier16", "hierdec_mel_16bar", [(0.6, 0.5), (0.7, 0.66)])
  mel2 = fake_run(tmp_path, "mel2", "cat_mel_2bar_small", [(0.8, 0.75)])
  rows = {r["model"]: r for r in make_figures.reproduction_rows([], [flat, hier, mel2],
                                                                {"mel2": 0.5})}
  row = rows["16-bar melody"]
  assert (row["ours TF flat"], row["ours sampling flat"]) == (0.61, 0.52)
  assert (row["ours TF hier"], row["ours sampling hier"]) == (0.7, 0.66)
  assert row["paper TF hier"] == 0.919 and "200 steps" in row["ours"]
  assert rows["2-bar melody"]["ours TF flat"] == 0.8
  assert rows["2-bar melody"]["majority class"] == 0.5
  assert rows["2-bar drums"]["ours"] == "not run" and "ours TF flat" not in rows["2-bar drums"]


def test_majority_class_accuracy_counts_valid_steps_only():
  outputs = np.zeros((2, 4, 3))
  outputs[0, :, 1] = 1                      # class 1 at all 4 steps
  outputs[1, :2, 2] = 1                     # class 2 at the 2 valid steps
  outputs[1, 2:, 1] = 1                     # padding: not counted
  arrays = {"outputs": outputs, "lengths": np.array([4, 2])}
  assert make_figures.majority_class_accuracy(arrays) == pytest.approx(4 / 6)


def test_majority_baseline_uses_the_runs_evaluated_examples(tmp_path):
  from flax_musicvae.pipelines import convert_dir  # pylint: disable=g-import-not-at-top
  records = tmp_path / "groove.tfrecord"
  convert_dir.convert_directory(GROOVE, records, num_workers=1, progress=False)
  c = _load_module(ROOT / "configs" / "cat_drums_2bar_small.py", "drums").get_config()
  c.data.update(dataset="note_sequences", path=str(records), eval_fraction=0.5,
                cache_dir=str(tmp_path / "cache"))
  c.train.update(batch_size=2, eval_num_batches=2)
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(c.to_json_best_effort())
  (workdir / "metrics.jsonl").write_text("")
  evaluated = make_figures.evaluated_examples(make_figures.Run(workdir))
  validation = make_figures.input_pipeline.load_split(c, "validation")
  assert len(validation["lengths"]) > 4
  np.testing.assert_array_equal(evaluated["outputs"], validation["outputs"][:4])
  np.testing.assert_array_equal(evaluated["lengths"], validation["lengths"][:4])
