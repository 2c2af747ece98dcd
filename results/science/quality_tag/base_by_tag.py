"""The tagged annotated base writing in its own format, its annotation built field by field (keys
forced, values sampled at T = 1) and the quality tag pinned to 'good', to 'poor', or sampled
(tag free: the model writes the whole annotation itself, as the base_annotated row of an evaluation).
The story at the cpu preset's setting (top-p 0.9, no 8-token run twice).

    PYTHONPATH=. python results/science/quality_tag/base_by_tag.py runs/tag/base_ann 200
"""
import collections
import sys

import torch

import judge
from checkpoint import load_model
from sample import sample_stories

torch.set_num_threads(1)
ckpt, n = sys.argv[1], int(sys.argv[2])
model, _, enc = load_model(ckpt)
for name, pinned in (("tag good", {"quality": "good"}), ("tag poor", {"quality": "poor"}), ("tag free", None)):
    out = sample_stories(model, enc, "annotated", None, n, top_p=0.9, no_repeat_ngram=8, seed=0, batch_size=100,
                         pinned=pinned, dtype=torch.bfloat16, max_new_tokens=480, quality_tag=1)
    problems = collections.Counter(judge.quality_problem(s["text"]) for s in out)
    tags = collections.Counter(s["annotation"].rpartition("quality:")[2].strip() if "quality:" in s["annotation"]
                               else "(none)" for s in out)
    print(f"{name}: {n} stories, well formed {problems[None] / n:.2f}; tags written {dict(tags)}; "
          f"problems {problems.most_common(6)}")
