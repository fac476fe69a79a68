"""Mask machinery shared by every method: targets, distributions, scores, patterns, partitions."""
