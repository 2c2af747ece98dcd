"""Tests of model.py and engine.py on CPU (seconds): attention paths agree, document masking is
exact, every speed trick equals its plain version, engine.py's cached batched generation equals
GPT.generate (the plain reference), sampling is reproducible, a tiny model can learn."""

import sys

import pytest
import torch
import torch.nn as nn

from device import cpu_compiler
from engine import generate, sample_next
from model import (GPT, GPTConfig, apply_rotary, document_causal_mask, document_layout,
                   manual_attention, rotary_tables)

BOS = 1


def tiny(attention="sdpa", bos_id=BOS, **kw):
    cfg = dict(vocab_size=64, block_size=64, n_layer=2, n_head=2, n_embd=32,
               attention=attention, bos_id=bos_id)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg))


def packed_rows(B=3, T=48, seed=0):
    """Rows of several documents each (a <|bos|> at 0 and at a few places inside)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(2, 64, (B, T), generator=g)
    idx[:, 0] = BOS
    idx[0, [7, 30]] = BOS
    idx[1, 20] = BOS
    idx[2, [1, 2, 40]] = BOS  # one-token documents too
    return idx


def chaotic(model, std=0.3):
    """Re-draw the weights large so that greedy outputs vary (a fresh model repeats one token)."""
    torch.manual_seed(1)
    for p in model.parameters():
        nn.init.normal_(p, std=std)
    return model.eval()

# -----------------------------------------------------------------------------
# config


@pytest.mark.parametrize("kw, field", [
    (dict(n_embd=100, n_head=3), "n_embd"),
    (dict(n_layer=0), "n_layer"),
    (dict(vocab_size=-5), "vocab_size"),
    (dict(block_size=0), "block_size"),
    (dict(attention="flash"), "attention"),
    (dict(bos_id=4096), "bos_id"),
    (dict(bos_id=-1), "bos_id"),
    (dict(dropout=1.5), "dropout"),
])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        GPTConfig(**kw)


def test_divisibility_message():
    with pytest.raises(ValueError, match="n_embd=100 is not divisible by n_head=3"):
        GPTConfig(n_embd=100, n_head=3)

# -----------------------------------------------------------------------------
# document layout and attention paths


def test_document_layout():
    idx = torch.tensor([[0, 0, BOS, 5, 6, BOS, 7]])  # two pad tokens, then two documents
    doc, pos = document_layout(idx == BOS)
    assert doc.tolist() == [[0, 0, 1, 1, 1, 2, 2]]
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0, 1]]


def logits_and_grads(model, idx, targets):
    """One forward and backward pass: the logits and every parameter's gradient by name."""
    logits, loss = model(idx, targets)
    loss.backward()
    return logits, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("attention", ["sdpa", "tiles", "docs", "auto"])
@pytest.mark.parametrize("bos_id", [BOS, None])
def test_attention_paths_agree(bos_id, attention):
    """'manual' (the reference) and every other CPU path give the same logits and gradients, float32,
    on rows of 300 tokens: 'tiles' (and 'auto', which takes it) cuts them into tiles of 128, 128, 44."""
    idx, targets = packed_rows(T=300), packed_rows(T=300, seed=1)
    (l1, g1), (l2, g2) = (logits_and_grads(tiny(a, bos_id=bos_id, block_size=300), idx, targets)
                          for a in ("manual", attention))
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("tile", [1, 5, 16, 48, 100])
@pytest.mark.parametrize("cached", [0, 7])
def test_tiled_attention_equals_manual(tile, cached):
    """tiled_attention cut into tiles of any size (one query each, tiles that do not divide the
    row, one tile, one longer than the row) equals manual_attention: outputs and the gradients of
    q, k, v, with the document mask and with none (plain causal), and with `cached` keys before
    the row (S > T; under the document mask they are a document of their own, so only the plain
    causal case attends to them)."""
    from model import tiled_attention
    g = torch.Generator().manual_seed(tile)
    T, S = 48, 48 + cached
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, requires_grad=True) for n in (T, S, S))
    doc, _ = document_layout(torch.cat([torch.zeros(2, cached, dtype=torch.bool), packed_rows(3, T)[:2] == BOS], 1))
    mask = document_causal_mask(doc[:, cached:], doc, offset=cached)
    for m in (mask, None):
        outs = [f(q, k, v, m) for f in (manual_attention, lambda *a: tiled_attention(*a, tile=tile))]
        grads = [torch.autograd.grad(o.square().sum(), (q, k, v)) for o in outs]
        torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
        for a, b in zip(*grads):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_attention_path_rule():
    """'auto' on a CPU: 'tiles' for training and scoring rows, eager or compiled; over a KV cache
    'sdpa' eagerly and 'manual' in the compiled decode step; on a GPU 'sdpa'. A path named by
    hand is kept, but 'tiles' over a KV cache is 'sdpa' (a step's few queries make one tile)."""
    from model import attention_path
    assert attention_path("auto", "cpu") == attention_path("auto", "cpu", compiling=True) == "tiles"
    assert attention_path("auto", "cpu", cached=True) == "sdpa"
    assert attention_path("auto", "cpu", compiling=True, cached=True) == "manual"
    assert attention_path("auto", "cuda", compiling=True, cached=True) == attention_path("auto", "cuda") == "sdpa"
    assert attention_path("docs", "cpu", compiling=True) == "docs"
    assert attention_path("tiles", "cpu") == "tiles" and attention_path("tiles", "cpu", cached=True) == "sdpa"


