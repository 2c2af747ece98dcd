"""
Where does a pretraining step go? torch.profiler over a few training steps at the shape of the CPU
ladder's largest base (4L/128, vocab 2,048, batch 8 x 512, 3 documents a row), compiled as
`--compile auto` runs a base that long, the time grouped by what each kernel does.

    python bench/profile_step.py                  # compiled, one thread (as reproduce.py's jobs run)
    python bench/profile_step.py --compile off    # eager
    python bench/profile_step.py --top 25         # also the 25 costliest kernels by name

Groups, by kernel name (inductor names a fused kernel after the operations it holds):
    linear layers        aten::mm / addmm: the blocks' and the LM head's matmuls, forward and backward
    attention matmuls    aten::bmm: q @ k^T and att @ v, forward and backward
    softmax forward      kernels holding _softmax (and the document mask inductor fuses into them)
    softmax backward     kernels holding _softmax_backward_data
    loss                 kernels holding log_softmax or nll_loss, forward and backward
    optimizer            fused AdamW, zero_grad, gradient clipping
    everything else      norms, rotary, casts, copies, embedding, Python
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_model import BOS, train_step  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

GROUPS = ("linear layers", "attention matmuls", "softmax forward", "softmax backward", "loss", "optimizer",
          "everything else")


def group_of(name):
    """The GROUPS entry a profiler event's name belongs to."""
    n = name.lower()
    if "log_softmax" in n or "nll_loss" in n:
        return "loss"
    if "_softmax_backward" in n:
        return "softmax backward"
    if "_softmax" in n:
        return "softmax forward"
    if n in ("aten::mm", "aten::addmm"):
        return "linear layers"
    if n == "aten::bmm":
        return "attention matmuls"
    if "adamw" in n or "zero_grad" in n or "clip_grad" in n or n.startswith("optimizer."):
        return "optimizer"
    return "everything else"


def make_step(args):
    """A training step as bench_model.py times it (bf16 autocast, backward, clip, AdamW) on fixed rows."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=args.vocab, block_size=args.block, n_layer=args.n_layer, n_head=args.n_head,
                    n_embd=args.n_embd, bos_id=BOS)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(3, args.vocab, (args.batch, args.block), generator=g)
    idx[:, [args.block * i // args.docs for i in range(args.docs)]] = BOS  # documents of equal length
    targets = torch.randint(3, args.vocab, (args.batch, args.block), generator=g)
    return train_step(GPT(cfg), idx, targets, "cpu", torch.bfloat16, compile=args.compile == "on")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--compile", choices=["on", "off"], default="on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8, help="rows a step")
    p.add_argument("--docs", type=int, default=3, help="documents a row")
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--n_embd", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--block", type=int, default=512)
    p.add_argument("--steps", type=int, default=5, help="steps profiled (and timed before, unprofiled)")
    p.add_argument("--top", type=int, default=0, help="also list the N costliest kernels")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.compile == "on":  # name each fused kernel in the profile (off by default: it costs a little)
        from torch._inductor import config as inductor_config
        inductor_config.cpp.enable_kernel_profile = True
    step = make_step(args)
    t0 = time.perf_counter()
    for _ in range(3):  # compile (if on) and warm up
        step()
    print(f"warm-up (compile included): {time.perf_counter() - t0:.1f} s")
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(f"step, unprofiled: median {1000 * statistics.median(times):.0f} ms, fastest {1000 * min(times):.0f} ms "
          f"({args.batch} x {args.block} slots, {args.threads} thread(s), compile {args.compile})")
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    per_step = {g: 0.0 for g in GROUPS}
    for e in events:
        per_step[group_of(e.key)] += e.self_cpu_time_total / 1000 / args.steps  # us -> ms a step
    total = sum(per_step.values())
    print(f"\n| group | ms a step | share |\n|---|---|---|")
    for g in GROUPS:
        print(f"| {g} | {per_step[g]:.1f} | {per_step[g] / total:.0%} |")
    print(f"| all (profiled) | {total:.1f} | 100% |")
    if args.top:
        print(f"\nthe {args.top} costliest kernels (self time, ms a step):")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
            print(f"  {e.self_cpu_time_total / 1000 / args.steps:7.1f}  {group_of(e.key):18s}  {e.key[:100]}")


if __name__ == "__main__":
    main()
