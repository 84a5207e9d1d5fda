"""Data-parallel child training: the per-device step and the train loop."""
