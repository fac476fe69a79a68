"""Encoder-decoder Transformer for translation (pre-norm, sinusoidal positions).

This is the model of the GaP paper's WMT experiments, sized down for CPU training. Pruning in
growprune selects ``nn.Linear`` weights by fnmatch name patterns and the GaP partitions are name
patterns too (``encoder.*``, ``decoder.*``), so every projection is its own ``nn.Linear`` with a
stable name and is the very parameter used in ``forward``: masked (zeroed) weights take effect
at once, and nothing is fused into a buffer that would go stale after a mask update.

Token ids follow the data side's convention: PAD=0, BOS=1, EOS=2, UNK=3 (``pad_id`` may move
PAD). Targets are ``BOS + ids + EOS + PAD...``; teacher forcing feeds ``tgt[:, :-1]`` and
predicts ``tgt[:, 1:]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DecoderCache", "Seq2SeqTransformer"]


@dataclass
class DecoderCache:
    """Incremental decoding state; every tensor has one row per hypothesis on dim 0.

    ``self_k``/``self_v`` hold each decoder layer's self-attention keys/values of the tokens fed
    so far (B, heads, length, head_dim); ``cross_k``/``cross_v`` the cross-attention keys/values
    of the encoder memory (B, heads, S, head_dim), computed once because the memory never
    changes; ``src_keep`` marks non-PAD source positions (B, 1, 1, S).
    """

    self_k: list[torch.Tensor]
    self_v: list[torch.Tensor]
    cross_k: list[torch.Tensor]
    cross_v: list[torch.Tensor]
    src_keep: torch.Tensor
    length: int

    @property
    def rows(self) -> int:
        return self.src_keep.shape[0]

    def select(self, index: torch.Tensor, cross: bool = True) -> DecoderCache:
        """Rows ``index`` (reorder, repeat or drop rows; beam search and finished-row removal).

        ``cross=False`` leaves the source-side tensors as they are: beam search reorders
        hypotheses only within a sentence, whose beams share identical source rows, so copying
        them every step would be wasted work.
        """

        def pick(ts: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.index_select(0, index) for t in ts]

        if not cross:
            if index.numel() != self.rows:
                raise ValueError("select(cross=False) must keep the row count; pass cross=True to resize")
            return DecoderCache(
                pick(self.self_k), pick(self.self_v), self.cross_k, self.cross_v, self.src_keep, self.length
            )
        return DecoderCache(
            pick(self.self_k),
            pick(self.self_v),
            pick(self.cross_k),
            pick(self.cross_v),
            self.src_keep.index_select(0, index),
            self.length,
        )


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) table: sin on even and cos on odd features, wavelengths 2*pi .. 10000*2*pi."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)
    return table


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out ``nn.Linear`` projections (prunable one by one)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, D) -> keys and values, each (B, heads, L, head_dim)."""
        return self._split(self.k_proj(x)), self._split(self.v_proj(x))

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        keep: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """Queries from ``x`` (B, T, D) attend to ``k``/``v``; ``keep`` is True where a key is visible."""
        q = self._split(self.q_proj(x))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0, is_causal=causal
        )
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    """fc1 -> ReLU -> fc2."""

    def __init__(self, d_model: int, ffn_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, heads, dropout)
        self.ffn = FeedForward(d_model, ffn_dim)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.self_attn.attend(h, *self.self_attn.keys_values(h), keep=keep))
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, heads, dropout)
        self.cross_attn = Attention(d_model, heads, dropout)
        self.ffn = FeedForward(d_model, ffn_dim)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        src_keep: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One layer; with ``past`` (cached keys/values) ``x`` is the next single position.

        Returns the output and this layer's self-attention keys/values including ``x``'s.
        """
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # A full sequence needs the causal mask; a single new position may see every cached one.
        x = x + self.drop(self.self_attn.attend(h, k, v, causal=past is None))
        x = x + self.drop(self.cross_attn.attend(self.norm2(x), *cross_kv, keep=src_keep))
        return x + self.drop(self.ffn(self.norm3(x))), (k, v)


class Encoder(nn.Module):
    def __init__(self, layers: int, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ffn_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, keep)
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, layers: int, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, heads, ffn_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)


class Seq2SeqTransformer(nn.Module):
    """Pre-norm encoder-decoder Transformer (Vaswani et al. 2017, with LayerNorm before sub-layers).

    Args:
        vocab_size: joint source/target vocabulary, special ids included.
        d_model: model width; must be even (sinusoids) and divisible by ``heads``.
        heads: attention heads.
        encoder_layers, decoder_layers: layer counts (>= 1).
        ffn_dim: hidden width of the ReLU feed-forward blocks.
        dropout: on embeddings, sub-layer outputs and attention weights (train mode only).
        share_embeddings: one ``embed`` table for source, target and the output projection
            (``F.linear`` with it, so the output layer stays dense and is never a pruning
            target); otherwise ``src_embed``, ``tgt_embed`` and an ``output_proj`` Linear.
        max_positions: longest source or target sequence (length of the position table).
        pad_id: padding id, ignored by attention and the loss.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        heads: int = 4,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        share_embeddings: bool = True,
        max_positions: int = 1024,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        _check_config(
            vocab_size,
            d_model,
            heads,
            encoder_layers,
            decoder_layers,
            ffn_dim,
            dropout,
            max_positions,
            pad_id,
        )
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.max_positions = max_positions
        self.pad_id = pad_id
        self.share_embeddings = share_embeddings
        if share_embeddings:
            self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        else:
            self.src_embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
            self.tgt_embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
            self.output_proj = nn.Linear(d_model, vocab_size, bias=False)
        self.encoder = Encoder(encoder_layers, d_model, heads, ffn_dim, dropout)
        self.decoder = Decoder(decoder_layers, d_model, heads, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)
        # Not persistent: it is a pure function of the config, so checkpoints need not carry it.
        self.register_buffer("positions", sinusoidal_positions(max_positions, d_model), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform Linears with zero bias; embeddings N(0, d_model**-0.5) with a zero PAD row.

        The embedding scale times the sqrt(d_model) input factor gives unit-variance inputs, and
        with shared embeddings it keeps the initial logits of LayerNorm-ed states near unit scale.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=self.d_model**-0.5)
                with torch.no_grad():
                    module.weight[self.pad_id].zero_()

    # -- pieces -------------------------------------------------------------------------------------

    def _embed(self, table: nn.Embedding, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = tokens.shape[1]
        if offset + length > self.max_positions:
            raise ValueError(
                f"sequence length {offset + length} exceeds max_positions={self.max_positions}; "
                "build the model with a larger max_positions or truncate the input"
            )
        x = table(tokens) * math.sqrt(self.d_model) + self.positions[offset : offset + length]
        return self.drop(x)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.share_embeddings:
            return F.linear(h, self.embed.weight)
        return self.output_proj(h)

    @property
    def _src_table(self) -> nn.Embedding:
        return self.embed if self.share_embeddings else self.src_embed

    @property
    def _tgt_table(self) -> nn.Embedding:
        return self.embed if self.share_embeddings else self.tgt_embed

    # -- public API ---------------------------------------------------------------------------------

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode right-padded ``src`` (B, S) -> (memory (B, S, D), src_pad_mask (B, S), True at PAD).

        Raises:
            ValueError: ``src`` is not 2-D, or a row is all padding (its attention would be empty).
        """
        if src.dim() != 2:
            raise ValueError(f"src must be (batch, length) token ids, got shape {tuple(src.shape)}")
        pad = src.eq(self.pad_id)
        if bool(pad.all(dim=1).any()):
            raise ValueError("src has a row with no non-PAD token; drop empty sentences before encoding")
        memory = self.encoder(self._embed(self._src_table, src), (~pad)[:, None, None, :])
        return memory, pad

    def init_cache(self, memory: torch.Tensor, src_pad_mask: torch.Tensor) -> DecoderCache:
        """Empty decoding state for ``memory``: cross-attention keys/values of every decoder layer."""
        cross = [layer.cross_attn.keys_values(memory) for layer in self.decoder.layers]
        empty = memory.new_zeros(memory.shape[0], cross[0][0].shape[1], 0, cross[0][0].shape[3])
        n = len(cross)
        return DecoderCache(
            self_k=[empty] * n,
            self_v=[empty] * n,
            cross_k=[k for k, _ in cross],
            cross_v=[v for _, v in cross],
            src_keep=(~src_pad_mask)[:, None, None, :],
            length=0,
        )

    def decode_step(
        self,
        tokens: torch.Tensor,
        memory: torch.Tensor | None,
        src_pad_mask: torch.Tensor | None,
        cache: DecoderCache | None = None,
    ) -> tuple[torch.Tensor, DecoderCache]:
        """Feed one target position per row: ``tokens`` (B, 1) -> (next-token logits (B, V), cache).

        The first call (``cache=None``) builds the cache from ``memory`` and ``src_pad_mask``;
        later calls read everything source-side from the cache and ignore those two arguments,
        so reordering rows (beam search) only needs :meth:`reorder_cache`.
        """
        if cache is None:
            if memory is None or src_pad_mask is None:
                raise ValueError("the first decode_step needs memory and src_pad_mask (from encode)")
            cache = self.init_cache(memory, src_pad_mask)
        if tokens.dim() != 2 or tokens.shape[1] != 1 or tokens.shape[0] != cache.rows:
            raise ValueError(
                f"tokens must be ({cache.rows}, 1) to match the cache rows, got {tuple(tokens.shape)}"
            )
        x = self._embed(self._tgt_table, tokens, offset=cache.length)
        self_k, self_v = [], []
        for i, layer in enumerate(self.decoder.layers):
            past = (cache.self_k[i], cache.self_v[i])
            x, (k, v) = layer(x, (cache.cross_k[i], cache.cross_v[i]), cache.src_keep, past)
            self_k.append(k)
            self_v.append(v)
        logits = self._logits(self.decoder.norm(x))[:, 0]
        return logits, DecoderCache(
            self_k, self_v, cache.cross_k, cache.cross_v, cache.src_keep, cache.length + 1
        )

    @staticmethod
    def reorder_cache(cache: DecoderCache, index: torch.Tensor) -> DecoderCache:
        """Rows ``index`` of ``cache`` (any length: reorders, repeats or drops hypotheses)."""
        return cache.select(index)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for decoder input ``tgt_in`` (B, T) given ``src`` (B, S)."""
        if tgt_in.dim() != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"tgt_in must be (batch, length) with src's batch {src.shape[0]}, got {tuple(tgt_in.shape)}"
            )
        memory, pad = self.encode(src)
        keep = (~pad)[:, None, None, :]
        x = self._embed(self._tgt_table, tgt_in)
        for layer in self.decoder.layers:
            x, _ = layer(x, layer.cross_attn.keys_values(memory), keep)
        return self._logits(self.decoder.norm(x))

    def loss(
        self, src: torch.Tensor, tgt: torch.Tensor, label_smoothing: float = 0.1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Label-smoothed cross-entropy over non-PAD target tokens.

        ``tgt`` is the full ``BOS + ids + EOS + PAD...`` batch. Returns (mean loss, correct
        tokens, non-PAD tokens); the counts are 0-dim int64 tensors on the model's device, so a
        training loop can accumulate token accuracy without a host sync per step.
        """
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if tgt.dim() != 2 or tgt.shape[1] < 2:
            raise ValueError(f"tgt must be (batch, length >= 2) starting with BOS, got {tuple(tgt.shape)}")
        labels = tgt[:, 1:]
        logits = self(src, tgt[:, :-1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=self.pad_id,
            label_smoothing=label_smoothing,
        )
        real = labels.ne(self.pad_id)
        with torch.no_grad():
            correct = (logits.argmax(-1).eq(labels) & real).sum()
        return loss, correct, real.sum()


def _check_config(
    vocab_size: int,
    d_model: int,
    heads: int,
    encoder_layers: int,
    decoder_layers: int,
    ffn_dim: int,
    dropout: float,
    max_positions: int,
    pad_id: int,
) -> None:
    """One-line errors that name the bad argument, before any layer is built."""
    if vocab_size < 4:
        raise ValueError(f"vocab_size must be >= 4 (PAD, BOS, EOS, UNK), got {vocab_size}")
    if not 0 <= pad_id < vocab_size:
        raise ValueError(f"pad_id must be in [0, vocab_size={vocab_size}), got {pad_id}")
    if heads < 1 or d_model < 2 or d_model % heads or d_model % 2:
        raise ValueError(f"d_model must be even and divisible by heads, got d_model={d_model}, heads={heads}")
    if encoder_layers < 1 or decoder_layers < 1:
        raise ValueError(
            f"encoder_layers and decoder_layers must be >= 1, got {encoder_layers} and {decoder_layers}"
        )
    if ffn_dim < 1:
        raise ValueError(f"ffn_dim must be >= 1, got {ffn_dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if max_positions < 2:
        raise ValueError(f"max_positions must be >= 2 (BOS plus one token), got {max_positions}")
