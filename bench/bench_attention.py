"""
Which attention is fastest for document-masked rows on this machine (issue 19)? One process, the
candidates alternated call by call and each timed by its fastest turn (the machine may be shared:
read the ratios). Each call is the forward and backward of attention alone, q, k, v (B,H,T,hd) in
the dtype autocast gives them (bf16 on a CPU with fast bf16), at the presets' shapes: rows of 512
tokens holding 2-5 documents, head sizes 16-64.

    manual    model.manual_attention: scores, -inf mask, softmax (fp32 under autocast), att @ v
    tiles     model.tiled_attention: manual on tiles of 128 queries (--tile), each against the
              keys up to its own end, the scores above the diagonal skipped (path 'tiles')
    sdpa      F.scaled_dot_product_attention with the boolean document-causal mask
    per-doc   the row cut at its document starts, manual_attention (plain causal) on each piece
              (model.per_document_attention: path 'docs')
    per-doc sdpa   the same cut, SDPA is_causal=True on each piece
    causal    SDPA is_causal=True over the whole row: wrong for packed rows (documents see each
              other), the floor a fused causal kernel reaches
    flex      FlexAttention compiled for CPU: timed if torch can run its backward there
    with --compile, also under torch.compile: tiles (what a compiled model runs on a CPU) and
              manual (what it ran before 'tiles')

    python bench/bench_attention.py                       # bf16 if the dtype policy picks it
    python bench/bench_attention.py --compile --shapes 4x32   # the shape of the ladder's largest model (4L/128)
    python bench/bench_attention.py --dtype float32 --rounds 10
"""

import argparse
import os
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from device import add_device_flags, autocast, pick_dtype  # noqa: E402
from model import (document_causal_mask, document_layout, document_spans, manual_attention,  # noqa: E402
                   per_document_attention, tiled_attention)

# (heads, head size): the presets' 4L/64 (2 x 32), 4L/96 (3 x 32), 4L/128 (4 x 32), and 128 wide
# cut into 8 x 16 or 2 x 64
SHAPES = [(2, 32), (3, 32), (4, 32), (8, 16), (2, 64)]


def doc_starts(B, T, n_docs, seed=0):
    """(B,T) bool: each row starts a document at 0 and at n_docs - 1 random other places."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.zeros(B, T, dtype=torch.bool)
    starts[:, 0] = True
    for b in range(B):
        starts[b, 1 + torch.randperm(T - 1, generator=g)[:n_docs - 1]] = True
    return starts


def per_document_sdpa(q, k, v, spans):
    """model.per_document_attention with SDPA is_causal=True on each piece instead of manual."""
    rows = []
    for b, lengths in enumerate(spans):
        pieces = zip(*(t[b:b + 1].split(lengths, dim=2) for t in (q, k, v)))
        rows.append(torch.cat([F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)
                               for qp, kp, vp in pieces], dim=2))
    return torch.cat(rows, dim=0)


def flex_fn(doc):
    """FlexAttention under torch.compile with a document-causal block mask, or the reason it cannot run."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    def doc_causal(b, h, q, k):
        return (doc[b, q] == doc[b, k]) & (q >= k)
    B, T = doc.shape
    block_mask = create_block_mask(doc_causal, B, None, T, T, device="cpu")
    compiled = torch.compile(flex_attention, dynamic=False)
    return lambda q, k, v: compiled(q, k, v, block_mask=block_mask)


def candidates(starts, compile, tile):
    doc, _ = document_layout(starts)
    mask, spans = document_causal_mask(doc, doc), document_spans(starts)
    fns = {
        "manual": lambda q, k, v: manual_attention(q, k, v, mask),
        "tiles": lambda q, k, v: tiled_attention(q, k, v, mask, tile=tile),
    }
    if compile:  # compiled afresh for each shape (time_shape resets torch.compile first)
        manual_compiled, tiled_compiled = torch.compile(manual_attention), torch.compile(tiled_attention)
        fns["manual compiled"] = lambda q, k, v: manual_compiled(q, k, v, mask)
        fns["tiles compiled"] = lambda q, k, v: tiled_compiled(q, k, v, mask, tile=tile)
    return fns | {
        "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "per-doc": lambda q, k, v: per_document_attention(q, k, v, spans),
        "per-doc sdpa": lambda q, k, v: per_document_sdpa(q, k, v, spans),
        "causal": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "flex": flex_fn(doc),
    }


def time_shape(H, hd, n_docs, dtype, rounds, compile=False, B=4, T=512, tile=128):
    """Fastest forward+backward of each candidate, in ms; a candidate that fails says why."""
    torch.compiler.reset()  # no recompile limit across shapes
    fns = candidates(doc_starts(B, T, n_docs), compile, tile)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, H, T, hd, generator=g).to(dtype).requires_grad_() for _ in range(3))
    dy = torch.randn(B, H, T, hd, generator=g).to(dtype)

    def call(fn):
        with autocast("cpu", dtype):
            y = fn(q, k, v)
        y.backward(dy)
        q.grad = k.grad = v.grad = None
    best, failed = {}, {}
    for name, fn in fns.items():
        try:
            call(fn)  # warm up (and compile)
            best[name] = float("inf")
        except Exception as e:  # noqa: BLE001 (a candidate torch cannot run here is a finding)
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
    for _ in range(rounds):
        for name in best:
            t0 = time.process_time()
            call(fns[name])
            best[name] = min(best[name], time.process_time() - t0)
    return {n: t * 1e3 for n, t in best.items()}, failed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_device_flags(p, "timed on the CPU", names=("dtype",))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--docs", type=int, nargs="+", default=[2, 3, 5], help="documents per 512-token row")
    p.add_argument("--shapes", nargs="+", default=[f"{H}x{hd}" for H, hd in SHAPES],
                   choices=[f"{H}x{hd}" for H, hd in SHAPES], help="heads x head size")
    p.add_argument("--batch", type=int, default=4, help="rows of 512 tokens")
    p.add_argument("--compile", action="store_true", help="also manual and tiles under torch.compile")
    p.add_argument("--tile", type=int, default=128, help="queries a tile of 'tiles' (model.tiled_attention's default)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = pick_dtype("cpu", args.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {dtype}, batch {args.batch} x 512, "
          f"forward + backward, fastest of {args.rounds} alternated rounds; load {os.getloadavg()[0]:.2f}")
    reported = set()
    for shape in args.shapes:
        H, hd = map(int, shape.split("x"))
        for n_docs in args.docs:
            ms, failed = time_shape(H, hd, n_docs, dtype, args.rounds, args.compile, args.batch, tile=args.tile)
            for name, why in failed.items():
                if name not in reported:
                    print(f"  {name}: cannot run here ({why})")
                    reported.add(name)
            ratios = "  ".join(f"{n} {t:6.2f} ms (x{ms['manual'] / t:4.2f})" for n, t in ms.items())
            print(f"{H} heads x {hd:2d}, {n_docs} docs/row: {ratios}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
