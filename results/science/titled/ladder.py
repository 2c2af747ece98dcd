"""The size table of results/README.md's titled-pretraining entry: each size's headline.json, untitled
(results/cpu-untitled, the cpu preset) beside titled (this folder: cpu-4l64/ and cpu-4l96/ one SFT seed, as the
preset trains those sizes; the 4L/128 headline the median of 3 seeds):
    PYTHONPATH=. python results/science/titled/ladder.py > results/science/titled/ladder.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CPU = HERE.parent.parent / "cpu-untitled"
f = lambda v: "-" if v is None else f"{float(v):.2f}"  # noqa: E731


def headline(path):
    h = json.loads(path.read_text())
    return {k: v["median"] if isinstance(v, dict) and "median" in v else v for k, v in h.items()}


print("| size | build | seeds | gap closed (dropped / good only) | quality SFT / anchored | instr. follow SFT / anchored "
      "| drift, K = 100 | bases well formed, plain / annotated |")
print("|---|---|---|---|---|---|---|---|")
for size in ("cpu-4l64", "cpu-4l96", "cpu-4l128"):
    titled = HERE / "headline.json" if size == "cpu-4l128" else HERE / size / "headline.json"
    for build, path in (("untitled", CPU / size / "headline.json"), ("titled", titled)):
        h = headline(path)
        print(f"| {size} | {build} | {h['seeds']} | {f(h['gap_closed'])} ({f(h['gap_closed_known'])} / "
              f"{f(h.get('gap_closed_good'))}) | {f(h['quality_sft'])} / {f(h['quality_anchored'])} "
              f"| {f(h['instruction_sft'])} / {f(h['instruction_anchored'])} | {f(h['prior_drift_max'])} "
              f"| {f(h['quality_base'])} / {f(h['quality_base_annotated'])} |")
