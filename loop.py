"""
The one training loop of nanoanchor, used by pretrain.py and sft.py; only their data differs.

  1. configuration: a dataclass of fields turned into argparse flags (build_parser), and the
     precedence defaults < preset < flags typed (make_config), or a resumed run's saved config
     (resume_or_fresh, for pretraining and SFT alike); the token budget (token_budget)
  2. the loop: one train(), read top to bottom: gradient accumulation over micro-batches, DDP
     with no_sync, float16 loss scaling, gradient clipping, logging, validation and checkpoints;
     beside it only small helpers: the learning-rate schedule (lr_at), validation (evaluate), the
     Ctrl-C flag (StopFlag) and exact resume (save / start_state: model, optimizer, loss scaler,
     step, data position and RNG state in every checkpoint)
  3. what a run leaves: log.jsonl (one JSON object per logged step), loss.png (plot_log), the
     last lines that say where the checkpoint is (say_next), and the process group (run_distributed)

The data is an object with .get(start, n) -> (x, y, ...) and .n_rows (pretrain.TokenRows, sft.PackedRows):
rows are addressed by a global row number, so where the run is in its data is one integer,
data_pos, the number of rows consumed so far.
"""

import argparse
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

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from checkpoint import check_out_dir, keep_tokenizer, load_checkpoint, pyplot, save_checkpoint, save_figure
from device import DEVICE_FLAGS, autocast, check_device, compile_pays, grad_scaler, pick_dtype, setup_distributed


# -----------------------------------------------------------------------------
# Configuration: a dataclass per script, turned into argparse flags (build_parser, make_config).
# Precedence: dataclass defaults < preset < flags given on the command line.


