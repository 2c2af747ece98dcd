"""
Does the anchor hold? Three numbers per checkpoint of an annotated base or an anchored SFT model.

    python bench/bench_anchor.py runs/cpu/cpu-2l96/base_ann 100
    python bench/bench_anchor.py runs/cpu/cpu-2l96/sft_anchored 100      # "Write a story."

K samples with the annotation sampled freely (a base sees no prompt; an SFT model gets
"Write a story."), then:
- agreement: per field, the share of samples whose story label (data.annotate) equals the value
  their own annotation asked for, over annotation values outside the SFT favourites (does the story
  read its annotation where SFT did not teach the value?);
- prior: per field, the share of sampled annotation values that are SFT favourites, against the
  exact pretraining prior (does p(annotation) stay put?), and the share that are not a value of
  that field at all (`character: Lily`);
and for an SFT model, K samples of "Write a story about a dragon.": the share of annotations that
say `character: dragon`, and of stories the judge reads as about a dragon (does the annotation carry
the prompt's constraint?).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import sample  # noqa: E402
from pretrain import load_model  # noqa: E402


def parsed(annotation):
    """{field: value} of every `field: value` part of a sampled annotation, valid or not (a model
    may write `character: Lily`); the strict data.parse_annotation would drop the whole annotation."""
    out = {}
    for part in (annotation or "").split("|"):
        field, sep, value = part.partition(":")
        if sep and field.strip() in data.FIELDS:
            out.setdefault(field.strip(), value.strip())
    return out


def valid(ann):
    return len(ann) == len(data.FIELDS) and all(v in data.FIELDS[f] for f, v in ann.items())


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: python bench/bench_anchor.py <annotated base or anchored SFT checkpoint dir> <K>")
    torch.set_num_threads(1)
    model, ckpt, enc = load_model(sys.argv[1])
    k = int(sys.argv[2])
    base = ckpt["fmt"] in ("plain", "annotated")
    samples = sample.sample_stories(model, enc, ckpt["fmt"], None if base else "Write a story.", k, seed=1,
                                    batch_size=min(k, 50))
    anns = [parsed(s["annotation"]) for s in samples]
    labels = [data.annotate(s["text"]) for s in samples]
    print(f"{sys.argv[1]}: K={k}, valid annotations: {sum(valid(a) for a in anns) / k:.2f}")
    print(f"{'field':10s} {'agree(non-fav)':>14s} {'n':>4s} {'fav share':>9s} {'prior':>6s} {'invalid':>7s}")
    for f in data.FIELDS:
        fav = set(data.FAVOURITES[f])
        pairs = [(a[f], lab[f]) for a, lab in zip(anns, labels) if a.get(f) in data.FIELDS[f] and a[f] not in fav]
        agree = sum(v == lab for v, lab in pairs) / len(pairs) if pairs else float("nan")
        vals = [a[f] for a in anns if f in a]
        fav_share = sum(v in fav for v in vals) / len(vals) if vals else float("nan")
        prior = sum(p for v, p in zip(data.FIELDS[f], data.PRIOR[f]) if v in fav)
        bad = sum(v not in data.FIELDS[f] for v in vals) / len(vals) if vals else float("nan")
        print(f"{f:10s} {agree:14.2f} {len(pairs):4d} {fav_share:9.2f} {prior:6.2f} {bad:7.2f}")
    if not base:
        dragon = sample.sample_stories(model, enc, ckpt["fmt"], "Write a story about a dragon.", k, seed=2,
                                       batch_size=min(k, 50))
        in_ann = sum(parsed(s["annotation"]).get("character") == "dragon" for s in dragon) / k
        in_story = sum(data.annotate(s["text"])["character"] == "dragon" for s in dragon) / k
        print(f"'a story about a dragon': annotation says dragon {in_ann:.2f}, story is about a dragon {in_story:.2f}")


if __name__ == "__main__":
    main()
