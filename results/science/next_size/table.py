"""The ladder of sizes at one SFT recipe, row by row, from eval_diversity.py folders (summary.json):
for each size, the bases, standard SFT (its first seed) and one anchored arm (the median over its
seeds where it has several). Gap closed = 1 - (D_base - D_arm) / (D_base - D_sft) on the open
prompts, with unknown labels counted, dropped, and over good stories only; drift =
metrics.prior_drift_max against the annotated base. From the repository root:

    python results/science/next_size/table.py 4L/128=results/cpu-2026-12-07/cpu-4l128:anchored ...
    python results/science/next_size/table.py --png ladder.png "paper arm@4L/128=<folder>:anchored" ...

With --png, the labels are "series@size": one line per series over the sizes, in the order given,
of the arm's quality and instruction following as shares of SFT's, its annotations that parse,
its gap closed (counted) and its drift.
"""
import json
import sys
from collections import defaultdict
from statistics import median

sys.path.insert(0, ".")
from metrics import agreement_min, gap_closed, prior_drift_max  # noqa: E402


def by_row(summary):
    return {r["row"]: r for r in summary["rows"]}


def kind(row, k, key):
    return row["by_kind"].get(k, {}).get(key)


def gap(base, sft, arm, key):
    d = [kind(r, "open", key) for r in (base, sft, arm)]
    return None if None in d else gap_closed(*d)


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


png = None
if len(sys.argv) > 2 and sys.argv[1] == "--png":
    png, sys.argv = sys.argv[2], sys.argv[:1] + sys.argv[3:]
series = defaultdict(list)  # series -> [(size, {measure: value})]
print("| size: arm | base quality plain / annotated | gate min | SFT (first seed) quality / IF | arm quality / IF (median over seeds) "
      "| carries | parses | gap closed (counted / dropped / good) | drift max |")
print("|---|---|---|---|---|---|---|---|---|")
for arg in sys.argv[1:]:
    label, spec = arg.split("=", 1)
    folder, arm = spec.rsplit(":", 1)
    rows = by_row(json.load(open(f"{folder}/summary.json")))
    base, abase = rows["base"], rows["base_annotated"]
    sft = rows.get("sft#s0") or rows["sft"]
    arms = [r for name, r in rows.items() if r["arm"] == arm]
    gate = agreement_min(abase["gate"])

    def med(f):
        values = [f(r) for r in arms]
        values = [v for v in values if v is not None]
        return median(values) if values else None
    quality, following = med(lambda r: kind(r, "open", "quality_and_house")), \
        med(lambda r: kind(r, "constrained", "instruction_following"))
    sft_quality, sft_following = kind(sft, "open", "quality_and_house"), kind(sft, "constrained", "instruction_following")
    gaps = [med(lambda r: gap(base, sft, r, key)) for key in ("D", "D_known", "D_good")]
    parses = med(lambda r: kind(r, "open", "annotation_valid"))
    drift = med(lambda r: prior_drift_max(r["annotation_prior"], abase["annotation_prior"]))
    cells = [f"{label}: {arm} ({len(arms)})",
             f"{fmt(kind(base, 'open', 'quality'))} / {fmt(kind(abase, 'open', 'quality'))}", f"{gate:.2f}",
             f"{fmt(sft_quality)} / {fmt(sft_following)}", f"{fmt(quality)} / {fmt(following)}",
             fmt(med(lambda r: kind(r, "constrained", "annotation_carries"))), fmt(parses),
             " / ".join(map(fmt, gaps)), fmt(drift)]
    print("| " + " | ".join(cells) + " |")
    ratio = lambda a, b: None if a is None or not b else a / b
    series[label.split("@")[0]].append((label.split("@")[-1], {
        "quality / SFT's": ratio(quality, sft_quality), "instruction following / SFT's": ratio(following, sft_following),
        "annotations parse": parses, "gap closed": gaps[0], "prior drift max": drift}))

if png:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    measures = list(next(iter(series.values()))[0][1])
    fig, axes = plt.subplots(1, len(measures), figsize=(3.2 * len(measures), 3.2))
    for ax, m in zip(axes, measures):
        for name, points in series.items():
            ax.plot([p[0] for p in points], [p[1][m] for p in points], marker="o", label=name)
        ax.set_title(m, fontsize=10)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
