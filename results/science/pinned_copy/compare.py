"""One line per evaluation (eval_diversity.py's --out folders given as label=folder): the headline
figures, medians over the SFT seeds, and per anchored seed how often the sampled annotation carries
the prompt's constraint (constrained prompts) and how often it parses (open prompts). From the
repository root:

    python results/science/pinned_copy/compare.py preset=results/cpu-2026-12-07/cpu-4l128 lr3e-3=runs/lr3/eval ...
"""
import json
import sys
from statistics import mean


def seed_rows(summary, arm, key, kind):
    """Per checkpoint of `arm`: the mean of `key` over its prompts of `kind`."""
    out = {}
    for row in summary["rows"]:
        if row["arm"] == arm:
            values = [p[key] for p in row["prompts"] if p["kind"] == kind and p.get(key) is not None]
            out[row["ckpt"]] = round(mean(values), 2) if values else None
    return list(out.values())


print("| evaluation | gap closed (counted / dropped / good) | SFT quality / IF | anchored quality / IF | "
      "ann. carries (per seed) | ann. parses, open (per seed) | drift max | broken max |")
print("|---|---|---|---|---|---|---|---|")
for arg in sys.argv[1:]:
    label, folder = arg.split("=", 1)
    h = json.load(open(f"{folder}/headline.json"))
    s = json.load(open(f"{folder}/summary.json"))
    med = lambda k: h[k]["median"] if isinstance(h.get(k), dict) else h.get(k)
    broken = max((p.get("broken_text") or 0) for row in s["rows"] for p in row["prompts"])
    print(f"| {label} | {med('gap_closed'):.2f} / {med('gap_closed_known'):.2f} / {med('gap_closed_good'):.2f} "
          f"| {med('quality_sft'):.2f} / {med('instruction_sft'):.2f} | {med('quality_anchored'):.2f} / "
          f"{med('instruction_anchored'):.2f} | {seed_rows(s, 'anchored', 'annotation_carries', 'constrained')} "
          f"| {seed_rows(s, 'anchored', 'annotation_valid', 'open')} | {med('prior_drift_max'):.2f} | {broken:.2f} |")