def opt(default, help, **extra):
    """A config field with its --help text (extra: e.g. choices=...)."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class LoopConfig:
    """What the training loop needs; pretrain.py and sft.py add their own fields."""
    out_dir: str = opt("", "where ckpt.pt, log.jsonl and loss.png go (empty: a name made from the run)")
    data_dir: str = opt("data", "dataset made by data.py (tokenizer, token shards, SFT jsonl)")
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
    device: str = opt(**DEVICE_FLAGS["device"])
    compile: str = opt("auto", "torch.compile the model: auto = when the run is long enough to pay for "
                       "the compile time (device.compile_pays, printed at start), on (also a bare "
                       "--compile), off; checkpoints stay plain either way", choices=("auto", "on", "off"),
                       const="on")
    dtype: str = opt(**DEVICE_FLAGS["dtype"])
    seed: int = opt(1337, "seeds the model init (and dropout); data order follows from the step")


def rows_per_step(cfg, world_size=1):
    """Rows one optimizer step trains on: batch_size x grad_accum on each of world_size processes."""
    return cfg.batch_size * cfg.grad_accum * world_size


def token_budget(cfg, block_size, world_size=1):
    """The row slots a run reads, max_iters x rows_per_step x block_size: the budget that matched
    runs share (annotation tokens and row padding counted)."""
    return cfg.max_iters * rows_per_step(cfg, world_size) * block_size


def build_parser(cls, presets, description):
    """One flag per dataclass field. Defaults are SUPPRESSed so parse_args returns only the flags
    the user typed: that is what lets a preset (or a resumed run's config) sit in between."""
    parser = argparse.ArgumentParser(
        description=description, allow_abbrev=False,  # --max_it is a typo, not --max_iters
        epilog=("presets: " + "; ".join(f"{name}: {' '.join(f'{k}={v}' for k, v in p.items())}"
                                        for name, p in presets.items())) if presets else None)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        kw = dict(default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (default: {f.default!r})")
        hint = hints[f.name]
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction  # --annotations / --no-annotations
        else:  # int, float, str, or Optional[...] of one of them
            kw["type"] = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if f.name == "preset":
            kw["choices"] = list(presets)
        elif "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if "const" in f.metadata:  # the flag alone means this value (--compile = --compile on)
            kw.update(nargs="?", const=f.metadata["const"])
        parser.add_argument(f"--{f.name}", **kw)
    return parser


def make_config(cls, presets, explicit, saved=None):
    """defaults < preset < explicit flags; on --resume: the saved run's config < explicit flags.
    With presets, explicit must name one (pretrain.with_default_preset picks it when none is typed)."""
    if saved is not None:
        known = {f.name for f in fields(cls)}
        saved = {k: v for k, v in saved.items() if k in known}
        if isinstance(saved.get("compile"), bool):  # a checkpoint from before --compile auto
            saved["compile"] = "on" if saved["compile"] else "off"
        return cls(**{**saved, **explicit})
    if not presets:  # no presets (SFT): the caller put its derived defaults in explicit
        return cls(**explicit)
    if explicit.get("preset") not in presets:
        raise ValueError(f"preset {explicit.get('preset')!r} is not one of {', '.join(presets)}")
    return cls(**{**presets[explicit["preset"]], **explicit})


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


# The stage of a checkpoint, and the script that continues it
RESUMED_BY = {"base": ("a pretraining run", "pretrain.py"), "sft": ("an SFT run", "sft.py")}


def resume_or_fresh(cfg_cls, presets, explicit, stage, fixed, out_dir_default, checker):
    """The config of this run, and the checkpoint to resume from (None for a fresh run). stage: the
    checkpoints this script continues ("base" or "sft"); fixed: the fields a resume cannot change;
    checker(cfg) exits on a bad value, before any folder is made."""
    start = None
    if explicit.get("resume"):
        if "out_dir" not in explicit:
            raise SystemExit("error: --resume needs the --out_dir of the run to continue")
        try:
            start = load_checkpoint(explicit["out_dir"])
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: cannot resume: {e}")
        if start["stage"] != stage:
            what, script = RESUMED_BY[start["stage"]]
            raise SystemExit(f"error: {explicit['out_dir']} is {what}; resume it with {script} --resume")
        changed = [f"--{k}" for k in fixed if k in explicit and explicit[k] != start["config"].get(k)]
        if changed:
            raise SystemExit(f"error: cannot change {', '.join(changed)} when resuming")
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
def evaluate(raw, rows, cfg, d, dtype):
    """Mean loss over every target of the first eval_iters * batch_size validation rows (fewer
    if the set is smaller), under the run's autocast dtype. Batches are split between processes
    and the sums added up."""
    raw.eval()
    n_rows = min(cfg.eval_iters * cfg.batch_size, rows.n_rows)
    sums = torch.zeros(2, dtype=torch.float64, device=d.device)  # sum of losses, number of targets
    for i, start in enumerate(range(0, n_rows, cfg.batch_size)):
        if i % d.world_size != d.rank:
            continue
        x, y = rows.get(start, min(cfg.batch_size, n_rows - start))[:2]
        n = int((y != -1).sum())
        if n == 0:
            continue
        with autocast(d.device, dtype):
            _, loss = raw(x.to(d.device), y.to(d.device))
        sums += torch.stack([loss.double() * n, torch.tensor(n, dtype=torch.float64, device=d.device)])
    if d.world_size > 1:
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


def append_log(path, record, d):
    """One JSON object per line; rank 0 only."""
    if d.master:
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


def save(path, cfg, raw, optimizer, scaler, step, data_pos, d, ckpt_meta, val_loss=None):
    """Write ckpt.pt atomically (rank 0 only) with everything --resume needs to continue bit for
    bit: the raw model's weights (never the compiled wrapper's, whose keys start with
    "_orig_mod."), the optimizer and loss scaler, the step, the RNG and data_pos."""
    if d.master:
        save_checkpoint(path, dict(
            model_args=asdict(raw.config), model=raw.state_dict(), config=asdict(cfg), step=step,
            optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng=rng_state(d.device),
            data_pos=data_pos, val_loss=val_loss, world_size=d.world_size, **ckpt_meta))


def start_state(cfg, raw, dtype, d, start, log_path):
    """The optimizer and loss scaler of a run, and where it stands (step, data_pos): fresh, or on
    --resume all back from checkpoint `start`, with the RNG, and the log trimmed to its step."""
    optimizer = raw.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), d.device.split(":")[0])
    scaler = grad_scaler(d.device, dtype)  # float16 loss scaling; a pass-through for other dtypes
    if start is None:
        return optimizer, scaler, 0, 0
    optimizer.load_state_dict(start["optimizer"])
    if "scaler" in start:
        scaler.load_state_dict(start["scaler"])
    set_rng_state(start["rng"], d.device)
    if d.master:
        trim_log(log_path, start["step"])
    return optimizer, scaler, start["step"], start["data_pos"]


