"""Export of trained models for devices: SavedModel (jax2tf) and LiteRT (``.tflite``) files.

``signatures`` holds the pure JAX functions (sampling noise as inputs), ``saved_model``
and ``tflite`` the TensorFlow side (imported lazily: TensorFlow is optional), ``metadata``
the JSON a runtime needs to turn outputs into MIDI. CLI: ``python -m flax_musicvae.export``.
"""
