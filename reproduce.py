"""
The whole experiment of the paper, at toy scale, as one readable recipe.

    python reproduce.py --preset cpu      # 2 model sizes on 2 CPU cores, 54 minutes measured
    python reproduce.py --preset gpu      # the 4-size ladder on one GPU, hours
    python reproduce.py --preset smoke    # the same recipe in a few minutes (a check, not a result)

Every stage is an ordinary command a student could type (printed as it runs): make the data,
pretrain a plain and an annotated base per size, post-train them (standard SFT, anchored SFT and
the ablations), sample and measure diversity, then draw the scaling and controlled-study plots.
A stage whose output already exists with the same command is skipped, so a stopped run continues
where it stopped (the command is the stage's "config hash").

Results land in --out (default results/<preset>): per size an eval folder (summary.json/md and
plots from eval_diversity.py), the controlled study, scaling.png, results.md and run.json (the
command, commit, machine and wall time of every stage).
"""

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from data import DEFAULT_NARROWNESS  # the narrowness of data.py's default SFT files (the main arms)

# -----------------------------------------------------------------------------
# Presets: plain data. sizes are pretrain.py presets; iters are optimizer steps.

PRESETS = {
    "smoke": dict(
        data_flags=["--n_stories", "20000"], sizes=["cpu-s"], pretrain_iters={"cpu-s": 60}, sft_iters=30,
        num_samples=16, temperatures=[0.6, 1.2], study_narrowness=[0.5, 0.95], study_size="cpu-s",
        extra_pretrain=["--batch_size", "4"], extra_sft=["--batch_size", "4"], extra_eval=[]),
    "cpu": dict(
        data_flags=[], sizes=["cpu-s", "cpu-m"], pretrain_iters={"cpu-s": 1000, "cpu-m": 1400},
        sft_iters=200, num_samples=96, temperatures=[0.6, 0.8, 1.2],
        study_narrowness=[0.0, 0.5, 0.95], study_size="cpu-m",
        extra_pretrain=[], extra_sft=["--batch_size", "8"], extra_eval=["--threads", "1"]),
    "gpu": dict(
        data_flags=["--n_stories", "2000000"], sizes=["gpu-4l128", "gpu-6l256", "gpu-6l384", "gpu-10l512"],
        pretrain_iters={},  # the presets' own budgets (>= 20 tokens per parameter, see pretrain.py)
        sft_iters=600, num_samples=256, temperatures=[0.6, 0.8, 1.2],
        study_narrowness=[0.0, 0.5, 0.8, 0.95], study_size="gpu-6l384",
        extra_pretrain=["--compile"], extra_sft=["--compile"], extra_eval=[]),
}

PY = sys.executable


# -----------------------------------------------------------------------------
# Stages: a command, the folder it fills, and a marker file that says it finished.

def stage_hash(cmd):
    return hashlib.sha256(" ".join(cmd).encode()).hexdigest()[:16]


def run_stage(name, cmd, out_dir, timings):
    """Run cmd unless out_dir/.stage.json says this exact command already finished there."""
    marker = Path(out_dir) / ".stage.json"
    h = stage_hash(cmd)
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get("hash") == h:
        print(f"[skip] {name}: done already ({out_dir})")
        timings.setdefault(name, done.get("seconds"))
        return
    print(f"\n[run] {name}\n  $ {shlex.join(cmd)}", flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    seconds = round(time.time() - t0, 1)
    timings[name] = seconds
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"hash": h, "cmd": shlex.join(cmd), "seconds": seconds}))


def pretrain(size, annotations, out, cfg, data_dir, timings):
    tag = "ann" if annotations else "plain"
    out_dir = out / size / f"base_{tag}"
    cmd = [PY, "pretrain.py", "--preset", size, "--data_dir", str(data_dir), "--out_dir", str(out_dir),
           "--annotations" if annotations else "--no-annotations", *cfg["extra_pretrain"]]
    if size in cfg["pretrain_iters"]:
        cmd += ["--max_iters", str(cfg["pretrain_iters"][size])]
    run_stage(f"pretrain {size} {tag}", cmd, out_dir, timings)
    return out_dir


def sft(name, base_dir, mode, out_dir, cfg, timings, extra=()):
    cmd = [PY, "sft.py", "--init_from", str(base_dir), "--mode", mode, "--out_dir", str(out_dir),
           "--max_iters", str(cfg["sft_iters"]), *cfg["extra_sft"], *extra]
    run_stage(name, cmd, out_dir, timings)
    return out_dir


