"""
The whole experiment of the paper, at toy scale, as one readable recipe.

    python reproduce.py --preset cpu-quick  # one size, the direction, about 12 minutes on 2 CPU cores
    python reproduce.py --preset cpu      # 3 model sizes, 3 SFT seeds, at most 60 minutes on 2 CPU cores
    python reproduce.py --preset gpu-quick  # 3 sizes in one command: ~5 GPU minutes on one H100 (estimated)
    python reproduce.py --preset gpu      # the 4-size ladder: ~25 min on one H100 (estimated), hours on smaller GPUs
    python reproduce.py --preset smoke    # the same recipe in a few minutes (a check, not a result)

    python reproduce.py --preset cpu --plan   # print every stage's command and expected time, and stop
    python reproduce.py --preset gpu --plan --device cuda           # the GPU plan, from an assumed MFU
    python reproduce.py --preset gpu --plan --measure               # ... with tokens/s timed here
    python reproduce.py --preset gpu --device cuda:1 --dtype float16  # every stage on that GPU, in fp16

Every stage is an ordinary command a student could type (printed as it runs): make the data,
pretrain a plain and an annotated base per size, post-train them (standard SFT, anchored SFT and
the ablations), sample and measure diversity, then draw the scaling and controlled-study plots.
A stage whose output already exists with the same command is skipped, so a stopped run continues
where it stopped (the command is the stage's "config hash"); the stages of one wave are
independent, so --jobs 2 runs two at a time.

Results land in --out (default results/<preset>): per size an eval folder (summary.json/md and
plots from eval_diversity.py), the controlled study, scaling.png, results.md and run.json (the
command, commit, machine and wall time of every stage).
"""

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

import data
import eval_diversity
import loop
import pretrain
import sft
import world
from checkpoint import check_out_dir
from device import check_device, pick_device
from world import DEFAULT_NARROWNESS  # the narrowness of data.py's default SFT files (the main arms)

# -----------------------------------------------------------------------------
# Presets: plain data. sizes are pretrain.py presets; iters are optimizer steps; the ablations
# run at ablation_sizes (default: the largest size); jobs = stages run side by side; compile_sizes:
# pretraining with --compile at these sizes.

# sft_iters: None = sft.py's default schedule (4% of the base's tokens at the base's final LR);
# sft_seeds: the headline arms (sft, anchored) are post-trained once per seed from the same bases;
# replay: also run the anchored_replay extra (sft.py --replay 1) at every size; sft_seed_sizes: the
# sizes post-trained once per seed (default: all), the others with the first seed only.
# Times below are estimates from fp32 throughput measured on this project's 2-core CPU with other
# work beside it (one thread per stage): 4l48 ~6k, 4l64 ~5k, 4l80 ~4.3k tokens/s per thread.

