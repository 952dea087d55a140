"""Binary record formats without TensorFlow: CRC32C checksums and TFRecord framing."""
