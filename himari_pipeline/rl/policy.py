"""Regime-conditioned Transformer actor-critic with a windowed and a one-pass stretch encoder.

Attention is local and causal: layer ``l`` lets row ``i`` attend to rows ``i - w_l + 1 .. i``, with
the positional signal a learned bias per head that depends only on the offset ``i - j`` (initialised
as ALiBi).  The layer widths are chosen so that the stack's receptive field is exactly ``context``
bars: ``sum(w_l - 1) + 1 == context``.  Hence the output at bar ``t`` depends on bars
``t - context + 1 .. t`` only, and encoding a whole contiguous stretch in one pass gives, for every
row with a full history, exactly what the naive per-step window ending at that row gives.  (With a
band of width ``context`` in *every* layer the receptive field would grow to
``n_layers * (context - 1) + 1`` and no window of ``context`` bars could reproduce it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from himari_pipeline.rl.configs import PolicyConfig, split_receptive_field  # noqa: F401 - re-exported
from himari_pipeline.vocabulary import NUM_ACTIONS


class LocalCausalAttention(nn.Module):
    """Multi-head self-attention over the last ``window`` rows with a learned relative-offset bias."""

    def __init__(self, d_model: int, n_heads: int, window: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.window, self.head_dim = n_heads, window, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])
        self.rel_bias = nn.Parameter(-slopes[:, None] * torch.arange(window, dtype=torch.float32)[None, :])

    def forward(self, x: Tensor, key_valid: Tensor) -> Tensor:
        """x (N, L, d), key_valid (N, L) bool -> (N, L, d); row i sees valid rows i-window+1..i."""
        n, length, d = x.shape
        b = self.window  # block size: the previous block plus the own block cover every key needed
        nb = -(-length // b)
        pad = nb * b - length
        q, k, v = self.qkv(x).chunk(3, dim=-1)

        def blocks(t: Tensor) -> Tensor:  # (N, L, d) -> (N, H, nb, b, hd)
            t = F.pad(t, (0, 0, 0, pad))
            return t.view(n, nb, b, self.n_heads, self.head_dim).permute(0, 3, 1, 2, 4)

        def with_previous(t: Tensor) -> Tensor:  # (N, H, nb, b, hd) -> (N, H, nb, 2b, hd)
            prev = F.pad(t, (0, 0, 0, 0, 1, 0))[:, :, :-1]
            return torch.cat([prev, t], dim=3)

        qb, kb, vb = blocks(q), with_previous(blocks(k)), with_previous(blocks(v))
        valid = F.pad(key_valid, (0, pad), value=False).view(n, nb, b)
        valid = torch.cat([F.pad(valid, (0, 0, 1, 0), value=False)[:, :-1], valid], dim=2)  # (N, nb, 2b)

        # query a of a block is at b + a in the (previous, own) key frame; offset = query - key
        offset = b + torch.arange(b, device=x.device)[:, None] - torch.arange(2 * b, device=x.device)[None, :]
        in_band = (offset >= 0) & (offset < self.window)
        bias = self.rel_bias[:, offset.clamp(0, self.window - 1)]  # (H, b, 2b)

        scores = qb @ kb.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)) + bias[None, :, None]
        allowed = in_band[None, None] & valid[:, None, :, None, :]  # (N, 1, nb, b, 2b)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            attn = F.dropout(attn, self.dropout)
        out = (attn @ vb).permute(0, 2, 3, 1, 4).reshape(n, nb * b, d)[:, :length]
        return self.out(out)


class EncoderLayer(nn.Module):
    """Pre-norm Transformer block with local causal attention."""

    def __init__(self, cfg: PolicyConfig, window: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = LocalCausalAttention(cfg.d_model, cfg.n_heads, window, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ff_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ff_dim, cfg.d_model),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, key_valid: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), key_valid))
        return x + self.drop(self.ff(self.norm2(x)))


def _layer_init(layer: nn.Linear, std: float, bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class RegimeConditionedPolicy(nn.Module):
    """Transformer actor-critic: features + regime per bar -> encoding; heads add regime and position."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.feature_proj = nn.Linear(cfg.n_features, d)
        self.regime_emb = nn.Embedding(cfg.n_regimes, d)
        self.layers = nn.ModuleList(EncoderLayer(cfg, w) for w in cfg.attn_windows)
        self.final_norm = nn.LayerNorm(d)
        self.state_proj = nn.Linear(cfg.position_state_dim, d)
        self.actor = nn.Sequential(
            _layer_init(nn.Linear(2 * d, cfg.actor_hidden), math.sqrt(2)),
            nn.Tanh(),
            _layer_init(nn.Linear(cfg.actor_hidden, NUM_ACTIONS), 0.01),
        )
        self.critic = nn.Sequential(
            _layer_init(nn.Linear(2 * d, cfg.critic_hidden), math.sqrt(2)),
            nn.Tanh(),
            _layer_init(nn.Linear(cfg.critic_hidden, 1), 1.0),
        )
        if cfg.actor_bias_init is not None:
            with torch.no_grad():
                self.actor[-1].bias.copy_(torch.tensor(cfg.actor_bias_init))

    # ----------------------------------------------------------------- encoder
    def _encode(self, features: Tensor, regimes: Tensor, key_valid: Tensor | None = None) -> Tensor:
        """(N, L, F), (N, L) -> (N, L, d): every row encoded from its own causal receptive field."""
        if key_valid is None:
            key_valid = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        x = self.feature_proj(features) + self.regime_emb(regimes.long())
        for layer in self.layers:
            x = layer(x, key_valid)
        return self.final_norm(x)

    def encode_windows(self, features_windows: Tensor, regimes_windows: Tensor) -> Tensor:
        """Naive path: (B, C, F), (B, C) windows -> (B, d) encoding of each window's last bar."""
        return self._encode(features_windows, regimes_windows)[:, -1]

    def encode_indices(self, features: Tensor, regimes: Tensor, t_idx: Tensor) -> Tensor:
        """Encodings at bars ``t_idx`` (any shape) of one series (T, F), (T,) -> (*t_idx.shape, d).

        Needed bars are grouped into contiguous runs (gaps shorter than ``context`` are bridged),
        each run is cut into chunks of at most ``chunk_rows`` query rows preceded by ``context - 1``
        rows of history (:func:`chunk_plan`), and the chunks are encoded in batched passes of
        ``chunk_batch`` chunks. Rows whose history starts before bar 0 see only the bars that exist.
        """
        if t_idx.numel() == 0:
            return features.new_zeros(*t_idx.shape, self.cfg.d_model)
        plan = chunk_plan(t_idx, self.cfg.context, self.cfg.chunk_rows)
        nb = self.cfg.chunk_batch
        enc = torch.cat(  # (n_chunks, length, d)
            [
                self._encode(features[r], regimes[r], v)
                for r, v in zip(plan.rows.split(nb), plan.valid.split(nb), strict=True)
            ]
        )
        return enc[plan.chunk_of, plan.pos].reshape(*t_idx.shape, -1)

    def encode_stretch(self, features: Tensor, regimes: Tensor) -> Tensor:
        """One-pass path: (L, F), (L,) contiguous bars -> (L, d); row i equals the window ending at i."""
        return self.encode_indices(features, regimes, torch.arange(features.shape[0], device=features.device))

    # ------------------------------------------------------------------- heads
    def heads(self, encoded: Tensor, regime: Tensor, position_state: Tensor) -> tuple[Tensor, Tensor]:
        """(B, d) encodings, (B,) current regime, (B, 3) position state -> logits (B, 3), value (B,)."""
        cond = self.regime_emb(regime.long()) + self.state_proj(position_state.float())
        z = torch.cat([encoded, cond], dim=-1)
        return self.actor(z), self.critic(z).squeeze(-1)

    def forward_windows(
        self, features_windows: Tensor, regimes_windows: Tensor, position_state: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Naive per-step path: (B, C, F), (B, C), (B, 3) -> logits (B, 3), value (B,)."""
        enc = self.encode_windows(features_windows, regimes_windows)
        return self.heads(enc, regimes_windows[:, -1], position_state)

    def forward(self, features_windows: Tensor, regimes_windows: Tensor, position_state: Tensor):
        return self.forward_windows(features_windows, regimes_windows, position_state)


@dataclass
class ChunkPlan:
    """How :meth:`RegimeConditionedPolicy.encode_indices` reads bars: chunk rows and where each bar lands.

    ``rows``/``valid`` (n_chunks, length): the bar read at each position of each chunk and whether it
    exists (history before bar 0 does not); ``chunk_of``/``pos`` (n,): the chunk and position of the
    encoding of each requested bar, in the order of ``t_idx.reshape(-1)``.
    """

    rows: Tensor
    valid: Tensor
    chunk_of: Tensor
    pos: Tensor

    @property
    def length(self) -> int:
        return int(self.rows.shape[1])


def chunk_plan(t_idx: Tensor, context: int, chunk_rows: int, length: int | None = None) -> ChunkPlan:
    """Group the bars ``t_idx`` into contiguous runs and chunks (see ``encode_indices``).

    ``length`` (at least the plan's own) pads every chunk with earlier history rows, so that plans of
    different bar sets share one shape; the encodings do not change (the receptive field is
    ``context`` bars).
    """
    c, q = context, chunk_rows
    flat = t_idx.reshape(-1).long()
    uniq, inverse = torch.unique(flat, sorted=True, return_inverse=True)
    ulist = uniq.tolist()
    chunks: list[tuple[int, int]] = []  # inclusive (first, last) query bar
    start = prev = ulist[0]
    for t in ulist[1:] + [None]:
        if t is not None and t - prev < c:
            prev = t
            continue
        for a in range(start, prev + 1, q):
            chunks.append((a, min(a + q - 1, prev)))
        if t is not None:
            start = prev = t
    own = max(b - a for a, b in chunks) + c
    length = own if length is None else max(own, int(length))
    last = torch.tensor([b for _, b in chunks], device=flat.device)
    rows = last[:, None] - torch.arange(length - 1, -1, -1, device=flat.device)[None, :]
    valid = rows >= 0
    rows = rows.clamp(min=0)
    # position of each unique bar inside its chunk
    chunk_of = torch.searchsorted(torch.tensor([a for a, _ in chunks], device=flat.device), uniq, right=True)
    chunk_of = chunk_of - 1
    pos = uniq - last[chunk_of] + (length - 1)
    return ChunkPlan(rows, valid, chunk_of[inverse], pos[inverse])


def masked_logits(logits: Tensor, action_mask: Tensor | None) -> Tensor:
    """Give disallowed actions the lowest finite logit: probability exactly zero, no NaN entropy."""
    if action_mask is None:
        return logits
    return logits.masked_fill(~action_mask.bool(), torch.finfo(logits.dtype).min)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
