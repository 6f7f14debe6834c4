"""Datasets: the img2dataset shard layout, the preset registry and the demo dataset."""
