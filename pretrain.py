"""
Pretraining, and the one training loop of nanoanchor (sft.py imports it).

    python pretrain.py                                    # tiny preset, annotated data, a few CPU minutes
    python pretrain.py --no-annotations                   # the same budget on plain stories
    python pretrain.py --preset gpu-6l256 --compile       # one rung of the GPU ladder
    python pretrain.py --out_dir out/tiny-ann --resume --max_iters 2000   # continue a run, exactly
    torchrun --nproc_per_node=4 pretrain.py --preset gpu-10l512            # DDP, one process per GPU

The model reads rows of block_size tokens packed from the stream of documents data.py writes: each
row starts at a document start and holds whole documents (TokenRows), so no story token is ever
trained without its annotation in view. With --annotations every document is
`<|bos|><|ann|>{annotation}<|story|>{story}` and the annotation tokens are trained on like any
others, so the model learns the prior over annotations; with --no-annotations it is
`<|bos|><|story|>{story}`. Both runs see the same number of row slots (max_iters x batch_size x
grad_accum x processes x block_size, annotation tokens counted; the start-up line prints the trained
tokens, a few percent fewer for the padding): the annotated run pays for its annotations with fewer
stories.

What a run leaves in --out_dir: ckpt.pt (written atomically at every eval and at the end; holds
everything --resume needs), log.jsonl (one JSON object per logged step) and loss.png (drawn from it).
"""

import argparse
import bisect
import json
import math
import signal
import sys
import threading
import time
import typing
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import data
from checkpoint import check_out_dir, check_tokenizer, keep_tokenizer, load_checkpoint, save_checkpoint
from device import autocast, check_device, grad_scaler, pick_dtype, setup_distributed
from model import GPT, GPTConfig
from tokenizer import load_tokenizer, special_id, tokenizer_hash


def opt(default, help, **extra):
    """A config field with its --help text (extra: e.g. choices=...)."""
    return field(default=default, metadata={"help": help, **extra})

# -----------------------------------------------------------------------------
# Configuration: a dataclass per script, turned into argparse flags (build_parser, make_config).
# Precedence: dataclass defaults < preset < flags given on the command line.


@dataclass
class LoopConfig:
    """What the training loop needs; pretrain.py and sft.py add their own fields."""
    out_dir: str = opt("", "where ckpt.pt, log.jsonl and loss.png go (empty: a name made from the run)")
    data_dir: str = opt("data", "dataset made by data.py (tokenizer, token shards, SFT jsonl)")
    preset: str = opt("tiny", "named set of defaults, see PRESETS")
    resume: bool = opt(False, "continue the run in --out_dir from its ckpt.pt (its config, then your flags)")
    max_iters: int = opt(600, "optimizer steps in total")
    batch_size: int = opt(4, "rows per micro-batch per process")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    lr: float = opt(3e-3, "peak learning rate")
    min_lr_frac: float = opt(0.1, "the cosine decays to lr * min_lr_frac at max_iters")
    warmup_iters: int = opt(30, "linear warmup steps")
    weight_decay: float = opt(0.1, "AdamW weight decay (matrices only)")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.95, "AdamW beta2")
    grad_clip: float = opt(1.0, "clip the gradient norm to this (0: no clipping)")
    eval_interval: int = opt(200, "validate and save a checkpoint every this many steps (0: at the end only)")
    eval_iters: int = opt(10, "validation batches per evaluation")
    log_interval: int = opt(10, "write a log.jsonl record every this many steps")
    device: str = opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    compile: bool = opt(False, "torch.compile the model (faster on GPU; checkpoints stay plain)")
    dtype: str = opt("auto", "compute dtype under autocast: auto (device.pick_dtype: bf16 where the "
                     "device runs it fast, fp16 + loss scaling on older GPUs, else fp32); weights, "
                     "optimizer and checkpoints stay fp32",
                     choices=("auto", "float32", "bfloat16", "float16"))
    seed: int = opt(1337, "seeds the model init (and dropout); data order follows from the step")


@dataclass
class TrainConfig(LoopConfig):
    annotations: bool = opt(True, "pretrain on `annotation || story` (else plain stories)")
    n_layer: int = opt(4, "transformer blocks")
    n_head: int = opt(4, "attention heads")
    n_embd: int = opt(128, "width of the residual stream")
    block_size: int = opt(512, "context length in tokens")
    dropout: float = opt(0.0, "dropout rate")
    attention: str = opt("sdpa", "attention implementation", choices=("manual", "sdpa", "flex"))


MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "attention")

# Named presets: plain data, applied over the dataclass defaults and under explicit flags.
# Token budget of a run = max_iters * batch_size * grad_accum * block_size (x processes); TokenRows'
# padding leaves a few percent of those slots untrained (the start-up line prints the share).
# GPU ladder (SimpleStories sizes, context 512): each preset trains on >= 20 tokens per parameter,
# counting ALL parameters (the tied embedding included; data.py's default vocabulary of 2,048),
# with 64 x 512 = 32,768 tokens per step (32 x 512 for the smallest: small models learn more per
# token from more, smaller steps, as the tiny preset showed on CPU):
#   gpu-4l128   1.05M params:  1,400 steps =  22.9M tokens = 21.9 tokens/param
#   gpu-6l256   5.25M params:  3,300 steps =   108M tokens = 20.6 tokens/param
#   gpu-6l384  11.4M params:   7,200 steps =   236M tokens = 20.7 tokens/param
#   gpu-8l512  26.2M params:  16,400 steps =   537M tokens = 20.5 tokens/param  (reproduce's top rung)
#   gpu-10l512 32.5M params:  22,000 steps =   721M tokens = 22.2 tokens/param
# reproduce.py --preset gpu stops at 8L/512: at 20 tokens per parameter the compute grows as N^2,
# and two 10L/512 bases alone would take ~17 of the lease's 25 H100 minutes (`reproduce.py --plan`).
# eval_interval (a checkpoint each) is about a minute of H100 work at the planned rate, so a run cut
# into 10-minute chunks loses at most that (two at the rate if the assumed MFU is twice too high).
# (pretrain.py prints the exact ratio and the number of epochs of the data at start; the default
# dataset holds ~19M annotated tokens, so the larger rungs want a larger `python data.py --n_stories`.)
PRESETS = {
    # a laptop CPU in a few minutes: a model that already writes recognisable stories
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=512,
                 batch_size=4, max_iters=600, lr=3e-3, warmup_iters=30, eval_interval=200),
    # the CPU ladder of reproduce.py: 4 layers, three widths, the same 3,600 steps of 4 x 512 slots
    # (7.4M, ~94% of them trained targets): 22 / 12 / 7 slots per parameter at 0.33M / 0.64M / 1.05M.
    # Why not >= 20 per parameter at every size: a 4L/64 base at 21 slots/param wrote worse stories
    # (val loss 0.738) than a 4L/128 one at 5.5 (0.597, results/cpu-long), so width buys more than
    # tokens at this scale, and 20 per parameter at 1M is ~40 CPU minutes per base. Two layers are
    # too few: a 2L/64 base at 21 slots/param followed non-favourite names in 0% of its stories.
    # Side by side on one thread each, bf16: ~9.2k tokens/s at 4L/128, ~10.2k at 4L/96.
    "cpu-4l64": dict(n_layer=4, n_head=2, n_embd=64, block_size=512,
                     batch_size=4, max_iters=3600, lr=4e-3, warmup_iters=50, eval_interval=900),
    "cpu-4l96": dict(n_layer=4, n_head=3, n_embd=96, block_size=512,
                     batch_size=4, max_iters=3600, lr=3.5e-3, warmup_iters=50, eval_interval=900),
    "cpu-4l128": dict(n_layer=4, n_head=4, n_embd=128, block_size=512,
                      batch_size=4, max_iters=3600, lr=3e-3, warmup_iters=50, eval_interval=900),
    "cpu-s": dict(n_layer=2, n_head=2, n_embd=128, block_size=512,
                  batch_size=4, max_iters=800, lr=4e-3, warmup_iters=40, eval_interval=200),
    "cpu-m": dict(n_layer=4, n_head=4, n_embd=128, block_size=512,
                  batch_size=4, max_iters=800, lr=3e-3, warmup_iters=40, eval_interval=200),
    # the GPU ladder: bf16 autocast; add --compile for speed
    "gpu-4l128": dict(n_layer=4, n_head=4, n_embd=128, block_size=512, batch_size=32,
                      max_iters=1400, lr=3e-3, warmup_iters=100, eval_interval=350, eval_iters=40),
    "gpu-6l256": dict(n_layer=6, n_head=4, n_embd=256, block_size=512, batch_size=64,
                      max_iters=3300, lr=1.5e-3, warmup_iters=200, eval_interval=500, eval_iters=20),
    "gpu-6l384": dict(n_layer=6, n_head=6, n_embd=384, block_size=512, batch_size=64,
                      max_iters=7200, lr=1e-3, warmup_iters=300, eval_interval=1000, eval_iters=20),
    "gpu-8l512": dict(n_layer=8, n_head=8, n_embd=512, block_size=512, batch_size=64,
                      max_iters=16400, lr=8e-4, warmup_iters=500, eval_interval=2000, eval_iters=20),
    "gpu-10l512": dict(n_layer=10, n_head=8, n_embd=512, block_size=512, batch_size=64,
                       max_iters=22000, lr=8e-4, warmup_iters=500, eval_interval=2000, eval_iters=20),
}


