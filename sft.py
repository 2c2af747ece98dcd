"""
Post-training (SFT): the chapter about which tokens carry the loss.

    python sft.py --init_from out/tiny-plain --format standard     # prompt || response
    python sft.py --init_from out/tiny-ann --format anchored       # prompt || annotation || response
    python sft.py --init_from out/tiny-ann --format anchored_strict              # the literal paper mask
    python sft.py --init_from out/tiny-ann --format anchored_unmasked            # ablation
    python sft.py --init_from out/tiny-plain --format anchored --allow_plain_base  # ablation
    python sft.py --init_from out/tiny-ann --format anchored --narrowness 0.5    # controlled study
    python sft.py --init_from out/tiny-ann --format anchored --replay 1          # an extra: annotation replay
    python sft.py --init_from out/tiny-ann --format anchored --pretrain_mix 1    # an extra: pretraining documents
    python sft.py --init_from out/tiny-ann --format anchored --anchor_kl 1       # an extra: KL toward the base
    python sft.py --init_from out/tiny-ann --format anchored --key_share 0.1     # keys in the loss in 10% of examples

Every example is built by tokenizer.encode_example(enc, example, format), which returns the token
ids and a loss mask; this file only turns "mask 0" into "target -1" (ignored by the loss). The formats:

    standard           <|bos|><|user|>{prompt}<|assistant|>{response}<|eos|>
                       loss on: {response}<|eos|>
    anchored_strict    <|bos|><|user|>{prompt}<|assistant|><|ann|>{annotation}<|story|>{response}<|eos|>
                       loss on: {response}<|eos|>
    anchored           same tokens; loss on the response, <|eos|>, the annotation's format and the
                       values the prompt pins, never the values of the fields it leaves free
                       (--key_share p: the format only in a share p of the examples, as the paper
                       keeps its keys in the loss in a small share to keep the format;
                       --no-pinned_values: no value, the pinned ones included)
    anchored_unmasked  same tokens; loss on <|ann|>{annotation}<|story|>{response}<|eos|>

Standard SFT teaches the narrow response distribution directly, and the model's diversity
collapses to it. Anchored SFT never trains the annotation's free choices: the model keeps sampling
them after <|ann|> from the broad pretraining prior, and learns only how to write a (house format)
response for a given annotation. Unmask the whole annotation and it collapses again.

How much and how hot: as in the paper, one epoch of the SFT set by default (--epochs, or
--max_iters), at the rows per step of the base and a peak LR equal to the LR the base ended at
(sft_defaults: every default comes from the base checkpoint's own config; --lr overrides it).
Anchored SFT validates the pinned values on their own as well (pinned_value_rows), since the mean
validation loss cannot show whether the model has learnt to copy the prompt's constraint.

An extra beside the paper (its own arm, anchored_replay): --replay mixes in annotation replay
examples, `prompt || <|ann|>{annotation}<|story|>` with the free values drawn from the pretraining
prior and the pinned ones from the prompt, every annotation token trained (make_replay_examples).

A second extra (arm anchored_pretrain_mix): --pretrain_mix mixes in the base's own pretraining
documents, each in the base's format with every token trained as in pretraining (InstructGPT's
pretraining mix). An annotated document trains both halves the narrow SFT data cannot: the
annotation from the broad prior, and a story that follows whatever annotation it is given
(make_pretrain_mix).

A third extra (arm anchored_kl): --anchor_kl adds, at every free annotation value (the positions
the paper's mask leaves without loss), a KL term toward the frozen base's distribution there, read in
the base's own format (base_value_targets). It holds p(annotation) where SFT's shared weights would
otherwise drag it, without training on any annotation the base did not write.

The training loop, checkpoints, logging and flags are loop.py's, as pretraining's are; only the
data differs: examples are packed into rows of block_size + 1 tokens by the packer pretraining uses
(data.pack_rows; each example starts with <|bos|>, so the model's document masking keeps them apart),
the rest of a row is <|pad|> with no loss.
"""

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from checkpoint import check_tokenizer, load_checkpoint
from loop import (LoopConfig, build_parser, check_loop_config, mean_loss, opt, resume_or_fresh, rows_per_step, run_distributed,
                  say_next, train)
