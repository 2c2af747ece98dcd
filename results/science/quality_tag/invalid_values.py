"""What the paper-literal arm writes where its annotation does not parse: per row, of the values of its
sampled annotations (open prompts) that are not in their field's schema, how many are another field's
value ("quest: perseverance") and how many are no field's value ("quest: But"), and the fields they sit in.
    PYTHONPATH=. python results/science/quality_tag/invalid_values.py > results/science/quality_tag/invalid_values.txt"""
import collections
import gzip
import json
from pathlib import Path

import metrics
import world

HERE = Path(__file__).resolve().parent
OWNER = {v: f for f, vs in world.FIELDS.items() for v in vs}
for folder, rows in (("quality_tag", ["base_annotated", "anchored#s0", "anchored#s1", "anchored#s2", "anchored_kl"]),
                     ("quality_tag/key_share", ["anchored#s0", "anchored#s1", "anchored#s2"])):
    samples = [json.loads(line) for line in gzip.open(HERE.parent / folder / "samples.jsonl.gz", "rt")]
    for row in rows:
        kinds, fields, n = collections.Counter(), collections.Counter(), 0
        for s in samples:
            if s["row"] != row or s["prompt_index"] not in (0, 1, None) or not s["annotation"]:
                continue
            for f, v in metrics.annotation_fields(s["annotation"]).items():
                n += 1
                if v not in world.FIELDS[f]:
                    kinds["another field's value" if v in OWNER else "no field's value"] += 1
                    fields[f] += 1
        print(f"{folder} {row}: {sum(kinds.values())} of {n} values invalid ({dict(kinds)}); "
              f"by field {dict(fields.most_common(4))}")
