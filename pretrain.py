"""
Pretraining: annotated (or plain) stories packed into rows that start at a document start.

    python pretrain.py                                    # annotated data, the device's preset: tiny on a
                                                          # CPU (minutes), gpu-q-6l192 on a CUDA GPU
    python pretrain.py --no-annotations                   # the same budget on plain stories
    python pretrain.py --preset gpu-6l256 --compile on    # one rung of the GPU ladder, compiled
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
The loop, its flags and those files are loop.py's; this file adds the model's shape (TrainConfig),
the presets, the rows (TokenRows) and pretrain().
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import data
from checkpoint import check_tokenizer
from device import check_device
from loop import (LoopConfig, build_parser, check_loop_config, opt, resume_or_fresh, run_distributed, say_next,
                  token_budget, train)
from model import ATTENTION_PATHS, GPT, GPTConfig
from tokenizer import TOKENIZER_FILE, dead_tokens, load_tokenizer, special_id, tokenizer_hash


# -----------------------------------------------------------------------------
# Configuration: the loop's fields (loop.LoopConfig) and the model's; every field is a flag.


@dataclass
class TrainConfig(LoopConfig):
    preset: str = opt("tiny", "named set of defaults, see PRESETS; not typed: the device's "
                      "(default_preset: tiny on a CPU, gpu-q-6l192 on CUDA, gpu-4l128 on MPS)")
    annotations: bool = opt(True, "pretrain on `annotation || story` (else plain stories)")
    n_layer: int = opt(4, "transformer blocks")
    n_head: int = opt(4, "attention heads")
    n_embd: int = opt(128, "width of the residual stream")
    block_size: int = opt(512, "context length in tokens")
    dropout: float = opt(0.0, "dropout rate")
    attention: str = opt("auto", "attention implementation (auto: model.attention_path)",
                         choices=ATTENTION_PATHS)


MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "attention")

# Named presets: plain data, applied over the dataclass defaults and under explicit flags. A run's
# token budget is loop.token_budget (max_iters x batch_size x grad_accum x processes x block_size);
# TokenRows' padding leaves a few percent of those slots untrained (the start-up line prints the
# share, the tokens per parameter and the epochs of the data).
# GPU ladder (SimpleStories sizes, context 512): each preset trains on >= 20 tokens per parameter,
# counting ALL parameters (the tied embedding included; data.py's default vocabulary of 2,048),
# with 64 x 512 = 32,768 tokens per step (32 x 512 for the smallest: a small model learns more per
# token from more, smaller steps):
#   gpu-4l128   1.05M params:  1,400 steps =  22.9M tokens = 21.9 tokens/param
#   gpu-6l256   5.25M params:  3,300 steps =   108M tokens = 20.6 tokens/param
#   gpu-6l384  11.4M params:   7,200 steps =   236M tokens = 20.7 tokens/param
#   gpu-8l512  26.2M params:  16,400 steps =   537M tokens = 20.5 tokens/param  (reproduce's top rung)
#   gpu-10l512 32.5M params:  22,000 steps =   721M tokens = 22.2 tokens/param
# reproduce.py --preset gpu stops at 8L/512: at 20 tokens per parameter the compute grows as N^2.
# The gpu-quick ladder (reproduce.py --preset gpu-quick) adds two rungs between and below those,
# their learning rates between their neighbours' (4l128 3e-3, 6l256 1.5e-3, 6l384 1e-3):
#   gpu-q-6l192  3.05M params:  1,900 steps =  62.3M tokens = 20.4 tokens/param
#   gpu-q-6l320  8.03M params:  5,000 steps =   164M tokens = 20.4 tokens/param  (its top rung)
# eval_interval writes a checkpoint each time, so a run cut short loses less than that many steps.
# The larger rungs want more stories than the default dataset holds (python data.py --n_stories).
PRESETS = {
    # a laptop CPU in a few minutes: a model that already writes recognisable stories
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=512,
                 batch_size=4, max_iters=600, lr=3e-3, warmup_iters=30, eval_interval=200),
    # the CPU ladder of reproduce.py: 4 layers at three widths, each at 21-23 slots per parameter
    # (7.4M / 14.7M / 22.1M slots at 0.33M / 0.64M / 1.05M parameters); 4 layers, as two are too
    # few to follow an annotation's non-favourite values
    "cpu-4l64": dict(n_layer=4, n_head=2, n_embd=64, block_size=512,
                     batch_size=4, max_iters=3600, lr=4e-3, warmup_iters=50, eval_interval=900),
    "cpu-4l96": dict(n_layer=4, n_head=3, n_embd=96, block_size=512,
                     batch_size=8, max_iters=3600, lr=3.5e-3, warmup_iters=50, eval_interval=900),
    "cpu-4l128": dict(n_layer=4, n_head=4, n_embd=128, block_size=512,
                      batch_size=8, max_iters=5400, lr=3e-3, warmup_iters=50, eval_interval=900),
    "cpu-s": dict(n_layer=2, n_head=2, n_embd=128, block_size=512,
                  batch_size=4, max_iters=800, lr=4e-3, warmup_iters=40, eval_interval=200),
    "cpu-m": dict(n_layer=4, n_head=4, n_embd=128, block_size=512,
                  batch_size=4, max_iters=800, lr=3e-3, warmup_iters=40, eval_interval=200),
    # the GPU ladder: bf16 autocast; --compile auto compiles the long ones (device.compile_pays)
    "gpu-4l128": dict(n_layer=4, n_head=4, n_embd=128, block_size=512, batch_size=32,
                      max_iters=1400, lr=3e-3, warmup_iters=100, eval_interval=350, eval_iters=40),
    "gpu-6l256": dict(n_layer=6, n_head=4, n_embd=256, block_size=512, batch_size=64,
                      max_iters=3300, lr=1.5e-3, warmup_iters=200, eval_interval=500, eval_iters=20),
    "gpu-6l384": dict(n_layer=6, n_head=6, n_embd=384, block_size=512, batch_size=64,
                      max_iters=7200, lr=1e-3, warmup_iters=300, eval_interval=1000, eval_iters=20),
    "gpu-8l512": dict(n_layer=8, n_head=8, n_embd=512, block_size=512, batch_size=64,
                      max_iters=16400, lr=8e-4, warmup_iters=500, eval_interval=2000, eval_iters=20),
    "gpu-q-6l192": dict(n_layer=6, n_head=3, n_embd=192, block_size=512, batch_size=64,
                        max_iters=1900, lr=2e-3, warmup_iters=150, eval_interval=500, eval_iters=20),
    "gpu-q-6l320": dict(n_layer=6, n_head=5, n_embd=320, block_size=512, batch_size=64,
                        max_iters=5000, lr=1.2e-3, warmup_iters=250, eval_interval=1000, eval_iters=20),
    "gpu-10l512": dict(n_layer=10, n_head=8, n_embd=512, block_size=512, batch_size=64,
                       max_iters=22000, lr=8e-4, warmup_iters=500, eval_interval=2000, eval_iters=20),
}

# What `python pretrain.py` trains when no --preset is typed: a preset that suits the device. A CPU
# gets tiny (a few minutes); a CUDA GPU the 3M-parameter rung of the gpu-quick ladder (20 tokens per
# parameter); an Apple GPU, which runs fp32, the 1M-parameter rung.
DEFAULT_PRESETS = {"cpu": "tiny", "cuda": "gpu-q-6l192", "mps": "gpu-4l128"}


def default_preset(device_type):
    """The preset `python pretrain.py` uses on a device of this type ("cpu", "cuda" or "mps")."""
    if device_type not in DEFAULT_PRESETS:
        raise ValueError(f"device type {device_type!r} is not one of {', '.join(DEFAULT_PRESETS)}")
    return DEFAULT_PRESETS[device_type]


def with_default_preset(explicit):
    """The flags typed, plus --preset default_preset(the device --device picks) when none was typed
    (a resumed run keeps its own)."""
    if "preset" in explicit or explicit.get("resume"):
        return explicit
    device = check_device(explicit.get("device", "auto"))
    return {**explicit, "preset": default_preset(device.split(":")[0])}


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


class TokenRows:
    """Rows of block_size + 1 tokens made of whole documents (document_pieces, data.pack_rows): inputs are a row's
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
        rows = data.pack_rows(pieces[:, 1] + pieces[:, 3], block_size + 1)
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
# Pretraining: config -> data -> model -> train


