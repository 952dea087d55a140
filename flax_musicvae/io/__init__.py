"""Files without TensorFlow: CRC32C checksums, TFRecord framing, SHA-256 digests."""