PRESETS = {
    "smoke": dict(
        data_flags=["--n_stories", "20000"], sizes=["cpu-4l64"], pretrain_iters={"cpu-4l64": 60}, sft_iters=30,
        sft_seeds=[0], replay=True, num_samples=16, temperatures=[0.6, 1.2], study_narrowness=[0.5, 0.95],
        study_size="cpu-4l64", extra_pretrain=["--batch_size", "4"], extra_sft=["--batch_size", "4"],
        extra_eval=[], jobs=1),
    # the direction in ~15 minutes: the middle size pretrained 2,400 steps (both bases side by side,
    # ~8 min in bf16), the two paper arms and the replay extra, one seed, T = 1, no ablations, no study
    "cpu-quick": dict(
        data_flags=[], sizes=["cpu-4l96"], pretrain_iters={"cpu-4l96": 2400}, sft_iters=None, sft_seeds=[0],
        replay=True, num_samples=100, temperatures=[], study_narrowness=[], study_size="cpu-4l96", ablation_sizes=[],
        extra_pretrain=[], extra_sft=[], extra_eval=["--threads", "1"], jobs=2),
    # three sizes (the CPU ladder in pretrain.py), 3 SFT seeds of the headline arms, the ablations at
    # the largest size, the controlled study at the middle one. Estimate in bf16: pretraining ~36 min
    # wall (two bases side by side), SFT ~8, evaluation ~5, data 0.5: under an hour on 2 cores.
    "cpu": dict(
        data_flags=[], sizes=["cpu-4l64", "cpu-4l96", "cpu-4l128"], pretrain_iters={}, sft_iters=None,
        sft_seeds=[0, 1, 2], replay=True, num_samples=100, temperatures=[0.6, 1.2],
        study_narrowness=[0.0, 0.5, 0.95], study_size="cpu-4l96", ablation_sizes=["cpu-4l128"],
        extra_pretrain=[], extra_sft=[], extra_eval=["--threads", "1"], jobs=2),
    # the earlier CPU sizes (cpu-m pretrained 2,800 steps: 5.5 tokens per parameter)
    "cpu-long": dict(
        data_flags=[], sizes=["cpu-m"], pretrain_iters={"cpu-m": 2800}, sft_iters=None, sft_seeds=[0],
        replay=False, num_samples=100, temperatures=[0.6, 0.8, 1.2], study_narrowness=[], study_size="cpu-m",
        ablation_sizes=[], extra_pretrain=[], extra_sft=["--batch_size", "4"], extra_eval=["--threads", "1"],
        jobs=2),
    # the ladder in one command on one H100 (bench/gpu_first_light.sh runs it in its 9 minutes):
    # 1.05M / 3.05M / 8.03M parameters, each at >= 20 tokens per parameter, both bases, the paper's
    # arms with 3 SFT seeds at the top rung (one below it), the ablations at the top rung, K = 100,
    # no sweep or study. `--plan --device cuda`: ~5 min of GPU work at the assumed MFU (THROUGHPUT:
    # 30% at width 512, in proportion below: 19% for the top rung's 320; a step >= 8 ms). The data,
    # 500k stories (~95M annotated tokens: the top rung sees it ~1.7 times), is ~1.5 min of one CPU
    # core (97 CPU-s measured here, bench/README.md) before the GPU starts; the first-light script
    # makes it in the background while the GPU runs the bench, so nothing waits on it there.
    "gpu-quick": dict(
        data_flags=["--n_stories", "500000"], sizes=["gpu-4l128", "gpu-q-6l192", "gpu-q-6l320"], pretrain_iters={},
        compile_sizes=["gpu-q-6l320"], sft_iters=None, sft_seeds=[0, 1, 2], sft_seed_sizes=["gpu-q-6l320"],
        replay=False, num_samples=100, temperatures=[], study_narrowness=[], study_size="gpu-q-6l320",
        ablation_sizes=["gpu-q-6l320"], extra_pretrain=[], extra_sft=[], extra_eval=[], jobs=2),
    # the 4-size ladder in at most 25 minutes on one H100 (`--plan --device cuda` prints the
    # estimate, ~25 min at the assumed MFU), each rung at >= 20 tokens per parameter (pretrain.py).
    # 1M stories: ~190M annotated tokens, so the top rung sees its data ~2.8 times (repeating up to
    # ~4 epochs costs about as little as fresh data: Muennighoff et al. 2023); data.py is one process,
    # ~2.5 min. Two stages side by side share the GPU: small SFT and evaluation stages leave it idle
    # while starting. torch.compile only where it pays for its ~40 s: the two largest rungs' bases.
    # Checkpoints every eval_interval steps (about a minute each), so `timeout 10m python
    # reproduce.py --preset gpu`, repeated, gets there in chunks.
    "gpu": dict(
        data_flags=["--n_stories", "1000000"], sizes=["gpu-4l128", "gpu-6l256", "gpu-6l384", "gpu-8l512"],
        pretrain_iters={},  # the presets' own budgets (>= 20 tokens per parameter, see pretrain.py)
        compile_sizes=["gpu-6l384", "gpu-8l512"],
        sft_iters=None, sft_seeds=[0, 1, 2], replay=False, num_samples=128, temperatures=[0.6, 0.8, 1.2],
        study_narrowness=[0.0, 0.5, 0.8, 0.95], study_size="gpu-6l384", ablation_sizes=["gpu-8l512"],
        extra_pretrain=[], extra_sft=[], extra_eval=[], jobs=2),
}

PY = sys.executable


# -----------------------------------------------------------------------------
# Stages: a command, the folder it fills, and a marker file that says it finished.

@dataclass
class Stage:
    name: str       # what the progress lines and run.json call it
    cmd: list       # an ordinary command line (printed, so a student can type it)
    out_dir: Path   # the folder the command fills; its .stage.json marks the stage done


STOPPING = threading.Event()  # set by Ctrl-C: no stage starts, and none that returns is marked done


def stage_hash(cmd):
    return hashlib.sha256(" ".join(cmd).encode()).hexdigest()[:16]


