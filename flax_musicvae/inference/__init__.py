"""Inference API for trained MusicVAE / GrooVAE models (Magenta's ``TrainedModel``).

``MusicVAEModel.from_workdir(workdir)`` loads the config and latest parameters of a
training run; ``from_pretrained(name)`` a shipped model (:mod:`flax_musicvae.pretrained`);
``from_checkpoint(config, params)`` wraps parameters from anywhere (e.g.
an imported Magenta checkpoint). Every method is jitted and deterministic: the same
``seed`` gives the same output bit for bit. Batches are padded to a power of two (at
most ``max_batch_size``) so a handful of shapes is ever compiled.

Interpolation follows Magenta (``slerp`` between posterior means) and magenta.js
(``lerp``, and a bilinear grid between four corners); ``similar`` is magenta.js's
``z' = s z + (1 - s) eps``.

One module a job: ``loading`` (workdirs, checkpoint sizes, ``CACHE_DIR``: patch it
there), ``inputs``, ``windows``, ``latent``, ``model``, ``tasks`` (reconstruct and the
GrooVAE tasks); their public names are re-exported here.
"""

from flax_musicvae.inference.inputs import (InputError, MultipleExtractedExamplesError,
                                            NoExtractedExamplesError, as_note_sequence,
                                            check_input, parse_midi, read_midi,
                                            set_qpm)
from flax_musicvae.inference.latent import bilinear_grid, lerp, slerp
from flax_musicvae.inference.loading import (PathLike, checkpoint_sizes,
                                             enable_compilation_cache, load_config,
                                             load_workdir_params, save_workdir,
                                             with_checkpoint_sizes)
from flax_musicvae.inference.model import MusicVAEModel
from flax_musicvae.inference.tasks import (drumify, humanize, infill, reconstruct,
                                           rhythm_to_drums, transfer)
from flax_musicvae.inference.windows import (Window, bar_seconds, candidate_windows,
                                             converter_window_desc, cut_bars, extract_one,
                                             extract_window, list_windows, num_bars,
                                             window_bars, window_hop_bars)

__all__ = [
    "InputError", "MultipleExtractedExamplesError", "NoExtractedExamplesError",
    "MusicVAEModel", "PathLike", "Window", "as_note_sequence", "bar_seconds",
    "bilinear_grid", "candidate_windows", "check_input", "checkpoint_sizes",
    "converter_window_desc", "cut_bars", "drumify", "enable_compilation_cache",
    "extract_one", "extract_window", "humanize", "infill", "lerp", "list_windows",
    "load_config", "load_workdir_params", "num_bars", "parse_midi", "read_midi", "reconstruct",
    "rhythm_to_drums", "save_workdir", "set_qpm", "slerp", "transfer",
    "window_bars", "window_hop_bars", "with_checkpoint_sizes",
]
