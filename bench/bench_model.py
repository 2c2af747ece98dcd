"""
Side-by-side benchmark of model.py on this machine (one process; prints figures and ratios, not
a test). The machine may be shared, so the models being compared take turns, step by step, and
each is timed by its fastest turn: both see the same load, and the ratios are what to read.

1. Training step (forward, backward, clip, AdamW) at two shapes, three models alternated:
     ref   a GPT-2-style model written below the way nanoGPT writes it (LayerNorm, GELU, learned
           positions, biases, SDPA is_causal), fp32: what a nanoGPT user trains on a CPU;
     fp32  ours (model.py), fp32;
     auto  ours under the dtype policy of device.py (bf16 autocast where the device runs it fast).
   shapes: 4L/256, 4 heads, vocab 4096, block 256, batch 16 (issue 11's comparison) and cpu-m
   (4L/128, 4 heads, vocab 2048, block 512, batch 4: the preset of the CPU reproduction);
   at 4L/256 also ours on rows packed with documents (~64 tokens each): the document mask's cost.
   MFU = achieved FLOP/s over the peak of a 1024x1024 matmul (8192x8192 on CUDA) of the same dtype,
   timed in turn.
2. Generation, batch 32, 16-token prompts, N new tokens: KV cache (fp32 and policy dtype) vs the
   no-cache reference loop (fp32).
3. Evaluation-style sampling at cpu-m: 64 samples of 200 tokens (temperature 1, top-k 50), fp32
   vs policy dtype, in samples/s.

    python bench/bench_model.py                      # everything (~10 minutes on 2 shared cores)
    python bench/bench_model.py --threads 1          # as issue 11 measured the training step
    python bench/bench_model.py --quick              # fewer steps, shorter generation
    python bench/bench_model.py --only train --compile   # also torch.compile: compile time, break-even
    python bench/bench_model.py --only train --shapes cpu-m --docs 3 --batch 8   # rows as the data packs them
    python bench/bench_model.py --only batches --shapes cpu-m --docs 3 --threads 1   # tokens/s at batch 4, 8, 16
    python bench/bench_model.py --device cuda        # any device; --dtype float16 to force one
    python bench/bench_model.py --device cuda --only train --shapes 8l512 --compile --ref_low \\
        --attention sdpa flex --json bench.json          # issue 21: ours vs the reference on a GPU
    git show 76ce28e:model.py > /tmp/model_before.py     # model.py before issue 11, then:
    python bench/bench_model.py --only train --baseline /tmp/model_before.py   # adds "before fp32"
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from device import add_device_flags, autocast, make_generator, pick_device, pick_dtype  # noqa: E402
from engine import generate  # noqa: E402
from model import ATTENTION_PATHS, GPT, GPTConfig  # noqa: E402

BOS = 1
SHAPES = {  # name: (n_layer, n_head, n_embd, vocab, block, batch)
    "4l256": (4, 4, 256, 4096, 256, 16),
    "cpu-m": (4, 4, 128, 2048, 512, 4),     # = cpu-4l128, the CPU ladder's largest base
    "cpu-4l96": (4, 3, 96, 2048, 512, 4),
    "8l512": (8, 8, 512, 2048, 512, 32),  # issue 21's GPU comparison (the gpu ladder's 8L/512)
    "dry": (2, 2, 64, 2048, 128, 2),  # a plumbing check in seconds (bench/gpu_first_light.sh --dry-run)
}

# -----------------------------------------------------------------------------
# The reference: GPT-2 as nanoGPT writes it


class RefBlock(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.n_head = H
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class RefGPT(nn.Module):
    def __init__(self, n_layer, n_head, n_embd, vocab, block):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block, n_embd)
        self.h = nn.ModuleList([RefBlock(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for m in self.modules():  # nanoGPT's init; torch's default N(0, 1) embedding would give
            if isinstance(m, (nn.Linear, nn.Embedding)):  # huge logits, denormal gradients, and
                nn.init.normal_(m.weight, std=0.02)       # 100x slower matmuls on CPU
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        self.flops = 6 * sum(p.numel() for p in self.parameters()) + 12 * n_layer * n_embd * block

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

# -----------------------------------------------------------------------------
# Timing


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


# What a call costs: on a CPU, the CPU seconds of this process (time.process_time), which other jobs
# on a shared core do not inflate (one thread: the time the call computed; more threads: their sum,
# the CPU-seconds the work cost); elsewhere, wall time. --clock wall times a CPU by the wall clock.
CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.perf_counter


def alternate(fns, rounds, device):
    """Call each fn in turn, `rounds` times over; return each one's fastest call in seconds."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = clock()
            fn()
            sync(device)
            best[name] = min(best[name], clock() - t0)
    return best


