"""
A small GPT for nanoanchor, read top to bottom: config, documents, small parts, the whole model.
The KV cache, batched generation and the sampling rules live beside it in engine.py.

Architecture choices, and why:
- RoPE (rotary position embeddings) instead of a learned position table: attention sees only
  relative positions, and positions restart at 0 at every document start, so a story gives the
  same logits packed in a row as alone, and left padding in batched generation costs nothing.
- RMSNorm (pre-norm) instead of LayerNorm: no mean, no bias, same quality, fewer operations
  (though on CPU eager PyTorch runs rms_norm as several kernels; torch.compile fuses them).
- No biases anywhere: they do not help at this scale and every weight is then a matrix.
- ReLU^2 MLP (relu(x)**2, Primer, So et al. 2021; used by modded-nanogpt and nanochat): cheaper
  than GELU (no erf/tanh) and trains at least as well on small GPTs.
- Tied input/output embeddings: with a vocabulary of a few thousand and n_embd of 128-512 the
  embedding table is a large share of all weights; tying halves it (as GPT-2 and nanoGPT do).
- Document masking: when config.bos_id is set, a row is split into documents at <|bos|> and a
  token attends only to earlier tokens of its own document, so the annotation of one packed
  story cannot leak into the next.
- Attention, one interface, five paths (config.attention; 'auto', the default, picks one by
  device, see attention_path):
    'manual' explicit scores, mask and softmax in plain PyTorch: the version to read, the reference;
    'sdpa'   F.scaled_dot_product_attention, is_causal=True when each row is one document, else
             with the boolean document mask;
    'tiles'  'manual' on tiles of 128 queries, each against the keys up to its own end: the
             scores above the diagonal, masked in every row, are never computed (the CPU's
             training default, eager and compiled: bench/bench_attention.py);
    'docs'   the row cut at its document starts and 'manual' causal attention on each document
             alone: no masked scores are computed, but one small call per document;
    'flex'   FlexAttention with a document-causal block mask, compiled (CUDA only; on CPU it has
             no backward, so it warns once and uses 'sdpa'). It skips fully masked tiles, and has
             no attention-weight dropout. engine.py's cached generation uses sdpa, or manual compiled.
- Precision: the model is fp32; callers run it under device.autocast (bf16 where the device
  runs it fast, see device.py), and engine.generate(dtype=...) does the same for sampling.
- Save the raw module: torch.compile wraps the model and prefixes its state dict keys with
  "_orig_mod."; loop.py keeps the raw module beside the compiled one and saves the raw one.
- Speed tricks, each marked "Speed trick" where it is, and each tested in tests/test_model.py
  against the plain version it must equal: ReLUSquared's hand-written backward (plain:
  relu(x)**2 under autograd), apply_rotary's roll + addcmul (plain: the rotation formula),
  sdpa's is_causal path for one-document rows (plain: the document mask), the compiled
  'flex' kernel (plain: 'manual'), 'tiles' and 'docs' attention (plain: 'manual') and the
  loss's cast left to autocast (plain: logits.float()). Their timings are in bench/README.md.
"""

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


ATTENTION_PATHS = ("auto", "manual", "sdpa", "tiles", "docs", "flex")


