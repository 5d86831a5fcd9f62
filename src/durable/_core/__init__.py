"""Vocabulary shared by every layer: errors, the codec, error records, events, commands, ids,
durations and a generic registry. Imports nothing from the rest of durable."""