def test_cpu_default_attention_matches_manual_bf16():
    """The CPU's default path (attention_path: 'tiles') under bf16 autocast, at a preset's shape
    (head size 32, a 512-token row of several documents, four tiles): logits and gradients
    within bf16 rounding of the manual reference run the same way."""
    from device import autocast
    idx = torch.randint(2, 64, (2, 512), generator=torch.Generator().manual_seed(3))
    idx[:, 0] = BOS
    idx[0, [100, 300]], idx[1, [37, 38, 200, 450]] = BOS, BOS
    out = {}
    for a in ("manual", "auto"):
        model = tiny(a, block_size=512, n_embd=64)
        with autocast("cpu", torch.bfloat16):
            logits, loss = model(idx, idx)
        loss.backward()
        out[a] = logits.float(), {n: p.grad for n, p in model.named_parameters()}
    (l1, g1), (l2, g2) = out["manual"], out["auto"]
    torch.testing.assert_close(l2, l1, atol=2e-2, rtol=2e-2)
    for name in g1:
        scale = g1[name].abs().max()
        torch.testing.assert_close(g2[name] / scale, g1[name] / scale, atol=2e-2, rtol=0, msg=name)


def test_flex_block_mask_forward_cpu():
    """The flex mask_mod equals the reference mask. FlexAttention runs forward-only on CPU (eager,
    no grad), which is enough to check the block mask; the model itself falls back to sdpa."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    idx = packed_rows()
    doc, _ = document_layout(idx == BOS)

    def doc_causal(b, h, q, k):
        return (doc[b, q] == doc[b, k]) & (q >= k)
    B, T = idx.shape
    block_mask = create_block_mask(doc_causal, B, None, T, T, device="cpu")
    q, k, v = torch.randn(3, B, 2, T, 16).unbind(0)
    with torch.no_grad(), pytest.warns(UserWarning):  # "flex_attention called without compile"
        y = flex_attention(q, k, v, block_mask=block_mask)
    torch.testing.assert_close(y, manual_attention(q, k, v, document_causal_mask(doc, doc)),
                               atol=1e-5, rtol=1e-5)


def test_flex_falls_back_on_cpu():
    idx = packed_rows()
    flex = tiny("flex")
    with pytest.warns(UserWarning, match="needs CUDA"):
        logits, _ = flex(idx, idx)
    torch.testing.assert_close(logits, tiny("sdpa")(idx, idx)[0])


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="FlexAttention needs CUDA for the compiled kernel and its backward; "
                           "this machine has no GPU")
def test_flex_matches_manual_cuda():
    idx, targets = packed_rows(T=256).cuda(), packed_rows(T=256, seed=1).cuda()
    (l1, g1), (l2, g2) = (logits_and_grads(tiny(attention, block_size=256).cuda(), idx, targets)
                          for attention in ("manual", "flex"))
    torch.testing.assert_close(l1, l2, atol=1e-4, rtol=1e-4)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("attention", ["manual", "sdpa", "tiles", "docs"])
def test_packed_row_equals_documents_alone(attention):
    """Three documents packed in one row give, token by token, the logits of each one alone:
    nothing leaks across <|bos|>, and positions restart at every document (the row is longer
    than one of 'tiles'' tiles, and a document crosses from one tile into the next)."""
    model = tiny(attention, block_size=256)
    g = torch.Generator().manual_seed(2)
    docs = [torch.cat([torch.tensor([BOS]), torch.randint(2, 64, (n,), generator=g)])
            for n in (9, 150, 14)]
    row = torch.cat(docs)[None]
    packed, _ = model(row, row)  # targets only to get logits at every position
    start = 0
    for d in docs:
        alone, _ = model(d[None], d[None])
        torch.testing.assert_close(packed[:, start:start + len(d)], alone, atol=1e-5, rtol=1e-5)
        start += len(d)


def test_single_document_fast_path_matches_mask():
    """A row with one document takes SDPA's is_causal path; it must equal the masked path."""
    model = tiny("sdpa")
    idx = packed_rows()
    idx[:, 1:][idx[:, 1:] == BOS] = 5  # now one document per row
    fast, _ = model(idx, idx)
    doc, pos = document_layout(idx == BOS)
    x = model._hidden(idx, pos, document_causal_mask(doc, doc))
    torch.testing.assert_close(fast, model.lm_head(x))

# -----------------------------------------------------------------------------
# generation


PROMPTS = [[BOS, 5, 6, 7], [BOS, 9], [BOS, 3, 4, 5, 6, 7, 8, 9, 10], [BOS, 11, 12], [BOS, 13] * 3]


def reference(model, prompt, n, **kw):
    """The new tokens of GPT.generate (the plain, uncached reference) for one prompt."""
    return model.generate(torch.tensor([prompt]), n, **kw)[0, len(prompt):].tolist()


def up_to_stop(tokens, stop_ids):
    """tokens up to and including the first stop token (what engine.generate returns)."""
    ends = [i for i, t in enumerate(tokens) if t in stop_ids]
    return tokens[:ends[0] + 1] if ends else tokens


def test_greedy_engine_equals_reference_with_stops():
    model = chaotic(tiny(), std=0.5)
    ref = [reference(model, p, 30, temperature=0) for p in PROMPTS]
    # stop tokens that some rows produce after their first few tokens, as many as keep one row
    # running: rows then finish at different steps and the cached batch gets compacted
    first_few = {t for r in ref for t in r[:3]}
    stop_ids = []
    for t in sorted({t for r in ref for t in r} - first_few):
        if sum(any(s in r for s in stop_ids + [t]) for r in ref) < len(ref):
            stop_ids.append(t)
    out = generate(model, PROMPTS, 30, temperature=0, stop_ids=stop_ids)
    assert out == [up_to_stop(r, stop_ids) for r in ref]
    lengths = [len(r) for r in out]
    assert sum(n < 30 for n in lengths) >= 3 and max(lengths) == 30, lengths


def test_left_padding_is_free():
    """A prompt generated in a padded batch continues exactly as when generated alone."""
    model = chaotic(tiny())
    batch = generate(model, PROMPTS, 20, temperature=0, pad_id=7)
    for p, b in zip(PROMPTS, batch):
        assert generate(model, [p], 20, temperature=0) == [b]


def test_no_bos_prompts_generate_the_same():
    """Without bos_id, padding is still masked: the prompt starts its own document."""
    model = chaotic(tiny(bos_id=None))
    prompts = [[5, 6, 7], [9], [3, 4, 5, 6, 7, 8]]
    out = generate(model, prompts, 15, temperature=0)
    assert out == [reference(model, p, 15, temperature=0) for p in prompts]


def test_sampling_is_seeded():
    model = chaotic(tiny(), std=0.1)
    kw = dict(max_new_tokens=25, temperature=1.0, top_k=40, top_p=0.95)
    a = generate(model, PROMPTS, generator=torch.Generator().manual_seed(0), **kw)
    b = generate(model, PROMPTS, generator=torch.Generator().manual_seed(0), **kw)
    c = generate(model, PROMPTS, generator=torch.Generator().manual_seed(1), **kw)
    assert a == b and a != c


def test_seeded_sampling_equals_reference():
    """Same seed, same tokens: the cached engine and GPT.generate draw the same numbers, on a
    batch of equal-length prompts (the reference has no padding), a sampled <|bos|> included."""
    model = chaotic(tiny(), std=0.3)
    prompts = [[BOS, 5 + i, 6, 7] for i in range(6)]
    kw = dict(temperature=0.9, top_k=40)
    out = generate(model, prompts, 25, generator=torch.Generator().manual_seed(0), **kw)
    ref = model.generate(torch.tensor(prompts), 25, generator=torch.Generator().manual_seed(0), **kw)
    assert out == ref[:, 4:].tolist()
    assert any(BOS in r for r in out)  # a sampled <|bos|> starts a new document in the cache too


def test_sample_next_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(500, 1)
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, temperature=0).eq(3).all()
    assert set(sample_next(logits, top_k=2, generator=g).tolist()) == {2, 3}
    # probabilities ~ .03 .09 .24 .64: top_p=0.7 keeps {3, 2}, top_p=0.5 keeps {3}
    assert set(sample_next(logits, top_p=0.7, generator=g).tolist()) == {2, 3}
    assert set(sample_next(logits, top_p=0.5, generator=g).tolist()) == {3}


