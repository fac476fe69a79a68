"""Causal language modelling: a Llama-style decoder on the English Bible, scored by perplexity."""
