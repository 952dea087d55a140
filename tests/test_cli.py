"""The command-line programs' shared argument handling (``flax_musicvae.cli``)."""

import argparse

import pytest

from flax_musicvae import cli
from flax_musicvae import config_lib


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="prog")
  p.add_argument("--workdir")
  cli.add_config_argument(p, "config.")
  return p


def test_config_overrides_in_both_forms_keep_their_order():
  args = cli.parse_args(_parser(), [
      "--config.train.batch_size=7", "--workdir", "w", "--config.train.num_train_steps", "-1",
      "--config=groove_4bar", "--config.model.z_size", "4"])
  assert args.workdir == "w" and args.config == "groove_4bar"
  assert args.config_overrides == ["--config.train.batch_size=7",
                                   "--config.train.num_train_steps=-1",
                                   "--config.model.z_size=4"]


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--config.train.batch_size"], "--config.train.batch_size needs a value"),
])
def test_bad_arguments_are_one_usage_error(capsys, argv, message):
  with pytest.raises(SystemExit) as stop:
    cli.parse_args(_parser(), argv)
  assert stop.value.code == 2 and message in capsys.readouterr().err


def test_overrides_are_typed_by_the_field():
  config = config_lib.load("groove_4bar", ["--config.train.batch_size=7",
                                           "--config.train.learning_rate=0.5",
                                           "--config.model.dec_rnn_size=(8, 8)"])
  assert config.train.batch_size == 7 and isinstance(config.train.batch_size, int)
  assert config.train.learning_rate == 0.5
  assert tuple(config.model.dec_rnn_size) == (8, 8)
  assert config_lib.load("groove_4bar").train.batch_size != 7  # a fresh config each time


@pytest.mark.parametrize("config, overrides, message", [
    ("configs/nope.py", [], "--config=configs/nope.py: config file configs/nope.py not found"),
    ("groove_4bar", ["--config.train.batchsize=8"], "config override --config.train.batchsize"),
    ("groove_4bar", ["--config.train.batch_size=many"], "config override"),
])
def test_config_mistakes_are_one_line_usage_errors(config, overrides, message):
  with pytest.raises(cli.UsageError) as error:
    cli.load_config(config, overrides)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_overrides_without_a_file_apply_to_a_given_config():
  base = config_lib.load("basic_rnn")
  assert cli.load_config(None, ["--config.train.batch_size=3"], base=base).train.batch_size == 3
  assert cli.load_config(None, []) is None
