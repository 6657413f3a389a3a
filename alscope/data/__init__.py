"""Dataset contract and the core's tabular datasets."""
