"""pinned_copy.png and pinned_copy.md from the curves beside this file (pinned_curve.py's output):
the loss on the pinned character value (the field most prompts pin, and the one that resists) and
on every pinned value, against the SFT step. From the repository root:

    python results/science/pinned_copy/plot.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, ".")
from checkpoint import pyplot

HERE = Path(__file__).parent
RUNS = {  # file stem -> label
    "ann_s1337_sft0": "base A (the run's), 1 epoch of 10k, LR 1e-3 (the preset)",
    "ann_s1337_ep3": "base A, 3 epochs of 10k, LR 1e-3",
    "ann_s1337_lr3e-3": "base A, 1 epoch of 10k, LR 3e-3",
    "anchored_s0_20k": "base A, 1 epoch of 20k, LR 1e-3, seed 0",
    "anchored_s1_20k": "base A, 1 epoch of 20k, LR 1e-3, seed 1",
    "ann_s1338_sft0": "base B (init seed 1338), 1 epoch of 10k, LR 1e-3 (the preset)",
}

curves = {stem: [json.loads(l) for l in open(HERE / f"{stem}.jsonl")] for stem in RUNS if (HERE / f"{stem}.jsonl").exists()}
plt = pyplot()
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
for ax, key, title in ((axes[0], "pinned character", "the pinned character value"), (axes[1], "pinned", "every pinned value")):
    for stem, records in curves.items():
        ax.plot([r["step"] for r in records], [r[key] for r in records], "o-", ms=3, label=RUNS[stem])
    ax.set_yscale("log"); ax.set_xlabel("SFT step"); ax.set_title(f"validation loss on {title} (nats/token)")
    ax.grid(alpha=0.3)
axes[0].axhline(3.47, color="grey", ls=":", lw=1)  # ln 32: the prior over character kinds
axes[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(HERE / "pinned_copy.png", dpi=110)

fields = sorted({k for records in curves.values() for k in records[-1] if k.startswith("pinned ")})
lines = ["| run | steps | " + " | ".join(f[len("pinned "):] for f in fields) + " | all pinned | response |",
         "|---|---|" + "---|" * (len(fields) + 2)]
for stem, records in curves.items():
    last = records[-1]
    lines.append(f"| {RUNS[stem]} | {last['step']} | " + " | ".join(f"{last[f]:.2f}" for f in fields)
                 + f" | {last['pinned']:.2f} | {last['response']:.3f} |")
(HERE / "pinned_copy.md").write_text("Loss (nats/token) at the last measured step, 100 validation examples that pin a value.\n\n"
                                     + "\n".join(lines) + "\n")
print("\n".join(lines))
