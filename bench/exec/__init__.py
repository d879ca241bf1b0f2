"""Executing cells: the cell and the context a method runs in, its file lock, checkpoints of
users' own models, provenance, and the in-process and local-worker executors."""
