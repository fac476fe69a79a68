"""Datasets: Fashion-MNIST from local IDX files and a synthetic set for tests."""