def test_sample_next_matches_softmax():
    """Drawn token frequencies follow softmax(logits / temperature); impossible tokens never come."""
    logits = torch.tensor([[0.0, float("-inf"), 1.0, 2.0, float("-inf")]])
    g = torch.Generator().manual_seed(0)
    n = 40_000
    draws = sample_next(logits.expand(n, -1), temperature=0.8, generator=g)
    freq = torch.bincount(draws, minlength=5) / n
    expected = torch.softmax(logits / 0.8, dim=-1)[0]
    assert freq[1] == 0 and freq[4] == 0
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)  # ~4 standard errors


def test_generation_stops_at_the_context():
    """The engine stops where the context is full; the reference refuses to go past it."""
    model = tiny()
    assert [len(r) for r in generate(model, [[BOS] * 10, [BOS] * 3], 60, temperature=0)] == [54, 54]
    assert generate(model, [[BOS] * 64], 5) == [[]]
    with pytest.raises(ValueError, match="block_size"):
        model.generate(torch.tensor([[BOS] * 62]), max_new_tokens=5)


def repeated_ngrams(tokens, n):
    """The n-token runs that occur more than once in tokens."""
    runs = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return {r for r in runs if runs.count(r) > 1}


def first_repeat_end(tokens, n):
    """Index of the token that completes the first n-token run seen before (None: no repeat)."""
    seen = set()
    for i in range(n - 1, len(tokens)):
        run = tuple(tokens[i - n + 1:i + 1])
        if run in seen:
            return i
        seen.add(run)
    return None


