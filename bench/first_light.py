"""
The Python half of bench/gpu_first_light.sh: the gpu-quick recipe, or the same recipe at toy size for
the script's CPU dry run (one size of 1-layer models, a few steps, K = 4: the jobs, seeds and
ablations of gpu-quick, in a minute or two on a CPU).

    python bench/first_light.py data_cmd RUNS            # the recipe's data command, one argument a line
    python bench/first_light.py data_cmd RUNS --dry
    python bench/first_light.py reproduce RUNS RESULTS --dry   # the toy recipe, end to end
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import reproduce  # noqa: E402

TOY_LOOP = ["--batch_size", "2", "--device", "cpu", "--eval_interval", "0", "--eval_iters", "1", "--log_interval", "1"]


def config(dry):
    """gpu-quick, or (dry) gpu-quick's recipe on one toy size: 3 SFT seeds, the ablations, no compile."""
    cfg = reproduce.PRESETS["gpu-quick"]
    if not dry:
        return cfg
    return dict(cfg, data_flags=["--n_stories", "1500", "--n_sft", "100", "--n_sft_val", "20"], sizes=["tiny"],
                pretrain_iters={"tiny": 4}, compile_sizes=[], sft_iters=2, full_sizes=["tiny"], num_samples=4,
                study_size="tiny", ablation_sizes=["tiny"],
                extra_pretrain=["--n_layer", "1", "--n_head", "2", "--n_embd", "32", *TOY_LOOP], extra_sft=TOY_LOOP,
                extra_eval=["--n_boot", "10", "--max_new_tokens", "24", "--threads", "1"], jobs=2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("data_cmd", "reproduce"))
    p.add_argument("runs")
    p.add_argument("results", nargs="?", default=None)
    p.add_argument("--dry", action="store_true", help="the toy recipe (CPU)")
    a = p.parse_args(argv)
    cfg = config(a.dry)
    if a.what == "data_cmd":
        print("\n".join(reproduce.recipe(cfg, a.runs)[0][0].cmd[1:]))  # one argument a line (bash: mapfile)
        return
    if a.results is None:
        p.error("reproduce needs RUNS and RESULTS")
    reproduce.reproduce(cfg, a.results, a.runs, "bench/gpu_first_light.sh" + (" --dry-run" if a.dry else ""),
                        jobs=cfg["jobs"])


if __name__ == "__main__":
    main()
