"""
The inference engine: batched generation with a KV cache, and the sampling rules. sample.py
(and through it eval_diversity.py) draws every sample through generate() here.

model.py's GPT.generate is the plain reference: it recomputes the whole sequence at every step.
This file does the same work faster, and tests/test_model.py checks that the two agree token for
token (greedy and seeded sampling). Four ideas:
- KV cache (KVCache): the keys and values of every layer are kept, so after the prompt (the
  prefill, one pass) each new token costs one position's forward pass, not the whole sequence's.
- Left padding: prompts of different lengths share a batch, padded on the left to one length.
  The padding is a document of its own, so it is never attended to, and each prompt's positions
  start at 0: a prompt continues in a batch exactly as it would alone. Rows that finish (reach a
  stop token) are dropped from the batch, so they stop costing work.
- Sampling rules (sample_next): temperature, top-k, top-p, and one uniform number per row from
  a seeded generator, so the same seed gives the same samples. One rule looks at what a row has
  written so far: no_repeat_ngram = n bans any token that would repeat an n-token run of the
  row's own new tokens (NoRepeat), the usual cure for a small model that copies a sentence it
  has just written.
- A compiled decode step (decode_step): the prefill runs eagerly (forward_cached), but each new
  token can go through one torch.compile'd graph. Its shapes do not change from step to step: it
  attends over every slot of the preallocated cache, a mask hiding the slots not yet written,
  and the current length is a tensor, so one graph serves every step, and (batch and cache
  length marked dynamic) every call. Inductor fuses the norms, the rotary embedding, the mask
  and the softmax into a few loops around the matmuls: on a CPU about 2.8x the eager step's
  speed (bench/README.md). Compiling costs ~10-40 s once per process, so generate(compile=
  "auto") compiles only once the process has asked for enough work to pay it back
  (use_compiled); tests and a handful of samples stay eager. Sampling rules, stop tokens and
  compaction run outside the graph, the same code for both steps.
"""

import sys

import torch
from torch.nn import functional as F

from device import NO_COMPILER, autocast, can_compile
from model import document_causal_mask, document_layout