@pytest.mark.parametrize("n", [2, 3])
def test_no_repeat_ngram_bans_exactly_the_repeats(n):
    """Greedy rows of a small model loop (they repeat n-grams); with the ban no row repeats an
    n-token run of its new tokens, and each row is the unbanned one up to its first repeat (the
    prompt's own runs are not banned)."""
    model = chaotic(tiny(), std=0.3)
    free = generate(model, PROMPTS, 40, temperature=0)
    assert all(repeated_ngrams(r, n) for r in free)  # the rows do loop: the ban has work to do
    banned = generate(model, PROMPTS, 40, temperature=0, no_repeat_ngram=n)
    for f, b in zip(free, banned):
        assert not repeated_ngrams(b, n)
        cut = first_repeat_end(f, n)
        assert b[:cut] == f[:cut] and b[cut] != f[cut]


def test_no_repeat_ngram_with_sampling_and_compaction():
    """Seeded sampling under the ban, rows finishing at different steps: no repeated run anywhere."""
    model = chaotic(tiny(), std=0.1)
    stop = [3, 17, 29]
    out = generate(model, PROMPTS * 4, 50, temperature=1.0, top_k=8, stop_ids=stop,
                   generator=torch.Generator().manual_seed(0), no_repeat_ngram=2)
    assert len({len(r) for r in out}) > 1  # rows ended at different steps: the batch was compacted
    assert all(not repeated_ngrams(r, 2) for r in out)


def test_generate_rejects_bad_rules():
    with pytest.raises(ValueError, match="top_p=1.5"):
        generate(tiny(), PROMPTS, 5, top_p=1.5)
    with pytest.raises(ValueError, match="no_repeat_ngram=1"):
        generate(tiny(), PROMPTS, 5, no_repeat_ngram=1)

# -----------------------------------------------------------------------------
# training


