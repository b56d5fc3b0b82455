"""A synthetic indoor scene rendered by exact ray casting, for training and end-to-end tests."""
