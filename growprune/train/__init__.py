"""Training engine, recipes, checkpoints, metrics and run reports."""