class KVCache:
    """Preallocated keys and values for batched generation: one (B,H,max_len,hd) tensor of each
    per layer. All rows share one length because prompts are left padded to the same length."""

    def __init__(self, config, batch_size, max_len, device, dtype):
        shape = (batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.doc = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)  # doc of each slot
        self.len = 0  # slots filled so far (advanced by forward_cached after all layers ran)

    def update(self, layer, k, v):
        """Write k, v (B,H,T,hd) at slots [len, len+T); return all keys/values so far.
        CausalSelfAttention calls this for its own layer."""
        end = self.len + k.size(2)
        self.k[layer][:, :, self.len:end] = k
        self.v[layer][:, :, self.len:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def keep(self, rows):
        """Drop finished rows (rows: LongTensor of the rows to keep), so they stop costing work."""
        self.k, self.v = [k[rows] for k in self.k], [v[rows] for v in self.v]
        self.doc = self.doc[rows]


class WholeCache:
    """decode_step's view of a KVCache: update writes one token's k, v (B,H,1,hd) at slot (a
    (1,) tensor) and returns every slot, written or not (decode_step's mask hides the rest)."""

    def __init__(self, k, v, slot):
        self.k, self.v, self.slot = k, v, slot

    def update(self, layer, k, v):
        self.k[layer].index_copy_(2, self.slot, k)
        self.v[layer].index_copy_(2, self.slot, v)
        return self.k[layer], self.v[layer]


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """logits (B,V) -> next token ids (B,). temperature 0 = greedy. Randomness only from generator."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:  # keep the k most likely tokens
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None:  # keep the smallest set of most likely tokens whose mass reaches top_p
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(dim=-1) - sorted_p >= top_p  # mass before it already reached top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(outside, 0.0))
    # inverse CDF: one uniform number per row (torch.multinomial draws one per vocabulary entry).
    # right=True picks the token whose step of the CDF covers u, never a zero-probability one
    # The uniform is drawn where the generator lives (torch refuses a CPU generator for a CUDA
    # tensor), then moved to the logits: device.make_generator(model's device, seed) avoids the move.
    cdf = probs.cumsum(dim=-1)
    where = generator.device if generator is not None else cdf.device
    u = torch.rand(cdf.size(0), 1, device=where, generator=generator).to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_max(cdf.size(-1) - 1).squeeze(-1)


class NoRepeat:
    """The n-gram ban of each row: for every (n-1)-token run a row has written, the tokens that
    followed it. ban(logits, rows) sets those tokens' logits to -inf where the row's last n-1
    tokens are such a run, so no n-token run of new tokens appears twice."""

    def __init__(self, n, batch_size):
        if n < 2:
            raise ValueError(f"no_repeat_ngram={n}: need at least 2 (or None for no ban)")
        self.n, self.seen = n, [dict() for _ in range(batch_size)]

    def add(self, row, written):
        """written: the row's new tokens so far, its last one just appended."""
        if len(written) >= self.n:
            self.seen[row].setdefault(tuple(written[-self.n:-1]), set()).add(written[-1])

    def ban(self, logits, rows, out):
        """logits (B,V) of the rows listed in rows (their original indices); out: every row's tokens."""
        for i, r in enumerate(rows):
            banned = self.seen[r].get(tuple(out[r][-(self.n - 1):])) if len(out[r]) >= self.n - 1 else None
            if banned:
                logits[i, list(banned)] = float("-inf")
        return logits


def padded_layout(seq, pad, bos_id):
    """Doc ids and positions (B,T) of a batch left padded by pad (B,) tokens: the prompt
    starts a document (even without <|bos|>, so the padding is never seen), as does every
    <|bos|> in it."""
    t = torch.arange(seq.size(1), device=seq.device)
    starts = t[None] == pad[:, None]
    if bos_id is not None:
        starts = starts | (seq == bos_id)
    return document_layout(starts)


def forward_cached(model, idx, doc, pos, cache):
    """Run idx (B,T) (with its doc ids and positions) after the cache's slots; returns the
    logits of the last position (B,V). Prefill (the whole prompt) and decode (one token)."""
    start, end = cache.len, cache.len + idx.size(1)
    cache.doc[:, start:end] = doc
    mask = document_causal_mask(doc, cache.doc[:, :end], offset=start)
    x = model._hidden(idx, pos, mask, cache)
    cache.len = end
    return model.logits(x[:, -1]).float()


def decode_step(model, tok, doc, pos, length, k, v, cache_doc):
    """One new token per row, tok, doc, pos (B,), written at slot length (a 0-d tensor) of the
    cache (k, v: KVCache.k, .v; cache_doc: KVCache.doc); returns the logits (B,V). The same
    work as forward_cached on one token, in shapes that do not change from step to step: it
    attends over all max_len slots, the ones not yet written hidden by the mask, and the length
    is a tensor, not a Python int. So torch.compile builds one graph that serves every step."""
    slot = length.view(1)
    cache_doc.index_copy_(1, slot, doc[:, None])
    written = torch.arange(cache_doc.size(1), device=tok.device) <= length
    mask = (cache_doc == doc[:, None]) & written                      # (B,S): same doc, written
    x = model._hidden(tok[:, None], pos[:, None], mask[:, None, None], WholeCache(k, v, slot))
    return model.logits(x[:, -1]).float()


_compiled_step = None  # torch.compile(decode_step), built on first use, once per process


def compiled_decode_step():
    """decode_step compiled, once per process. torch.compile's guards key its graphs on what
    matters (dtype, autocast, the model's shapes); the batch size and the cache length are
    marked dynamic by forward_compiled, so rows finishing, prompts of other lengths and other
    models of the same shape all reuse one graph; a model of another shape compiles again."""
    global _compiled_step
    if _compiled_step is None:
        # realize_opcount_threshold: store any elementwise result of more than 8 operations
        # instead of recomputing it inside each consumer. Left at its default (50 on a CPU),
        # inductor recomputes the rotary embedding of q for every key of the cache inside the
        # attention scores' loop: 29.6 ms a step against 10.8 (4L/128, batch 128, 350 slots)
        _compiled_step = torch.compile(decode_step, fullgraph=True, options={"realize_opcount_threshold": 8})
    return _compiled_step


def forward_compiled(model, tok, doc, pos, cache):
    """forward_cached on one token per row (B,), through compiled_decode_step."""
    step = compiled_decode_step()
    # dynamic: the batch (dim 0, rows drop out as they finish) and the cache length (it is
    # prompt + max_new_tokens, different in every call); static, they would each cost a recompile
    for t in (tok, doc, pos, cache.doc, *cache.k, *cache.v):
        torch._dynamo.maybe_mark_dynamic(t, 0)
    for t in (*cache.k, *cache.v):
        torch._dynamo.maybe_mark_dynamic(t, 2)
    torch._dynamo.maybe_mark_dynamic(cache.doc, 1)
    logits = step(model, tok, doc, pos, torch.tensor(cache.len, device=tok.device), cache.k, cache.v, cache.doc)
    cache.len += 1
    return logits


COMPILE_MODES = ("auto", "on", "off")
# --compile_sampling of sample.py and eval_diversity.py, defined here once
COMPILE_FLAG = dict(default="auto", choices=COMPILE_MODES,
                    help="decode steps through the compiled decode step (engine.decode_step): auto = on a "
                         "CPU once the process has asked for enough samples to pay the ~10-40 s compile")
# auto's break-even, in row-tokens (rows x max_new_tokens of each generate call, summed over the
# process). Compiling costs ~35 s on one core with inductor's on-disk cache cold (~9 s warm), once
# per process; it then saves ~150 us per row-token *decoded* (bench_sampling --compiled: 4L/128,
# bf16, K = 128, one thread: 2.4x eager). Rows stop at <|eos|> long before max_new_tokens (an
# evaluation asks for the whole context, ~420 tokens, and stories take ~200), so the row-tokens
# asked for overstate the work about twice: at 250,000 a 500-sample evaluation compiled at its
# fourth batch and ran 1.18x *longer* than eager (bench/README.md). 1,000,000 asked for (~15
# batches of 128 in an evaluation) leaves a long evaluation (the cpu ladder's top size: ~8,000
# samples) most of its work compiled, and tests, sample.py and small evaluations eager.
COMPILE_AFTER_ROW_TOKENS = 1_000_000
_planned_row_tokens = 0  # what this process's generate calls have asked for so far
_told = False            # the decision to compile is printed once per process


def use_compiled(compile, device_type, rows, new_tokens):
    """The one rule: does this generate call run its decode steps through the compiled
    decode_step? compile: "on", "off", or "auto" = on a CPU, once this process's decode work
    (this call's included) reaches COMPILE_AFTER_ROW_TOKENS, where the compile would have paid
    for itself and a C++ compiler is there (device.can_compile; without one, "on" exits; on a GPU
    auto stays eager: not measured there). The decision to compile, or not to for want of a
    compiler, is printed once."""
    global _planned_row_tokens, _told
    if compile == "on" and not can_compile(device_type):
        raise SystemExit(f"error: --compile_sampling on: {NO_COMPILER}; install one or use --compile_sampling off")
    _planned_row_tokens += rows * new_tokens
    due = compile == "auto" and device_type == "cpu" and _planned_row_tokens >= COMPILE_AFTER_ROW_TOKENS
    if due and not can_compile(device_type):
        if not _told:
            print(f"engine: decode steps stay eager (auto: {NO_COMPILER})", file=sys.stderr)
            _told = True
        return False
    on = compile == "on" or due
    if on and not _told:
        why = "compile='on'" if compile == "on" else \
            f"auto: {_planned_row_tokens:,} row-tokens asked for >= {COMPILE_AFTER_ROW_TOKENS:,}"
        print(f"engine: decode steps through the compiled decode_step ({why}; the first compiled "
              f"call compiles: ~10-40 s)", file=sys.stderr)
        _told = True
    return on


@torch.inference_mode()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             stop_ids=(), generator=None, pad_id=0, dtype=None, no_repeat_ngram=None, compile="auto"):
    """Sample continuations of a batch of prompts (lists of token ids, any lengths) from model
    (a GPT). Returns the new tokens of each row, up to and including its first stop token: at
    most max_new_tokens, fewer where the context (block_size) fills up first (none at all for
    a prompt that already fills it). dtype (e.g. torch.bfloat16, from device.pick_dtype): run
    under that autocast, with the KV cache in it; None = fp32. no_repeat_ngram: n, to ban every
    token that would repeat an n-token run of the row's new tokens (NoRepeat); None = no ban.
    compile: "auto", "on" or "off": run the decode steps through the compiled decode_step
    (use_compiled says when auto does); the samples are the same either way (in fp32 token for
    token, in bf16 up to rounding: tests/test_model.py)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token lists")
    if temperature < 0 or (top_k is not None and top_k < 1) or \
            (top_p is not None and not 0 < top_p <= 1):
        raise ValueError(f"need temperature >= 0, top_k >= 1, 0 < top_p <= 1; got "
                         f"temperature={temperature}, top_k={top_k}, top_p={top_p}")
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile={compile!r} is not one of {COMPILE_MODES}")
    room = model.config.block_size - max(len(p) for p in prompts)
    if room <= 0:  # the context is full (a long annotation on a short-context model): nothing more
        return [[] for _ in prompts]
    device = model.wte.weight.device
    rules = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    no_repeat = NoRepeat(no_repeat_ngram, len(prompts)) if no_repeat_ngram is not None else None
    max_new_tokens = min(max_new_tokens, room)
    compiled = use_compiled(compile, device.type, len(prompts), max_new_tokens)
    was_training = model.training
    model.eval()
    with autocast(device.type, dtype or torch.float32):
        out = _decode(model, prompts, max_new_tokens, rules, stop_ids, pad_id,
                      dtype or model.wte.weight.dtype, no_repeat, compiled)
    model.train(was_training)
    return out


def _decode(model, prompts, max_new_tokens, rules, stop_ids, pad_id, cache_dtype, no_repeat=None,
            compiled=False):
    """generate's loop: prefill the left-padded prompts in one pass, then one token per row per
    step, compacting the batch when a quarter of its rows are done. rules: sample_next's;
    no_repeat: a NoRepeat, or None. compiled: decode steps through forward_compiled."""
    bos_id = model.config.bos_id
    device = model.wte.weight.device
    B, P = len(prompts), max(len(p) for p in prompts)
    seq = torch.tensor([[pad_id] * (P - len(p)) + list(p) for p in prompts], device=device)
    pad = torch.tensor([P - len(p) for p in prompts], device=device)  # left-pad lengths
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    out = [[] for _ in range(B)]
    rows = torch.arange(B, device=device)        # original row of each row still in the batch
    alive = torch.ones(B, dtype=torch.bool, device=device)
    cache = KVCache(model.config, B, P + max_new_tokens, device, cache_dtype)
    doc, pos = padded_layout(seq, pad, bos_id)
    logits = forward_cached(model, seq, doc, pos, cache)  # prefill: the whole prompt at once
    doc, pos = doc[:, -1], pos[:, -1]                     # (B,) of each row's last token
    for step in range(max_new_tokens):
        # sample only the unfinished rows (the reference draws the same numbers for each row)
        tok = torch.full((len(rows),), pad_id, dtype=torch.long, device=device)
        live = rows[alive].tolist()
        row_logits = logits[alive] if no_repeat is None else no_repeat.ban(logits[alive], live, out)
        tok[alive] = sample_next(row_logits, **rules)
        for r, tk in zip(live, tok[alive].tolist()):
            out[r].append(tk)
            if no_repeat is not None:
                no_repeat.add(r, out[r])
        alive &= ~torch.isin(tok, stop)
        if step == max_new_tokens - 1 or not alive.any():
            break
        # a quarter of the batch is done: compact it. Not to one row when compiled: a batch of
        # one is a size torch.compile specialises on (a second compile, ~10 s), and a finished
        # row riding along costs less
        if 4 * (~alive).sum() >= len(rows) and (not compiled or alive.sum() >= 2):
            keep = alive.nonzero().squeeze(1)
            cache.keep(keep)
            rows, alive, tok, doc, pos = rows[keep], alive[keep], tok[keep], doc[keep], pos[keep]
        new_doc = tok == bos_id if bos_id is not None else torch.zeros_like(alive)
        doc, pos = doc + new_doc, torch.where(new_doc, 0, pos + 1)  # a sampled <|bos|> restarts
        if compiled:
            logits = forward_compiled(model, tok, doc, pos, cache)
        else:
            logits = forward_cached(model, tok[:, None], doc[:, None], pos[:, None], cache)
    return out
