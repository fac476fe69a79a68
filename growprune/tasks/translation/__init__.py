"""Translation es<->en on the Bible corpus: BPE vocabulary, the seq2seq Transformer, decoding, BLEU/chrF.

Declared to the task registry (growprune/tasks/registry.py); nothing outside this folder
imports from it except through that registry.
"""