def diverged(train_loss, grad_norm, step, ckpt_path):
    """The error of a step whose loss or gradient norm is not finite."""
    good = f"the last good checkpoint is {ckpt_path}" if ckpt_path.exists() else "no checkpoint was written yet"
    return (f"error: loss is {train_loss} (gradient norm {grad_norm}) at step {step}; "
            f"stopped, {good}. Try a lower --lr.")


def compiled(model, cfg, d, step):
    """torch.compile(model) when --compile says so (auto: when the steps left pay for the compile
    time, device.compile_pays; its reason printed), else model. Speed trick (plain version: the
    eager model; test_compiled_and_eager_runs_resume_each_other)."""
    compiling, why = compile_pays(d.device, cfg.max_iters - step, rows_per_step(cfg, d.world_size), cfg.compile)
    if d.master:
        print(why)
    return torch.compile(model) if compiling else model


def mean_loss(model, batch):
    """The training loss of a micro-batch (x, y, ...): the model's mean cross-entropy."""
    return model(batch[0], batch[1])[1]

def train(cfg, model, train_rows, val_rows, d, ckpt_meta, start=None, loss_of=mean_loss, val_parts=None):
    """Train `model` (the raw GPT, on d.device) for cfg.max_iters optimizer steps; resume from
    checkpoint `start` if given. Rows: .get(start, n) -> (x, y, ...) and .n_rows; loss_of(model,
    batch) -> the micro-batch's loss per target of y (an SFT extra adds a term to it); validation
    is always the plain mean_loss. val_parts {name: rows}: more validation sets, each logged as
    val_loss_<name> (SFT's: the loss on the pinned values alone). ckpt_meta: the checkpoint keys
    the caller owns. Only rank 0 writes files. Returns the last logged record."""
    out_dir, raw = Path(cfg.out_dir), model  # raw: the plain GPT, the one checkpoints hold
    log_path, ckpt_path = out_dir / "log.jsonl", out_dir / "ckpt.pt"
    if d.master:
        out_dir.mkdir(parents=True, exist_ok=True)
        keep_tokenizer(cfg.data_dir, out_dir)
    dtype = pick_dtype(d.device, cfg.dtype)
    optimizer, scaler, step, data_pos = start_state(cfg, raw, dtype, d, start, log_path)
    model = compiled(model, cfg, d, step)  # what the steps call
    if d.world_size > 1:
        model = DDP(model, device_ids=[d.local_rank] if d.device.startswith("cuda") else None)
    B, A, W = cfg.batch_size, cfg.grad_accum, d.world_size
    row_len = train_rows.get(0, 1)[0].size(1)  # tokens per row (block_size)
    val_parts = val_parts or {}

    def validate():
        record = {"val_loss": round(evaluate(raw, val_rows, cfg, d, dtype), 5)}
        for name, rows in val_parts.items():
            record[f"val_loss_{name}"] = round(evaluate(raw, rows, cfg, d, dtype), 5)
        return record

    last = {}
    if step == 0 and cfg.max_iters > 0:  # the loss before training: the curve's first point
        last = {"step": 0, **validate()}
        append_log(log_path, last, d)
    bar = tqdm(total=cfg.max_iters, initial=step, disable=not d.master, dynamic_ncols=True,
               desc=out_dir.name, unit="step")
    clock, slots = time.time(), 0  # the throughput window: its start, row slots trained since
    with StopFlag() as stop:
        while step < cfg.max_iters:
            # The global batch is rows data_pos .. data_pos + B*A*W - 1; rank r takes its own B*A.
            batches = [train_rows.get(data_pos + (d.rank * A + m) * B, B) for m in range(A)]
            n_targets = [int((batch[1] != -1).sum()) for batch in batches]
            # one all-reduce: every process learns the global target count and whether to stop
            counts = torch.tensor([sum(n_targets), int(stop.requested)], device=d.device)
            if W > 1:
                dist.all_reduce(counts)
            n_global, stopping = counts.tolist()
            if stopping:
                break
            if n_global == 0:
                raise SystemExit(f"error: the batch of step {step} has no target tokens")
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=d.device)
            for m, batch in enumerate(batches):
                batch = [t.to(d.device, non_blocking=True) for t in batch]
                # DDP averages gradients over processes at every backward; only the last micro-step needs to
                with nullcontext() if W == 1 or m == A - 1 else model.no_sync():
                    with autocast(d.device, dtype):
                        loss = loss_of(model, batch)
                    # loss is this micro-batch's mean; weighted by its share of the global batch's
                    # targets (x W, as DDP divides by W), the gradients sum to the global mean's.
                    loss = loss * (n_targets[m] * W / n_global)
                    scaler.scale(loss).backward()
                loss_sum += loss.detach()
            scaler.unscale_(optimizer)  # the clip and the finiteness check see true gradients
            grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip or float("inf"))
            if W > 1:
                dist.all_reduce(loss_sum)
            train_loss, grad_norm = loss_sum.item() / W, grad_norm.item()
            # a non-finite loss stops the run; a non-finite gradient under float16 loss scaling is an
            # overflow the scaler handles (it skips the step and lowers the scale), anywhere else a stop
            if not math.isfinite(train_loss) or not (math.isfinite(grad_norm) or scaler.is_enabled()):
                bar.close()
                raise SystemExit(diverged(train_loss, grad_norm, step, ckpt_path))
            scaler.step(optimizer)  # optimizer.step(), unless float16 gradients overflowed
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step, data_pos, slots = step + 1, data_pos + B * A * W, slots + B * A * W * row_len
            bar.update(1)
            record, done = {"step": step}, step == cfg.max_iters
            if step % cfg.log_interval == 0 or done:  # slots: row slots read so far (padding included:
                record.update(  # the token budget's unit); targets: the tokens this step trained on
                    loss=round(train_loss, 5), lr=lr, grad_norm=round(grad_norm, 4), slots=data_pos * row_len,
                    targets=n_global, epoch=round(data_pos / train_rows.n_rows, 4),
                    slots_per_s=round(slots / (time.time() - clock)))
                bar.set_postfix(loss=f"{train_loss:.3f}", slots_s=f"{record['slots_per_s']:,}")
            if (cfg.eval_interval and step % cfg.eval_interval == 0) or done:  # validate and save
                record.update(validate())
                parts = "".join(f", val loss on {name} {record[f'val_loss_{name}']:.4f}" for name in val_parts)
                bar.write(f"step {step}: train loss {train_loss:.4f}, val loss {record['val_loss']:.4f}{parts}")
                save(ckpt_path, cfg, raw, optimizer, scaler, step, data_pos, d, ckpt_meta, record["val_loss"])
            if len(record) > 1:  # logged, validated or both: the throughput window starts again
                last = record
                append_log(log_path, record, d)
                clock, slots = time.time(), 0
    bar.close()
    if step < cfg.max_iters:  # interrupted
        save(ckpt_path, cfg, raw, optimizer, scaler, step, data_pos, d, ckpt_meta)
        if d.master:
            print(f"interrupted at step {step}: saved {ckpt_path}; continue with --resume --out_dir {cfg.out_dir}")
    if d.master:
        plot_log(log_path, out_dir / "loss.png")
    return last