def test_tiny_model_overfits_a_batch():
    """60 AdamW steps on one fixed batch of packed documents: loss from ln(64) = 4.2 to < 0.01.
    The target right after each <|bos|> is ignored: its context is <|bos|> alone in every
    document, so it cannot be memorised (with document masking working, it is irreducible)."""
    model = tiny(n_layer=2, n_embd=64, n_head=4)
    idx = packed_rows(B=4, T=49)
    x, y = idx[:, :-1], idx[:, 1:].clone()
    y[x == BOS] = -1
    opt = model.configure_optimizers(0.0, 1e-2, (0.9, 0.95), "cpu")
    for _ in range(60):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert loss.item() < 0.01, loss.item()  # ~0.001 reached


def test_loss_ignores_minus_one():
    model = tiny()
    idx = packed_rows()
    y = idx.clone()
    y[:, ::2] = -1
    logits, loss = model(idx, y)
    keep = y != -1
    expected = nn.functional.cross_entropy(logits[keep], y[keep])
    torch.testing.assert_close(loss, expected)
    assert model(idx)[0].shape == (3, 1, 64)


@pytest.mark.parametrize("attention", ["sdpa", "auto"])
def test_compile_fullgraph_and_state_dict(attention):
    """The training forward traces with no graph break (document mask included; 'auto' on a CPU:
    'tiles', on rows of three tiles). The compiled wrapper's state dict prefixes "_orig_mod.",
    which is why loop.py saves the raw module's. The aot_eager backend traces forward and backward
    like inductor but skips C++ code generation, which takes minutes on 2 cores."""
    model = tiny(attention, block_size=300)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    idx = packed_rows(T=300)
    logits, loss = compiled(idx, idx)
    loss.backward()
    torch.testing.assert_close(logits, model(idx, idx)[0])
    assert compiled._orig_mod is model  # the same parameters: saving `model` saves the trained ones
    assert not any(k.startswith("_orig_mod.") for k in model.state_dict())
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())  # why loop.py keeps `raw`


def test_optimizer_groups_and_counts():
    model = tiny()
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    c = model.config
    n = c.n_layer * 12 * c.n_embd ** 2 + (2 * c.n_layer + 1) * c.n_embd  # matrices + norm gains
    assert model.num_params() == n
    assert model.num_params(non_embedding=False) == n + c.vocab_size * c.n_embd
    assert model.flops_per_token() == 6 * (n + c.vocab_size * c.n_embd) + \
        12 * c.n_layer * c.n_embd * c.block_size
    assert not any("rope" in k for k in model.state_dict())  # derived tables are not saved

# -----------------------------------------------------------------------------
# devices and dtypes


def devices():
    """Every device this machine has: the tests below run on each (CPU everywhere)."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


@pytest.mark.parametrize("device", devices())
def test_sampling_draws_where_the_model_lives(device):
    """The generator that sample.py / eval build is on the model's device, and generation with
    it runs there (a CPU generator for CUDA logits is what broke `sample.py --device cuda`)."""
    from device import make_generator
    model = chaotic(tiny(), std=0.1).to(device)
    g = make_generator(device, 0)
    assert g.device.type == model.wte.weight.device.type
    a = generate(model, PROMPTS, 10, top_k=20, generator=g)
    b = generate(model, PROMPTS, 10, top_k=20, generator=make_generator(device, 0))
    assert a == b


def test_sample_next_draws_on_the_generators_device(monkeypatch):
    """Logits on another device than the generator (meta stands in for a GPU here): the uniform
    must be drawn on the generator's device, else torch rejects it on a real GPU."""
    import engine
    seen = []
    real_rand = torch.rand

    def spy(*size, device=None, generator=None, **kw):
        seen.append((torch.device(device), generator.device))
        return real_rand(*size, device=device, generator=generator, **kw)
    monkeypatch.setattr(engine.torch, "rand", spy)
    logits = torch.zeros(3, 8, device="meta")
    sample_next(logits, generator=torch.Generator().manual_seed(0))
    assert seen and all(d == g for d, g in seen), seen


