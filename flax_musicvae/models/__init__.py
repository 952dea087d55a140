"""Flax linen encoders, decoders and the MusicVAE model."""