# -----------------------------------------------------------------------------
# The loss curve


def plot_log(log_path, png_path):
    """Train and validation loss against the step, from log.jsonl (and any val_loss_<part>)."""
    plt = pyplot()
    records = [json.loads(ln) for ln in Path(log_path).read_text().splitlines()] \
        if Path(log_path).exists() else []
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", ms=3)
    for part in sorted({k for r in records for k in r if k.startswith("val_loss_")}):
        points = [(r["step"], r[part]) for r in records if part in r]
        ax.plot(*zip(*points), "s--", label="validation: " + part[len("val_loss_"):].replace("_", " "), ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_yscale("log")  # the tail matters: the first steps fall from ~7.6 to ~2
    ax.set_title(Path(log_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, png_path, dpi=120)  # whole or not at all
    plt.close(fig)

# -----------------------------------------------------------------------------
# The end of a run


def say_next(cfg, d, record, commands):
    """The last lines of a finished run: where its checkpoint is, and what to run next."""
    if d.master and record.get("step") == cfg.max_iters:
        print(f"done: {Path(cfg.out_dir) / 'ckpt.pt'} (log.jsonl and loss.png beside it). Next:")
        for c in commands:
            print(f"  {c}")



def run_distributed(run, cfg, *args):
    """run(cfg, d, *args) inside the process group torchrun asked for (none for one process);
    sft.py's main ends the same way."""
    d = setup_distributed(cfg.device)
    try:
        result = run(cfg, d, *args)
        if d.world_size > 1:
            dist.barrier()  # leave together: rank 0 may still be writing its files
        return result
    except KeyboardInterrupt:
        raise SystemExit("interrupted; nothing saved since the last checkpoint") from None
    finally:
        if d.world_size > 1:
            dist.destroy_process_group()