def evaluate(name, arms, out_dir, cfg, timings, extra=()):
    cmd = [PY, "eval_diversity.py", "--ckpts", *[f"{k}={v}" for k, v in arms.items()],
           "--num_samples", str(cfg["num_samples"]), "--out", str(out_dir), "--base_arm", "base", *cfg["extra_eval"], *extra]
    run_stage(name, cmd, out_dir, timings)
    return json.loads((Path(out_dir) / "summary.json").read_text())


# -----------------------------------------------------------------------------
# The recipe

def run_size(size, out, cfg, data_dir, timings):
    """Both bases, every post-training arm and their evaluation, at one model size."""
    d = out / size
    base_plain = pretrain(size, False, out, cfg, data_dir, timings)
    base_ann = pretrain(size, True, out, cfg, data_dir, timings)
    # the paper's two arms
    sft_std = sft(f"sft {size} standard", base_plain, "standard", d / "sft_standard", cfg, timings)
    sft_anc = sft(f"sft {size} anchored", base_ann, "anchored", d / "sft_anchored", cfg, timings)
    # ablations: anchoring without annotated pretraining; annotation tokens trained on
    sft_anc_plain = sft(f"sft {size} anchored on plain base", base_plain, "anchored", d / "sft_anchored_plainbase",
                        cfg, timings, extra=["--allow_plain_base"])
    sft_unmasked = sft(f"sft {size} anchored_unmasked", base_ann, "anchored_unmasked", d / "sft_unmasked", cfg, timings)
    sft_strict = sft(f"sft {size} anchored_strict", base_ann, "anchored_strict", d / "sft_strict", cfg, timings)
    temps = ",".join(str(t) for t in [*cfg["temperatures"], 1.0])
    arms = {
        "base": base_plain,
        "base_annotated": base_ann,
        "sft": f"{sft_std}:temperature={temps}",
        "anchored": sft_anc,
        "anchored_no_annotation": f"{sft_anc}:anchor=off",
        "anchored_plain_base": sft_anc_plain,
        "anchored_unmasked": sft_unmasked,
        "anchored_strict": sft_strict,
    }
    return evaluate(f"eval {size}", arms, d / "eval", cfg, timings)


def run_controlled_study(out, cfg, timings):
    """SFT data of several narrowness settings: does the output entropy follow the data?"""
    size = cfg["study_size"]
    d = out / size / "study"
    base_plain, base_ann = out / size / "base_plain", out / size / "base_ann"
    results = []
    for nu in cfg["study_narrowness"]:
        if nu == DEFAULT_NARROWNESS:  # the main arms were trained on exactly this data
            std, anc = out / size / "sft_standard", out / size / "sft_anchored"
        else:
            flag = ["--narrowness", str(nu)]
            std = sft(f"study {size} standard nu={nu}", base_plain, "standard", d / f"standard_nu{nu}", cfg, timings, flag)
            anc = sft(f"study {size} anchored nu={nu}", base_ann, "anchored", d / f"anchored_nu{nu}", cfg, timings, flag)
        summary = evaluate(f"eval study nu={nu}", {"base": base_plain, "sft": std, "anchored": anc},
                           d / f"eval_nu{nu}", cfg, timings, extra=["--narrowness", str(nu)])
        results.append((nu, summary))
    return results


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


