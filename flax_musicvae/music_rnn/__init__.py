"""Magenta's MusicRNN family (Melody RNN, Drums RNN, Improv RNN): encodings, data, generation."""
