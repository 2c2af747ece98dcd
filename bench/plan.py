"""
How long reproduce.py's recipe should take on a device: every job's command with its expected
time, each wave's wall time and the total. A job's time is its work (a training job's tokens, an
evaluation's samples, the data's stories, read from its own command with the scripts' own parsers)
divided by the device's throughput (the table below), plus a fixed start-up.

    python bench/plan.py --preset cpu                    # the cpu preset on this project's 2-core CPU
    python bench/plan.py --preset gpu --device cuda      # the GPU plan, from an assumed MFU (no GPU needed)
    python bench/plan.py --preset gpu --measure          # ... with training tokens/s timed here first

An estimate, not a measurement: what a preset took is in results/<preset>/run.json.
"""

import argparse
import functools
import os
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import eval_diversity  # noqa: E402
import loop  # noqa: E402
import pretrain  # noqa: E402
import reproduce  # noqa: E402
import sft  # noqa: E402
import world  # noqa: E402
from device import add_device_flags, check_device, compile_pays, pick_device  # noqa: E402

# -----------------------------------------------------------------------------
# How long: the expected time of a job is its work divided by the device's throughput.
# Work: a training job's tokens (loop.token_budget), an evaluation's samples, the
# data's stories. Throughput per device type below; a training figure is FLOP/s, turned into tokens/s
# per size with the model's own flops_per_token (6 N + attention), so one figure covers every size.

THROUGHPUT = {
    # Measured on this project's 2-core CPU (bench/README.md, "The planner's figures"): training
    # tokens/s at 4L/128 as a preset's bases run (bf16, one thread per job, two side by side,
    # compiled as --compile auto does), scaled to other sizes by FLOPs per token, which is
    # optimistic below 4L/128 (a small model loses more to overheads); sampling at 2L/96 on one
    # thread, scaled the same way (the least certain figure); data.py's stories, written and all.
    "cpu": dict(device_type="cpu", train_ref=("cpu-4l128", 11000), sample_ref=("2L/96", 23.5), stories_s=7000, startup_s=5,
                compile_s=60, shared=False, source="measured on 2 CPU cores"),
    # NOT MEASURED (bench/README.md: "gpu-quick's estimate, and why that MFU"): an H100 SXM's
    # 989 TFLOP/s dense bf16 peak at an ASSUMED 30% MFU at width 512 and above, falling in
    # proportion to the width below it (mfu_width: there the matmuls run at the memory's speed and
    # the elementwise work grows as C while the FLOPs grow as C^2); no step under step_s (ASSUMED:
    # an eager step's kernel launches plus packing its rows, not overlapped with the GPU's work);
    # ASSUMED 200 samples/s for every size (cached decoding is bound by kernel launches); start-up
    # ASSUMED 10 s a job, 40 s more for torch.compile. Jobs side by side share the one GPU
    # (wave_seconds); data.py runs on one CPU core, at the CPU's rate. Replace with --measure,
    # then with a real run's figures.
    "cuda": dict(device_type="cuda", train_flops=0.30 * 989e12, mfu_width=512, step_s=0.008, samples_s=200, stories_s=7000, startup_s=10,
                 compile_s=40, shared=True,
                 source="estimated, not measured: H100 at an assumed 30% MFU at width 512 (less below), "
                 "a step >= 8 ms"),
    # NOT MEASURED: an Apple M-series GPU in fp32, assumed ~3 TFLOP/s effective.
    "mps": dict(device_type="mps", train_flops=3e12, samples_s=40, stories_s=7000, startup_s=10, compile_s=60, shared=True,
                source="estimated, not measured: Apple GPU at an assumed 3 TFLOP/s"),
}


@functools.cache
def flops_per_token(n_layer, n_embd, n_head, block_size=512, vocab_size=2048):
    """model.GPT's own count (6 x every parameter, the tied embedding included, + attention), built
    on the meta device: no memory, no time."""
    from model import GPT, GPTConfig
    with torch.device("meta"):
        return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                             n_embd=n_embd)).flops_per_token()


def model_flops(size):
    c = pretrain.PRESETS[size]
    return flops_per_token(c["n_layer"], c["n_embd"], c["n_head"], c["block_size"])