def matmul(device, dtype, n):
    """A closure running an (n,n) @ (n,n) matmul in dtype (2 n^3 FLOPs): the peak's probe. It takes
    its turn among the training steps, so the peak and the steps see the same load."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    return lambda: a @ a


def train_step(model, x, y, device, dtype, compile=False):
    """A closure running one training step (forward, backward, clip, AdamW) under dtype."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.split(":")[0] in ("cuda", "cpu"))
    fwd = torch.compile(model) if compile else model

    def step():
        with autocast(device, dtype):
            _, loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def load_baseline(path):
    """Another model.py (e.g. an older commit's) as a module, to time against today's."""
    spec = importlib.util.spec_from_file_location("model_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packed_rows(B, T, V, docs, device):
    """(B,T) random tokens, each row of `docs` documents (<|bos|> at 0 and at docs - 1 random places)."""
    x = torch.randint(2, V, (B, T), device=device)
    x[:, 0] = BOS  # one document per row, as the reference assumes (--docs: several, like the data)
    for row in x:
        row[1 + torch.randperm(T - 1, generator=torch.Generator().manual_seed(0))[:docs - 1]] = BOS
    return x


def training_fns(shape, device, low, compile, baseline=None, attentions=("auto",), ref_low=False, docs=1, batch=None):
    """The training steps to alternate at a shape: {name: closure}, {name: FLOPs per token}, and
    the names to compile (timed on their first call). ref_low: also the reference under the low
    dtype (on a GPU a nanoGPT user trains in bf16 too), compiled as well with `compile`. docs:
    documents per row (then also the masked SDPA path, the default before issue 19); batch: rows."""
    L, H, C, V, T, B = SHAPES[shape]
    B = batch or B
    torch.manual_seed(0)
    x = packed_rows(B, T, V, docs, device)
    y = torch.randint(2, V, (B, T), device=device)
    ours = lambda attention="auto": GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H,  # noqa: E731
                                                  n_embd=C, bos_id=BOS, attention=attention)).to(device)
    ref = RefGPT(L, H, C, V, T).to(device)
    lo = str(low).split(".")[-1]
    fns = {"ref fp32": train_step(ref, x, y, device, torch.float32),
           "ours fp32": train_step(ours(), x, y, device, torch.float32)}
    flops = {"ref fp32": ref.flops, "ours fp32": ours().flops_per_token()}
    compiled = []
    if baseline is not None:
        torch.manual_seed(0)
        before = baseline.GPT(baseline.GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H,
                                                 n_embd=C, bos_id=BOS)).to(device)
        fns["before fp32"], flops["before fp32"] = train_step(before, x, y, device, torch.float32), flops["ours fp32"]
    if ref_low and low != torch.float32:
        fns[f"ref {lo}"], flops[f"ref {lo}"] = train_step(RefGPT(L, H, C, V, T).to(device), x, y, device, low), ref.flops
        if compile:
            name = f"ref {lo} compiled"
            fns[name] = train_step(RefGPT(L, H, C, V, T).to(device), x, y, device, low, compile=True)
            flops[name] = ref.flops
            compiled.append(name)
    if docs > 1 and "sdpa" not in attentions:  # the masked SDPA path, the default before issue 19
        fns[f"ours {lo} sdpa-mask"], flops[f"ours {lo} sdpa-mask"] = train_step(ours("sdpa"), x, y, device, low), flops["ours fp32"]
    for attention in attentions:
        tag = "" if attention == "auto" else f" {attention}"
        if low != torch.float32 or tag:
            fns[f"ours {lo}{tag}"], flops[f"ours {lo}{tag}"] = train_step(ours(attention), x, y, device, low), flops["ours fp32"]
        if shape == "4l256" and not tag and docs == 1:  # the same step on rows packed with documents: the document mask's cost
            packed = x.clone()
            packed[torch.rand(B, T, generator=torch.Generator().manual_seed(0)) < 1 / 64] = BOS
            name = f"ours {lo} doc-masked"
            fns[name], flops[name] = train_step(ours(), packed.to(device), y, device, low), flops["ours fp32"]
        if compile:  # the first call compiles: timed, then alternated like the others
            name = f"ours {lo}{tag} compiled"
            fns[name], flops[name] = train_step(ours(attention), x, y, device, low, compile=True), flops["ours fp32"]
            compiled.append(name)
    return fns, flops, compiled