def test_bf16_loss_matches_fp32():
    """The same batch under bf16 autocast and in fp32: losses within 1% (bf16 keeps 8 bits of
    mantissa; autocast leaves the softmax, the norms and the loss in fp32), and the weights and
    their gradients stay fp32. The loss's cast left to autocast (a speed trick) equals the plain
    logits.float() first."""
    from device import autocast
    model, idx = tiny(), packed_rows()
    loss32 = model(idx, idx)[1]
    with autocast("cpu", torch.bfloat16):
        logits16, loss16 = model(idx, idx)
    loss16.backward()
    assert logits16.dtype == torch.bfloat16 and loss16.dtype == torch.float32
    plain = nn.functional.cross_entropy(logits16.float().view(-1, logits16.size(-1)), idx.view(-1), ignore_index=-1)
    torch.testing.assert_close(loss16, plain)
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(loss16, loss32, rtol=0.01, atol=0)


def test_bf16_generation_runs_with_a_bf16_cache():
    model = chaotic(tiny(), std=0.1)
    out = generate(model, PROMPTS, 8, temperature=0, dtype=torch.bfloat16)
    assert [len(r) for r in out] == [8] * len(PROMPTS)


# -----------------------------------------------------------------------------
# speed tricks against their plain versions (the attention paths, the one-document fast path and
# the loss's cast are checked above: test_attention_paths_agree, test_tiled_attention_equals_manual,
# test_flex_*,
# test_single_document_fast_path_*, test_bf16_loss_matches_fp32)


def test_relu_squared_gradient():
    """ReLUSquared (hand-written backward) equals relu(x) ** 2 under autograd, value and gradient."""
    from model import ReLUSquared
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ReLUSquared.apply, (x,))
    grad = torch.randn(4, 7, dtype=torch.float64)
    fast, = torch.autograd.grad(ReLUSquared.apply(x), x, grad)
    plain, = torch.autograd.grad(torch.relu(x) ** 2, x, grad)
    torch.testing.assert_close(ReLUSquared.apply(x), torch.relu(x) ** 2)
    torch.testing.assert_close(fast, plain)


def test_apply_rotary_equals_the_formula():
    """apply_rotary (one roll and one addcmul) equals the rotation written out: channel pair
    (x1[j], x2[j]) = (x[j], x[j + hd/2]) turned by pos * 10000^(-2j/hd)."""
    T, hd = 11, 16
    x = torch.randn(2, T, 3, hd)
    cos, sin = rotary_tables(hd, T)
    fast = apply_rotary(x, cos[:, None], sin[:, None])
    angle = torch.arange(T)[:, None] * 10000.0 ** (-torch.arange(0, hd, 2) / hd)  # (T, hd/2)
    c, s = angle.cos()[:, None], angle.sin()[:, None]
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    plain = torch.cat([x1 * c + x2 * s, x2 * c - x1 * s], dim=-1)
    torch.testing.assert_close(fast, plain)

# -----------------------------------------------------------------------------
# the compiled decode step (engine.decode_step) against the eager one (engine.forward_cached)


def stops_that_fire(ref, keep_one=True):
    """Stop tokens the rows of ref (lists of tokens) reach after their first few tokens, as many
    as leave one row running: rows finish at different steps, so the batch gets compacted."""
    first_few = {t for r in ref for t in r[:3]}
    stop_ids = []
    for t in sorted({t for r in ref for t in r} - first_few):
        if sum(any(s in r for s in stop_ids + [t]) for r in ref) < len(ref) - (1 if keep_one else 0):
            stop_ids.append(t)
    return stop_ids


@pytest.fixture
def compactions(monkeypatch):
    """Counts KVCache.keep calls (the compaction of finished rows)."""
    import engine
    calls = []
    real = engine.KVCache.keep
    monkeypatch.setattr(engine.KVCache, "keep", lambda self, rows: calls.append(len(rows)) or real(self, rows))
    return calls


needs_compiler = pytest.mark.skipif(cpu_compiler() is None, reason="torch.compile's CPU backend needs a C++ compiler")


@needs_compiler
@pytest.mark.parametrize("no_repeat_ngram", [None, 2])
def test_compiled_decode_equals_eager_greedy_fp32(no_repeat_ngram, compactions):
    """fp32, greedy: the compiled step gives the eager step's tokens, token for token, on rows of
    different prompt lengths (left padding), with stop tokens that fire mid-run (the batch is
    compacted) and with the n-gram ban."""
    model = chaotic(tiny(), std=0.5)
    prompts = PROMPTS * 2  # 10 rows: compaction keeps >= 2 of them
    kw = dict(temperature=0, no_repeat_ngram=no_repeat_ngram)
    stop_ids = stops_that_fire(generate(model, prompts, 30, compile="off", **kw))
    eager = generate(model, prompts, 30, stop_ids=stop_ids, compile="off", **kw)
    compactions.clear()
    compiled = generate(model, prompts, 30, stop_ids=stop_ids, compile="on", **kw)
    assert compiled == eager
    assert compactions, "no row finished early enough to compact the batch"
    assert len({len(r) for r in eager}) > 2 and max(len(r) for r in eager) == 30


