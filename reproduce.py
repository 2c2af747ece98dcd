"""
The whole experiment of the paper, at toy scale, as a recipe: the commands of recipe() below, in
order. Times are bench/plan.py's plan (2 CPU cores; an H100 for the gpu presets, estimated, not yet
run); how long a preset took here: results/<preset>/run.json.

    python reproduce.py --preset cpu-quick   # one size, the direction: ~13 min
    python reproduce.py --preset cpu-top     # the largest CPU size, 3 SFT seeds: ~86 min
    python reproduce.py --preset cpu         # 3 sizes; seeds, extras, ablation at the top; study: ~105 min
    python reproduce.py --preset gpu-quick   # 3 sizes in one command for one H100: ~6 min
    python reproduce.py --preset gpu         # the 4-size ladder for one GPU: ~24 min
    python reproduce.py --preset smoke       # the same recipe in ~2 min (a check, not a result)
    python reproduce.py --preset cpu --plan  # print every command, in order, and stop
    python reproduce.py --preset gpu --device cuda:1 --dtype float16  # every job on that GPU, in fp16

Make the data; pretrain a plain and an annotated base per size; post-train them (the SFT arms over
seeds, the ablations, the controlled study's narrower data); sample and measure every arm; report.
Every job is an ordinary command (printed as it runs) that fills one folder. When it finishes, the
folder's .job.json records the command, so a rerun skips it; a training job stopped half way
continues from its checkpoint (--resume); any other unfinished job starts over (jobs.py). The jobs
of one wave (the data, the bases, the SFT runs, the evaluations) are independent: --jobs at a time.

Results land in --out (default results/<preset>): each size's evaluation outputs, results.md,
scaling.png, controlled_study.png, headline.json (the largest size) and run.json (command, commit,
machine, seconds of every job).
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import report
from checkpoint import check_out_dir, write_atomic
from device import add_device_flags, check_device
from jobs import PY, Job, run_jobs
from world import DEFAULT_NARROWNESS  # the narrowness of data.py's default SFT files (the main arms)


# -----------------------------------------------------------------------------
# Presets: plain data. sizes are pretrain.py presets; pretrain_iters override their steps; sft_iters:
# None = sft.py's default schedule; sft_seeds: the headline arms (sft, anchored) are post-trained once
# per seed from the same bases; replay: also the anchored_replay extra (sft.py --replay 1);
# pretrain_mix: also the anchored_pretrain_mix extra (sft.py --pretrain_mix 1); anchor_kl: also the
# anchored_kl extra (sft.py --anchor_kl 1);
# temperatures: the first seed's story-temperature sweep, sampled with sweep_sampling's options (an
# arm spec's tail, e.g. ":top_p=1.0" for plain sampling whatever extra_eval declares); study_narrowness: the controlled study's
# SFT data at study_size; ablation_sizes (default: the largest size): there the no-annotation arm
# (sampling only) and the SFT ablations named in ablations (default: all three: plain_base,
# unmasked, strict); compile_sizes: pretraining with --compile; full_sizes: the sizes
# post-trained once per seed and given the extras (replay, sweep, pinned; default: all); the others
# get the two paper arms once, all the size trend needs; jobs: how many jobs run side by side.

PRESETS = {
    "smoke": dict(
        data_flags=["--n_stories", "20000"], sizes=["cpu-4l64"], pretrain_iters={"cpu-4l64": 60}, sft_iters=30,
        sft_seeds=[0], replay=True, num_samples=16, temperatures=[0.6, 1.2], study_narrowness=[0.5, 0.95],
        study_size="cpu-4l64", extra_pretrain=["--batch_size", "4"], extra_sft=["--batch_size", "4"],
        extra_eval=[], jobs=1),
    # the direction: the middle CPU size, the two paper arms and the replay extra, one seed; the cpu
    # preset's recipe (titled data, SFT at LR 1e-3, its story setting) with a third of its base's steps
    # and one epoch of the first 5,000 SFT examples, so it fits its 15 minutes
    "cpu-quick": dict(
        data_flags=["--titled", "0.5"], sizes=["cpu-4l96"], pretrain_iters={"cpu-4l96": 1200}, sft_iters=None,
        sft_seeds=[0], replay=True, num_samples=100, temperatures=[], study_narrowness=[], study_size="cpu-4l96",
        ablation_sizes=[], extra_pretrain=[], extra_sft=["--n_sft_examples", "5000", "--lr", "1e-3"],
        extra_eval=["--threads", "1", "--top_p", "0.9", "--no_repeat_ngram", "8"], jobs=2),
    # the CPU ladder of pretrain.py: the two paper arms at every size (the trend), 3 SFT seeds, the
    # replay and anchor-KL extras, the plain-base ablation and the temperature frontier (plain sampling) at the
    # largest, the study at the smallest. Every other row's story at one declared setting: top-p 0.9
    # and no 8-token run written twice (the shortest run the clean stories almost never repeat, and
    # the small models' commonest defect is a sentence copied: results/README.md). SFT: one epoch of the
    # first 10,000 SFT examples (half cpu-top's), so the ladder plans ~105 minutes, at the peak LR the
    # SFT validation loss picks for both arms (1e-3 of 1e-4 / 3e-4 / 6e-4 / 1e-3, results/README.md).
    # At 3e-3 every base measured learns to copy the prompt's constraint into the annotation, which
    # at 1e-3 depends on the base, but the ladder's paper arm loses diversity and the trend with
    # size (results/cpu-lr3e-3): so 1e-3 stays, and sft.py's pinned-value validation shows the copy.
    # The data: half the pretraining documents open with their own title line (data.py --titled), so
    # the bases learn to title what they write (results/README.md, "titled pretraining")
    "cpu": dict(
        data_flags=["--titled", "0.5"], sizes=["cpu-4l64", "cpu-4l96", "cpu-4l128"], pretrain_iters={}, sft_iters=None,
        sft_seeds=[0, 1, 2], full_sizes=["cpu-4l128"], replay=True, anchor_kl=True, num_samples=100,
        temperatures=[0.6, 0.8, 1.0, 1.1], sweep_sampling=":top_p=1.0:no_repeat_ngram=0",
        study_narrowness=[0.0, 0.5, 0.95], study_size="cpu-4l64", ablation_sizes=["cpu-4l128"], ablations=["plain_base"],
        extra_pretrain=[], extra_sft=["--n_sft_examples", "10000", "--lr", "1e-3"],
        extra_eval=["--threads", "1", "--top_p", "0.9", "--no_repeat_ngram", "8"], jobs=2),
    # the largest CPU size alone: bases at 21 slots per parameter, 3 SFT seeds of the paper's arms,
    # the replay extra (one seed), the temperature frontier (the first seed, plain sampling:
    # :top_p=1) and every other row at one declared story nucleus (top-p 0.9); no ablations or
    # study (the cpu preset has them)
    "cpu-top": dict(
        data_flags=[], sizes=["cpu-4l128"], pretrain_iters={}, sft_iters=None, sft_seeds=[0, 1, 2], replay=True,
        num_samples=100, temperatures=[0.6, 1.0], sweep_sampling=":top_p=1.0", study_narrowness=[], study_size="cpu-4l128",
        ablation_sizes=[], extra_pretrain=[], extra_sft=[], extra_eval=["--threads", "2", "--top_p", "0.9"],
        jobs=2),
    # cpu-m (4L/128) at 2,800 steps, one seed, a wider temperature sweep: results/cpu-long
    "cpu-long": dict(
        data_flags=[], sizes=["cpu-m"], pretrain_iters={"cpu-m": 2800}, sft_iters=None, sft_seeds=[0],
        replay=False, num_samples=100, temperatures=[0.6, 0.8, 1.2], study_narrowness=[], study_size="cpu-m",
        ablation_sizes=[], extra_pretrain=[], extra_sft=["--batch_size", "4"], extra_eval=["--threads", "1"],
        jobs=2),
    # the ladder in one command on one H100 (what bench/gpu_first_light.sh runs): 1.05M / 3.05M /
    # 8.03M parameters, each at >= 20 tokens per parameter, both bases, the paper's arms with 3 SFT
    # seeds at the top rung (one below it), the ablations at the top rung, K = 100, no sweep or
    # study. The data, 500k stories (~95M annotated tokens: the top rung sees it ~1.7 times), is
    # made on one CPU core; bench/README.md has the plan's figures and their assumptions. The
    # pinned upper bound, like the seeds, only at the top rung (full_sizes).
    "gpu-quick": dict(
        data_flags=["--n_stories", "500000"], sizes=["gpu-4l128", "gpu-q-6l192", "gpu-q-6l320"], pretrain_iters={},
        compile_sizes=["gpu-q-6l320"], sft_iters=None, sft_seeds=[0, 1, 2], full_sizes=["gpu-q-6l320"],
        replay=False, num_samples=100, temperatures=[], study_narrowness=[], study_size="gpu-q-6l320",
        ablation_sizes=["gpu-q-6l320"], extra_pretrain=[], extra_sft=[], extra_eval=[], jobs=2),
    # the 4-size ladder, each rung at >= 20 tokens per parameter, sized to one H100 lease by
    # bench/plan.py's plan; `timeout 10m python reproduce.py --preset gpu`, repeated, gets there
    "gpu": dict(
        data_flags=["--n_stories", "1000000"], sizes=["gpu-4l128", "gpu-6l256", "gpu-6l384", "gpu-8l512"],
        pretrain_iters={},  # the presets' own budgets (>= 20 tokens per parameter, see pretrain.py)
        compile_sizes=["gpu-6l384", "gpu-8l512"],
        sft_iters=None, sft_seeds=[0, 1, 2], replay=False, num_samples=128, temperatures=[0.6, 0.8, 1.2],
        study_narrowness=[0.0, 0.5, 0.8, 0.95], study_size="gpu-6l384", ablation_sizes=["gpu-8l512"],
        extra_pretrain=[], extra_sft=[], extra_eval=[], jobs=2),
    # the recipe on 1-layer models in a minute, every arm and the study (tests/test_reproduce.py runs it
    # whole and killed mid-job; a check of the plumbing, not a result)
    "test": dict(
        data_flags=["--n_stories", "1500", "--n_sft", "100", "--n_sft_val", "20"], sizes=["tiny"],
        pretrain_iters={"tiny": 30}, sft_iters=20, sft_seeds=[0], replay=False, anchor_kl=True, num_samples=4, temperatures=[0.6],
        study_narrowness=[0.5, 0.95], study_size="tiny",
        extra_pretrain="--n_layer 1 --n_head 2 --n_embd 32 --batch_size 2 --device cpu --eval_interval 5 --eval_iters 1".split(),
        extra_sft="--batch_size 2 --device cpu --eval_interval 4 --eval_iters 1".split(),
        extra_eval="--n_boot 10 --max_new_tokens 24 --threads 1".split(), jobs=2),
}


# -----------------------------------------------------------------------------
# The recipe: every job's command (jobs.py: how a job is skipped, resumed or run)

def pretrain(size, annotations, runs, cfg):
    tag = "ann" if annotations else "plain"
    out_dir = runs / size / f"base_{tag}"
    cmd = [PY, "pretrain.py", "--preset", size, "--data_dir", str(runs / "data"), "--out_dir", str(out_dir),
           "--annotations" if annotations else "--no-annotations", *cfg["extra_pretrain"],
           *(["--max_iters", str(cfg["pretrain_iters"][size])] if size in cfg["pretrain_iters"] else []),
           *(["--compile"] if size in cfg.get("compile_sizes", ()) else [])]
    return Job(f"pretrain {size} {tag}", cmd, out_dir, (runs / "data",))


def sft(name, base_dir, format, out_dir, cfg, *extra):
    iters = [] if cfg.get("sft_iters") is None else ["--max_iters", str(cfg["sft_iters"])]
    return Job(name, [PY, "sft.py", "--init_from", str(base_dir), "--format", format, "--out_dir", str(out_dir),
                        *iters, *cfg["extra_sft"], *extra], out_dir, (base_dir,))


def evaluate(name, arms, out_dir, cfg, *extra):
    """arms: {arm name: [checkpoint spec, one per SFT seed]}, passed as name=spec0,spec1,..."""
    specs = [f"{arm}={','.join(str(s) for s in seeds)}" for arm, seeds in arms.items()]
    cmd = [PY, "eval_diversity.py", "--ckpts", *specs, "--num_samples", str(cfg["num_samples"]),
           "--out", str(out_dir), "--base_arm", "base",
           *(["--annotated_base_arm", "base_annotated"] if "base_annotated" in arms else []), *cfg["extra_eval"], *extra]
    checkpoints = sorted({str(spec).split(":")[0] for seeds in arms.values() for spec in seeds})  # less the :options
    return Job(name, cmd, out_dir, tuple(Path(c) for c in checkpoints))


def post_training(size, runs, cfg, ablations):
    """The SFT jobs at one size, and the arms its evaluation samples (the one place they are listed)."""
    d = runs / size
    plain, ann = d / "base_plain", d / "base_ann"
    sfts, arms = [], {"base": [plain], "base_annotated": [ann], "sft": [], "anchored": []}
    # the paper's two arms, once per seed from the same bases (seed: the SFT data order), sampled at
    # T = 1: the headline numbers are their medians over seeds
    full = size in cfg.get("full_sizes", [size])
    seeds = cfg.get("sft_seeds", [0]) if full else cfg.get("sft_seeds", [0])[:1]
    for seed in seeds:
        tag = "" if seed == seeds[0] else f"_seed{seed}"
        std, anc = d / f"sft_standard{tag}", d / f"sft_anchored{tag}"
        sfts += [sft(f"sft {size} standard seed {seed}", plain, "standard", std, cfg, "--seed", str(seed)),
                   sft(f"sft {size} anchored seed {seed}", ann, "anchored", anc, cfg, "--seed", str(seed))]
        arms["sft"].append(std)
        arms["anchored"].append(anc)
    std0, anc0, seed0 = arms["sft"][0], arms["anchored"][0], str(seeds[0])
    if full:  # the extras: sweep, pinned, replay, anchor KL, pretraining mix
        if cfg["temperatures"]:  # the first seed at other story temperatures (its annotation stays at T = 1)
            sweep = ":temperature=" + ",".join(str(t) for t in cfg["temperatures"])
            sweep += cfg.get("sweep_sampling", "")  # e.g. plain sampling under the other rows' --top_p
            arms.update(sft_sweep=[f"{std0}{sweep}"], anchored_sweep=[f"{anc0}{sweep}"])
        arms["anchored_pinned"] = [f"{anc0}:ann=prompt"]  # upper bound: the sampler pins the prompt's constraints
        if cfg.get("replay"):  # an extra beside the paper: annotation replay from the prior
            sfts.append(sft(f"sft {size} anchored_replay", ann, "anchored", d / "sft_anchored_replay", cfg,
                            "--replay", "1", "--seed", seed0))
            arms["anchored_replay"] = [d / "sft_anchored_replay"]
        if cfg.get("anchor_kl"):  # another: a KL term toward the frozen base at the free annotation values
            sfts.append(sft(f"sft {size} anchored_kl", ann, "anchored", d / "sft_anchored_kl", cfg,
                            "--anchor_kl", "1", "--seed", seed0))
            arms["anchored_kl"] = [d / "sft_anchored_kl"]
        if cfg.get("pretrain_mix"):  # another: the base's own pretraining documents mixed into SFT
            sfts.append(sft(f"sft {size} anchored_pretrain_mix", ann, "anchored", d / "sft_anchored_pretrain_mix", cfg,
                            "--pretrain_mix", "1", "--seed", seed0))
            arms["anchored_pretrain_mix"] = [d / "sft_anchored_pretrain_mix"]
    if not ablations:
        return sfts, arms
    arms["anchored_no_annotation"] = [f"{anc0}:anchor=off"]  # no new training
    chosen = cfg.get("ablations", ABLATIONS)
    if "plain_base" in chosen:  # anchoring without annotated pretraining
        sfts.append(sft(f"sft {size} anchored on plain base", plain, "anchored", d / "sft_anchored_plainbase", cfg,
                        "--allow_plain_base", "--seed", seed0))
        arms["anchored_plain_base"] = [d / "sft_anchored_plainbase"]
    for format, arm in (("anchored_unmasked", "unmasked"), ("anchored_strict", "strict")):  # annotation tokens in the loss
        if arm in chosen:
            sfts.append(sft(f"sft {size} {format}", ann, format, d / f"sft_{arm}", cfg, "--seed", seed0))
            arms[format] = [d / f"sft_{arm}"]
    return sfts, arms


def controlled_study(runs, cfg):
    """SFT data of other narrowness settings (the main arms have the default one): does the output's
    entropy follow the data's? -> (SFT jobs, evaluation jobs)."""
    size = cfg["study_size"]
    d, plain, ann = runs / size / "study", runs / size / "base_plain", runs / size / "base_ann"
    sfts, evals = [], []
    for nu in cfg["study_narrowness"]:
        if nu == DEFAULT_NARROWNESS:
            continue
        flag = ["--narrowness", str(nu)]
        std = sft(f"study {size} standard nu={nu}", plain, "standard", d / f"standard_nu{nu}", cfg, *flag)
        anc = sft(f"study {size} anchored nu={nu}", ann, "anchored", d / f"anchored_nu{nu}", cfg, *flag)
        sfts += [std, anc]
        evals.append(evaluate(f"eval study nu={nu}", {"base": [plain], "sft": [std.out_dir], "anchored": [anc.out_dir]},
                              d / f"eval_nu{nu}", cfg, *flag))
    return sfts, evals


