"""MusicVAE and GrooVAE in JAX/Flax.

Layout: ``data`` (NoteSequence <-> tensor representations), ``models`` (Flax
encoders/decoders/VAE), training (``train``, ``input_pipeline``), inference and
export modules.
"""

__version__ = "0.1.0"
