"""
Do bf16 and torch.compile change what a fixed number of pretraining steps learns?

    python bench/fixed_steps.py --preset cpu-4l128 --data_dir runs/cpu/data --steps 300 --out /tmp/fixed

Runs pretrain.py (annotated) for --steps steps in four ways, two at a time on one thread each:
eager bf16 (seed 0, the reference), eager bf16 with seed 1 (another init and data order: the
seed-to-seed noise the others are read against), compiled bf16 (seed 0) and eager fp32 (seed 0).
Prints each run's validation loss at its last step and its difference to the reference.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RUNS = {  # name: extra flags
    "eager bf16": ["--compile", "off", "--dtype", "bfloat16", "--seed", "0"],
    "eager bf16, seed 1": ["--compile", "off", "--dtype", "bfloat16", "--seed", "1"],
    "compiled bf16": ["--compile", "on", "--dtype", "bfloat16", "--seed", "0"],
    "eager fp32": ["--compile", "off", "--dtype", "float32", "--seed", "0"],
}


def run_dir(out, name):
    """The folder of one run: its name as a path component ("eager bf16, seed 1" -> eager_bf16_seed_1)."""
    return Path(out) / name.replace(" ", "_").replace(",", "")


def last_val_loss(out_dir):
    """The validation loss of the last record of out_dir/log.jsonl that has one."""
    losses = [r["val_loss"] for r in map(json.loads, open(Path(out_dir) / "log.jsonl")) if "val_loss" in r]
    return losses[-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--preset", default="cpu-4l128")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", required=True, help="a folder for the four runs")
    args = p.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, OMP_NUM_THREADS="1")
    names = list(RUNS)
    for pair in (names[:2], names[2:]):  # two at a time: the 2-core machine's wave
        procs = []
        for name in pair:
            out_dir = run_dir(args.out, name)
            cmd = [sys.executable, "pretrain.py", "--preset", args.preset, "--data_dir", args.data_dir,
                   "--out_dir", str(out_dir), "--annotations", "--max_iters", str(args.steps),
                   "--eval_interval", str(args.steps), "--no-resume", *RUNS[name]]
            print(" ".join(cmd[1:]), flush=True)
            procs.append(subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if any(proc.wait() for proc in procs):
            raise SystemExit("error: a run failed; rerun its command above to see why")
    ref = last_val_loss(run_dir(args.out, names[0]))
    for name in names:
        loss = last_val_loss(run_dir(args.out, name))
        print(f"{name:20s} val loss at step {args.steps}: {loss:.4f} ({(loss - ref) / ref:+.2%} against eager bf16)")


if __name__ == "__main__":
    main()
