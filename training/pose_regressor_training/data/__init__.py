"""Datasets and the project's own dataset folder format."""