@needs_compiler
@pytest.mark.parametrize("attention", ["sdpa", "auto"])
def test_compiled_decode_equals_eager_seeded_sampling_fp32(attention, compactions):
    """fp32, seeded sampling (temperature, top-k, top-p), stop tokens and the ban: same seed,
    same samples from both steps (with 'auto', the CPU's: SDPA eagerly, manual compiled)."""
    model = chaotic(tiny(attention), std=0.1)
    kw = dict(temperature=1.0, top_k=20, top_p=0.9, stop_ids=[3, 17, 29], no_repeat_ngram=3)
    eager = generate(model, PROMPTS * 4, 40, generator=torch.Generator().manual_seed(0), compile="off", **kw)
    compactions.clear()
    compiled = generate(model, PROMPTS * 4, 40, generator=torch.Generator().manual_seed(0), compile="on", **kw)
    assert compiled == eager
    assert compactions and len({len(r) for r in eager}) > 2


@needs_compiler
def test_compiled_decode_step_matches_eager_bf16():
    """bf16 under autocast: fed the same tokens, the compiled step's logits stay within bf16
    rounding of the eager step's, and pick the same greedy token almost everywhere (the two sum
    in different orders, so exact equality is not expected)."""
    import engine
    from device import autocast
    model = chaotic(tiny(), std=0.3)
    B, P, steps = 12, 6, 40
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(2, 64, (B, P), generator=g)
    seq[:, 0] = BOS
    doc, pos = engine.padded_layout(seq, torch.zeros(B, dtype=torch.long), BOS)
    with torch.inference_mode(), autocast("cpu", torch.bfloat16):
        caches = [engine.KVCache(model.config, B, P + steps, "cpu", torch.bfloat16) for _ in range(2)]
        logits = [engine.forward_cached(model, seq, doc, pos, c) for c in caches]
        doc, pos = doc[:, -1], pos[:, -1]
        same, worst = 0, 0.0
        for _ in range(steps - 1):
            tok = logits[0].argmax(-1)  # both fed the eager step's greedy token
            same += (logits[1].argmax(-1) == tok).sum().item()
            pos = pos + 1
            logits = [engine.forward_cached(model, tok[:, None], doc[:, None], pos[:, None], caches[0]),
                      engine.forward_compiled(model, tok, doc, pos, caches[1])]
            scale = logits[0].abs().max().item()
            worst = max(worst, (logits[1] - logits[0]).abs().max().item() / scale)
    assert worst < 0.03, worst  # bf16 carries 8 bits: ~0.4% a rounding, a few of them per layer
    assert same >= 0.98 * B * (steps - 1), same


def test_auto_compiles_past_the_break_even(monkeypatch, capsys):
    """compile='auto' stays eager until the process has asked for COMPILE_AFTER_ROW_TOKENS of
    decode work, on a CPU only; the decision is printed once, to stderr."""
    import engine
    monkeypatch.setenv("CXX", sys.executable)  # a compiler as far as the rule can tell, on any machine
    monkeypatch.setattr(engine, "_planned_row_tokens", 0)
    monkeypatch.setattr(engine, "_told", False)
    n = engine.COMPILE_AFTER_ROW_TOKENS
    assert not engine.use_compiled("auto", "cpu", 100, 100)
    assert not engine.use_compiled("auto", "cuda", 10, n)
    assert not engine.use_compiled("off", "cpu", 10, n)
    assert capsys.readouterr().err == ""
    assert engine.use_compiled("auto", "cpu", 1, 1)  # the process is now past the break-even
    assert engine.use_compiled("on", "cpu", 1, 1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("compiled decode_step") == 1
    with pytest.raises(ValueError, match="compile='yes'"):
        generate(tiny(), PROMPTS, 5, compile="yes")
    # a CPU without a C++ compiler: auto stays eager, on is a clean error
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert not engine.use_compiled("auto", "cpu", 10, n)
    with pytest.raises(SystemExit, match="no C.. compiler"):
        engine.use_compiled("on", "cpu", 1, 1)