from model import GPT, GPTConfig
import data
import world
from tokenizer import (ANCHORED_FORMATS, TOKENIZER_FILE, dead_tokens, encode_example, load_tokenizer, prompt_ids,
                       special_id, tokenizer_hash)

SFT_FORMATS = ("standard", *ANCHORED_FORMATS)  # the tokenizer.encode_example formats SFT trains on

@dataclass
class SFTConfig(LoopConfig):
    # the loop's fields, with post-training defaults; those marked "the base's" come from the base
    # checkpoint's own pretraining config (sft_defaults), so there is no table of SFT presets
    data_dir: str = opt("", "dataset with sft_{train,val}.jsonl (not typed: the base checkpoint's data_dir)")
    max_iters: int = opt(0, "optimizer steps in total (0: --epochs passes over the SFT rows)")
    epochs: float = opt(1.0, "with --max_iters 0: passes over the SFT rows (the paper: one epoch)")
    batch_size: int = opt(0, "rows per micro-batch per process (0: the base's)")
    lr: float | None = opt(None, "peak learning rate (default: the LR the base ended its pretraining "
                                 "at, its lr * min_lr_frac)")
    warmup_iters: int = opt(20, "linear warmup steps")
    eval_interval: int = opt(0, "validate and save a checkpoint every this many steps (0: 8 times a run)")
    # what to post-train, and how
    init_from: str = opt("", "out_dir of the pretrained base model (required unless --resume)")
    format: str = opt("anchored", "which tokens carry the loss, see the module docstring", choices=SFT_FORMATS)
    narrowness: float | None = opt(None, "make SFT examples in memory at this narrowness "
                                   "(world.make_sft_examples) instead of reading sft_train.jsonl")
    n_sft_examples: int = opt(0, "use this many SFT examples (0: all of sft_train.jsonl, or as many "
                                 "as it has lines when generating)")
    replay: float = opt(0.0, "annotation replay examples per SFT example (0: none, the paper; "
                             "the anchored_replay arm uses 1), see make_replay_examples")
    pretrain_mix: float = opt(0.0, "pretraining documents per SFT example, in the base's own format "
                                   "(0: none, the paper; the anchored_pretrain_mix arm uses 1), see make_pretrain_mix")
    anchor_kl: float = opt(0.0, "with --format anchored: weight of a KL term toward the frozen base at the "
                                "annotation's free values (0: none, the paper; the anchored_kl arm uses 1), see base_value_targets")
    key_share: float = opt(1.0, "with --format anchored: the share of SFT examples whose annotation keys, "
                                "separators and markers carry loss (1: every one; the paper keeps them in a "
                                "small share, to keep the format), see with_key_share")
    pinned_values: bool = opt(True, "with --format anchored: train the annotation values the prompt pins "
                                    "(off: no value is trained, as in the paper's mask)")
    allow_plain_base: bool = opt(False, "allow an anchored format on a base pretrained without "
                                        "annotations (the paper's ablation)")


def sft_defaults(base_config):
    """The SFT flags a base decides: its rows per step and the LR it ended its pretraining at."""
    return dict(batch_size=base_config["batch_size"], grad_accum=base_config["grad_accum"],
                lr=base_config["lr"] * base_config["min_lr_frac"])


def sft_steps(cfg, n_rows, world_size=1):
    """Optimizer steps of an SFT run over n_rows packed rows: --max_iters, else --epochs passes."""
    return cfg.max_iters or max(1, math.ceil(cfg.epochs * n_rows / rows_per_step(cfg, world_size)))

# -----------------------------------------------------------------------------
# Examples -> packed rows of (inputs, targets)