def run_stage(stage, timings, threads=None):
    """Run a stage unless its marker says this exact command already finished there.

    A stage stopped half way (marker written at start, no "seconds" yet) continues from its last
    checkpoint with --resume when it is a training stage; any other unfinished or stale stage starts
    over. With `threads` set, the stage runs with that many CPU threads and writes its output to
    <out_dir>/stage.log (stages running side by side would garble one terminal)."""
    if STOPPING.is_set():  # Ctrl-C: start nothing new
        return
    out_dir, cmd = Path(stage.out_dir), stage.cmd
    marker = out_dir / ".stage.json"
    h = stage_hash(cmd)
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get("hash") == h and "seconds" in done:
        print(f"[skip] {stage.name}: done already ({out_dir})")
        timings[stage.name] = {"seconds": done["seconds"], "skipped": True}
        return
    script = Path(cmd[1]).name
    if done.get("hash") == h and script in ("pretrain.py", "sft.py") and (out_dir / "ckpt.pt").exists():
        cmd = [PY, cmd[1], "--resume", "--out_dir", str(out_dir)]  # the checkpoint holds the config
    elif out_dir.exists() and script != "data.py":  # data.py checks its own folder
        shutil.rmtree(out_dir)  # another command's (or a broken) output: start clean
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"hash": h, "cmd": shlex.join(stage.cmd)}))
    print(f"\n[run] {stage.name}\n  $ {shlex.join(['python', *cmd[1:]])}", flush=True)
    t0 = time.time()
    env = os.environ if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(out_dir / "stage.log", "w") if threads else contextlib.nullcontext() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if log else None, env=env)
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:  # the stage got the Ctrl-C too: let it save its checkpoint
            STOPPING.set()
            proc.wait()
            raise
    if STOPPING.is_set():  # stopped by Ctrl-C while side by side: unfinished, whatever it returned
        return
    if returncode:
        raise SystemExit(f"error: stage '{stage.name}' failed" + (f"; see {out_dir / 'stage.log'}" if log else ""))
    seconds = round(time.time() - t0, 1)
    timings[stage.name] = {"seconds": seconds}
    marker.write_text(json.dumps({"hash": h, "cmd": shlex.join(stage.cmd), "seconds": seconds}))
    if threads is not None:
        print(f"[done] {stage.name} in {seconds:.0f} s", flush=True)


def run_stages(stages, timings, jobs=1):
    """Run independent stages, `jobs` at a time, in the order given (put the longest first). On a
    2-core CPU this helps single-threaded evaluation about 2x and training little (two cpu-m models
    side by side on one thread each: 2 x 2.33 steps/s, against 4.2 for one on two threads)."""
    if jobs <= 1:
        for stage in stages:
            run_stage(stage, timings)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        try:
            for future in [pool.submit(run_stage, stage, timings, threads) for stage in stages]:
                future.result()  # re-raises the first failure
        except KeyboardInterrupt:
            # Ctrl-C reached the running stages too; they save a checkpoint and exit. Stages that
            # return now are not marked done (they resume next time), queued ones do not start.
            STOPPING.set()
            raise


def pretrain_stage(size, annotations, runs, cfg, data_dir):
    tag = "ann" if annotations else "plain"
    out_dir = runs / size / f"base_{tag}"
    cmd = [PY, "pretrain.py", "--preset", size, "--data_dir", str(data_dir), "--out_dir", str(out_dir),
           "--annotations" if annotations else "--no-annotations", *cfg["extra_pretrain"]]
    if size in cfg["pretrain_iters"]:
        cmd += ["--max_iters", str(cfg["pretrain_iters"][size])]
    if size in cfg.get("compile_sizes", ()):
        cmd.append("--compile")
    return Stage(f"pretrain {size} {tag}", cmd, out_dir)


def sft_stage(name, base_dir, mode, out_dir, cfg, extra=()):
    iters = [] if cfg.get("sft_iters") is None else ["--max_iters", str(cfg["sft_iters"])]
    cmd = [PY, "sft.py", "--init_from", str(base_dir), "--mode", mode, "--out_dir", str(out_dir),
           *iters, *cfg["extra_sft"], *extra]
    return Stage(name, cmd, out_dir)


def arm_specs(arms):
    """{arm: [checkpoint spec per seed]} -> eval_diversity.py --ckpts arguments: the checkpoints of
    an arm's seeds comma-separated (eval_diversity reports every headline number per seed)."""
    return [f"{name}={','.join(str(s) for s in seeds)}" for name, seeds in arms.items()]


def eval_stage(name, arms, out_dir, cfg, extra=()):
    """arms: {arm name: [checkpoint spec, one per SFT seed]} (post_training)."""
    cmd = [PY, "eval_diversity.py", "--ckpts", *arm_specs(arms),
           "--num_samples", str(cfg["num_samples"]), "--out", str(out_dir), "--base_arm", "base",
           *(["--annotated_base_arm", "base_annotated"] if "base_annotated" in arms else []),
           *cfg["extra_eval"], *extra]
    return Stage(name, cmd, out_dir)


# -----------------------------------------------------------------------------
# The recipe

