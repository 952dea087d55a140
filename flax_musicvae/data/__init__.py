"""Musical representations: NoteSequence <-> (inputs, outputs, controls, lengths)."""