@dataclass
class GPTConfig:
    vocab_size: int = 4096
    block_size: int = 256     # longest row (in tokens) the model will ever see
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    attention: str = "auto"   # one of ATTENTION_PATHS
    bos_id: int | None = None  # token that starts a document; None = one document per row
    dead_tokens: tuple = ()   # ids no training target ever uses: the model never predicts them

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if (self.n_embd // self.n_head) % 2 != 0:  # RoPE rotates pairs of channels
            raise ValueError(f"n_embd // n_head = {self.n_embd // self.n_head} must be even for "
                             f"rotary embeddings (n_embd={self.n_embd}, n_head={self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.attention not in ATTENTION_PATHS:
            raise ValueError(f"attention={self.attention!r} is not one of {ATTENTION_PATHS}")
        if self.bos_id is not None and not 0 <= self.bos_id < self.vocab_size:
            raise ValueError(f"bos_id={self.bos_id} is outside the vocabulary [0, {self.vocab_size})")
        self.dead_tokens = tuple(int(t) for t in self.dead_tokens)
        if any(not 0 <= t < self.vocab_size for t in self.dead_tokens):
            raise ValueError(f"dead_tokens must lie in the vocabulary [0, {self.vocab_size})")


# -----------------------------------------------------------------------------
# Documents: which tokens may see which


def document_layout(starts):
    """starts (B,T) bool, True where a document begins -> doc ids (B,T), positions in doc (B,T).
    Tokens before the first start form document 0 (e.g. left padding) with positions from 0."""
    t = torch.arange(starts.size(1), device=starts.device)
    doc = starts.long().cumsum(1)
    first = torch.where(starts, t, 0).cummax(1).values  # index where each token's document began
    return doc, t - first


def document_causal_mask(doc_q, doc_k, offset=0):
    """(B,1,T,S) bool, True = may attend: same document, and key not in the future.
    doc_q (B,T) are the queries' documents, doc_k (B,S) the keys'; query i sits at offset + i."""
    T, S = doc_q.size(1), doc_k.size(1)
    q = offset + torch.arange(T, device=doc_q.device)
    k = torch.arange(S, device=doc_q.device)
    causal = k[None, :] <= q[:, None]                          # (T,S)
    same_doc = doc_q[:, :, None] == doc_k[:, None, :]          # (B,T,S)
    return (same_doc & causal)[:, None]                        # broadcast over heads


def flex_block_mask(doc):
    """FlexAttention's BlockMask for document-causal attention (CUDA): it skips whole 128x128
    tiles that are fully masked, so packed documents cost less than one long causal row."""
    from torch.nn.attention.flex_attention import create_block_mask

    def doc_causal(b, h, q, k):
        return (doc[b, q] == doc[b, k]) & (q >= k)
    B, T = doc.shape
    return create_block_mask(doc_causal, B, None, T, T, device=doc.device)


# Speed trick: the compiled FlexAttention kernel (plain version: manual_attention with
# document_causal_mask; test_flex_matches_manual_cuda).
_flex_attention = None  # torch.compile(flex_attention), built on first use: eager flex is slow


def flex_attention(q, k, v, block_mask):
    global _flex_attention
    if _flex_attention is None:
        from torch.nn.attention.flex_attention import flex_attention as flex
        _flex_attention = torch.compile(flex, dynamic=False)
    return _flex_attention(q, k, v, block_mask=block_mask)


def attention_path(name, device_type, compiling=False, cached=False):
    """The path attention takes: config.attention, with 'auto' resolved here, the one place, by
    what bench/README.md measured. On a GPU, 'sdpa' (fused kernels with a mask; 'flex' skips
    masked tiles but compiles first). On a CPU, training and scoring rows (one document or
    several) take 'tiles', eager or compiled (it beat the masked row by SDPA or by hand, and
    'docs', whose document lengths would also break a compiled graph); generation's few queries
    a step over a KV cache (`cached`) take 'sdpa', or 'manual' in the compiled decode step
    (inductor fuses its mask and softmax around the matmuls). A path named by hand is kept, but
    'tiles' over a KV cache is 'sdpa'."""
    if name == "tiles" and cached:  # a cache's few queries a step gain nothing from tiles
        return "sdpa"
    if name != "auto":
        return name
    if device_type != "cpu":
        return "sdpa"
    if cached:
        return "manual" if compiling else "sdpa"
    return "tiles"


def document_spans(starts):
    """starts (B,T) bool -> for each row, the lengths of its documents in order (a row's tokens
    before its first start count as one document, as in document_layout). One host sync."""
    T = starts.size(1)
    rows = []
    for where in starts.cpu().tolist():
        cuts = [t for t, s in enumerate(where) if s and t > 0] + [T]
        rows.append([e - s for s, e in zip([0] + cuts[:-1], cuts)])
    return rows


def row_layout(idx, config):
    """Positions (B|1,T) of a training row and what attention needs: None = plain causal, a
    (B,1,T,T) bool mask, a flex BlockMask, or (path 'docs') each row's document lengths."""
    B, T = idx.shape
    bos = config.bos_id
    plain = bos is None
    # fast path: no <|bos|> after position 0 means one document per row. The check reads the
    # data, so it is skipped under torch.compile (no graph break): compiled runs always mask.
    if not plain and not torch.compiler.is_compiling():
        plain = not bool((idx[:, 1:] == bos).any())
    if plain:
        return torch.arange(T, device=idx.device)[None], None
    doc, pos = document_layout(idx == bos)
    path = attention_path(config.attention, idx.device.type)
    if path == "docs":
        return pos, document_spans(idx == bos)
    if path == "flex":
        if idx.is_cuda:
            return pos, flex_block_mask(doc)
        warnings.warn("attention='flex' needs CUDA (FlexAttention has no backward on CPU); "
                      "using 'sdpa' with a document mask instead")  # Python shows it once per place
    return pos, document_causal_mask(doc, doc)


# -----------------------------------------------------------------------------
# Small parts


class RMSNorm(nn.Module):
    """x / rms(x) * weight: LayerNorm without the mean and the bias."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def rotary_tables(head_dim, max_len, base=10000.0):
    """cos, sin of shape (max_len, head_dim), ready to multiply: channel pair (j, j + hd/2) turns
    by angle pos * base^(-2j/hd). Both halves hold the same angles and sin's second half is
    negated, so that apply_rotary is one roll, one multiply and one fused multiply-add."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (max_len, hd/2)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], dim=-1), torch.cat([sin, -sin], dim=-1)


def apply_rotary(x, cos, sin):
    """Speed trick (plain version: the formula below, test_apply_rotary_equals_the_formula).
    Rotate channel pairs (x1[j], x2[j]) = (x[j], x[j + hd/2]) of x (..., hd) by each token's
    angle: x1' = x1 cos + x2 sin, x2' = x2 cos - x1 sin. Then q.k depends only on the distance
    between the two positions. cos, sin (..., hd) from rotary_tables, broadcast against x.
    In one line: [x1, x2] * [cos, cos] + [x2, x1] * [sin, -sin], where roll swaps the halves:
    three kernels, where the formula as written takes seven."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # bf16 under autocast (a no-op in fp32)
    return torch.addcmul(x * cos, x.roll(x.size(-1) // 2, dims=-1), sin)


def manual_attention(q, k, v, mask, dropout_p=0.0):
    """The reference: q (B,H,T,hd), k, v (B,H,S,hd); mask (B,1,T,S) bool (True = attend) or
    None for plain causal. Every query may see at least itself, so no row is all -inf."""
    T, S = q.size(-2), k.size(-2)
    if mask is None:
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))   # (B,H,T,S)
    att = att.masked_fill(~mask, float("-inf"))
    att = F.softmax(att, dim=-1)
    att = F.dropout(att, dropout_p)
    return att @ v                                              # (B,H,T,hd)


def tiled_attention(q, k, v, mask, dropout_p=0.0, tile=128):
    """Speed trick (plain version: manual_attention; test_tiled_attention_equals_manual,
    test_attention_paths_agree). Causal attention masks every score above the diagonal, whatever
    the documents. So cut the queries into tiles of `tile` and give each tile only the keys up to
    its own last query: manual_attention (mask included) on each, and the tiles of scores above
    the diagonal are never computed (at 512 tokens, 10 of 16). The shapes do not depend on the
    data, so torch.compile keeps it one graph."""
    T, S = q.size(-2), k.size(-2)
    outs = []
    for start in range(0, T, tile):
        end = min(start + tile, T)
        keys = S - T + end  # the keys this tile's last query may see (S > T: a cache before the row)
        # mask None: manual_attention's own causal mask of the tile, aligned to its last key, is the row's
        tile_mask = None if mask is None else mask[..., start:end, :keys]
        outs.append(manual_attention(q[..., start:end, :], k[..., :keys, :], v[..., :keys, :], tile_mask,
                                     dropout_p))
    return torch.cat(outs, dim=-2)


def per_document_attention(q, k, v, spans, dropout_p=0.0):
    """Speed trick (plain version: manual_attention with document_causal_mask;
    test_attention_paths_agree, test_packed_row_equals_documents_alone). Document-causal
    attention as plain causal attention on each document alone: row b of q, k, v (B,H,T,hd) is cut
    into spans[b] (document_spans) and manual_attention runs causal on every piece. The same result
    as the document mask, without the scores the mask throws away (a row of n equal documents
    computes 1/n of them): on a CPU, at the presets' head size, the fastest eager path
    (bench/README.md)."""
    rows = []
    for b, lengths in enumerate(spans):
        pieces = zip(*(t[b:b + 1].split(lengths, dim=2) for t in (q, k, v)))
        rows.append(torch.cat([manual_attention(qp, kp, vp, None, dropout_p) for qp, kp, vp in pieces], dim=2))
    return torch.cat(rows, dim=0)


class CausalSelfAttention(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.n_head = config.n_head
        self.layer_idx = layer_idx  # which slot of the KV cache is ours
        self.attention = config.attention
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        B, T, C = x.size()
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head) for t in self.c_attn(x).split(C, dim=2))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # cos, sin (B|1,T,1,hd)
        # (B,T,H,hd) -> (B,H,T,hd): heads become a batch dimension
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:  # generation: append to this layer's cache, attend over all of it
            k, v = cache.update(self.layer_idx, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if isinstance(mask, list):  # path 'docs': each row's document lengths
            y = per_document_attention(q, k, v, mask, dropout_p)
        elif mask is not None and not isinstance(mask, torch.Tensor):  # a flex BlockMask
            y = flex_attention(q, k, v, block_mask=mask)
        elif (path := attention_path(self.attention, q.device.type, torch.compiler.is_compiling(),
                                     cached=cache is not None)) == "manual":
            y = manual_attention(q, k, v, mask, dropout_p)
        elif path == "tiles":
            y = tiled_attention(q, k, v, mask, dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                               is_causal=mask is None)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class ReLUSquared(torch.autograd.Function):
    """Speed trick (plain version: relu(x) ** 2 under autograd, test_relu_squared_gradient).
    relu(x)^2 with a hand-written backward. Autograd would run relu, square, then square's
    backward (2 x * grad) and relu's threshold_backward: four full passes over the (B,T,4C)
    activation, the largest tensor of the block. Here the backward is 2 * relu(x) * grad, which
    is already zero where x < 0: two passes, and relu(x) is the one tensor saved (torch.compile
    would fuse either version)."""

    @staticmethod
    def forward(ctx, x):
        r = F.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad):
        r, = ctx.saved_tensors
        return (r + r).mul_(grad)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(self, x):
        x = ReLUSquared.apply(self.c_fc(x))  # relu(x)^2, (B,T,4C)
        return F.dropout(self.c_proj(x), self.dropout, self.training)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.norm_1 = RMSNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.norm_2 = RMSNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, cache=None):
        x = x + self.attn(self.norm_1(x), cos, sin, mask, cache)
        return x + self.mlp(self.norm_2(x))


# -----------------------------------------------------------------------------
# The whole model


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.norm_f = RMSNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied embeddings (see module docstring)
        # rotary tables are derived, not learned: non-persistent, so not in the state dict
        cos, sin = rotary_tables(config.n_embd // config.n_head, config.block_size)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # dead tokens (raw bytes an ASCII corpus never holds, BPE merges every word skips past) get
        # logit -inf: no loss term ever pulls on them, so SFT cannot lift them into its samples
        dead = torch.zeros(config.vocab_size, dtype=torch.bool)
        dead[list(config.dead_tokens)] = True
        self.register_buffer("dead", dead, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding=True):
        """Parameter count; non_embedding=True leaves out the token embedding table (which, tied,
        is also the output layer), the N of the scaling-law papers."""
        n = sum(p.numel() for p in self.parameters())  # a tied tensor is counted once
        return n - self.wte.weight.numel() if non_embedding else n

    def flops_per_token(self):
        """Training FLOPs per token (forward + backward), nanoGPT/PaLM style: 6 per weight of every
        matmul (the output layer included) + 12 * n_layer * n_embd * block_size for attention's
        q@k and att@v, counted over the full block (the causal half is not subtracted)."""
        c = self.config
        return 6 * self.num_params(non_embedding=False) + 12 * c.n_layer * c.n_embd * c.block_size

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW; weight decay on 2D matrices (linear weights, embedding), none on norm gains.
        The fused kernel (one pass over each tensor) on CUDA, and on CPU too, where AdamW would
        otherwise loop over the tensors one by one."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas,
                                 fused=device_type in ("cuda", "cpu"))

    def logits(self, x):
        """Hidden states (...,C) -> logits (...,V) over the live vocabulary (dead tokens at -inf)."""
        logits = self.lm_head(x)
        return logits.masked_fill(self.dead, float("-inf")) if self.config.dead_tokens else logits

    def _hidden(self, idx, pos, mask, cache=None):
        """Token ids (B,T) -> final normed hidden states (B,T,C)."""
        x = self.wte(idx)
        cos, sin = self.rope_cos[pos][:, :, None], self.rope_sin[pos][:, :, None]  # (B|1,T,1,hd)
        for block in self.blocks:
            x = block(x, cos, sin, mask, cache)
        return self.norm_f(x)

    def forward(self, idx, targets=None):
        """idx (B,T) token ids; targets (B,T) with -1 = ignore. Returns (logits, loss): logits
        (B,T,V) with targets, else (B,1,V) for the last position only (all generation needs)."""
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.config.block_size}")
        x = self._hidden(idx, *row_layout(idx, self.config))
        if targets is None:
            return self.logits(x[:, [-1]]), None
        logits = self.logits(x)
        # The loss in float32, mean over the non-ignored targets. Speed trick (plain version:
        # logits.float() first; test_bf16_loss_matches_fp32): under autocast, cross_entropy's
        # log_softmax is on autocast's float32 list, and letting autocast cast the bf16 logits is
        # faster on CPU for the same value, so cast by hand only without autocast.
        if not torch.is_autocast_enabled(logits.device.type):
            logits = logits.float()
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """The plain reference (nanoGPT's): idx (B,T) prompts of one length; feed the whole
        sequence back in at every step and append one sampled token per row. Returns (B,T+new).
        Slow (no cache), no stop tokens, no padding, and what it feeds in must fit block_size:
        engine.generate is what sampling uses, and tests check it against this token for token."""
        for _ in range(max_new_tokens):
            logits = self(idx)[0][:, -1].float()  # (B,V), the last position
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:  # keep the k most likely tokens
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                # inverse CDF, one uniform per row: engine.sample_next's draw (same seed, same tokens)
                cdf = F.softmax(logits, dim=-1).cumsum(dim=-1)
                u = torch.rand(idx.size(0), 1, device=idx.device, generator=generator) * cdf[:, -1:]
                next_id = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.size(-1) - 1)
            idx = torch.cat([idx, next_id], dim=1)
        return idx