def post_training(size, runs, cfg, ablations):
    """The SFT stages at one size, and the arms its evaluation samples: {arm name: [checkpoint
    spec, one per seed]}. The one place the evaluation's arm list is made."""
    d = runs / size
    plain, ann = d / "base_plain", d / "base_ann"
    stages, arms = [], {"base": [plain], "base_annotated": [ann], "sft": [], "anchored": []}
    # the paper's two arms, post-trained once per seed from the same bases (seed: the SFT data
    # order), sampled at T = 1: the headline numbers are their medians over seeds
    seeds = cfg.get("sft_seeds", [0]) if size in cfg.get("sft_seed_sizes", [size]) else cfg.get("sft_seeds", [0])[:1]
    for seed in seeds:
        tag = "" if seed == seeds[0] else f"_seed{seed}"
        std, anc = d / f"sft_standard{tag}", d / f"sft_anchored{tag}"
        stages += [sft_stage(f"sft {size} standard seed {seed}", plain, "standard", std, cfg, ["--seed", str(seed)]),
                   sft_stage(f"sft {size} anchored seed {seed}", ann, "anchored", anc, cfg, ["--seed", str(seed)])]
        arms["sft"].append(std)
        arms["anchored"].append(anc)
    std0, anc0 = arms["sft"][0], arms["anchored"][0]
    if cfg["temperatures"]:
        # the first seed swept over the story temperature. The anchored model samples its annotation
        # at T = 1 whatever the story temperature, so diversity need not cost it form.
        sweep = ":temperature=" + ",".join(str(t) for t in cfg["temperatures"])
        arms.update(sft_sweep=[f"{std0}{sweep}"], anchored_sweep=[f"{anc0}{sweep}"])
    # the upper bound of carrying the prompt's constraints: the sampler pins them in the annotation
    arms["anchored_pinned"] = [f"{anc0}:ann=prompt"]
    if cfg.get("replay"):
        # an extra beside the paper: annotation replay from the prior (sft.py --replay)
        stages.append(sft_stage(f"sft {size} anchored_replay", ann, "anchored", d / "sft_anchored_replay", cfg,
                                ["--replay", "1", "--seed", str(seeds[0])]))
        arms["anchored_replay"] = [d / "sft_anchored_replay"]
    if ablations:
        # anchoring without annotated pretraining; the annotation tokens trained on (two ways)
        stages += [sft_stage(f"sft {size} anchored on plain base", plain, "anchored", d / "sft_anchored_plainbase",
                             cfg, extra=["--allow_plain_base", "--seed", str(seeds[0])]),
                   sft_stage(f"sft {size} anchored_unmasked", ann, "anchored_unmasked", d / "sft_unmasked", cfg,
                             ["--seed", str(seeds[0])]),
                   sft_stage(f"sft {size} anchored_strict", ann, "anchored_strict", d / "sft_strict", cfg,
                             ["--seed", str(seeds[0])])]
        arms.update({"anchored_no_annotation": [f"{d / 'sft_anchored'}:anchor=off"],  # no new training
                     "anchored_plain_base": [d / "sft_anchored_plainbase"],
                     "anchored_unmasked": [d / "sft_unmasked"],
                     "anchored_strict": [d / "sft_strict"]})
    return stages, arms


def controlled_study(runs, cfg):
    """SFT data of several narrowness settings: does the output entropy follow the data? The main
    arms were trained on the default narrowness already, so only the other settings are new."""
    size = cfg["study_size"]
    d = runs / size / "study"
    plain, ann = runs / size / "base_plain", runs / size / "base_ann"
    sft_stages, eval_stages = [], []
    for nu in cfg["study_narrowness"]:
        if nu == DEFAULT_NARROWNESS:
            continue
        flag = ["--narrowness", str(nu)]
        std = sft_stage(f"study {size} standard nu={nu}", plain, "standard", d / f"standard_nu{nu}", cfg, flag)
        anc = sft_stage(f"study {size} anchored nu={nu}", ann, "anchored", d / f"anchored_nu{nu}", cfg, flag)
        sft_stages += [std, anc]
        eval_stages.append(eval_stage(f"eval study nu={nu}", {"base": [plain], "sft": [std.out_dir], "anchored": [anc.out_dir]},
                                      d / f"eval_nu{nu}", cfg, extra=flag))
    return sft_stages, eval_stages


def read_summary(stage):
    return json.loads((Path(stage.out_dir) / "summary.json").read_text())


# -----------------------------------------------------------------------------
# Reading the summaries back: the numbers the plots and results.md need

def row_metric(summary, row, kind, key):
    for r in summary["rows"]:
        if r["row"] == row:
            return (r.get("by_kind") or {}).get(kind, {}).get(key)
    return None


def sft_data_entropy(summary, kind="open"):
    """Exact mean free-field entropy of the SFT data for the prompts of this kind."""
    vals = [p["D_sft_data"] for p in summary["exact"]["by_prompt"] if p["kind"] == kind]
    return sum(vals) / len(vals)


def study_D(summary, which):
    """D on open prompts of the summary's SFT, anchored or base row (at T = 1 when swept)."""
    derived = summary["derived"]
    return derived["open"]["D"][derived[which]]