def plot_scaling(size_results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = [s for s, _ in size_results]
    rows = ["base", "base_annotated", "sft", "anchored", "anchored_no_annotation", "anchored_plain_base",
            "anchored_unmasked", "anchored_strict", "pretrain_data", "sft_data"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for row in rows:
        # "sft" is swept over temperatures: its row at T = 1 is the one derive() named sft_row
        ys = [summary["derived"]["open"]["D"].get(summary["derived"]["sft_row"] if row == "sft" else row)
              for _, summary in size_results]
        axes[0].plot(sizes, ys, marker="o", label=row, linestyle="--" if row.endswith("_data") else "-")
    axes[0].set_ylabel("semantic diversity D (bits, open prompts)")
    axes[0].legend(fontsize=7)
    for ax, key in ((axes[1], "collapse_ratio"), (axes[2], "gap_closed")):
        for kind, marker in (("open", "o"), ("constrained", "s")):
            ys = [summary["derived"].get(kind, {}).get(key, {}).get("value") for _, summary in size_results]
            ax.plot(sizes, ys, marker=marker, label=kind)
        ax.set_ylabel(key.replace("_", " "))
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
    for row, marker in (("sft", "o"), ("anchored", "s"), ("base", "^")):
        ax.plot(xs, [s["derived"]["open"]["D"][row] for _, s in study], marker=marker, label=row)
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


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def results_markdown(size_results, study, cfg, command):
    lines = [f"Made by `{command}`.", "", "### Headline (open prompts; D = mean free-field entropy, bits)", "",
             "| size | D base | D SFT | D anchored | collapse ratio (95% CI) | gap closed (95% CI) | quality SFT / anchored | house format SFT / anchored | instr. following SFT / anchored |",
             "|---|---|---|---|---|---|---|---|---|"]
    for size, s in size_results:
        o = s["derived"]["open"]
        cr, gc = o["collapse_ratio"], o["gap_closed"]
        sft_row, anc_row = s["derived"]["sft_row"], s["derived"]["anchored_row"]
        q = "/".join(fmt(row_metric(s, r, "open", "quality_and_house")) for r in (sft_row, anc_row))
        h = "/".join(fmt(row_metric(s, r, "open", "house_format")) for r in (sft_row, anc_row))
        ifo = "/".join(fmt(row_metric(s, r, "constrained", "instruction_following")) for r in (sft_row, anc_row))
        lines.append(f"| {size} | {fmt(o['D']['base'])} | {fmt(o['D'][sft_row])} | {fmt(o['D'][anc_row])} | "
                     f"{fmt(cr['value'])} ({fmt(cr['ci95'][0])}, {fmt(cr['ci95'][1])}) | "
                     f"{fmt(gc['value'])} ({fmt(gc['ci95'][0])}, {fmt(gc['ci95'][1])}) | {q} | {h} | {ifo} |")
    lines += ["", "### Every arm at the largest size (open prompts)", "", "| arm | D | collapse vs base |", "|---|---|---|"]
    size, s = size_results[-1]
    o = s["derived"]["open"]
    for row, dv in o["D"].items():
        col = o["collapse"].get(row, {}).get("value")
        lines.append(f"| {row} | {fmt(dv)} | {fmt(col)} |")
    if study:
        lines += ["", f"### Controlled study ({cfg['study_size']}, open prompts)", "",
                  "| narrowness | SFT data entropy (exact) | D SFT | D anchored |", "|---|---|---|---|"]
        for nu, s in study:
            lines.append(f"| {nu} | {fmt(sft_data_entropy(s))} | {fmt(s['derived']['open']['D']['sft'])} | "
                         f"{fmt(s['derived']['open']['D']['anchored'])} |")
    return "\n".join(lines) + "\n"


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def reproduce(cfg, out, runs, command, skip_study=False):
    """Run (or continue) every stage of the recipe; write the plots, results.md and run.json."""
    out, runs = Path(out), Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.time()
    data_dir = runs / "data"
    run_stage("data", [PY, "data.py", "--out_dir", str(data_dir), *cfg["data_flags"]], data_dir, timings)
    size_results = [(size, run_size(size, runs, cfg, data_dir, timings)) for size in cfg["sizes"]]
    study = [] if skip_study else run_controlled_study(runs, cfg, timings)

    plot_scaling(size_results, out / "scaling.png")
    if study:
        plot_study(study, out / "controlled_study.png")
    (out / "results.md").write_text(results_markdown(size_results, study, cfg, command))
    for size in cfg["sizes"]:  # each size's eval outputs (tables, plots) next to the results
        dst = out / size
        dst.mkdir(exist_ok=True)
        for f in (runs / size / "eval").glob("*"):
            if f.suffix in (".json", ".md", ".png"):
                shutil.copyfile(f, dst / f.name)
    run = {"command": command, "commit": git_commit(), "preset": cfg,
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "python": platform.python_version()},
           "wall_seconds_this_invocation": round(time.time() - t0, 1),
           "wall_seconds_all_stages": round(sum(v or 0 for v in timings.values()), 1),
           "stage_seconds": timings}
    (out / "run.json").write_text(json.dumps(run, indent=2))
    print(f"\nwrote {out}/results.md, scaling.png, run.json "
          f"(all stages: {run['wall_seconds_all_stages']:.0f} s)")
    return run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), default="cpu")
    p.add_argument("--out", default="", help="results folder (default: results/<preset>)")
    p.add_argument("--runs", default="", help="checkpoints folder (default: runs/<preset>)")
    p.add_argument("--skip_study", action="store_true", help="leave out the controlled study")
    args = p.parse_args()
    command = "python " + shlex.join(["reproduce.py", *sys.argv[1:]])
    reproduce(PRESETS[args.preset], args.out or f"results/{args.preset}", args.runs or f"runs/{args.preset}",
              command, args.skip_study)


if __name__ == "__main__":
    main()