def build_parser(cls, presets, description):
    """One flag per dataclass field. Defaults are SUPPRESSed so parse_args returns only the flags
    the user typed: that is what lets a preset (or a resumed run's config) sit in between."""
    parser = argparse.ArgumentParser(
        description=description, allow_abbrev=False,  # --max_it is a typo, not --max_iters
        epilog="presets: " + "; ".join(f"{name}: {' '.join(f'{k}={v}' for k, v in p.items())}"
                                       for name, p in presets.items()))
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        kw = dict(default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (default: {f.default!r})")
        kind = hints[f.name]
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction  # --compile / --no-compile
        else:  # int, float, str, or Optional[...] of one of them
            kw["type"] = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        if f.name == "preset":
            kw["choices"] = list(presets)
        elif "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        parser.add_argument(f"--{f.name}", **kw)
    return parser


def make_config(cls, presets, explicit, saved=None):
    """defaults < preset < explicit flags; on --resume: the saved run's config < explicit flags."""
    if saved is not None:
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in saved.items() if k in known}, **explicit})
    preset = explicit.get("preset", cls.preset)
    return cls(**{**presets[preset], "preset": preset, **explicit})


def check_loop_config(cfg):
    """Clear one-line errors for values that would otherwise fail deep inside torch."""
    for name in ("batch_size", "grad_accum", "eval_iters", "log_interval"):
        if getattr(cfg, name) <= 0:
            raise SystemExit(f"error: --{name}={getattr(cfg, name)} must be a positive integer")
    for name in ("max_iters", "warmup_iters", "eval_interval"):
        if getattr(cfg, name) < 0:
            raise SystemExit(f"error: --{name}={getattr(cfg, name)} must be >= 0")
    if not cfg.lr > 0:
        raise SystemExit(f"error: --lr={cfg.lr} must be > 0")
    if not 0 <= cfg.min_lr_frac <= 1:
        raise SystemExit(f"error: --min_lr_frac={cfg.min_lr_frac} must be in [0, 1]")
    for name in ("weight_decay", "grad_clip"):
        if not getattr(cfg, name) >= 0:
            raise SystemExit(f"error: --{name}={getattr(cfg, name)} must be >= 0")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise SystemExit(f"error: --{name}={getattr(cfg, name)} must be in [0, 1)")
    check_device(cfg.device)


# Our documents are a few hundred tokens; a longer context only packs more of them into a row,
# and the attention cost grows with its square: past this a typo (100000) is more likely than a plan.
MAX_BLOCK_SIZE = 8192


def check_train_config(cfg):
    check_loop_config(cfg)
    if cfg.block_size > MAX_BLOCK_SIZE:
        raise SystemExit(f"error: --block_size={cfg.block_size} is more than {MAX_BLOCK_SIZE} tokens; our stories are "
                         f"a few hundred tokens long, so use 512 (raise MAX_BLOCK_SIZE in pretrain.py if you mean it)")
    try:  # GPTConfig validates the model shape (vocab_size and bos_id come later, from the data)
        GPTConfig(**{k: getattr(cfg, k) for k in MODEL_FIELDS})
    except ValueError as e:
        raise SystemExit(f"error: {e}")

# -----------------------------------------------------------------------------
# Pretraining data: rows that start at a document start, addressed by a global row number