ABLATIONS = ("plain_base", "unmasked", "strict")  # post_training's SFT ablations, by name

def check_preset(cfg):
    """A typo in a preset's size lists or ablation names is an error, not a silently missing arm."""
    for key in ("full_sizes", "ablation_sizes", "compile_sizes"):
        if set(cfg.get(key, ())) - set(cfg["sizes"]):
            raise ValueError(f"preset {key} {sorted(set(cfg[key]) - set(cfg['sizes']))} not in its sizes {cfg['sizes']}")
    if set(cfg.get("ablations", ())) - set(ABLATIONS):
        raise ValueError(f"preset ablations {sorted(set(cfg['ablations']) - set(ABLATIONS))}: valid are {ABLATIONS}")


def recipe(cfg, runs, skip_study=False, device="auto", dtype="auto"):
    """The reproduction in four waves of jobs. Each wave needs the one before it; the jobs of one
    wave do not need each other. --device/--dtype go to every training and evaluation command ("auto",
    every script's default, adds nothing: a job's command, and so the hash in its marker, is the
    same with --device auto as without the flag)."""
    check_preset(cfg)
    flags = [*(["--device", device] if device != "auto" else []), *(["--dtype", dtype] if dtype != "auto" else [])]
    cfg = {**cfg, **{k: [*cfg[k], *flags] for k in ("extra_pretrain", "extra_sft", "extra_eval")}}
    runs, sizes = Path(runs), cfg["sizes"]
    # 0. the data: stories, tokenizer, token shards, SFT files
    data = [Job("data", [PY, "data.py", "--out_dir", str(runs / "data"), *cfg["data_flags"]], runs / "data")]
    # 1. pretraining: a plain and an annotated base per size (largest first: the longest jobs)
    bases = [pretrain(size, annotations, runs, cfg) for size in reversed(sizes) for annotations in (False, True)]
    # 2. post-training: the SFT arms per size, the ablations at ablation_sizes, the study's narrower data
    post, arms = [], {}
    for size in reversed(sizes):
        sfts, arms[size] = post_training(size, runs, cfg, ablations=size in cfg.get("ablation_sizes", sizes[-1:]))
        post += sfts
    study_sft, study_eval = ([], []) if skip_study else controlled_study(runs, cfg)
    # 3. evaluation: sample every arm K times per prompt, annotate, measure
    evals = [evaluate(f"eval {size}", arms[size], runs / size / "eval", cfg) for size in reversed(sizes)]
    return [data, bases, post + study_sft, evals + study_eval]


