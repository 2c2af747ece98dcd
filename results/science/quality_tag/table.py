"""The tables of results/README.md's entry on the quality tag, from this folder's summary.json,
headline.json and samples.jsonl.gz (the tagged build) beside results/science/titled's (the untagged
titled build, the same recipe and seeds):
    PYTHONPATH=. python results/science/quality_tag/table.py > results/science/quality_tag/table.md"""
import collections
import gzip
import json
from pathlib import Path

import metrics

HERE = Path(__file__).resolve().parent
TITLED = HERE.parent / "titled"
f = lambda v: "-" if v is None else f"{float(v):.2f}"  # noqa: E731


def rows_of(folder):
    return {r["row"]: r for r in json.loads((folder / "summary.json").read_text())["rows"]}


def tags_of(folder):
    """{row: share of its sampled annotations (open prompts) whose quality tag is 'good'}."""
    counts = collections.defaultdict(collections.Counter)
    with gzip.open(folder / "samples.jsonl.gz", "rt") as fh:
        for line in fh:
            s = json.loads(line)
            if s.get("annotation") is not None and s["prompt_index"] in (0, 1, None):
                counts[s["row"]][s["annotation"].rpartition("quality:")[2].strip()
                                 if "quality:" in s["annotation"] else "(none)"] += 1
    return {row: c["good"] / sum(c.values()) for row, c in counts.items()}


NAMES = ["base", "base_annotated", "sft#s0", "sft#s1", "sft#s2", "anchored#s0", "anchored#s1", "anchored#s2",
         "anchored_kl"]
print("| row | build | well formed (open) | quality: well formed + house (open) | instr. follow | ann. carries "
      "| parses (open) | tag 'good' (open) | D open | D good (n) | drift, K = 100 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
tags = {"untagged": {}, "tagged": tags_of(HERE)}
for name in NAMES:
    for build, folder in (("untagged", TITLED), ("tagged", HERE)):
        rows = rows_of(folder)
        if name not in rows:
            continue
        r = rows[name]
        o, c = r["by_kind"]["open"], r["by_kind"].get("constrained", {})
        drift = (metrics.prior_drift_max(r["annotation_prior"], rows["base_annotated"]["annotation_prior"])
                 if r.get("annotation_prior") and name != "base_annotated" else None)
        print(f"| {name} | {build} | {f(o['quality'])} | {f(o['quality_and_house'])} | {f(c.get('instruction_following'))} "
              f"| {f(c.get('annotation_carries'))} | {f(o.get('annotation_valid'))} | {f(tags[build].get(name))} "
              f"| {f(o['D'])} | {f(o['D_good'])} ({o['n_good']}) | {f(drift)} |")
print()
KEYS = ["gap_closed", "gap_closed_known", "gap_closed_good", "collapse_ratio", "quality_sft", "quality_anchored",
        "instruction_sft", "instruction_anchored", "prior_drift_max", "quality_base", "quality_base_annotated",
        "annotation_parse_min", "broken_text_max"]
print("| headline (median of 3 seeds, open prompts) | untagged (science/titled) | tagged |")
print("|---|---|---|")
heads = [json.loads((d / "headline.json").read_text()) for d in (TITLED, HERE)]
for k in KEYS:
    vals = [h.get(k) for h in heads]
    vals = [v["median"] if isinstance(v, dict) else v for v in vals]
    print(f"| {k} | {f(vals[0])} | {f(vals[1])} |")
