"""The tables of results/README.md's entry on titled pretraining, from this folder's summary.json and
headline.json (the titled build) beside results/cpu-untitled/cpu-4l128's (the untitled build, the same recipe):
    PYTHONPATH=. python results/science/titled/table.py > results/science/titled/table.md"""
import json
from pathlib import Path

import metrics

HERE = Path(__file__).resolve().parent
UNTITLED = HERE.parent.parent / "cpu-untitled" / "cpu-4l128"
f = lambda v: "-" if v is None else f"{float(v):.2f}"  # noqa: E731


def rows_of(folder):
    return {r["row"]: r for r in json.loads((folder / "summary.json").read_text())["rows"]}


NAMES = ["base", "base_annotated", "sft#s0", "sft#s1", "sft#s2", "anchored#s0", "anchored#s1", "anchored#s2",
         "anchored_kl", "anchored_replay_kl"]
print("| row | build | well formed (open) | quality: well formed + house (open) | instr. follow | ann. carries "
      "| parses (open) | D open | D good (n) | drift, K = 100 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in NAMES:
    for build, folder in (("untitled", UNTITLED), ("titled", HERE)):
        rows = rows_of(folder)
        if name not in rows:
            continue
        r = rows[name]
        o, c = r["by_kind"]["open"], r["by_kind"].get("constrained", {})
        drift = (metrics.prior_drift_max(r["annotation_prior"], rows["base_annotated"]["annotation_prior"])
                 if r.get("annotation_prior") and name != "base_annotated" else None)
        print(f"| {name} | {build} | {f(o['quality'])} | {f(o['quality_and_house'])} | {f(c.get('instruction_following'))} "
              f"| {f(c.get('annotation_carries'))} | {f(o.get('annotation_valid'))} | {f(o['D'])} "
              f"| {f(o['D_good'])} ({o['n_good']}) | {f(drift)} |")
print()
KEYS = ["gap_closed", "gap_closed_known", "gap_closed_good", "quality_sft", "quality_anchored", "instruction_sft",
        "instruction_anchored", "prior_drift_max", "quality_base", "quality_base_annotated", "annotation_parse_min"]
print("| headline (median of 3 seeds, open prompts) | untitled | titled |")
print("|---|---|---|")
heads = [json.loads((d / "headline.json").read_text()) for d in (UNTITLED, HERE)]
for k in KEYS:
    vals = [h.get(k) for h in heads]
    vals = [v["median"] if isinstance(v, dict) else v for v in vals]
    print(f"| {k} | {f(vals[0])} | {f(vals[1])} |")
print()
# the extras, 3 seeds each: this folder's extras/ against the untitled runs of the same commands
print("| extra arm, 3 seeds (open prompts) | build | quality: well formed + house | instr. follow | parses | D open | drift, K = 100 |")
print("|---|---|---|---|---|---|---|")
SCIENCE = HERE.parent
for arm, untitled in (("anchored_kl", SCIENCE / "anchor_kl"), ("anchored_replay_kl", SCIENCE / "replay_kl")):
    for build, folder in (("untitled", untitled), ("titled", HERE / "extras")):
        rows = rows_of(folder)
        mine = [r for n, r in rows.items() if n.startswith(arm + "#")]
        col = lambda get: " / ".join(f(get(r)) for r in mine)  # noqa: E731
        base = rows["base_annotated"]["annotation_prior"]
        print(f"| {arm} | {build} | {col(lambda r: r['by_kind']['open']['quality_and_house'])} "
              f"| {col(lambda r: r['by_kind']['constrained']['instruction_following'])} "
              f"| {col(lambda r: r['by_kind']['open']['annotation_valid'])} | {col(lambda r: r['by_kind']['open']['D'])} "
              f"| {col(lambda r: metrics.prior_drift_max(r['annotation_prior'], base))} |")