def bench_training(shape, device, low, n_peak, rounds, compile, baseline=None, attentions=("auto",), ref_low=False,
                   docs=1, batch=None):
    """Time the steps of training_fns in turn; print ms/step, tokens/s, MFU and ratios. -> {name: figures}."""
    L, H, C, V, T, B = SHAPES[shape]
    B = batch or B
    fns, flops, compiled = training_fns(shape, device, low, compile, baseline, attentions, ref_low, docs, batch)
    compile_s, compile_wall = {}, {}
    for name in compiled:
        t0, w0 = clock(), time.perf_counter()
        fns[name]()
        sync(device)  # (inductor's C++ builds run in worker processes: the wall time counts them,
        compile_s[name], compile_wall[name] = clock() - t0, time.perf_counter() - w0  # our CPU time may not)
    dtypes = {torch.float32, low}
    fns.update({f"matmul {dt}": matmul(device, dt, n_peak) for dt in dtypes})
    for fn in fns.values():
        fn()  # warm up
    best = alternate(fns, rounds, device)
    peaks = {dt: 2 * n_peak ** 3 / best.pop(f"matmul {dt}") / 1e9 for dt in dtypes}
    print(f"\ntraining {shape}: {L}L/{C}, {H} heads, vocab {V}, batch {B}x{T}, {docs} document(s) per row "
          f"({rounds} alternated rounds)")
    for dt, peak in peaks.items():
        print(f"  matmul peak {str(dt).split('.')[-1]:10s} {peak:8.1f} GFLOP/s ({n_peak}x{n_peak}, the MFU denominator)")
    figures = {}
    for name, t in best.items():
        dtype = torch.float32 if "fp32" in name else low
        tps = B * T / t
        # the reference in the same precision and mode, where it was timed
        same = name.replace("ours", "ref")
        for tag in (" flex", " manual", " doc-masked", " sdpa-mask", " sdpa", " tiles", " docs"):
            same = same.replace(tag, "")
        ref = same if same in best else "ref fp32"
        vs_before = f"  x{best['before fp32'] / t:4.2f} before fp32" if baseline else ""
        mfu = tps * flops[name] / peaks[dtype] / 1e9
        print(f"  {name:22s} {t * 1e3:8.1f} ms/step {tps:9.0f} tok/s  MFU {mfu:5.1%}"
              f"  x{best[ref] / t:4.2f} {ref}  x{best['ours fp32'] / t:4.2f} ours fp32{vs_before}")
        figures[name] = dict(ms_step=round(t * 1e3, 3), tokens_s=round(tps), mfu=round(mfu, 4), vs=ref,
                             speedup_vs=round(best[ref] / t, 3), compile_s=round(compile_s.get(name, 0), 1))
    for name, secs in compile_s.items():
        eager = name.replace(" compiled", "")
        gain = best.get(eager, 0) - best[name]
        steps = f"{secs / gain:,.0f} steps" if gain > 0 else "never (not faster)"
        by_wall = f" ({compile_wall[name] / gain:,.0f} by the wall time)" if gain > 0 else ""
        print(f"  {name}: compile took {secs:.1f} s ({compile_wall[name]:.1f} s wall); it pays for itself after "
              f"{steps}{by_wall}")
    return {"shape": shape, "peaks_gflops": {str(k): round(v, 1) for k, v in peaks.items()}, "steps": figures}


def bench_batches(shape, device, low, batches, docs, rounds):
    """Trained tokens per second of our default path (policy dtype, eager) at several batch
    sizes of one shape, alternated: the shape that learns most per CPU-second (issue 19)."""
    L, H, C, V, T, _ = SHAPES[shape]
    fns = {}
    for B in batches:
        torch.manual_seed(0)
        x = packed_rows(B, T, V, docs, device)
        model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C, bos_id=BOS)).to(device)
        fns[B] = train_step(model, x, torch.randint(2, V, (B, T), device=device), device, low)
        fns[B]()  # warm up
    best = alternate(fns, rounds, device)
    print(f"\nbatch sizes at {shape}, {docs} document(s) per row, {low}, eager ({rounds} alternated rounds)")
    for B, t in best.items():
        print(f"  batch {B:3d} x {T}: {t * 1e3:8.1f} ms/step {B * T / t:9.0f} tok/s  "
              f"x{(B * T / t) / (batches[0] * T / best[batches[0]]):4.2f} batch {batches[0]}")


