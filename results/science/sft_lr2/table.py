"""The table of results/README.md's SFT-LR entry, from this folder's summary.json and SFT logs:
    python results/science/sft_lr2/table.py > results/science/sft_lr2/table.md"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
import metrics  # noqa: E402

s = json.loads((HERE / "summary.json").read_text())
R = {r["row"]: r for r in s["rows"]}
base_prior, d_base = R["base_annotated"]["annotation_prior"], R["base"]["by_kind"]["open"]["D"]
val_loss = lambda run: json.loads((HERE / "logs" / f"{run}.jsonl").read_text().splitlines()[-1])["val_loss"]
quality = lambda r: sum(r["by_kind"][k]["quality_and_house"] for k in ("open", "constrained")) / 2  # both prompt types
f = lambda v: f"{v:.2f}"

print("| row | LR | val loss | quality (house too) | instr. follow | ann. carries | parses (open) | drift | D open | gap closed |")
print("|---|---|---|---|---|---|---|---|---|---|")
for lr, row in (("3e-4", "sft"), ("6e-4", "sft_lr6e-4"), ("1e-3", "sft_lr1e-3")):
    r = R[row]
    print(f"| standard SFT | {lr} | {val_loss(f'std_{lr}_s0'):.3f} | {f(quality(r))} "
          f"| {f(r['by_kind']['constrained']['instruction_following'])} | - | - | - | {f(r['by_kind']['open']['D'])} | - |")
for name, arm, lr, run, sft_row in (("anchored (paper-literal)", "anchored", "3e-4", "anc_3e-4", "sft"),
                                    ("anchored (paper-literal)", "anchored_lr6e-4", "6e-4", "anc_6e-4", "sft_lr6e-4"),
                                    ("anchored (paper-literal)", "anchored_lr1e-3", "1e-3", "anc_1e-3", "sft_lr1e-3"),
                                    ("anchored + annotation replay", "anchored_replay_lr1e-3", "1e-3", "rep_1e-3", "sft_lr1e-3")):
    rows, d_sft = [R[f"{arm}#s{i}"] for i in (0, 1)], R[sft_row]["by_kind"]["open"]["D"]
    both = lambda fn: " / ".join(fn(r) for r in rows)
    print(f"| {name} | {lr} | {val_loss(run + '_s0'):.3f} / {val_loss(run + '_s1'):.3f} | {both(lambda r: f(quality(r)))} "
          f"| {both(lambda r: f(r['by_kind']['constrained']['instruction_following']))} "
          f"| {both(lambda r: f(r['by_kind']['constrained']['annotation_carries']))} "
          f"| {both(lambda r: f(r['by_kind']['open']['annotation_valid']))} "
          f"| {both(lambda r: f(metrics.prior_drift_max(r['annotation_prior'], base_prior)))} "
          f"| {both(lambda r: f(r['by_kind']['open']['D']))} "
          f"| {both(lambda r: f((r['by_kind']['open']['D'] - d_sft) / (d_base - d_sft)))} |")

# what the anchored rows' unparsed annotations get wrong: the first field without a schema value
import collections  # noqa: E402
import gzip  # noqa: E402

import world  # noqa: E402

samples = [json.loads(ln) for ln in gzip.open(HERE / "samples.jsonl.gz", "rt")]
print("\nUnparsed annotations per row, by the first field whose value is not in the schema (commonest 3):\n")
for row in [r for r in R if r.startswith("anchored")]:
    bad = collections.Counter()
    for x in samples:
        if x["row"] == row and not metrics.annotation_parses(x["annotation"], x["annotation_closed"]):
            fields = metrics.annotation_fields(x["annotation"])
            first = next((k for k in world.FIELDS if fields.get(k) not in world.FIELDS[k]), None)
            value = " ".join(str(fields.get(first)).split())[:20]  # a value that ran on into the story, cut
            bad[f"{first}: {value}" if first else "keys out of order or not closed"] += 1
    print(f"- {row}: {sum(bad.values())} of 400; " + ", ".join(f"`{k}` {n}" for k, n in bad.most_common(3)))
