"""Translation evaluation: decode with the seq2seq Transformer and score with BLEU/chrF."""

from growprune.evaluation.decode import beam_search, greedy_decode, length_penalty_factor, sequence_scores
from growprune.evaluation.scores import translation_scores

__all__ = ["beam_search", "greedy_decode", "length_penalty_factor", "sequence_scores", "translation_scores"]