def read_jsonl(data_dir, name, meta, n=0):
    """The first n examples (0: all) of data_dir/name, one JSON object a line; a damaged line is an
    error naming it, and the file must be the one meta.json recorded (size and sha256)."""
    path = Path(data_dir) / name
    if not path.exists():
        raise SystemExit(f"error: {path} not found (make the data: python data.py --out_dir {data_dir})")
    content = path.read_bytes()
    lines = content.decode(errors="replace").splitlines()
    examples = []
    for i, line in enumerate(lines[:n] if n else lines, 1):
        try:
            examples.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SystemExit(f"error: {path} line {i} is not a JSON example ({e.msg}, column {e.colno}): a damaged "
                             f"file; rebuild the dataset: {data.rebuild_command(data_dir, meta['options'])}") from None
        if not isinstance(examples[-1], dict):
            raise SystemExit(f"error: {path} line {i} is not a JSON object; rebuild the dataset: "
                             f"{data.rebuild_command(data_dir, meta['options'])}")
    try:
        data.check_file(data_dir, name, meta, content)
    except data.DatasetError as e:
        raise SystemExit(f"error: {e}")
    return examples

def check_data(cfg):
    """-> meta.json of cfg.data_dir, after checking the tokenizer against it (read_jsonl: the jsonl)."""
    try:
        return data.check_dataset(cfg.data_dir, [TOKENIZER_FILE])
    except data.DatasetError as e:
        raise SystemExit(f"error: {e}")

