"""A run directory's saved config as a config file: ``--config=<this file>:<workdir>``.

``python -m flax_musicvae.main`` passes it when a resumed run gets ``--config.<field>=V``
overrides without ``--config``, so they apply to the config the run was started with.
"""

import ml_collections

from flax_musicvae import workdir


def get_config(run_dir: str) -> ml_collections.ConfigDict:
  return workdir.load_config(run_dir)