# -----------------------------------------------------------------------------
# The whole reproduction, and its command line

def reproduce(cfg, out, runs, command, skip_study=False, jobs=1, device="auto", dtype="auto"):
    """Run (or continue) every job of the recipe; write the report, headline.json and run.json."""
    out, runs = Path(out), Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.time()
    waves = recipe(cfg, runs, skip_study, device, dtype)
    for wave in waves:
        run_jobs(wave, timings, jobs)
    run = {"command": command, "commit": git_commit(), "preset": cfg, "jobs": jobs,
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "python": platform.python_version()},
           # the true wall time when this invocation ran every job; jobs overlap when --jobs > 1,
           # so their sum is the time they would take one after the other
           "wall_seconds_this_invocation": round(time.time() - t0, 1),
           "job_seconds_sum": round(sum(t["seconds"] for t in timings.values()), 1),
           "jobs_run_now": [name for name, t in timings.items() if not t.get("skipped")],
           "job_seconds": {name: t["seconds"] for name, t in timings.items()}}
    write_atomic(out / "run.json", json.dumps(run, indent=2))
    evals = {job.name: job.out_dir for job in waves[-1]}
    study = {nu: evals[f"eval {cfg['study_size']}" if nu == DEFAULT_NARROWNESS else f"eval study nu={nu}"]
             for nu in ([] if skip_study else cfg["study_narrowness"])}  # the default narrowness: the main arms
    report.write_results(out, {size: evals[f"eval {size}"] for size in cfg["sizes"]}, study, cfg, command,
                         run["wall_seconds_this_invocation"])
    print(f"\nwrote {out}/results.md, scaling.png, run.json (this invocation: {run['wall_seconds_this_invocation']:.0f} "
          f"s wall, {len(run['jobs_run_now'])} of {len(timings)} jobs run)")
    return run


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_commands(waves, jobs):
    for i, wave in enumerate(waves):
        print(f"# wave {i}: {len(wave)} job(s), {jobs} at a time")
        for job in wave:
            print(f"#   {job.name}\n" + shlex.join(["python", *job.cmd[1:]]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), default="cpu")
    p.add_argument("--out", default="", help="results folder (default: results/<preset>)")
    p.add_argument("--runs", default="", help="checkpoints folder (default: runs/<preset>)")
    p.add_argument("--skip_study", action="store_true", help="leave out the controlled study")
    p.add_argument("--jobs", type=int, default=None,
                   help="jobs run side by side, sharing the CPU threads (default: the preset's)")
    p.add_argument("--plan", action="store_true", help="print every command, wave by wave, and stop "
                   "(bench/plan.py adds their expected times)")
    add_device_flags(p, "passed to every job")
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs {args.jobs}: need at least 1")
    cfg, out, runs = PRESETS[args.preset], args.out or f"results/{args.preset}", args.runs or f"runs/{args.preset}"
    jobs = args.jobs or cfg["jobs"]
    if args.plan:
        print_commands(recipe(cfg, runs, args.skip_study, args.device, args.dtype), jobs)
        return
    check_device(args.device)  # a missing GPU fails now, not in the first job
    check_out_dir(out, "--out")  # an unwritable folder: now, not in an hour
    check_out_dir(runs, "--runs")
    command = "python " + shlex.join(["reproduce.py", *sys.argv[1:]])
    reproduce(cfg, out, runs, command, args.skip_study, jobs, args.device, args.dtype)


if __name__ == "__main__":
    main()