def train_run(job):
    """(size, optimizer steps, rows per step, tokens (loop.token_budget), --compile) of a pretrain.py
    or sft.py job, read from its command."""
    script, args = Path(job.cmd[1]).name, job.cmd[2:]
    if script == "pretrain.py":
        explicit = vars(loop.build_parser(pretrain.TrainConfig, pretrain.PRESETS, "").parse_args(args))
        c = loop.make_config(pretrain.TrainConfig, pretrain.PRESETS, explicit)
        return c.preset, c.max_iters, loop.rows_per_step(c), loop.token_budget(c, c.block_size), c.compile
    explicit = vars(loop.build_parser(sft.SFTConfig, {}, "").parse_args(args))
    size = Path(explicit["init_from"]).parent.name  # runs/<size>/base_*
    base = loop.make_config(pretrain.TrainConfig, pretrain.PRESETS, {"preset": size})
    c = loop.make_config(sft.SFTConfig, {}, {**sft.sft_defaults(vars(base)), **explicit})
    # rows are known only once packed: ~0.48 per example (20,000 anchored examples, 9,600 rows of 512)
    c.max_iters = sft.sft_steps(c, SFT_ROWS_PER_EXAMPLE * (c.n_sft_examples or data.DEFAULTS["n_sft"]) * (1 + c.replay))
    return size, c.max_iters, loop.rows_per_step(c), loop.token_budget(c, base.block_size), c.compile


SFT_ROWS_PER_EXAMPLE = 0.48


def compiles(job, device_type):
    """Whether a job compiles its model: --compile as its command gives it, by the rule the
    scripts themselves apply at start-up (device.compile_pays, from the run's steps and rows)."""
    if Path(job.cmd[1]).name not in ("pretrain.py", "sft.py"):
        return False
    _, steps, rows, _, requested = train_run(job)
    if requested == "on":  # asked for: it compiles (a run on a CPU without a compiler would stop instead)
        return True
    return compile_pays(device_type, steps, rows, requested)[0]


def job_work(job):
    """(work_type, size, amount) of a job: ("train", size, tokens), ("sample", size, samples) or
    ("data", None, stories), read from the job's own command with the scripts' own parsers."""
    script, args = Path(job.cmd[1]).name, job.cmd[2:]
    if script == "data.py":
        n = int(args[args.index("--n_stories") + 1]) if "--n_stories" in args else data.DEFAULTS["n_stories"]
        return "data", None, n
    if script in ("pretrain.py", "sft.py"):
        size, _, _, tokens, _ = train_run(job)
        return "train", size, tokens
    assert script == "eval_diversity.py", script
    specs = args[args.index("--ckpts") + 1:args.index("--num_samples")]
    k, n_prompts = int(args[args.index("--num_samples") + 1]), len(world.EVAL_PROMPTS)
    arms = [eval_diversity.parse_arm(spec, [1.0]) for spec in specs]
    # a base model is sampled once without a prompt; every other row once per evaluation prompt
    rows = sum(len(a["paths"]) * len(a["temperatures"]) * (1 if a["name"].startswith("base") else n_prompts)
               for a in arms)
    return "sample", Path(arms[0]["path"]).parent.name, k * rows


def samples_per_s(size, throughput):
    if "samples_s" in throughput:
        return throughput["samples_s"]
    ref, rate = throughput["sample_ref"]  # scaled from a measured size by FLOPs per token
    layers, width = (int(x) for x in ref.replace("L", "").split("/"))
    return rate * flops_per_token(layers, width, 2) / model_flops(size)


def tokens_per_s(size, throughput):
    """Training tokens/s of a size: measured by --measure if it was, else the table's FLOP/s."""
    if size in throughput.get("measured_tokens_s", {}):
        return throughput["measured_tokens_s"][size]
    if "train_ref" in throughput:  # a measured size, scaled by FLOPs per token
        ref, rate = throughput["train_ref"]
        return rate * model_flops(ref) / model_flops(size)
    width = pretrain.PRESETS[size]["n_embd"]  # on a GPU the MFU falls in proportion below mfu_width
    return throughput["train_flops"] * min(1.0, width / throughput.get("mfu_width", width)) / model_flops(size)


def job_seconds(job, throughput):
    """(work, start-up) seconds of one job: its work / the throughput, and the fixed cost of
    starting it (imports, loading, and torch.compile's first step when the command compiles)."""
    work_type, size, amount = job_work(job)
    rate = {"data": lambda: throughput["stories_s"], "train": lambda: tokens_per_s(size, throughput),
            "sample": lambda: samples_per_s(size, throughput)}[work_type]()
    work = amount / rate
    if work_type == "train" and "step_s" in throughput:  # no step is faster than the launches and the rows
        work = max(work, train_run(job)[1] * throughput["step_s"])
    return work, throughput["startup_s"] + throughput["compile_s"] * compiles(job, throughput["device_type"])


