"""Captioning zoo entries (lstm_captioner, transformer_captioner)."""
