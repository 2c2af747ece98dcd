"""The table of results/README.md's entry on the anchor-KL extra: this folder's three seeds beside the
cpu run's rows of the same bases (results/cpu-untitled/cpu-4l128: the paper-literal arm, replay, SFT, and its
own anchored_kl row, the same checkpoint as seed 0 here, sampled in another evaluation), all
sampled the same way (the base and SFT rows of both evaluations are the same samples), with the
prior drift read at 5,000 annotations (prior_drift_5000.txt):
    PYTHONPATH=. python results/science/anchor_kl/table.py > results/science/anchor_kl/table.md"""
import json
from pathlib import Path

import metrics

HERE = Path(__file__).resolve().parent
rows = {r["row"]: r for r in json.loads((HERE.parent.parent / "cpu-untitled" / "cpu-4l128" / "summary.json").read_text())["rows"]}
rows.update({r["row"]: r for r in json.loads((HERE / "summary.json").read_text())["rows"] if r["row"].startswith("anchored_kl#")})
drift = {}
for line in (HERE / "prior_drift_5000.txt").read_text().splitlines()[1:]:
    ckpt, value = line.split()[0], float(line.split()[1])
    drift[ckpt] = value
DRIFT_OF = {"anchored#s0": "sft_anchored", "anchored#s1": "sft_anchored_seed1", "anchored#s2": "sft_anchored_seed2",
            "anchored_replay": "sft_anchored_replay", "anchored_kl": "../../science/anchor_kl/s0", **{f"anchored_kl#s{i}": f"../../science/anchor_kl/s{i}" for i in range(3)}}
d_base, d_sft = rows["base"]["by_kind"]["open"]["D"], rows["sft#s0"]["by_kind"]["open"]["D"]
f = lambda v: "-" if v is None else f"{v:.2f}"
print(f"D of the plain base {d_base:.2f}, of standard SFT seed 0 {d_sft:.2f} (gap closed against seed 0's, as for every row here)\n")
print("| row | quality (house too) | instr. follow | ann. carries | parses (open) | D open | D good | gap closed | drift, K = 100 | drift, 5,000 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in ["sft#s0", "sft#s1", "sft#s2", "anchored#s0", "anchored#s1", "anchored#s2", "anchored_replay",
             "anchored_kl", "anchored_kl#s0", "anchored_kl#s1", "anchored_kl#s2"]:
    r = rows[name]
    o, c = r["by_kind"]["open"], r["by_kind"]["constrained"]
    gap = None if name.startswith("sft") else (o["D"] - d_sft) / (d_base - d_sft)
    k100 = None if name.startswith("sft") else metrics.prior_drift_max(r["annotation_prior"], rows["base_annotated"]["annotation_prior"])
    print(f"| {name} | {f((o['quality_and_house'] + c['quality_and_house']) / 2)} | {f(c['instruction_following'])} "
          f"| {f(c.get('annotation_carries'))} | {f(o['annotation_valid'])} | {f(o['D'])} | {f(o['D_good'])} | {f(gap)} "
          f"| {f(k100)} | {f(drift.get(DRIFT_OF.get(name)))} |")
