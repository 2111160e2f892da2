"""Corpora: the synthetic world, readers and validation, the tokenizer, shards and the loader, task data."""
