"""Quality of the anchored rows by what their house-format title line is (run from the repository
root with PYTHONPATH=.; reads the committed samples):
    PYTHONPATH=. python results/science/anchor_kl/titles.py results/science/anchor_kl/samples.jsonl.gz results/cpu-untitled/cpu-4l128/samples.jsonl.gz
A title is one of world.make_title's five patterns; "of its annotation" uses the sampled annotation's
character, name and quest, "of other values" is title-shaped (capitalised words) with other values,
"garbled" is neither, "runs on" has no blank line after it, "none" does not start with "Title: "."""
import collections
import gzip
import json
import sys

import metrics

ADJS = ["Little", "Clever", "Young", "Tiny", "Wise"]

def title_kind(sample):
    text = sample["text"]
    if not text.startswith("Title: "):
        return "none"
    first, _, rest = text.partition("\n")
    if not rest.startswith("\n"):
        return "runs on"
    ann, line = metrics.annotation_fields(sample["annotation"]) or {}, first[len("Title: "):]
    c, n, o = (ann.get(f, "?") for f in ("character", "name", "quest"))
    c, o = c.capitalize(), o.capitalize()
    if line in [f"The {a} {c}" for a in ADJS] + [f"{n} and the {o}", f"{n} the {c}", f"The {c} and the {o}", f"A Story About {n}"]:
        return "of its annotation"
    words = line.split()
    return "of other values" if len(words) >= 2 and all(w[0].isupper() or w in ("the", "and") for w in words) else "garbled"

KINDS = ["of its annotation", "of other values", "garbled", "runs on", "none"]
print("| row | " + " | ".join(f"{k}: share, quality" for k in KINDS) + " |")
print("|---|" + "---|" * len(KINDS))
for path in sys.argv[1:]:
    samples = [json.loads(line) for line in gzip.open(path)]
    for row in dict.fromkeys(s["row"] for s in samples if s.get("annotation") is not None and s["row"].startswith("anchored")):
        rs = [s for s in samples if s["row"] == row]
        by = collections.defaultdict(list)
        for s in rs:
            by[title_kind(s)].append(s["quality"])
        cells = [f"{len(by[k]) / len(rs):.2f}, {sum(by[k]) / len(by[k]):.2f}" if by[k] else "0.00, -" for k in KINDS]
        print(f"| {row} | " + " | ".join(cells) + " |")
