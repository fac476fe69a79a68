"""Classification: Fashion-MNIST (IDX files) and synthetic sets; MLP, CNN and ResNets; accuracy.

Declared to the task registry (growprune/tasks/registry.py); nothing outside this folder
imports from it except through that registry.
"""
