"""
Benchmark of model.py on this machine (one process; prints figures and ratios, not a test).

1. fp32 matmul peak: GFLOP/s of large square matmuls with torch's threads (the MFU denominator).
2. Training step (forward, backward, grad clip, AdamW) of a 4-layer, 4-head, 256-wide GPT, vocab
   4096, block 256, batch 16: tokens/s and MFU = achieved FLOP/s / measured peak.
3. Document masking: the same step on rows packed with documents (document-causal mask) versus
   one document per row (SDPA's is_causal path).
4. Generation, batch 32, 16-token prompts, 240 new tokens: tokens/s with and without the KV cache.

    python bench/bench_model.py            # full run (a few minutes on 2 cores)
    python bench/bench_model.py --quick    # smaller run (under a minute), coarser figures
    python bench/bench_model.py --compile  # also time the training step under torch.compile
    python bench/bench_model.py --skip_train --new_tokens 120   # generation only, shorter
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import GPT, GPTConfig  # noqa: E402

BOS = 1


def best_time(fn, repeats, warmup=1):
    """Seconds of the fastest of `repeats` calls of fn (the machine is shared: the minimum is
    the least disturbed run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak(n=2048, repeats=5):
    """GFLOP/s of an (n,n) @ (n,n) fp32 matmul: 2 n^3 FLOPs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / best_time(lambda: a @ b, repeats) / 1e9


def packed_batch(batch, block, vocab, mean_doc_len, seed=0):
    """Random tokens with a <|bos|> starting a document every ~mean_doc_len tokens."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(2, vocab, (batch, block + 1), generator=g)
    starts = torch.rand(batch, block + 1, generator=g) < 1.0 / mean_doc_len
    idx[starts] = BOS
    idx[:, 0] = BOS
    return idx[:, :-1].contiguous(), idx[:, 1:].contiguous()


def train_step_time(model, x, y, steps, repeats, compile=False):
    """Seconds per training step: forward, backward, clip to norm 1, AdamW, zero_grad."""
    opt = model.configure_optimizers(0.1, 1e-4, (0.9, 0.95), "cpu")
    fwd = torch.compile(model) if compile else model

    def run():
        for _ in range(steps):
            _, loss = fwd(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return best_time(run, repeats, warmup=2 if compile else 1) / steps


def generation_time(model, batch, prompt_len, new_tokens, use_cache, repeats):
    g = torch.Generator().manual_seed(0)
    prompts = [[BOS] + torch.randint(2, model.config.vocab_size, (prompt_len - 1,),
                                     generator=g).tolist() for _ in range(batch)]

    def run():
        # no stop tokens: every row runs the full length, so both paths do the same work
        model.generate(prompts, new_tokens, temperature=1.0, top_k=50,
                       generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    return best_time(run, repeats, warmup=1 if use_cache else 0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and a shorter generation")
    p.add_argument("--compile", action="store_true", help="also time the compiled training step")
    p.add_argument("--steps", type=int, default=None, help="training steps per timing")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--new_tokens", type=int, default=None,
                   help="tokens generated per row (default 240, --quick 60); the speedup of the "
                        "cache grows with it")
    p.add_argument("--skip_train", action="store_true", help="only the generation figures")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = args.steps or (2 if args.quick else 5)
    repeats = 2 if args.quick else 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f} (1 min)")

    peak = matmul_peak(n=1024 if args.quick else 2048, repeats=repeats + 2)
    print(f"fp32 matmul peak            {peak:8.1f} GFLOP/s", flush=True)

    cfg = GPTConfig(vocab_size=4096, block_size=256, n_layer=4, n_head=4, n_embd=256, bos_id=BOS)
    model = GPT(cfg)
    B, T = 16, cfg.block_size
    flops = model.flops_per_token()
    print(f"model {cfg.n_layer}L/{cfg.n_head}H/{cfg.n_embd}, {model.num_params() / 1e6:.2f}M "
          f"non-embedding params, {flops / 1e6:.1f} MFLOP/token (6N + attention), batch {B}x{T}")

    x_packed, y_packed = packed_batch(B, T, cfg.vocab_size, mean_doc_len=64)
    x_plain, y_plain = x_packed.clone(), y_packed.clone()
    x_plain[:, 1:][x_plain[:, 1:] == BOS] = 2  # one document per row: the is_causal fast path
    modes = [("eager", False)] + ([("compiled", True)] if args.compile else [])
    modes = [] if args.skip_train else modes
    for name, compile in modes:
        t_plain = train_step_time(model, x_plain, y_plain, steps, repeats, compile)
        t_doc = train_step_time(model, x_packed, y_packed, steps, repeats, compile)
        for label, t in (("causal", t_plain), ("doc-masked", t_doc)):
            tps = B * T / t
            print(f"train step {name:8s} {label:10s} {t * 1e3:7.1f} ms  {tps:8.0f} tok/s  "
                  f"MFU {tps * flops / (peak * 1e9):5.1%} of measured peak", flush=True)
        print(f"document masking cost ({name})  {t_doc / t_plain - 1:+.1%} step time vs causal")

    model.eval()
    gB, gP, gN = 32, 16, args.new_tokens or (60 if args.quick else 240)
    print(f"generate batch {gB}, prompt {gP}, {gN} new tokens:", flush=True)
    t_cache = generation_time(model, gB, gP, gN, True, repeats)
    print(f"  KV cache     {gB * gN / t_cache:8.0f} tok/s ({t_cache:6.2f} s)", flush=True)
    t_full = generation_time(model, gB, gP, gN, False, 1)  # slow: one run is enough
    print(f"  no cache     {gB * gN / t_full:8.0f} tok/s ({t_full:6.2f} s)")
    print(f"  speedup      {t_full / t_cache:8.1f}x")
    print(f"load average at the end {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
