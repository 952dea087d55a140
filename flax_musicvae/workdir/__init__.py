"""The run directory: the one place that reads and writes a training run.

Layout (every path through ``etils.epath``, so ``gs://`` works wherever orbax does)::

  config.json            the run's config, written atomically once a restore succeeded
  checkpoints/<step>/    orbax: params, train (step, opt_state, rng), config, digest
  rejected_checkpoints/  unreadable or corrupt checkpoints, moved aside by the trainer
  metrics.jsonl          one line per logged step and split
  tensorboard/<split>/   TensorBoard event files (one per writer: a resume adds one)
  data_report.json       skipped data files and dropped windows, per split
  lock                   PID of the trainer using the directory (local paths)

Every checkpoint carries a sha256 of its arrays (``digest``): a restore that does not
reproduce it, or gives non-finite values, falls back to the next older checkpoint.

By job: ``layout`` (file names, errors, the lock, atomic writes, the data report),
``run_config`` (config.json), ``checkpoints`` (orbax, verified restores, params for
inference), ``metrics`` (metrics.jsonl and TensorBoard); their public names are
re-exported here.
"""

from flax_musicvae.workdir.checkpoints import (Checkpoint, Checkpoints, CorruptCheckpointError,
                                               abstract, abstract_params, checkpoints_of,
                                               digest, flatten_params, load, load_params,
                                               non_finite, save, unflatten_params)
from flax_musicvae.workdir.layout import (CHECKPOINTS, CONFIG_FILE, DATA_REPORT_FILE, LOCK_FILE,
                                          METRICS_FILE, PathLike, REJECTED, SaveError,
                                          WorkdirError, is_local, lock, path,
                                          update_data_report)
from flax_musicvae.workdir.metrics import MetricWriter, event_files, read_events, read_metrics
from flax_musicvae.workdir.run_config import (MUTABLE_KEYS, MUTABLE_SECTIONS,
                                              absolute_data_paths, config_differences,
                                              load_config, resolve_config, write_config)

__all__ = [
    "absolute_data_paths", "abstract", "abstract_params", "Checkpoint", "Checkpoints",
    "CHECKPOINTS", "checkpoints_of", "config_differences", "CONFIG_FILE",
    "CorruptCheckpointError", "DATA_REPORT_FILE", "digest", "event_files", "flatten_params",
    "is_local", "load", "load_config", "load_params", "lock", "LOCK_FILE", "METRICS_FILE",
    "MetricWriter", "MUTABLE_KEYS", "MUTABLE_SECTIONS", "non_finite", "path", "PathLike",
    "read_events", "read_metrics", "REJECTED", "resolve_config", "save", "SaveError",
    "unflatten_params", "update_data_report", "WorkdirError", "write_config",
]
