"""Data: the synthetic scene world, LLaVA-format datasets, tokenization and batching."""