def document_pieces(doc_starts, story_pos, n_tokens, width):
    """The documents of a stream as pieces that fit a row of `width` (= block_size + 1) tokens.
    A document that fits is one piece. A longer one is cut: its first piece fills a row, and every
    later piece starts with the document's header (`<|bos|><|ann|>{annotation}<|story|>`, or
    `<|bos|><|story|>` for plain data) repeated as inputs only, so every story token is trained
    with its own annotation in view.

    doc_starts: stream offsets of each <|bos|>; story_pos: offset of each document's <|story|>.
    -> (n, 4) int64 array of (head_start, head_len, body_start, body_len): the piece's tokens are
    tokens[head_start : +head_len] (never targets) then tokens[body_start : +body_len]."""
    doc_ends = list(doc_starts[1:]) + [n_tokens]
    pieces = []
    for s, e, sp in zip(doc_starts.tolist(), doc_ends, story_pos.tolist()):
        pieces.append((s, 0, s, min(e - s, width)))
        head = sp + 1 - s
        if e - s > width and head >= width - 1:
            raise SystemExit(f"error: a document header of {head} tokens leaves no room for its "
                             f"story in a row of block_size+1={width}; use a larger --block_size")
        for pos in range(s + width, e, width - head):
            pieces.append((s, head, pos, min(width - head, e - pos)))
    return np.asarray(pieces, dtype=np.int64).reshape(-1, 4)


def pack_pieces(sizes, width, window=1024):
    """Best-fit decreasing bin packing, one window of consecutive pieces at a time (so a row holds
    documents from nearby in the stream): each piece, longest first, goes into the open row with
    the least room that still fits it, else opens a row. Next-fit in stream order would leave about
    a fifth of the slots as padding with ~200-token stories in 513-token rows; this leaves a few
    percent. -> list of rows, each a list of piece indices in stream order. Deterministic."""
    rows = []
    for lo in range(0, len(sizes), window):
        chunk = range(lo, min(lo + window, len(sizes)))
        free, mine = [], []  # free: sorted (room left, row) of this window's open rows
        for i in sorted(chunk, key=lambda i: (-sizes[i], i)):
            k = bisect.bisect_left(free, (int(sizes[i]), -1))
            if k < len(free):
                room, r = free.pop(k)
            else:
                room, r = width, len(mine)
                mine.append([])
            mine[r].append(i)
            if room - sizes[i] > 0:
                bisect.insort(free, (int(room - sizes[i]), r))
        rows += [sorted(row) for row in mine]
    return rows


class TokenRows:
    """Rows of block_size + 1 tokens made of whole documents (document_pieces, pack_pieces): inputs are a row's
    first T tokens, targets its last T. A target is -1 (no loss) where it is padding, a repeated
    header, or a <|bos|> (nothing in a story predicts which story comes next). Rows are addressed
    by a global row number (wrapping around), so the data position is one integer: deterministic,
    resumable, and easy to split between processes. Plain and annotated shards are packed the same
    way; padding costs a few percent of the slots (`fill`: the share of slots that are targets)."""

    def __init__(self, path, block_size, bos_id, story_id):
        if not Path(path).exists():
            raise SystemExit(f"error: token shard {path} not found (make the data: python data.py)")
        self.tokens = np.memmap(path, dtype=np.uint16, mode="r")
        self.block_size, self.bos_id = block_size, bos_id
        starts = np.flatnonzero(self.tokens == bos_id)
        story = np.flatnonzero(self.tokens == story_id)
        if len(starts) == 0 or starts[0] != 0 or len(story) != len(starts) or \
                not (story > starts).all() or not (story[:-1] < starts[1:]).all():
            raise SystemExit(f"error: {path} is not a stream of <|bos|>...<|story|>... documents "
                             f"({len(starts)} <|bos|>, {len(story)} <|story|>); rebuild it with data.py")
        pieces = document_pieces(starts, story, len(self.tokens), block_size + 1)
        rows = pack_pieces(pieces[:, 1] + pieces[:, 3], block_size + 1)
        self.pieces = pieces[[i for row in rows for i in row]]  # in row order
        self.row_ptr = np.cumsum([0] + [len(row) for row in rows])
        self.n_rows = len(rows)
        # targets per row: every body token but a document's own <|bos|> (never a target)
        body = np.add.reduceat(self.pieces[:, 3], self.row_ptr[:-1])
        whole = np.add.reduceat((self.pieces[:, 1] == 0).astype(np.int64), self.row_ptr[:-1])
        self.row_targets = body - whole
        self.fill = float(self.row_targets.sum()) / (self.n_rows * block_size)

    def row(self, r):
        """Row r (0 <= r < n_rows) -> (tokens, trained) int64/bool arrays of block_size + 1."""
        width = self.block_size + 1
        toks = np.full(width, self.bos_id, dtype=np.int64)  # padding: inputs only, never targets
        trained = np.zeros(width, dtype=bool)
        at = 0
        for hs, hl, bs, bl in self.pieces[self.row_ptr[r]: self.row_ptr[r + 1]]:
            toks[at: at + hl] = self.tokens[hs: hs + hl]
            toks[at + hl: at + hl + bl] = self.tokens[bs: bs + bl]
            trained[at + hl: at + hl + bl] = True
            at += hl + bl
        return toks, trained

    def get(self, start, n):
        """Rows start..start+n-1 (mod n_rows) -> x, y (n, T) int64 tensors."""
        rows = [self.row(int(i)) for i in np.arange(start, start + n) % self.n_rows]
        toks = np.stack([t for t, _ in rows])
        trained = np.stack([m for _, m in rows])
        y = np.where(trained[:, 1:] & (toks[:, 1:] != self.bos_id), toks[:, 1:], -1)
        return torch.from_numpy(toks[:, :-1].copy()), torch.from_numpy(y)