def plot_scaling(size_results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = [s for s, _ in size_results]
    rows = ["base", "base_annotated", "sft", "anchored", "anchored_replay", "anchored_no_annotation", "anchored_plain_base",
            "anchored_unmasked", "anchored_strict", "pretrain_data", "sft_data"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for row in rows:
        # "sft" and "anchored" are swept over temperatures: their T = 1 rows are derived["sft_row"] etc.
        ys = [summary["derived"]["open"]["D"].get(summary["derived"].get(f"{row}_row", row), math.nan)
              for _, summary in size_results]  # nan: an arm not run at this size (a gap in the line)
        axes[0].plot(sizes, ys, marker="o", label=row, linestyle="--" if row.endswith("_data") else "-")
    axes[0].set_ylabel("semantic diversity D (bits, open prompts)")
    axes[0].legend(fontsize=7)
    for ax, key in ((axes[1], "collapse_ratio"), (axes[2], "gap_closed")):
        for variant, marker in ((key, "o"), (f"{key}_known", "s")):  # median over seeds, open prompts
            ys = [seed_stat(summary, variant)[0] for _, summary in size_results]
            ax.plot(sizes, [math.nan if y is None else y for y in ys], marker=marker,
                    label="unknown labels dropped" if variant.endswith("_known") else "unknown as a label")
        ax.set_ylabel(key.replace("_", " ") + " (median over seeds)")
        ax.legend()
    for ax in axes:
        ax.set_xlabel("model size (preset)")
        ax.grid(alpha=0.3)
    fig.suptitle("Diversity vs model size (python reproduce.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_study(study, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [sft_data_entropy(s) for _, s in study]
    for row, marker in (("sft_row", "o"), ("anchored_row", "s"), ("base_row", "^")):
        ax.plot(xs, [study_D(s, row) for _, s in study], marker=marker, label=row[:-4])
    lo, hi = min(xs), max(xs)
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", label="output = data")
    ax.set_xlabel("SFT data entropy (bits, exact, open prompts)")
    ax.set_ylabel("output diversity D (bits)")
    ax.set_title("Controlled study: narrower SFT data")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def num(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def seed_stat(summary, key):
    """(median over seeds, ci95 or None) of a headline statistic of one evaluation (open prompts)."""
    o = summary.get("over_seeds", {}).get(key) or {}
    return o.get("median"), o.get("ci95")


def with_ci(summary, key):
    med, ci = seed_stat(summary, key)
    return num(med) + (f" ({num(ci[0])}, {num(ci[1])})" if ci else "")


def results_markdown(size_results, study, cfg, command):
    n_seeds = len(cfg.get("sft_seeds", [0]))
    lines = [f"Made by `{command}`.", "",
             f"### Headline (open prompts, T = 1; median over {n_seeds} SFT seed(s), 95% interval over seeds "
             "and samples)", "",
             "| size | D base | D SFT | D anchored | gap closed | gap closed, unknown dropped | collapse ratio | "
             "quality SFT / anchored | instr. following SFT / anchored | gate min (annotated base) | prior drift max |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size, s in size_results:
        o = s["derived"]["open"]
        sft_row, anc_row = s["derived"]["sft_row"], s["derived"]["anchored_row"]
        pair = lambda a, b: f"{num(seed_stat(s, a)[0])} / {num(seed_stat(s, b)[0])}"
        lines.append(f"| {size} | {num(o['D'].get('base'))} | {num(o['D'].get(sft_row))} | {num(o['D'].get(anc_row))} | "
                     f"{with_ci(s, 'gap_closed')} | {with_ci(s, 'gap_closed_known')} | "
                     f"{with_ci(s, 'collapse_ratio')} | {pair('quality_sft', 'quality_anchored')} | "
                     f"{pair('instruction_sft', 'instruction_anchored')} | {num(seed_stat(s, 'base_agreement_min')[0])} | "
                     f"{num(seed_stat(s, 'prior_drift_max')[0])} |")
    lines += ["", "D columns: the first seed's rows. Per-seed values: each size's headline.json.", "",
              "### Every row at the largest size (open prompts, first seed)", "",
              "| row | D | D, unknown dropped | collapse vs base |", "|---|---|---|---|"]
    size, s = size_results[-1]
    o = s["derived"]["open"]
    for row, dv in o["D"].items():
        col = o["collapse"].get(row, {}).get("value")
        lines.append(f"| {row} | {num(dv)} | {num(o.get('D_known', {}).get(row))} | {num(col)} |")
    if study:
        lines += ["", f"### Controlled study ({cfg['study_size']}, open prompts)", "",
                  "| narrowness | SFT data entropy (exact) | D SFT | D anchored |", "|---|---|---|---|"]
        for nu, s in study:
            lines.append(f"| {nu} | {num(sft_data_entropy(s))} | {num(study_D(s, 'sft_row'))} | "
                         f"{num(study_D(s, 'anchored_row'))} |")
    return "\n".join(lines) + "\n"


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def with_device(cfg, device="auto", dtype="auto"):
    """The preset with --device/--dtype added to every training and evaluation command. "auto" is
    every script's default, so it adds nothing (and a run started before these flags keeps its
    stage hashes)."""
    flags = [*(["--device", device] if device != "auto" else []), *(["--dtype", dtype] if dtype != "auto" else [])]
    return {**cfg, **{k: [*cfg[k], *flags] for k in ("extra_pretrain", "extra_sft", "extra_eval")}}


def plan(cfg, runs, skip_study=False, device="auto", dtype="auto"):
    """The recipe as four waves of stages. Each wave needs the one before it; the stages of one
    wave do not need each other, so they may run side by side."""
    cfg = with_device(cfg, device, dtype)
    runs, sizes = Path(runs), cfg["sizes"]
    data_dir = runs / "data"
    data_wave = [Stage("data", [PY, "data.py", "--out_dir", str(data_dir), *cfg["data_flags"]], data_dir)]

    # 1. pretraining: a plain and an annotated base per size (largest first: the longest stages)
    pretraining = [pretrain_stage(size, annotations, runs, cfg, data_dir)
                   for size in reversed(sizes) for annotations in (False, True)]

    # 2. post-training: standard and anchored SFT per size, the ablations where the preset asks
    #    (the largest size by default), and the controlled study's other narrowness settings
    ablation_sizes = cfg.get("ablation_sizes", sizes[-1:])
    post, arms = [], {}
    for size in reversed(sizes):
        stages, arms[size] = post_training(size, runs, cfg, ablations=size in ablation_sizes)
        post += stages
    study_sft, study_eval = ([], []) if skip_study else controlled_study(runs, cfg)

    # 3. evaluation: sample every arm K times per prompt, annotate, measure
    evaluation = [eval_stage(f"eval {size}", arms[size], runs / size / "eval", cfg) for size in reversed(sizes)]
    return [data_wave, pretraining, post + study_sft, evaluation + study_eval]


# -----------------------------------------------------------------------------
# How long: the expected time of a stage is its work divided by the device's throughput.
# Work: a training stage's tokens (steps x batch x grad_accum x block), an evaluation's samples, the
# data's stories. Throughput per device kind below; a training figure is FLOP/s, turned into tokens/s
# per size with the model's own flops_per_token (6 N + attention), so one figure covers every size.

THROUGHPUT = {
    # Measured on this project's 2-core CPU (bf16 autocast, one thread per stage, two stages side by
    # side, a cpu-preset run of 2026-11-21): ~9.2k tokens/s at 4L/128, scaled to other sizes by FLOPs
    # per token. That overstates small models: 4L/96 ran ~10.2k where the FLOP ratio says ~14k (a
    # small model loses more to overheads), so CPU estimates below 4L/128 are optimistic. Sampling:
    # 23.5 samples/s of ~200 tokens at 2L/96 on one thread (bench/README.md), scaled the same way
    # (the least certain figure). data.py: 100k stories in 14.4 s, tokenizing and writing included.
    "cpu": dict(train_ref=("cpu-4l128", 9200), sample_ref=("2L/96", 23.5), stories_s=7000, startup_s=5,
                compile_s=60, shared=False, source="measured on 2 CPU cores"),
    # NOT MEASURED: an H100 SXM's 989 TFLOP/s dense bf16 peak at an ASSUMED 30% MFU at width 512 and
    # above (torch.compile, batch 64 x 512; small models fall short of big ones' 40-50%), and in
    # proportion to the width below it (mfu_width): 22.5% at 384, 15% at 256, 7.5% at 128. Why in
    # proportion: below ~512 a (tokens x C) @ (C x 4C) matmul does 0.8 C FLOPs per byte it moves,
    # under the H100's ~300 FLOP/byte balance point, so it runs at the memory's speed, and the
    # elementwise work per token (norms, RoPE, activations) grows as C while the FLOPs grow as C^2.
    # And a step takes at least step_s, whatever its FLOPs: an ASSUMED ~1,000 kernel launches of
    # ~5 us each (an eager step) plus 1.7 ms to pack 64 rows (TokenRows.get, measured on this CPU),
    # which do not overlap the GPU's work (the loop reads the loss and the gradient norm every
    # step). Sampling: ASSUMED 200 samples/s
    # for every size (decoding a 128-row batch with a KV cache is bound by kernel launches, not
    # FLOPs). Start-up: an assumed 10 s per stage (imports, CUDA, loading), 40 s more for
    # torch.compile. Stages side by side share the one GPU (see wave_seconds). data.py runs on one
    # CPU core, at this project's CPU rate. Replace with --measure, then with a real run's figures.
    "cuda": dict(train_flops=0.30 * 989e12, mfu_width=512, step_s=0.008, samples_s=200, stories_s=7000, startup_s=10, compile_s=40, shared=True,
                 source="estimated, not measured: H100 at an assumed 30% MFU at width 512 (less below), "
                 "a step >= 8 ms"),
    # NOT MEASURED: an Apple M-series GPU in fp32, assumed ~3 TFLOP/s effective.
    "mps": dict(train_flops=3e12, samples_s=40, stories_s=7000, startup_s=10, compile_s=60, shared=True,
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


def train_run(stage):
    """(size, optimizer steps, tokens per step) of a pretrain.py or sft.py stage, read from its command."""
    script, args = Path(stage.cmd[1]).name, stage.cmd[2:]
    if script == "pretrain.py":
        explicit = vars(loop.build_parser(pretrain.TrainConfig, pretrain.PRESETS, "").parse_args(args))
        c = loop.make_config(pretrain.TrainConfig, pretrain.PRESETS, explicit)
        return c.preset, c.max_iters, c.batch_size * c.grad_accum * c.block_size
    explicit = vars(loop.build_parser(sft.SFTConfig, sft.SFT_PRESETS, "").parse_args(args))
    size = Path(explicit["init_from"]).parent.name  # runs/<size>/base_*
    c = loop.make_config(sft.SFTConfig, sft.SFT_PRESETS, {**explicit, "preset": explicit.get("preset") or size})
    base = loop.make_config(pretrain.TrainConfig, pretrain.PRESETS, {"preset": size})
    iters, _ = sft.sft_schedule(vars(base), c)
    return size, iters, c.batch_size * c.grad_accum * base.block_size


def train_steps(stage):
    return train_run(stage)[1]


def stage_work(stage):
    """(kind, size, amount) of a stage: ("train", size, tokens), ("sample", size, samples) or
    ("data", None, stories), read from the stage's own command with the scripts' own parsers."""
    script, args = Path(stage.cmd[1]).name, stage.cmd[2:]
    if script == "data.py":
        n = int(args[args.index("--n_stories") + 1]) if "--n_stories" in args else data.DEFAULTS["n_stories"]
        return "data", None, n
    if script in ("pretrain.py", "sft.py"):
        size, steps, per_step = train_run(stage)
        return "train", size, steps * per_step
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
    width = pretrain.PRESETS[size]["n_embd"]
    return throughput["train_flops"] * min(1.0, width / throughput.get("mfu_width", width)) / model_flops(size)


def stage_seconds(stage, throughput):
    """(work, start-up) seconds of one stage: its work / the throughput, and the fixed cost of
    starting it (imports, loading, and torch.compile's first step when the command compiles)."""
    kind, size, amount = stage_work(stage)
    rate = {"data": lambda: throughput["stories_s"], "train": lambda: tokens_per_s(size, throughput),
            "sample": lambda: samples_per_s(size, throughput)}[kind]()
    work = amount / rate
    if kind == "train" and "step_s" in throughput:  # no step is faster than the launches and the rows
        work = max(work, train_steps(stage) * throughput["step_s"])
    return work, throughput["startup_s"] + throughput["compile_s"] * ("--compile" in stage.cmd)


def estimate_seconds(stage, throughput):
    """Expected seconds of one stage (start-up included)."""
    return sum(stage_seconds(stage, throughput))


def wave_seconds(parts, jobs, shared):
    """Wall time of a wave of (work, start-up) pairs: stages start in order on the first free of
    `jobs` workers. On one accelerator (`shared`) the stages side by side share it: their start-ups
    overlap, their work does not, so the wave takes at least the sum of the work."""
    workers = [0.0] * max(1, jobs)
    for work, startup in parts:
        workers[workers.index(min(workers))] += work + startup
    floor = sum(w for w, _ in parts) + min(s for _, s in parts) if shared else 0
    return max(max(workers), floor)


def print_plan(waves, throughput, jobs):
    """Every stage's command with its expected time; each wave's wall time and the total."""
    total = 0.0
    print(f"# throughput: {throughput['source']}")
    for i, wave in enumerate(waves):
        parts = [stage_seconds(stage, throughput) for stage in wave]
        wall = wave_seconds(parts, jobs, throughput["shared"])
        total += wall
        print(f"# wave {i}: {len(wave)} stage(s), {jobs} at a time, ~{wall / 60:.1f} min")
        for stage, (work, startup) in zip(wave, parts):
            kind, size, amount = stage_work(stage)
            unit = {"train": "tokens", "sample": "samples", "data": "stories"}[kind]
            what = f"{amount / 1e6:.1f}M {unit}" if amount >= 1e5 else f"{amount:,} {unit}"
            print(f"#   ~{work + startup:4.0f} s  {stage.name} ({what})")
            print(shlex.join(["python", *stage.cmd[1:]]))
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


def reproduce(cfg, out, runs, command, skip_study=False, jobs=1, device="auto", dtype="auto"):
    """Run (or continue) every stage of the recipe; write the plots, results.md and run.json."""
    out, runs = Path(out), Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.time()
    waves = plan(cfg, runs, skip_study, device, dtype)
    for wave in waves:
        run_stages(wave, timings, jobs)

    summaries = {stage.name: read_summary(stage) for stage in waves[-1]}
    size_results = [(size, summaries[f"eval {size}"]) for size in cfg["sizes"]]
    study = []
    if not skip_study:  # (narrowness, summary); the default narrowness is the main evaluation's
        study = [(nu, summaries[f"eval {cfg['study_size']}" if nu == DEFAULT_NARROWNESS else f"eval study nu={nu}"])
                 for nu in cfg["study_narrowness"]]

    plot_scaling(size_results, out / "scaling.png")
    if study:
        plot_study(study, out / "controlled_study.png")
    (out / "results.md").write_text(results_markdown(size_results, study, cfg, command))
    for size in cfg["sizes"]:  # each size's eval outputs (tables, plots) next to the results
        dst = out / size
        dst.mkdir(exist_ok=True)
        for f in (runs / size / "eval").glob("*"):
            if f.suffix in (".json", ".md", ".png", ".gz") and not f.name.startswith("."):  # not the stage marker
                shutil.copyfile(f, dst / f.name)
    stage_seconds = {name: t["seconds"] for name, t in timings.items()}
    ran_now = [name for name, t in timings.items() if not t.get("skipped")]
    run = {"command": command, "commit": git_commit(), "preset": cfg, "jobs": jobs,
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "python": platform.python_version()},
           # the true wall time when this invocation ran every stage; stages overlap when jobs > 1,
           # so their sum is the time they would take one after the other
           "wall_seconds_this_invocation": round(time.time() - t0, 1),
           "stage_seconds_sum": round(sum(stage_seconds.values()), 1),
           "stages_run_now": ran_now,
           "stage_seconds": stage_seconds}
    (out / "run.json").write_text(json.dumps(run, indent=2))
    # the headline: the largest size's numbers (median and per seed) and the preset's wall time
    largest = cfg["sizes"][-1]
    head = json.loads((runs / largest / "eval" / "headline.json").read_text())
    head.update(size=largest, wall_seconds=run["wall_seconds_this_invocation"])
    (out / "headline.json").write_text(json.dumps(head, indent=1))
    print(f"\nwrote {out}/results.md, scaling.png, run.json (this invocation: "
          f"{run['wall_seconds_this_invocation']:.0f} s wall, {len(ran_now)} of {len(timings)} stages run)")
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), default="cpu")
    p.add_argument("--out", default="", help="results folder (default: results/<preset>)")
    p.add_argument("--runs", default="", help="checkpoints folder (default: runs/<preset>)")
    p.add_argument("--skip_study", action="store_true", help="leave out the controlled study")
    p.add_argument("--jobs", type=int, default=None,
                   help="stages run side by side, sharing the CPU threads (default: the preset's)")
    p.add_argument("--plan", action="store_true",
                   help="print every stage's command and expected time, wave by wave, and stop")
    p.add_argument("--measure", action="store_true",
                   help="with --plan: time a few training steps of each size on this device first "
                        "(seconds per size) and use that instead of the table's figure")
    p.add_argument("--device", default="auto", help="passed to every stage: auto (cuda > mps > cpu), "
                   "cpu, cuda, cuda:N, mps; with --plan alone it only picks the throughput table")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="passed to every stage (auto: device.pick_dtype's policy)")
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs {args.jobs}: need at least 1")
    cfg = PRESETS[args.preset]
    jobs = args.jobs or cfg["jobs"]
    runs = args.runs or f"runs/{args.preset}"
    if args.plan:
        # a plan for another machine (--device cuda on a laptop) needs no GPU here, unless measured
        kind = (pick_device("auto") if args.device == "auto" else args.device).split(":")[0]
        if kind not in THROUGHPUT:
            p.error(f"--device {args.device}: no throughput figures for {kind!r}; use cpu, cuda or mps")
        throughput = dict(THROUGHPUT[kind])
        if args.measure:
            device = check_device(args.device)
            throughput["measured_tokens_s"] = {size: measure_tokens_per_s(size, device, args.dtype,
                                                                          "--compile" in cfg["extra_pretrain"])
                                               for size in cfg["sizes"]}
            throughput["source"] += f"; training tokens/s measured now on {device}: " + ", ".join(
                f"{s} {t:,.0f}" for s, t in throughput["measured_tokens_s"].items())
        print_plan(plan(cfg, runs, args.skip_study, args.device, args.dtype), throughput, jobs)
        return
    check_device(args.device)  # a missing GPU fails now, not in the first stage
    check_out_dir(args.out or f"results/{args.preset}", "--out")  # an unwritable folder: now, not in an hour
    check_out_dir(runs, "--runs")
    command = "python " + shlex.join(["reproduce.py", *sys.argv[1:]])
    reproduce(cfg, args.out or f"results/{args.preset}", runs, command, args.skip_study, jobs, args.device, args.dtype)


if __name__ == "__main__":
    main()