def bench_generation(device, low, new_tokens):
    L, H, C, V, T, _ = SHAPES["4l256"]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C, bos_id=BOS)).to(device)
    g = torch.Generator().manual_seed(0)
    prompts = [[BOS] + torch.randint(2, V, (15,), generator=g).tolist() for _ in range(32)]

    def run(dtype):  # no stop tokens: every row runs the full length
        return lambda: generate(model, prompts, new_tokens, top_k=50, generator=make_generator(device, 0),
                                dtype=dtype)
    fns = {"KV cache fp32": run(torch.float32)}
    if low != torch.float32:
        fns[f"KV cache {str(low).split('.')[-1]}"] = run(low)
    for fn in fns.values():
        fn()
    best = alternate(fns, 2, device)
    idx = torch.tensor(prompts, device=device)  # GPT.generate, the plain reference: recomputes everything

    def no_cache():
        return model.generate(idx, new_tokens, top_k=50, generator=make_generator(device, 0))
    best.update(alternate({"no cache fp32": no_cache}, 1, device))  # slow: once
    print(f"\ngeneration 4l256, batch 32, prompt 16, {new_tokens} new tokens")
    for name, t in best.items():
        print(f"  {name:22s} {32 * new_tokens / t:9.0f} tok/s  x{best['no cache fp32'] / t:5.1f} no cache")


def bench_eval_sampling(device, low, k=64, new_tokens=200):
    L, H, C, V, T, _ = SHAPES["cpu-m"]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C, bos_id=BOS)).to(device)
    prompts = [[BOS, 5, 6, 7, 8, 9]] * k  # one prompt, K samples: what eval_diversity does per arm

    def run(dtype):
        return lambda: generate(model, prompts, new_tokens, top_k=50, generator=make_generator(device, 0),
                                dtype=dtype)
    fns = {"fp32": run(torch.float32)}
    if low != torch.float32:
        fns[str(low).split(".")[-1]] = run(low)
    for fn in fns.values():
        fn()
    best = alternate(fns, 2, device)
    print(f"\nevaluation sampling cpu-m: {k} samples x {new_tokens} tokens in one batch")
    for name, t in best.items():
        print(f"  {name:22s} {k / t:9.1f} samples/s  x{best['fp32'] / t:4.2f} fp32")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_device_flags(p, "what to time; a low precision is compared with fp32")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=None, help="alternated training rounds (default 6, --quick 3)")
    p.add_argument("--quick", action="store_true", help="fewer rounds, shorter generation")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes on CPU)")
    p.add_argument("--only", choices=("train", "generate", "eval", "batches"), default=None, help="one part only")
    p.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16], help="--only batches: the sizes to compare")
    p.add_argument("--skip_train", action="store_true", help="the same as --only generate")
    p.add_argument("--shapes", nargs="+", default=["4l256", "cpu-m"], choices=list(SHAPES))
    p.add_argument("--attention", nargs="+", default=["auto"], choices=ATTENTION_PATHS,
                   help="our model's attention paths to time (auto: model.attention_path's; flex: CUDA only)")
    p.add_argument("--ref_low", action="store_true",
                   help="also time the reference in the low precision (and compiled, with --compile)")
    p.add_argument("--json", default=None, help="also write the training figures to this JSON file")
    p.add_argument("--new_tokens", type=int, default=None, help="generation length (default 240, --quick 60)")
    p.add_argument("--baseline", default=None, help="path of another model.py to time (fp32) beside ours")
    p.add_argument("--docs", type=int, default=1, help="documents per training row (the data: 2-5)")
    p.add_argument("--batch", type=int, default=None, help="rows per training step (default: the shape's)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="time by CPU seconds (default on a CPU: other jobs on the core do not count) or wall")
    args = p.parse_args()
    global clock
    clock = CLOCK[args.clock or ("cpu" if pick_device(args.device) == "cpu" else "wall")]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.skip_train:
        args.only = "generate"
    device = pick_device(args.device)
    low = pick_dtype(device, args.dtype)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, policy dtype {low}, "
          f"{'CPU' if clock is time.process_time else 'wall'} seconds, load average {os.getloadavg()[0]:.2f} (1 min)")
    results = []
    if args.only in (None, "train"):
        for shape in args.shapes:
            # the peak's probe: 1024² is a CPU's full speed; on a GPU it is launch-bound (~2 GFLOP), so 8192²
            n_peak = 8192 if device.startswith("cuda") else 1024
            results.append(bench_training(shape, device, low, n_peak, args.rounds or (3 if args.quick else 6),
                                          args.compile, load_baseline(args.baseline) if args.baseline else None,
                                          args.attention, args.ref_low, args.docs, args.batch))
    if args.only == "batches":
        for shape in args.shapes:
            bench_batches(shape, device, low, args.batches, args.docs, args.rounds or 5)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": device, "dtype": str(low),
                       "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
                       "training": results}, f, indent=1)
    if args.only in (None, "generate"):
        bench_generation(device, low, args.new_tokens or (60 if args.quick else 240))
    if args.only in (None, "eval"):
        bench_eval_sampling(device, low, new_tokens=100 if args.quick else 200)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