# -----------------------------------------------------------------------------
# RNG state, saved in every checkpoint for exact resume

def rng_state(device):
    state = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state["torch"].cpu())
    if device.startswith("cuda") and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)

# -----------------------------------------------------------------------------
# The training loop (pretraining and SFT)


def lr_at(step, cfg):
    """Linear warmup to cfg.lr, then a cosine down to cfg.lr * cfg.min_lr_frac at max_iters."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (step - cfg.warmup_iters) / span)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(raw, rows, cfg, d):
    """Mean loss over every target of the first eval_iters * batch_size validation rows (fewer
    if the set is smaller). Batches are split between processes and the sums added up."""
    raw.eval()
    n_rows = min(cfg.eval_iters * cfg.batch_size, rows.n_rows)
    sums = torch.zeros(2, dtype=torch.float64, device=d.device)  # sum of losses, number of targets
    for i, start in enumerate(range(0, n_rows, cfg.batch_size)):
        if i % d.world != d.rank:
            continue
        x, y = rows.get(start, min(cfg.batch_size, n_rows - start))
        n = int((y != -1).sum())
        if n == 0:
            continue
        with autocast(d.device, pick_dtype(d.device, cfg.dtype)):
            _, loss = raw(x.to(d.device), y.to(d.device))
        sums += torch.stack([loss.double() * n, torch.tensor(n, dtype=torch.float64, device=d.device)])
    if d.world > 1:
        dist.all_reduce(sums)
    raw.train()
    return (sums[0] / sums[1]).item()


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step; it then saves a
    checkpoint and exits cleanly. A second Ctrl-C stops at once (without saving)."""

    def __init__(self):
        self.requested = False
        self.old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals only work there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, sig, frame):
        if self.requested and sig == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{signal.Signals(sig).name}: stopping after this step and saving "
              f"(Ctrl-C again to quit without saving)", file=sys.stderr)

    def __exit__(self, *exc):
        for sig, old in self.old.items():
            signal.signal(sig, old)


def append_log(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def trim_log(path, step):
    """On --resume, drop records past the checkpoint's step (they will be redone)."""
    if Path(path).exists():
        records = []
        for ln in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(ln))
            except json.JSONDecodeError:  # a line cut short when the run was killed
                pass
        Path(path).write_text("".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))


def _resume_optimizer(cfg, raw, d, dtype, start, log_path):
    """The AdamW optimizer, the float16 loss scaler (a pass-through for other dtypes), and the step
    and data position to start from (a resumed run also gets its optimizer and scaler state and RNG
    back, and its log trimmed to the checkpoint's step)."""
    optimizer = raw.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2),
                                         d.device.split(":")[0])
    scaler = grad_scaler(d.device, dtype)
    if start is None:
        return optimizer, scaler, 0, 0
    optimizer.load_state_dict(start["optimizer"])
    if "scaler" in start:
        scaler.load_state_dict(start["scaler"])
    set_rng_state(start["rng"], d.device)
    if d.master:
        trim_log(log_path, start["step"])
    return optimizer, scaler, start["step"], start["data_pos"]