def format_of(cfg):
    return "annotated" if cfg.annotations else "plain"


def ensure_data(data_dir):
    """Make the default dataset if data_dir has none. An existing one is checked with the options
    it was built with (data.ensure_dataset rebuilds it if data.py's grammar changed since)."""
    try:
        meta = data.read_meta(data_dir)
        if meta is None:
            print(f"no dataset in {data_dir}: making the default one (data.ensure_dataset)")
        options = meta["options"] if meta else {}
        return data.ensure_dataset(data_dir, **{k: v for k, v in options.items() if k != "version"})
    except data.DatasetError as e:  # a damaged file: never train on it, never rebuild behind the user's back
        raise SystemExit(f"error: {e}")


def check_data(cfg):
    """The files this run reads are the ones data.py wrote (sizes, the tokenizer's hash): else exit.
    -> the build's meta.json."""
    shard = f"pretrain_{format_of(cfg)}"
    try:
        return data.check_dataset(cfg.data_dir, [TOKENIZER_FILE, f"{shard}_train.bin", f"{shard}_val.bin"])
    except data.DatasetError as e:
        raise SystemExit(f"error: {e}")


def pretrain(cfg, d, start=None):
    if d.master and start is None:  # (a resumed run must not trigger a rebuild of its data)
        ensure_data(cfg.data_dir)
    if d.world_size > 1:
        dist.barrier()  # the others wait for rank 0 to make the data
    data_meta = check_data(cfg)
    enc = load_tokenizer(cfg.data_dir)
    if start is not None:
        try:
            check_tokenizer(start, enc, cfg.data_dir)
        except ValueError as e:
            raise SystemExit(f"error: {e}")
        if start["format"] != format_of(cfg):
            raise SystemExit(f"error: {cfg.out_dir} was pretrained on {start['format']} data; "
                             f"resume it with{'' if start['format'] == 'annotated' else ' --no'}-annotations")
    bos, story = special_id(enc, "<|bos|>"), special_id(enc, "<|story|>")
    shard = Path(cfg.data_dir) / f"pretrain_{format_of(cfg)}"
    train_rows = TokenRows(f"{shard}_train.bin", cfg.block_size, bos, story)
    val_rows = TokenRows(f"{shard}_val.bin", cfg.block_size, bos, story)
    dead = dead_tokens(enc.n_vocab, train_rows.tokens, val_rows.tokens)  # one pass over the shards: ~0.1 s
    gcfg = GPTConfig(vocab_size=enc.n_vocab, bos_id=bos, dead_tokens=dead,
                     **{k: getattr(cfg, k) for k in MODEL_FIELDS})
    torch.manual_seed(cfg.seed + d.rank)  # same init everywhere (DDP broadcasts rank 0's anyway)
    model = GPT(gcfg)
    if start is not None:
        model.load_state_dict(start["model"])
    model.to(d.device)
    if d.master:
        n_params = model.num_params(non_embedding=False)
        budget = token_budget(cfg, cfg.block_size, d.world_size)
        print(f"{format_of(cfg)} pretraining, preset {cfg.preset}: {n_params:,} parameters "
              f"({model.num_params():,} non-embedding, {len(dead):,} of {enc.n_vocab:,} tokens dead: never in the "
              f"data, never predicted), {d.world_size} process(es) on {d.device}; "
              f"budget {budget:,} tokens = {budget / n_params:.3g} tokens/parameter "
              f"({train_rows.fill:.1%} of them trained targets, the rest row padding), "
              f"{budget / (train_rows.n_rows * cfg.block_size):.2f} epochs of {shard}_train.bin")
    meta = dict(tokenizer_hash=tokenizer_hash(enc), data_dir=str(Path(cfg.data_dir).resolve()),
                format=format_of(cfg), stage="base", base_format=None,
                # an annotated base of a tagged build writes a quality tag after its fields (world.TAGS)
                quality_tag=int(cfg.annotations and data.built_with(data_meta)["quality_tag"]))
    record = train(cfg, model, train_rows, val_rows, d, meta, start)
    sft_format = "anchored" if cfg.annotations else "standard"
    say_next(cfg, d, record, [f"python sft.py --init_from {cfg.out_dir} --format {sft_format}",
                              f"python sample.py --ckpt {cfg.out_dir}"])
    return record


def main(argv=None):
    parser = build_parser(TrainConfig, PRESETS, __doc__.strip().splitlines()[0])
    explicit = with_default_preset(vars(parser.parse_args(argv)))
    cfg, start = resume_or_fresh(TrainConfig, PRESETS, explicit, "base", MODEL_FIELDS,
                                 lambda c: f"out/{c.preset}-{'ann' if c.annotations else 'plain'}",
                                 check_train_config)
    return run_distributed(pretrain, cfg, start)


if __name__ == "__main__":
    main()
