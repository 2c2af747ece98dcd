"""
Evaluation-style sampling on this machine (issue 19): sample.sample_many as eval_diversity.py calls
it, one prompt, K samples in one batch, the anchored format (an annotation, then the story), at
the CPU ladder's largest size (4L/128, vocab of the data's tokenizer, context 512). The dtypes take
turns and each is timed by its fastest turn (the machine may be shared: read the ratios).

The model is freshly initialised (its samples are noise), so how long rows run is set by
--max_new_tokens and by when noise happens to hit a special token: the same for every dtype,
since the draws are seeded. --profile adds a torch.profiler table of one bf16 call.

    python bench/bench_sampling.py --data_dir data             # K = 100, fp32 vs bf16, one thread
    python bench/bench_sampling.py --data_dir data --profile
    python bench/bench_sampling.py --data_dir data --mulsum   # also the decode attention written by hand
    python bench/bench_sampling.py --data_dir data --compiled # bf16 eager vs bf16 compiled decode step

--compiled times engine.generate(compile="off") against compile="on" (both bf16), the compile
itself reported apart (it is paid once per process).
"""

import argparse
import math
import os
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import GPT, GPTConfig  # noqa: E402
from sample import sample_many  # noqa: E402
from tokenizer import load_tokenizer, special_id  # noqa: E402


def build(enc, n_layer=4, n_head=4, n_embd=128, block=512):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=enc.n_vocab, block_size=block, n_layer=n_layer, n_head=n_head,
                         n_embd=n_embd, bos_id=special_id(enc, "<|bos|>"))).eval()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data_dir", default="data", help="where tokenizer.tiktoken is")
    p.add_argument("--k", type=int, default=100, help="samples, all in one batch")
    p.add_argument("--max_new_tokens", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--mulsum", action="store_true",
                   help="also bf16 with the decode step's attention as a multiply and a sum over the head size")
    p.add_argument("--ckpt", default=None,
                   help="a trained checkpoint directory instead of the fresh model (its format, its tokenizer)")
    p.add_argument("--compiled", action="store_true",
                   help="bf16 eager against bf16 with the compiled decode step (instead of fp32 against bf16)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fmt = "anchored"
    if args.ckpt:
        from checkpoint import load_model
        model, ckpt, enc = load_model(args.ckpt, device="cpu")
        fmt = ckpt["format"]
    else:
        enc = load_tokenizer(args.data_dir)
        model = build(enc)

    def run(dtype, compile="off"):
        return lambda: sample_many(model, enc, fmt, ["Write a story."], args.k, seed=0, batch_size=args.k,
                                   max_new_tokens=args.max_new_tokens, dtype=dtype, compile=compile)
    fns = {"fp32": run(None), "bf16": run(torch.bfloat16)}
    base = "fp32"
    if args.compiled:
        fns, base = {"bf16": run(torch.bfloat16), "bf16, compiled": run(torch.bfloat16, "on")}, "bf16"
        t0, w0 = time.process_time(), time.perf_counter()
        fns["bf16, compiled"]()  # the first call compiles
        print(f"compile (first compiled call, its sampling included): {time.process_time() - t0:.1f} CPU-s, "
              f"{time.perf_counter() - w0:.1f} s wall")
    if args.mulsum:  # the decode step's attention as a multiply and a sum (the removed variant)
        sdpa = F.scaled_dot_product_attention

        def mulsum_attention(q, k, v, attn_mask=None, **kw):
            if q.size(2) != 1:  # the prefill keeps SDPA
                return sdpa(q, k, v, attn_mask=attn_mask, **kw)
            att = (q * k).sum(-1).unsqueeze(-2) / math.sqrt(q.size(-1))  # (B,H,1,S)
            att = F.softmax(att.masked_fill(~attn_mask, float("-inf")), dim=-1)
            return att.to(v.dtype) @ v

        def mulsum(dtype):
            def call():
                F.scaled_dot_product_attention = mulsum_attention
                try:
                    return run(dtype)()
                finally:
                    F.scaled_dot_product_attention = sdpa
            return call
        fns["bf16, decode as multiply + sum"] = mulsum(torch.bfloat16)
    samples = {name: fn()[0] for name, fn in fns.items()}  # warm up
    lengths = {name: sum(len(s["text"]) for s in ss) for name, ss in samples.items()}
    tokens = {name: sum(len(enc.encode(s["text"])) for s in ss) for name, ss in samples.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), K = {args.k} in one batch, "
          f"up to {args.max_new_tokens} story tokens; load {os.getloadavg()[0]:.2f}; characters sampled {lengths}; "
          f"story tokens per sample (re-encoded) {({n: round(t / args.k, 1) for n, t in tokens.items()})}")
    if args.compiled:  # bf16 sums in another order in the compiled step: rows may part ways
        same = sum(a == b for a, b in zip(samples["bf16"], samples["bf16, compiled"]))
        print(f"samples identical (annotation and story) in eager and compiled bf16: {same} of {args.k}")
    best = {name: float("inf") for name in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t0)
    for name, t in best.items():
        print(f"  {name}: {args.k / t:6.1f} samples/s ({t:.2f} s)  x{best[base] / t:4.2f} {base}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fns["bf16"]()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