def wave_seconds(parts, jobs, shared):
    """Wall time of a wave of (work, start-up) pairs: jobs start in order on the first free of
    `jobs` workers. On one accelerator (`shared`) the jobs side by side share it: their start-ups
    overlap, their work does not, so the wave takes at least the sum of the work."""
    workers = [0.0] * max(1, jobs)
    for work, startup in parts:
        workers[workers.index(min(workers))] += work + startup
    floor = sum(w for w, _ in parts) + min(s for _, s in parts) if shared else 0
    return max(max(workers), floor)


def print_plan(waves, throughput, jobs):
    """Every job's command with its expected time; each wave's wall time and the total."""
    total = 0.0
    print(f"# throughput: {throughput['source']}")
    for i, wave in enumerate(waves):
        parts = [job_seconds(job, throughput) for job in wave]
        wall = wave_seconds(parts, jobs, throughput["shared"])
        total += wall
        print(f"# wave {i}: {len(wave)} job(s), {jobs} at a time, ~{wall / 60:.1f} min")
        for job, (work, startup) in zip(wave, parts):
            work_type, size, amount = job_work(job)
            unit = {"train": "tokens", "sample": "samples", "data": "stories"}[work_type]
            what = f"{amount / 1e6:.1f}M {unit}" if amount >= 1e5 else f"{amount:,} {unit}"
            print(f"#   ~{work + startup:4.0f} s  {job.name} ({what})")
            print(shlex.join(["python", *job.cmd[1:]]))
    print(f"# expected total: ~{total / 60:.0f} min ({throughput['source']})")
    return total


def measure_tokens_per_s(size, device, dtype="auto", compile=False, steps=6):
    """Time a few real training steps (AdamW, autocast, random tokens) of a size on this device:
    the tokens/s that --measure puts in place of the table's estimate. The first two steps warm up."""
    from device import autocast, pick_dtype
    from model import GPT, GPTConfig
    c = pretrain.PRESETS[size]
    dt = pick_dtype(device, dtype)
    model = GPT(GPTConfig(vocab_size=2048, **{k: c[k] for k in ("block_size", "n_layer", "n_head", "n_embd")})).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    step = torch.compile(model) if compile else model
    x = torch.randint(0, 2048, (c["batch_size"], c["block_size"]), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for i in range(steps):
        if i == 2:
            sync()
            t0 = time.perf_counter()
        with autocast(device, dt):
            _, loss = step(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    return (steps - 2) * x.numel() / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(reproduce.PRESETS), default="cpu")
    p.add_argument("--runs", default="", help="checkpoints folder, as reproduce.py's (default: runs/<preset>)")
    p.add_argument("--skip_study", action="store_true", help="leave out the controlled study")
    p.add_argument("--jobs", type=int, default=None, help="jobs side by side (default: the preset's)")
    add_device_flags(p, "passed to the commands, as reproduce.py does; --device also picks the throughput "
                     "table, --dtype is what --measure times")
    p.add_argument("--measure", action="store_true",
                   help="time a few training steps of each size on this device first (seconds per size) "
                        "and use that instead of the table's figure")
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs {args.jobs}: need at least 1")
    cfg = reproduce.PRESETS[args.preset]
    # a plan for another machine (--device cuda on a laptop) needs no GPU here, unless measured
    device_type = (pick_device("auto") if args.device == "auto" else args.device).split(":")[0]
    if device_type not in THROUGHPUT:
        p.error(f"--device {args.device}: no throughput figures for {device_type!r}; use cpu, cuda or mps")
    throughput = dict(THROUGHPUT[device_type])
    if args.measure:
        device = check_device(args.device)
        throughput["measured_tokens_s"] = {size: measure_tokens_per_s(size, device, args.dtype,
                                                                      "--compile" in cfg["extra_pretrain"])
                                           for size in cfg["sizes"]}
        throughput["source"] += f"; training tokens/s measured now on {device}: " + ", ".join(
            f"{s} {t:,.0f}" for s, t in throughput["measured_tokens_s"].items())
    waves = reproduce.recipe(cfg, args.runs or f"runs/{args.preset}", args.skip_study, args.device, args.dtype)
    print_plan(waves, throughput, args.jobs or cfg["jobs"])


if __name__ == "__main__":
    main()
