"""The table of results/README.md's entry on the cpu preset's 4L/128 SFT runs at LR 1e-3, from this
folder's summary.json; D of the plain base (for the gap closed) from results/science/sft_lr2, whose
base rows are of the same checkpoints (these runs' bases, lost since), sampled the same way:
    python results/science/sft_lr1e-3_3seeds/table.py > results/science/sft_lr1e-3_3seeds/table.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
rows = {r["row"]: r for r in json.loads((HERE / "summary.json").read_text())["rows"]}
lr2 = {r["row"]: r for r in json.loads((HERE.parent / "sft_lr2" / "summary.json").read_text())["rows"]}
d_base = lr2["base"]["by_kind"]["open"]["D"]
f = lambda v: "-" if v is None else f"{v:.2f}"
print(f"D of the plain base (results/science/sft_lr2): {d_base:.2f}\n")
print("| row | quality (house too) | instr. follow | ann. carries | parses (open) | D open | D good | gap closed |")
print("|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    if name.endswith("_data"):
        continue
    o, c = r["by_kind"]["open"], r["by_kind"]["constrained"]
    sft = rows.get(f"sft#s{r['seed_index']}" if r["seed_index"] is not None else "sft#s0", rows["sft#s0"])
    gap = None if name.startswith("sft") else (o["D"] - sft["by_kind"]["open"]["D"]) / (d_base - sft["by_kind"]["open"]["D"])
    print(f"| {name} | {f((o['quality_and_house'] + c['quality_and_house']) / 2)} | {f(c['instruction_following'])} "
          f"| {f(c.get('annotation_carries'))} | {f(o['annotation_valid'])} | {f(o['D'])} | {f(o['D_good'])} | {f(gap)} |")

print("\nThe lower rungs (their own evaluations, base rows included: eval_lower_rungs.sh):\n")
print("| size | quality SFT / anchored | instr. follow SFT / anchored | ann. carries | parses (open) | D base / SFT / anchored | gap closed |")
print("|---|---|---|---|---|---|---|")
for size in ("cpu-4l96", "cpu-4l64"):
    r = {x["row"]: x for x in json.loads((HERE / size / "summary.json").read_text())["rows"]}
    q = lambda n: f((r[n]["by_kind"]["open"]["quality_and_house"] + r[n]["by_kind"]["constrained"]["quality_and_house"]) / 2)
    D = lambda n: r[n]["by_kind"]["open"]["D"]
    a, c = r["anchored"]["by_kind"], r["sft"]["by_kind"]["constrained"]
    print(f"| {size} | {q('sft')} / {q('anchored')} | {f(c['instruction_following'])} / {f(a['constrained']['instruction_following'])} "
          f"| {f(a['constrained']['annotation_carries'])} | {f(a['open']['annotation_valid'])} "
          f"| {f(D('base'))} / {f(D('sft'))} / {f(D('anchored'))} | {f((D('anchored') - D('sft')) / (D('base') - D('sft')))} |")
