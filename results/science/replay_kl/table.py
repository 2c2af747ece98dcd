"""The table of results/README.md's entry on annotation replay with the anchor KL, from this folder's
summary.json and prior_drift_5000.txt (the gap closed against standard SFT seed 0 of the same run):
    PYTHONPATH=. python results/science/replay_kl/table.py > results/science/replay_kl/table.md"""
import json
from pathlib import Path

import metrics

HERE = Path(__file__).resolve().parent
rows = {r["row"]: r for r in json.loads((HERE / "summary.json").read_text())["rows"]}
drift = dict(line.split()[:2] for line in (HERE / "prior_drift_5000.txt").read_text().splitlines()[1:])
d_base, d_sft = rows["base"]["by_kind"]["open"]["D"], rows["sft"]["by_kind"]["open"]["D"]
f = lambda v: "-" if v is None else f"{float(v):.2f}"
print("| row | quality (house too) | instr. follow | ann. carries | parses (open) | D open | D good | gap closed | drift, K = 100 | drift, 5,000 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    if not name.startswith("anchored"):
        continue
    o, c = r["by_kind"]["open"], r["by_kind"]["constrained"]
    k100 = metrics.prior_drift_max(r["annotation_prior"], rows["base_annotated"]["annotation_prior"])
    k5000 = drift.get(f"../../science/replay_kl/s{r['seed_index']}")
    print(f"| {name} | {f((o['quality_and_house'] + c['quality_and_house']) / 2)} | {f(c['instruction_following'])} "
          f"| {f(c.get('annotation_carries'))} | {f(o['annotation_valid'])} | {f(o['D'])} | {f(o['D_good'])} "
          f"| {f((o['D'] - d_sft) / (d_base - d_sft))} | {f(k100)} | {f(k5000)} |")