def load_examples(cfg, meta):
    """(train, val) lists of SFT example dicts: from the data dir, or made in memory."""
    data_dir = Path(cfg.data_dir)
    if cfg.narrowness is None:
        train = read_jsonl(data_dir, "sft_train.jsonl", meta, cfg.n_sft_examples)
        if cfg.n_sft_examples and len(train) < cfg.n_sft_examples:
            raise SystemExit(f"error: --n_sft_examples={cfg.n_sft_examples} but "
                             f"{data_dir / 'sft_train.jsonl'} has only {len(train)}")
        return train, read_jsonl(data_dir, "sft_val.jsonl", meta)
    n = cfg.n_sft_examples
    if not n:
        path = data_dir / "sft_train.jsonl"
        n = sum(1 for _ in open(path)) if path.exists() else 2000
    n_val = min(500, max(50, n // 10))
    try:
        return (world.make_sft_examples(n, cfg.narrowness, cfg.seed),
                world.make_sft_examples(n_val, cfg.narrowness, cfg.seed + 1_000_003))  # other stories
    except ValueError as e:
        raise SystemExit(f"error: --narrowness={cfg.narrowness}: {e}")

def make_replay_examples(n, seed):
    """n annotation replay examples: an SFT prompt (open or constrained, as in the SFT data) and an
    annotation whose free fields are drawn from the *pretraining prior* and whose pinned fields are
    the prompt's constraints; no response, so tokenizer.encode_example trains the whole annotation.
    An extra beside the paper's recipe with two jobs: they hold p(annotation | prompt) at the prior
    while SFT moves the shared weights (prior drift), and they teach the annotation to carry what
    the prompt asks for (\"a story about a dragon\" -> character: dragon) from many short examples."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, constraints = world.make_prompt(rng, "open" if rng.random() < 0.5 else "constrained")
        out.append({"prompt": prompt, "annotation": {**world.sample_annotation(rng), **constraints},
                    "constraints": constraints})
    return out

def make_pretrain_mix(n, meta, base_format):
    """The first n documents of the base's pretraining train split, as examples in the base's own
    format (plain or annotated): data.py's generator rerun from the dataset's seed rebuilds them
    exactly, so no shard is read back into text. meta: the dataset's meta.json (its options and
    split sizes). encode_example trains every token of them."""
    options, n_val, n_train = data.built_with(meta), meta["n_docs"]["val"], meta["n_docs"]["train"]
    if n > n_train:
        raise SystemExit(f"error: --pretrain_mix asks for {n:,} pretraining documents; the dataset has {n_train:,}")
    docs = data.generate_pretraining_docs(n_val + n, options["seed"], options["noise"], options["titled"],
                                          progress=False)[n_val:]
    return [{"story": story, "annotation": data.doc_annotation(ann, defect, options["quality_tag"])
             if base_format == "annotated" else None, "format": base_format} for story, ann, defect in docs]

def with_quality_tag(examples):
    """SFT (and replay) examples of a quality-tagged build (data.py --quality_tag 1): each annotation
    ends with 'quality: good', as every SFT response is clean. A pretraining document of the mix
    (it has a "format") carries its own tag already."""
    return [ex if "format" in ex or ex.get("annotation") is None else
            {**ex, "annotation": {**ex["annotation"], world.QUALITY: "good"}} for ex in examples]

def quality_tagged(source, meta, cfg):
    """Whether this run's annotations carry the quality tag: its data's build option (data.py
    --quality_tag), which must agree with the checkpoint it starts from where that one records it
    (checkpoints from before the tag record nothing; a plain base reads no annotation)."""
    tagged = int(data.built_with(meta)["quality_tag"] and cfg.format != "standard")
    recorded = source.get("quality_tag")
    if recorded is not None and (source["format"] != "plain") and recorded != tagged:
        raise SystemExit(f"error: {cfg.init_from or cfg.out_dir} was trained {'with' if recorded else 'without'} the "
                         f"quality tag, but {cfg.data_dir} was built with --quality_tag {tagged}; post-train it on "
                         f"the data it was pretrained on")
    return tagged

def training_examples(cfg, meta, base_format, tagged):
    """(train, val) examples of a run: the SFT examples, then the extras its flags ask for (counted
    per SFT example and shuffled in among its rows later). On a tagged build every annotation ends
    with 'quality: good' (with_quality_tag); --key_share and --no-pinned_values mark each example
    with what of its annotation the anchored format trains (train_keys, train_pinned)."""
    train_ex, val_ex = load_examples(cfg, meta)
    n_sft = len(train_ex)
    if cfg.replay:
        train_ex = train_ex + make_replay_examples(round(cfg.replay * n_sft), cfg.seed + 7)
    if tagged:
        train_ex, val_ex = with_quality_tag(train_ex), with_quality_tag(val_ex)
    if cfg.key_share < 1:
        train_ex, val_ex = (with_key_share(train_ex, cfg.key_share, cfg.seed),
                            with_key_share(val_ex, cfg.key_share, cfg.seed + 1))
    if not cfg.pinned_values:  # read by tokenizer.encode_example's anchored format
        train_ex, val_ex = ([{**ex, "train_pinned": False} for ex in exs] for exs in (train_ex, val_ex))
    if cfg.pretrain_mix:
        train_ex = train_ex + make_pretrain_mix(round(cfg.pretrain_mix * n_sft), meta, base_format)
    return train_ex, val_ex

def with_key_share(examples, share, seed):
    """The paper's mask: a `share` of the SFT examples (drawn with `seed`) keep the annotation's keys,
    separators and markers in the loss, to keep the format; the rest train the response and the
    pinned values only ("train_keys": False, read by tokenizer.encode_example's anchored format).
    Replay examples, and pretraining documents of the mix, are left as they are."""
    rng = random.Random(seed)
    return [{**ex, "train_keys": rng.random() < share} if ex.get("response") is not None and "format" not in ex
            else ex for ex in examples]

def pack_examples(enc, examples, format, block_size):
    """Examples into rows of block_size + 1 tokens by the packer pretraining uses (data.pack_rows); a
    row's remaining slots are <|pad|>. Targets across an example boundary are -1 on their own
    (<|bos|> is never in a mask). An example with a "format" of its own (a pretraining document of
    the mix) is encoded in it. -> x, y (n_rows, block_size) int64."""
    width = block_size + 1
    encoded = [encode_example(enc, ex, ex.get("format", format)) for ex in examples]
    for i, (ex, (ids, _)) in enumerate(zip(examples, encoded)):
        if len(ids) > width:
            raise SystemExit(f"error: SFT example {i} ({ex.get('prompt', '')[:40]!r}...) is {len(ids)} "
                             f"tokens in format {format}, more than block_size + 1 = {width}; drop it "
                             f"or pretrain with a larger --block_size")
    rows = data.pack_rows([len(ids) for ids, _ in encoded], width)
    tokens = torch.full((len(rows), width), special_id(enc, "<|pad|>"), dtype=torch.long)
    masks = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, row in enumerate(rows):
        ids = [t for i in row for t in encoded[i][0]]
        mask = [m for i in row for m in encoded[i][1]]
        tokens[r, :len(ids)] = torch.tensor(ids)
        masks[r, :len(mask)] = torch.tensor(mask, dtype=torch.bool)
    return tokens[:, :-1], torch.where(masks[:, 1:], tokens[:, 1:], -1)

def pinned_value_rows(enc, examples, block_size):
    """The anchored rows of `examples` with only the pinned annotation values as targets, and only
    the rows that hold one -> x, y. Validated on their own, they say whether SFT has learnt to copy
    the prompt's constraint into the annotation: a token or two of a ~250-token example, which the
    mean validation loss cannot show (results/science/pinned_copy: the copy of each field is learnt
    in a jump, late or not at all in one epoch on some bases)."""
    x, y = pack_examples(enc, examples, "anchored", block_size)
    _, y_unpinned = pack_examples(enc, [{**ex, "train_pinned": False} for ex in examples], "anchored", block_size)
    y = torch.where(y_unpinned == -1, y, -1)  # same packing: the lengths are the same
    keep = (y != -1).any(dim=1)
    return x[keep], y[keep]

class PackedRows:
    """Packed SFT rows addressed by a global row number, like pretrain.TokenRows: row i is row
    perm_e[i mod n] of epoch e = i // n, a permutation seeded by (seed, e), so the data position
    is one integer and --resume continues the same order. With base_targets (free, p_base) from
    base_value_targets, a batch also carries each free-value position (row in the batch, column)
    and the base's distribution there: (x, y, rows, cols, p_base)."""

    def __init__(self, x, y, seed, shuffle=True, base_targets=None):
        self.x, self.y, self.seed, self.shuffle = x, y, seed, shuffle
        self.n_rows = len(x)
        self._epoch, self._perm = None, None
        self.free, self.p_base = base_targets or (None, None)
        if self.free is not None:  # row r's distributions are p_base[starts[r]:starts[r + 1]]
            self.starts = [0, *self.free.sum(1).cumsum(0).tolist()]

    def index(self, i):
        epoch, j = divmod(i, self.n_rows)
        if not self.shuffle:
            return j
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)
        return int(self._perm[j])

    def get(self, start, n):
        idx = [self.index(i) for i in range(start, start + n)]
        if self.free is None:
            return self.x[idx], self.y[idx]
        rows, cols = self.free[idx].nonzero(as_tuple=True)  # row-major, as p_base is stored
        p_base = torch.cat([self.p_base[self.starts[r]:self.starts[r + 1]] for r in idx])
        return self.x[idx], self.y[idx], rows, cols, p_base

# -----------------------------------------------------------------------------
# An extra beside the paper: a KL term toward the frozen base at the annotation's free values

def free_value_positions(x, y, ann_id, story_id, bos_id):
    """(n_rows, T) bool: the input positions whose target is a free annotation value, the tokens
    anchored SFT leaves without loss (y == -1) between an <|ann|> and its <|story|>. A position is
    inside an annotation when the last of <|bos|>, <|ann|>, <|story|> before it was <|ann|> (so a
    plain document, <|bos|><|story|>..., changes nothing after it). Replay and pretraining-mix
    annotations are trained (y != -1), so they hold none."""
    is_ann = x == ann_id
    is_marker = is_ann | (x == story_id) | (x == bos_id)
    columns = torch.arange(x.size(1)).expand_as(x)
    last = torch.where(is_marker, columns, -1).cummax(dim=1).values  # column of the last marker so far
    inside = (last >= 0) & is_ann.gather(1, last.clamp_min(0)) & ~is_ann  # after <|ann|>, before <|story|>
    target_inside = torch.zeros_like(inside)
    target_inside[:, :-1] = inside[:, 1:]  # position t predicts token t + 1
    return target_inside & (y == -1)

@torch.no_grad()
def base_value_targets(base, x, y, enc, chunk=256):
    """What the anchor KL pulls toward -> (free, p_base): free (n_rows, T) bool from
    free_value_positions, p_base (n_free, V) float16, the frozen base's next-token distribution at
    each free position (row-major), read in the base's own format: <|bos|><|ann|> and the
    annotation so far, without the prompt it never saw. So the term holds p(annotation) where the
    paper's mask leaves it free, and leaves the pinned values (copied from the prompt) to the loss.
    p_base is n_free x V x 2 bytes (82,554 positions: 338 MB at the cpu preset's 10,000 examples)."""
    ann_id, story_id, bos_id = (special_id(enc, t) for t in ("<|ann|>", "<|story|>", "<|bos|>"))
    free = free_value_positions(x, y, ann_id, story_id, bos_id)
    header = prompt_ids(enc, "annotated")  # the base format's <|bos|><|ann|>
    spans = []  # (row, column of the <|ann|>, column of its <|story|> or the row's end) of every span with a free value
    for r, a in (x == ann_id).nonzero().tolist():
        ends = (x[r, a:] == story_id).nonzero()
        s = a + int(ends[0]) if len(ends) else x.size(1)
        if free[r, a:s].any():
            spans.append((r, a, s))
    device = next(base.parameters()).device
    # spans come row by row and left to right, so their free positions fill out in the row-major
    # order free.nonzero() lists them: n counts the rows written so far
    out, n = torch.zeros(int(free.sum()), enc.n_vocab, dtype=torch.float16), 0
    for c in range(0, len(spans), chunk):
        part = spans[c:c + chunk]
        width = len(header) - 1 + max(s - a for _, a, s in part)
        seqs = torch.full((len(part), width), special_id(enc, "<|pad|>"), dtype=torch.long)
        for j, (r, a, s) in enumerate(part):
            seqs[j, :len(header)] = torch.tensor(header)
            seqs[j, len(header):len(header) + s - a - 1] = x[r, a + 1:s]  # the annotation so far
        logits, _ = base(seqs.to(device), seqs.to(device))  # targets only to get every position's logits
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        for j, (r, a, s) in enumerate(part):
            ts = free[r, a:s].nonzero().flatten()
            out[n:n + len(ts)] = probs[j, ts + len(header) - 1].half()  # the <|ann|> at a sits at len(header) - 1
            n += len(ts)
    assert n == len(out), "a free value outside every annotation span, or inside two"
    return free, out

def anchor_kl_loss(weight):
    """loss_of for loop.train: the cross-entropy plus weight x KL(base || model) summed over the
    batch's free-value positions, per target of y, so a free position counts like one trained
    token. Where the base gives a token no mass, the term has nothing to say about it."""
    def loss_of(model, batch):
        x, y, rows, cols, p_base = batch
        logits, ce = model(x, y)
        log_q = torch.log_softmax(logits[rows, cols].float(), dim=-1)
        p = p_base.float()
        kl = (p * (p.clamp_min(1e-30).log() - log_q.masked_fill(p == 0, 0.0))).sum()
        return ce + weight * kl / (y != -1).sum()
    return loss_of

def embedding_plan(n_vocab, base_dead, x, y, val_x, val_y):
    """Which of the base's dead tokens stay dead through SFT, and what their rows start as -> (dead,
    fresh, unseen). dead: those no SFT target (train or val) uses, masked as before; fresh: the
    others, the targets SFT brings to life (the house format's title words, e.g. ' Story'); unseen:
    the dead ones no SFT row holds at all, input or target (start_embeddings zeroes them)."""
    targets = np.concatenate([y[y >= 0].numpy(), val_y[val_y >= 0].numpy()])
    dead = tuple(sorted(set(base_dead) & set(dead_tokens(n_vocab, targets))))
    unseen = sorted(set(dead) & set(dead_tokens(n_vocab, x.numpy(), val_x.numpy(), targets)))
    return dead, sorted(set(base_dead) - set(dead)), unseen

@torch.no_grad()
def start_embeddings(model, fresh, unseen):
    """The embeddings of tokens pretraining never used, as SFT starts; -> (how many fresh, how many
    zeroed). A dead token's row was never trained, only shrunk by weight decay: a random vector.
    fresh: dead tokens the SFT targets use (the house format's title words): new rows at the init's
    scale, learned from here. unseen: dead tokens no SFT row holds either (bytes a held-out prompt
    may still carry, the ' of "I'd"): zero rows, so the model reads them as nothing, never as the
    random vector their init left (RMSNorm would scale it up to a full-size input). No training
    row reaches them, so they stay zero."""
    if fresh:
        model.wte.weight[list(fresh)] = torch.randn(len(fresh), model.config.n_embd) * 0.02
    if unseen:
        model.wte.weight[list(unseen)] = 0.0
    return len(fresh), len(unseen)

# -----------------------------------------------------------------------------
# Which base may be post-trained how

def check_base(base, cfg):
    where = cfg.init_from
    if base["stage"] != "base":
        raise SystemExit(f"error: {where} is an SFT checkpoint (stage 'sft', format {base['format']!r}); "
                         f"--init_from needs a pretrained base model (an out_dir of pretrain.py)")
    if cfg.format.startswith("anchored") and base["format"] == "plain" and not cfg.allow_plain_base:
        raise SystemExit(f"error: --format {cfg.format} needs a base pretrained with annotations, but "
                         f"{where} saw plain stories only (its <|ann|> was never trained); pass "
                         f"--allow_plain_base to run this ablation anyway")

def sft(cfg, d, source, start=None):
    """source: the checkpoint the weights come from (the base, or this run's own on --resume)."""
    meta = check_data(cfg)
    enc = load_tokenizer(cfg.data_dir)
    try:
        check_tokenizer(source, enc, cfg.data_dir)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    block_size = source["model_args"]["block_size"]
    base_format = source["base_format"] or source["format"]  # a base, or (resumed) this run's own checkpoint
    tagged = quality_tagged(source, meta, cfg)
    train_ex, val_ex = training_examples(cfg, meta, base_format, tagged)
    x, y = pack_examples(enc, train_ex, cfg.format, block_size)
    val_x, val_y = pack_examples(enc, val_ex, cfg.format, block_size)
    base_targets = None
    if cfg.anchor_kl:  # the frozen base is read once, here: its distributions at the free values
        base_ckpt = source if start is None else load_or_exit(cfg.init_from)
        base = GPT(GPTConfig(**base_ckpt["model_args"]))
        base.load_state_dict(base_ckpt["model"])
        base_targets = base_value_targets(base.to(d.device).eval(), x, y, enc)
        del base
    train_rows = PackedRows(x, y, cfg.seed, base_targets=base_targets)
    val_rows = PackedRows(val_x, val_y, cfg.seed, shuffle=False)
    val_parts = {}  # the pinned values alone, beside the mean: whether the copy of the constraint is learnt
    if cfg.format == "anchored" and cfg.pinned_values:
        pinned_x, pinned_y = pinned_value_rows(enc, val_ex, block_size)
        if len(pinned_x):
            val_parts["pinned_values"] = PackedRows(pinned_x, pinned_y, cfg.seed, shuffle=False)
    cfg.max_iters = sft_steps(cfg, len(x), d.world_size)
    cfg.eval_interval = cfg.eval_interval or max(1, cfg.max_iters // 8)

    # The SFT targets bring some of the base's dead tokens to life; the rest stay masked.
    dead, fresh, unseen = embedding_plan(enc.n_vocab, source["model_args"].get("dead_tokens", ()), x, y, val_x, val_y)
    torch.manual_seed(cfg.seed + d.rank)
    model = GPT(GPTConfig(**{**source["model_args"], "dead_tokens": dead}))
    model.load_state_dict(source["model"])
    if start is None:  # a resumed run's rows are already set
        n_fresh, n_zero = start_embeddings(model, fresh, unseen)
    model.to(d.device)
    if d.master:
        n_targets = int((y != -1).sum())
        steps_per_epoch = len(x) / rows_per_step(cfg, d.world_size)
        if start is None and n_fresh + n_zero:
            print(f"of the tokens no pretraining document uses, {n_fresh} are SFT targets (fresh embeddings) "
                  f"and {n_zero} occur in no SFT row either (zero embeddings: read as nothing)")
        print(f"SFT ({cfg.format}) of {cfg.init_from} ({base_format} base): "
              f"{len(train_ex):,} examples in {len(x):,} rows of {block_size} "
              f"({n_targets:,} target tokens, {(y != -1).float().mean():.0%} of the row slots); "
              f"{cfg.max_iters / steps_per_epoch:.2f} epochs in {cfg.max_iters} steps at peak LR {cfg.lr:.3g}")
        if base_targets is not None:
            print(f"anchor KL: weight {cfg.anchor_kl:g} at {len(base_targets[1]):,} free annotation values, "
                  f"toward the frozen base {cfg.init_from}")
    ckpt_meta = dict(tokenizer_hash=tokenizer_hash(enc), data_dir=str(Path(cfg.data_dir).resolve()),
                     format=cfg.format, stage="sft", base_format=base_format, quality_tag=tagged)
    loss_of = anchor_kl_loss(cfg.anchor_kl) if cfg.anchor_kl else mean_loss
    record = train(cfg, model, train_rows, val_rows, d, ckpt_meta, start, loss_of, val_parts)
    say_next(cfg, d, record, [f"python sample.py --ckpt {cfg.out_dir} --prompt 'Write a story.'",
                              f"python eval_diversity.py --ckpts base={cfg.init_from} "
                              f"{'sft' if cfg.format == 'standard' else 'anchored'}={cfg.out_dir} --out {cfg.out_dir}/eval"])
    return record

def load_or_exit(path):
    try:
        return load_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}")

def check_sft_config(cfg, base=None):
    """One-line errors for bad values, and for a base this format cannot post-train (check_base)."""
    check_loop_config(cfg)
    if base is not None:
        check_base(base, cfg)
    if not cfg.epochs > 0:
        raise SystemExit(f"error: --epochs={cfg.epochs} must be > 0")
    if cfg.replay < 0 or (cfg.replay and not cfg.format.startswith("anchored")):
        raise SystemExit(f"error: --replay={cfg.replay} needs an anchored --format and a value >= 0")
    if cfg.anchor_kl < 0 or (cfg.anchor_kl and cfg.format != "anchored"):
        raise SystemExit(f"error: --anchor_kl={cfg.anchor_kl} needs --format anchored (the format whose free "
                         f"annotation values have no loss) and a value >= 0")
    if not 0 <= cfg.key_share <= 1 or (cfg.key_share < 1 and (cfg.format != "anchored" or cfg.anchor_kl)):
        raise SystemExit(f"error: --key_share={cfg.key_share} needs a value in [0, 1], and below 1 --format anchored "
                         f"without --anchor_kl (whose positions are the free values of a mask that trains the keys)")
    if not cfg.pinned_values and (cfg.format != "anchored" or cfg.anchor_kl):
        raise SystemExit("error: --no-pinned_values needs --format anchored without --anchor_kl")
    if cfg.pretrain_mix < 0:
        raise SystemExit(f"error: --pretrain_mix={cfg.pretrain_mix} must be >= 0")
    if cfg.n_sft_examples < 0:
        raise SystemExit(f"error: --n_sft_examples={cfg.n_sft_examples} must be >= 0")
    if cfg.narrowness is not None and not 0 <= cfg.narrowness <= 1:
        raise SystemExit(f"error: --narrowness={cfg.narrowness} must be in [0, 1] (0 = prior, 1 = favourites only)")

# what an SFT run cannot change when it resumes (its data and the base it started from)
RESUME_FIXED = ("format", "init_from", "narrowness", "n_sft_examples", "replay", "pretrain_mix", "anchor_kl",
                "key_share", "pinned_values")

def main(argv=None):
    """A fresh run takes its defaults from its base (sft_defaults), a resumed one from its own config."""
    parser = build_parser(SFTConfig, {}, __doc__.strip().splitlines()[0])
    explicit, base = vars(parser.parse_args(argv)), None
    if not explicit.get("resume"):
        if not explicit.get("init_from"):
            raise SystemExit("error: --init_from <out_dir of pretrain.py> is required")
        base = load_or_exit(explicit["init_from"])
        explicit = {**sft_defaults(base["config"]), "data_dir": base["data_dir"], **explicit}
    cfg, start = resume_or_fresh(SFTConfig, {}, explicit, "sft", RESUME_FIXED,
                                 lambda c: f"{c.init_from.rstrip('/')}-{c.format}", lambda c: check_sft_config(c, base))
    return run_distributed(sft, cfg, start or base, start)

if __name__ == "__main__":
    main()