def _global_batch(train_rows, data_pos, cfg, d, stop):
    """This process's micro-batches of the step, the number of targets in the whole global batch,
    and whether any process was interrupted. The global batch of a step is rows data_pos ..
    data_pos + B*A*W - 1; rank r takes its own contiguous B*A of them. One all-reduce tells every
    process the target count (so the loss is the mean over all of them, however they are split)
    and the stop flag (so all processes stop at the same step)."""
    B, A = cfg.batch_size, cfg.grad_accum
    first = data_pos + d.rank * B * A
    batches = [train_rows.get(first + m * B, B) for m in range(A)]
    n_targets = [int((y != -1).sum()) for _, y in batches]
    counts = torch.tensor([sum(n_targets), int(stop.requested)], device=d.device)
    if d.world > 1:
        dist.all_reduce(counts)
    n_global, stopping = counts.tolist()
    return batches, n_targets, n_global, bool(stopping)


def _train_step(model, raw, optimizer, scaler, dtype, batches, n_targets, n_global, cfg, d):
    """Forward and backward over the micro-batches, then clip and step. -> (loss, gradient norm)."""
    W, A = d.world, len(batches)
    loss_sum = torch.zeros((), device=d.device)
    for m, (x, y) in enumerate(batches):
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        # DDP averages gradients over processes at every backward; only the last
        # micro-step needs that, the others accumulate locally (no_sync).
        sync = W == 1 or m == A - 1
        with (nullcontext() if sync else model.no_sync()):
            with autocast(d.device, dtype):
                _, loss = model(x, y)
            # loss is the mean over this micro-batch's targets; weighting by its share of
            # the global batch's targets (x W, since DDP divides by W) makes the summed
            # gradient that of the mean over all targets of the step.
            loss = loss * (n_targets[m] * W / n_global)
            scaler.scale(loss).backward()
        loss_sum += loss.detach()
    scaler.unscale_(optimizer)  # the clip and the finiteness check see true gradients
    grad_norm = torch.nn.utils.clip_grad_norm_(
        raw.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    if W > 1:
        dist.all_reduce(loss_sum)
    train_loss, grad_norm = loss_sum.item() / W, grad_norm.item()
    # under float16 an overflowed gradient is routine: scaler.step skips that step by itself
    if math.isfinite(train_loss) and (math.isfinite(grad_norm) or scaler.is_enabled()):  # else the caller stops
        scaler.step(optimizer)  # optimizer.step(), unless float16 gradients overflowed
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return train_loss, grad_norm


def train(cfg, model, train_rows, val_rows, d, ckpt_meta, start=None):
    """Train `model` (the raw GPT, already on d.device) for cfg.max_iters optimizer steps.

    train_rows / val_rows: objects with .get(start, n) -> (x, y) and .n_rows (TokenRows here,
    sft.PackedRows in sft.py). ckpt_meta: the checkpoint keys the caller owns (tokenizer_hash,
    data_dir, fmt, kind, base_fmt). start: a checkpoint to resume (optimizer, step, data position,
    RNG), or None. Only rank 0 writes files: it makes cfg.out_dir and copies the tokenizer of
    cfg.data_dir there first. Returns the last logged record."""
    out_dir = Path(cfg.out_dir)
    log_path, ckpt_path = out_dir / "log.jsonl", out_dir / "ckpt.pt"
    if d.master:
        out_dir.mkdir(parents=True, exist_ok=True)
        keep_tokenizer(cfg.data_dir, out_dir)
    raw = model
    dtype = pick_dtype(d.device, cfg.dtype)
    optimizer, scaler, step, data_pos = _resume_optimizer(cfg, raw, d, dtype, start, log_path)
    if cfg.compile:
        model = torch.compile(model)
    if d.world > 1:
        model = DDP(model, device_ids=[d.local_rank] if d.device.startswith("cuda") else None)
    rows_per_step = cfg.batch_size * cfg.grad_accum * d.world
    row_len = train_rows.get(0, 1)[0].size(1)

    def checkpoint(val_loss=None):
        if d.master:
            save_checkpoint(ckpt_path, dict(
                model_args=asdict(raw.config), model=raw.state_dict(), config=asdict(cfg),
                step=step, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                rng=rng_state(d.device), data_pos=data_pos, val_loss=val_loss, world_size=d.world,
                **ckpt_meta))

    last_record = {}
    if step == 0 and cfg.max_iters > 0:
        last_record = {"step": 0, "val_loss": round(evaluate(raw, val_rows, cfg, d), 5)}
        if d.master:
            append_log(log_path, last_record)
    bar = tqdm(total=cfg.max_iters, initial=step, disable=not d.master, dynamic_ncols=True,
               desc=out_dir.name, unit="step")
    t0, tokens_since = time.time(), 0
    with StopFlag() as stop:
        while step < cfg.max_iters:
            batches, n_targets, n_global, stopping = _global_batch(train_rows, data_pos, cfg, d, stop)
            if stopping:
                break
            if n_global == 0:
                raise SystemExit(f"error: the batch of step {step} has no target tokens")
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            train_loss, grad_norm = _train_step(model, raw, optimizer, scaler, dtype, batches, n_targets, n_global, cfg, d)
            if not (math.isfinite(train_loss) and math.isfinite(grad_norm)):
                bar.close()
                good = f"the last good checkpoint is {ckpt_path}" if ckpt_path.exists() else \
                    "no checkpoint was written yet"
                raise SystemExit(f"error: loss is {train_loss} (gradient norm {grad_norm}) "
                                 f"at step {step}; stopped, {good}. Try a lower --lr.")
            step += 1
            data_pos += rows_per_step
            tokens_since += rows_per_step * row_len
            bar.update(1)

            last = step == cfg.max_iters
            record = {"step": step}
            if step % cfg.log_interval == 0 or last:
                dt = time.time() - t0
                record.update(loss=round(train_loss, 5), lr=lr, grad_norm=round(grad_norm, 4),
                              tokens=data_pos * row_len, epoch=round(data_pos / train_rows.n_rows, 4),
                              tokens_per_s=round(tokens_since / dt))
                t0, tokens_since = time.time(), 0
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{record['tokens_per_s']:,}")
            if (cfg.eval_interval and step % cfg.eval_interval == 0) or last:
                record["val_loss"] = round(evaluate(raw, val_rows, cfg, d), 5)
                bar.write(f"step {step}: train loss {train_loss:.4f}, val loss {record['val_loss']:.4f}")
                checkpoint(record["val_loss"])
                t0 = time.time()  # tokens/s measures training, not evaluation
            if len(record) > 1:
                last_record = record
                if d.master:
                    append_log(log_path, record)
    bar.close()
    if step < cfg.max_iters:  # interrupted
        checkpoint()
        if d.master:
            print(f"interrupted at step {step}: saved {ckpt_path}; continue with --resume "
                  f"--out_dir {cfg.out_dir}")
    if d.master:
        plot_log(log_path, out_dir / "loss.png")
    return last_record

# -----------------------------------------------------------------------------
# The loss curve


def plot_log(log_path, png_path):
    """Train and validation loss against the step, from log.jsonl."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    records = [json.loads(ln) for ln in Path(log_path).read_text().splitlines()] \
        if Path(log_path).exists() else []
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_yscale("log")  # the tail matters: the first steps fall from ~7.6 to ~2
    ax.set_title(Path(log_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)

# -----------------------------------------------------------------------------
# Pretraining: config -> data -> model -> train


def fmt_of(cfg):
    return "annotated" if cfg.annotations else "plain"


def ensure_data(data_dir):
    """Make the default dataset if data_dir has none. An existing one is checked with the options
    it was built with (data.ensure_dataset rebuilds it if data.py's grammar changed since)."""
    meta = Path(data_dir) / "meta.json"
    options = json.loads(meta.read_text()).get("options", {}) if meta.exists() else {}
    if not options:
        print(f"no dataset in {data_dir}: making the default one (data.ensure_dataset)")
    return data.ensure_dataset(data_dir, **{k: v for k, v in options.items() if k != "version"})


def pretrain(cfg, d, start=None):
    if d.master and start is None:  # (a resumed run must not trigger a rebuild of its data)
        ensure_data(cfg.data_dir)
    if d.world > 1:
        dist.barrier()  # the others wait for rank 0 to make the data
    enc = load_tokenizer(cfg.data_dir)
    if start is not None:
        try:
            check_tokenizer(start, enc, cfg.data_dir)
        except ValueError as e:
            raise SystemExit(f"error: {e}")
        if start["fmt"] != fmt_of(cfg):
            raise SystemExit(f"error: {cfg.out_dir} was pretrained on {start['fmt']} data; "
                             f"resume it with{'' if start['fmt'] == 'annotated' else ' --no'}-annotations")
    bos = special_id(enc, "<|bos|>")
    gcfg = GPTConfig(vocab_size=enc.n_vocab, bos_id=bos, **{k: getattr(cfg, k) for k in MODEL_FIELDS})
    torch.manual_seed(cfg.seed + d.rank)  # same init everywhere (DDP broadcasts rank 0's anyway)
    model = GPT(gcfg)
    if start is not None:
        model.load_state_dict(start["model"])
    model.to(d.device)

    shard = Path(cfg.data_dir) / f"pretrain_{fmt_of(cfg)}"
    story = special_id(enc, "<|story|>")
    train_rows = TokenRows(f"{shard}_train.bin", cfg.block_size, bos, story)
    val_rows = TokenRows(f"{shard}_val.bin", cfg.block_size, bos, story)
    if d.master:
        n_params = model.num_params(non_embedding=False)
        budget = cfg.max_iters * cfg.batch_size * cfg.grad_accum * d.world * cfg.block_size
        print(f"{fmt_of(cfg)} pretraining: {n_params:,} parameters "
              f"({model.num_params():,} non-embedding), {d.world} process(es) on {d.device}; "
              f"budget {budget:,} tokens = {budget / n_params:.3g} tokens/parameter "
              f"({train_rows.fill:.1%} of them trained targets, the rest row padding), "
              f"{budget / (train_rows.n_rows * cfg.block_size):.2f} epochs of {shard}_train.bin")
    meta = dict(tokenizer_hash=tokenizer_hash(enc), data_dir=str(Path(cfg.data_dir).resolve()),
                fmt=fmt_of(cfg), kind="base", base_fmt=None)
    record = train(cfg, model, train_rows, val_rows, d, meta, start)
    mode = "anchored" if cfg.annotations else "standard"
    say_next(cfg, d, record, [f"python sft.py --init_from {cfg.out_dir} --mode {mode}",
                              f"python sample.py --ckpt {cfg.out_dir}"])
    return record


def say_next(cfg, d, record, commands):
    """The last lines of a finished run: where its checkpoint is, and what to run next."""
    if d.master and record.get("step") == cfg.max_iters:
        print(f"done: {Path(cfg.out_dir) / 'ckpt.pt'} (log.jsonl and loss.png beside it). Next:")
        for c in commands:
            print(f"  {c}")


def resume_or_fresh(cfg_cls, presets, explicit, out_dir_default, checker):
    """The config of this run, and the checkpoint to resume from (None for a fresh run)."""
    start = None
    if explicit.get("resume"):
        if "out_dir" not in explicit:
            raise SystemExit("error: --resume needs the --out_dir of the run to continue")
        try:
            start = load_checkpoint(explicit["out_dir"])
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: cannot resume: {e}")
        cfg = make_config(cfg_cls, presets, explicit, saved=start["config"])
    else:
        cfg = make_config(cfg_cls, presets, explicit)
    checker(cfg)
    if not cfg.out_dir:
        cfg.out_dir = out_dir_default(cfg)
    if start is None and (Path(cfg.out_dir) / "ckpt.pt").exists():
        raise SystemExit(f"error: {cfg.out_dir} already holds a checkpoint; continue it with "
                         f"--resume, or choose another --out_dir")
    check_out_dir(cfg.out_dir)
    return cfg, start


def main(argv=None):
    parser = build_parser(TrainConfig, PRESETS, __doc__.strip().splitlines()[0])
    explicit = vars(parser.parse_args(argv))
    cfg, start = resume_or_fresh(TrainConfig, PRESETS, explicit,
                                 lambda c: f"out/{c.preset}-{'ann' if c.annotations else 'plain'}",
                                 check_train_config)
    if start is not None:
        if start["kind"] != "base":
            raise SystemExit(f"error: {cfg.out_dir} is an SFT run; resume it with sft.py --resume")
        changed = [k for k in MODEL_FIELDS if k in explicit and explicit[k] != start["config"][k]]
        if changed:
            raise SystemExit(f"error: cannot change {', '.join(changed)} when resuming")
    return run_distributed(pretrain, cfg, start)


def run_distributed(run, cfg, *args):
    """run(cfg, d, *args) inside the process group torchrun asked for (none for one process);
    sft.py's main ends the same way."""
    d = setup_distributed(cfg.device)
    try:
        result = run(cfg, d, *args)
        if d.world > 1:
            dist.barrier()  # leave together: rank 0 may still be writing its files
        return result
    except KeyboardInterrupt:
        raise SystemExit("interrupted; nothing saved since the last checkpoint") from None
    finally:
        if d.world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
