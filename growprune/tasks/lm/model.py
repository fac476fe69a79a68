"""A decoder-only Llama-style Transformer (RMSNorm, rotary positions, SwiGLU), built from a
``transformers.LlamaConfig``: the architecture of the large language models that sparse training
is most often asked about, at sizes a recipe picks (a few M parameters to ~100M).

The model is ``transformers``' own ``LlamaForCausalLM`` (its parameter names,
``model.layers.<i>.self_attn.q_proj.weight`` ..., are what recipes' ``targets`` and ``partitions``
patterns match, and a trained model loads back into ``transformers``). By default the output head
is tied to the token embedding, so growprune's target finder keeps it dense as it keeps every
embedding dense (:mod:`growprune.sparsity.targets`).
"""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM

__all__ = ["build_llama"]


def build_llama(
    vocab_size: int,
    context_length: int = 128,
    hidden_size: int = 256,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate_size: int | None = None,
    tie_embeddings: bool = True,
    rms_norm_eps: float = 1e-5,
    initializer_range: float = 0.02,
) -> LlamaForCausalLM:
    """``LlamaForCausalLM`` of the given sizes; ``intermediate_size`` defaults to Llama's rule
    (8/3 of ``hidden_size``, rounded up to a multiple of 32), ``kv_heads`` to ``heads`` (no
    grouped-query attention). ``vocab_size`` and ``context_length`` come from the task."""
    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of heads {heads}")
    kv_heads = heads if kv_heads is None else kv_heads
    if heads % kv_heads:
        raise ValueError(f"heads {heads} is not a multiple of kv_heads {kv_heads}")
    if intermediate_size is None:
        intermediate_size = -(-(8 * hidden_size // 3) // 32) * 32
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=context_length,
        rms_norm_eps=rms_norm_eps,
        initializer_range=initializer_range,
        tie_word_embeddings=tie_embeddings,
        use_cache=False,
        attention_dropout=0.0,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=None,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


build_llama.causal_lm = True  # type: ignore[attr-defined]  # what check_model_fits asks of a builder
