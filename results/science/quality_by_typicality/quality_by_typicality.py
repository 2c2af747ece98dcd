"""Quality by typicality from committed samples: per row, every sample binned by how many of its 9
fields hold the SFT data's top favourite (metrics.quality_by_typicality), and the anchored and SFT
rows compared on the same kind of story (metrics.quality_matched), per seed.
Run from the repository root: python results/science/quality_by_typicality/quality_by_typicality.py"""
import gzip
import json
import sys
from collections import defaultdict

sys.path.insert(0, ".")
import metrics  # noqa: E402
import report  # noqa: E402

SOURCES = ["results/cpu-2026-12-02/cpu-4l64", "results/cpu-2026-12-02/cpu-4l96", "results/cpu-2026-12-02/cpu-4l128", "results/cpu-top/cpu-4l128",
           "results/cpu-2026-12-03/cpu-4l64", "results/cpu-2026-12-03/cpu-4l96", "results/cpu-2026-12-03/cpu-4l128"]
ROWS = ["base", "base_annotated", "sft", "anchored", "anchored_replay", "anchored_pinned", "anchored_plain_base"]

out = []
for src in SOURCES:
    by_row = defaultdict(list)
    for line in gzip.open(f"{src}/samples.jsonl.gz", "rt"):
        r = json.loads(line)
        by_row[r["row"]].append(r)
    pooled = [{"row": f"{arm} (seeds pooled)", "typicality": metrics.quality_by_typicality(samples)}
              for arm in ROWS for samples in [[s for name, ss in by_row.items() if name.split("#")[0] == arm for s in ss]]
              if samples]
    out += [f"### {src}\n"] + report.typicality_markdown({"rows": pooled})
    out.append("matched (house format too, bins with >= 20 of both, "
               "weighted by the anchored counts), per seed:\n")
    seeds = sorted({n.split("#")[1] for n in by_row if n.startswith("sft#")}) or [None]
    for sd in seeds:
        name = lambda arm: arm if sd is None else f"{arm}#{sd}"
        a, b = (metrics.quality_by_typicality(by_row[name(x)]) for x in ("anchored", "sft"))
        m = metrics.quality_matched(a, b)
        whole = lambda ss: sum(bool(s["quality"] and s["house"]) for s in ss) / max(len(ss), 1)
        out.append(f"- {sd or 'one seed'}: all samples anchored {whole(by_row[name('anchored')]):.2f} / SFT "
                   f"{whole(by_row[name('sft')]):.2f}; matched " +
                   (f"anchored {m['a']:.2f} / SFT {m['b']:.2f} over bins {', '.join(m['bins'])}" if m else "no bin with 20 of both"))
    out.append("")
print("\n".join(out))
