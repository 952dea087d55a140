"""Data pipelines: MIDI/MusicXML -> NoteSequence collections -> cached training arrays."""
