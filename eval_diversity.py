"""
Measure semantic diversity of sampled stories: the number this repo is about.

For every arm (a checkpoint plus sampling options) and every eval prompt we draw K samples, label
each one with judge.annotate() (the judge), and compute per semantic field the entropy, in bits, of
the empirical label distribution. Semantic diversity D is the mean over the prompt's FREE fields
(those the prompt does not pin). Post-training "collapses" diversity; the paper's claim is that
anchored SFT (annotation first, then the response) collapses it much less than standard SFT.

    python eval_diversity.py --ckpts base=out/base sft=out/sft anchored=out/anchored \
        anchored_off=out/anchored:anchor=off --num_samples 128 --out results/cpu

Several checkpoints per arm (name=dir_s0,dir_s1,dir_s2) are seeds: every headline number is then
reported per seed and as the median over seeds, with an interval that includes seed variance.

Writes summary.json (every number), summary.md (a table for the README), headline.json (the
headline numbers), samples.jsonl.gz (every sample with its labels) and PNG plots. The metric
functions at the top are pure, so the tests can check them on hand-made inputs with exact answers.
"""
import argparse
import json
import math
import os
import random
import time
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

import judge
import world
from checkpoint import check_out_dir, load_model
from device import check_device, pick_device, pick_dtype
from sample import sample_many
from tokenizer import BASE_FORMATS, cut_at_special, resolve_anchor

UNKNOWN = "?"  # the annotator says None when it cannot tell; that counts as its own label
KINDS = ("open", "constrained")

# -----------------------------------------------------------------------------
# pure metric functions

def entropy_bits(labels, drop_unknown=False) -> float:
    """Plug-in (empirical) entropy in bits of a list of labels; None counts as the label '?'.
    drop_unknown: leave the unknown labels out instead (an unknown mixed with a collapsed label
    adds entropy the model did not write; report both). Nothing left to count gives nan."""
    counts = Counter(UNKNOWN if x is None else x for x in labels)
    if drop_unknown:
        counts.pop(UNKNOWN, None)
        if not counts:
            return math.nan
    n = sum(counts.values())
    if n == 0:
        raise ValueError("entropy_bits: no labels (need at least one sample)")
    return 0.0 - sum((c / n) * math.log2(c / n) for c in counts.values())

def distinct(tuples) -> int:
    """Number of distinct joint label tuples (NoveltyBench-style distinct count; divide by K)."""
    return len({tuple(UNKNOWN if x is None else x for x in t) for t in tuples})

def _ratio(a: float, b: float) -> float:
    # a/b that says inf/nan instead of raising: a collapse of exactly 0 happens with tiny K
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b

def collapse(d_base: float, d_model: float) -> float:
    """Diversity collapse of a model: how many bits of D post-training lost, D(base) - D(model)."""
    return d_base - d_model

def collapse_ratio(d_base: float, d_sft: float, d_anchored: float) -> float:
    """collapse(SFT) / collapse(anchored): how many times more standard SFT collapses (paper: ~6)."""
    return _ratio(collapse(d_base, d_sft), collapse(d_base, d_anchored))

def gap_closed(d_base: float, d_sft: float, d_anchored: float) -> float:
    """(D(anchored) - D(SFT)) / (D(base) - D(SFT)): share of the lost diversity anchoring keeps (paper: ~0.85).
    Note gap_closed = 1 - 1/collapse_ratio, so the two numbers say the same thing two ways."""
    return _ratio(d_anchored - d_sft, d_base - d_sft)

def bootstrap_ci(statistic, groups, n_boot=1000, alpha=0.05, seed=0):
    """Basic (reverse-percentile) bootstrap confidence interval of statistic(*groups): every group
    (an array of samples along axis 0) is resampled with replacement, independently, n_boot times;
    the interval is [2*est - q_hi, 2*est - q_lo]. Why basic and not percentile: a resample of K
    samples holds only ~63% distinct ones, so plug-in entropies of resamples sit systematically
    below the estimate; the basic interval reflects that shift back instead of inheriting it.
    Seeded: the same inputs give the same interval. Non-finite resampled values (0/0) are dropped."""
    rng = np.random.default_rng(seed)
    groups = [np.asarray(g) for g in groups]
    est = statistic(*groups)
    vals = np.asarray([statistic(*[g[rng.integers(0, len(g), len(g))] for g in groups]) for _ in range(n_boot)],
                      dtype=float)
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0 or not math.isfinite(est):
        return (math.nan, math.nan)
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(2 * est - hi), float(2 * est - lo))

def _entropy_codes(codes, drop_unknown=False) -> float:
    """entropy_bits for integer-coded labels (fast path used inside the bootstrap); code 0 is the
    unknown label (see _codes), left out with drop_unknown."""
    counts = np.bincount(codes)
    if drop_unknown:
        counts = counts[1:]
    n = counts.sum()
    if n == 0:
        return math.nan
    p = counts[counts > 0] / n
    return float(0.0 - (p * np.log2(p)).sum())

def seed_bootstrap_ci(per_seed, n_boot=1000, alpha=0.05, seed=0):
    """Interval of the median over seeds that includes seed variance: a two-level bootstrap.
    per_seed = [(statistic, groups)], one per seed (as bootstrap_ci takes them). Each replicate
    draws as many seeds as there are, with replacement, resamples the groups of each drawn seed
    within it, and takes the median of the drawn seeds' statistics. Basic interval around the
    median of the per-seed estimates, as bootstrap_ci (same reason). With one seed it is the
    within-seed bootstrap. Returns (median, (lo, hi))."""
    rng = np.random.default_rng(seed)
    per_seed = [(stat, [np.asarray(g) for g in groups]) for stat, groups in per_seed]
    ests = np.asarray([stat(*groups) for stat, groups in per_seed], dtype=float)
    if not np.isfinite(ests).any():
        return math.nan, (math.nan, math.nan)
    est = float(np.nanmedian(ests))  # a seed whose statistic is undefined (0/0) is left out
    vals = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(per_seed), len(per_seed))
        v = [per_seed[i][0](*[g[rng.integers(0, len(g), len(g))] for g in per_seed[i][1]]) for i in drawn]
        v = np.asarray(v, dtype=float)
        vals.append(np.median(v[np.isfinite(v)]) if np.isfinite(v).any() else math.nan)
    vals = np.asarray(vals, dtype=float)
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0 or not math.isfinite(est):
        return est, (math.nan, math.nan)
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return est, (float(2 * est - hi), float(2 * est - lo))

def over_seeds(values) -> dict:
    """A headline statistic over seeds: the median, each seed's value, min and max (None = missing)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return {"median": float(np.median(vals)) if vals else None, "per_seed": list(values),
            "min": min(vals) if vals else None, "max": max(vals) if vals else None}

# -----------------------------------------------------------------------------
# metrics of one set of samples (K samples of one arm on one prompt)

def label_samples(samples):
    """Add the judge's verdicts to every sample dict (in place): labels, quality, house format, words.
    The judge reads the story only: the text is cut at the first special token."""
    for s in samples:
        s["text"] = cut_at_special(s["text"])
        s["labels"] = judge.annotate(s["text"])
        s["quality"] = bool(judge.quality(s["text"]))
        s["house"] = bool(judge.is_house_format(s["text"]))
        s["words"] = len(s["text"].split())
    return samples

def annotation_fields(text) -> dict:
    """Lenient parse of a sampled annotation 'character: fox | name: Mia | ...' -> {field: value}
    (unlike world.parse_annotation it keeps going past values that are not in FIELDS)."""
    out = {}
    for part in (text or "").split("|"):
        key, sep, value = part.partition(":")
        if sep and key.strip() in world.FIELDS:
            out.setdefault(key.strip(), value.strip())
    return out

def annotation_agreement(samples) -> dict:
    """The gate before SFT, per field: {field: {"share", "n"}}. Over the samples whose own sampled
    annotation gives that field a valid value OUTSIDE the SFT favourites (n of them), the share
    whose story label (the judge's) equals that value: does the story read its annotation? The
    favourites are left out because an SFT model writes them whatever the annotation says. share
    is None where n = 0 (length: every value is a favourite; rows without annotations)."""
    out = {}
    for f in world.FIELDS:
        hits = n = 0
        for s in samples:
            v = annotation_fields(s.get("annotation")).get(f)
            if v in world.FIELDS[f] and v not in world.FAVOURITES[f]:
                n += 1
                hits += s["labels"][f] == v
        out[f] = {"share": hits / n if n else None, "n": n}
    return out

def agreement_min(agreement: dict):
    """The smallest per-field agreement (the gate value): None when no field was measurable."""
    shares = [a["share"] for a in agreement.values() if a["share"] is not None]
    return min(shares) if shares else None

def annotation_prior(samples_by_field: dict) -> dict:
    """What the sampled annotations say, per field: {field: {"fav_share", "entropy", "n", "invalid"}}.
    samples_by_field = {field: the samples where that field is free (the prompt does not pin it)}.
    fav_share: share of the valid values that are SFT favourites; entropy (bits) of the valid values;
    invalid: share of samples whose annotation has no valid value for the field (left out above)."""
    out = {}
    for f, samples in samples_by_field.items():
        vals = [annotation_fields(s.get("annotation")).get(f) for s in samples if s.get("annotation")]
        valid = [v for v in vals if v in world.FIELDS[f]]
        out[f] = {"fav_share": sum(v in world.FAVOURITES[f] for v in valid) / len(valid) if valid else None,
                  "entropy": entropy_bits(valid) if valid else None, "n": len(valid),
                  "invalid": 1 - len(valid) / len(vals) if vals else None}
    return out

def exact_annotation_prior() -> dict:
    """The same two numbers for the pretraining prior itself, exactly: {field: {"fav_share", "entropy"}}."""
    ent = world.prior_entropy()
    return {f: {"fav_share": float(sum(p for v, p in zip(world.FIELDS[f], world.PRIOR[f]) if v in world.FAVOURITES[f])),
                "entropy": ent[f]} for f in world.FIELDS}

def prior_drift_max(anchored: dict, base: dict):
    """Largest rise of the favourite share of any field, anchored vs annotated base (annotation_prior
    dicts): did SFT pull the masked annotation values toward the favourites? None if not measurable."""
    rises = [anchored[f]["fav_share"] - base[f]["fav_share"] for f in anchored
             if f in base and anchored[f]["fav_share"] is not None and base[f]["fav_share"] is not None]
    return max(rises) if rises else None

def follows(sample, constraints) -> bool:
    """Does the story satisfy every field the prompt pins (as the judge reads it)?"""
    return all(sample["labels"][f] == v for f, v in constraints.items())

def annotation_valid(samples):
    """Share of sampled annotations that are well formed: every field once, each value in FIELDS
    (SFT can damage a model's annotation writing even with the annotation loss masked)."""
    anns = [s["annotation"] for s in samples if s.get("annotation")]
    ok = lambda a: (len(a.split("|")) == len(world.FIELDS) and
                    all(annotation_fields(a).get(f) in world.FIELDS[f] for f in world.FIELDS))
    return sum(ok(a) for a in anns) / len(anns) if anns else None

def prompt_metrics(samples, constraints) -> dict:
    """Every per-prompt number, from labelled samples; entropy over the fields the prompt leaves free."""
    free = world.free_fields(constraints)
    k = len(samples)
    per_field = {f: entropy_bits([s["labels"][f] for s in samples]) for f in free}
    known = {f: entropy_bits([s["labels"][f] for s in samples], drop_unknown=True) for f in free}
    unknown = {f: sum(s["labels"][f] is None for s in samples) / k for f in free}
    ok = [follows(s, constraints) for s in samples]
    compliant = [s for s, o in zip(samples, ok) if o]
    n_distinct = distinct(tuple(s["labels"][f] for f in free) for s in samples)
    agreement = annotation_agreement(samples)
    return {
        "K": k,
        "free_fields": free,
        "D": float(np.mean(list(per_field.values()))),
        # unknown labels dropped (fields with no known label left out of the mean)
        "D_known": _nanmean(known.values()),
        # constrained prompts: D over the samples that obey the prompt only (None under 2 of them)
        "D_compliant": (float(np.mean([entropy_bits([s["labels"][f] for s in compliant]) for f in free]))
                        if constraints and len(compliant) >= 2 else None),
        "n_compliant": len(compliant) if constraints else None,
        "entropy": per_field,
        "entropy_known": known,
        "unknown_share": float(np.mean(list(unknown.values()))),
        "unknown_by_field": unknown,
        "distinct": n_distinct,
        "distinct_frac": n_distinct / k,
        "quality": sum(s["quality"] for s in samples) / k,
        "house_format": sum(s["house"] for s in samples) / k,
        "quality_and_house": sum(s["quality"] and s["house"] for s in samples) / k,
        "instruction_following": (sum(ok) / k) if constraints else None,
        "words": sum(s["words"] for s in samples) / k,
        "finished": sum(s.get("finished", True) for s in samples) / k,
        # share of stories that ended at <|eos|>, not at another special token (None: reference rows)
        "eos_stop": (sum(s["stop"] == "<|eos|>" for s in samples) / k) if all("stop" in s for s in samples) else None,
        "annotation_agreement": agreement_min(agreement),  # the smallest field's share (see row["gate"])
        "annotation_valid": annotation_valid(samples),
    }

def _nanmean(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None

def kind_metrics(per_prompt: list) -> dict:
    """Average per-prompt metrics over the prompts of one kind (open or constrained)."""
    out = {"n_prompts": len(per_prompt)}
    for key in ("D", "D_known", "D_compliant", "unknown_share", "distinct_frac", "quality", "house_format", "quality_and_house",
                "instruction_following", "words", "finished", "eos_stop", "annotation_agreement", "annotation_valid"):
        vals = [m[key] for m in per_prompt if m[key] is not None]
        out[key] = float(np.mean(vals)) if vals else None
    fields = [f for f in world.FIELDS if any(f in m["entropy"] for m in per_prompt)]
    out["entropy"] = {f: float(np.mean([m["entropy"][f] for m in per_prompt if f in m["entropy"]])) for f in fields}
    return out

# -----------------------------------------------------------------------------
# reference rows: the pretraining data (ceiling) and the SFT data (floor), same estimator and K

def pretrain_reference(k: int, seed: int) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(k):
        ann = world.sample_annotation(rng)
        out.append({"annotation": world.format_annotation(ann), "text": world.render_story(ann, rng)})
    return out

def sft_reference(k: int, narrowness: float, prompt: dict, seed: int) -> list:
    """K SFT-data responses to a prompt: what world.make_sft_example would pair with exactly this
    prompt's constraints (pinned fields as asked, free fields from the narrow preferred distribution,
    house format). Built from make_sft_example's own parts, so the floor row is the SFT data itself."""
    rng = random.Random(seed)
    out = []
    for _ in range(k):
        ann = world.sample_sft_annotation(rng, narrowness, prompt["constraints"])
        out.append({"annotation": world.format_annotation(ann),
                    "text": world.house_format(world.make_title(ann, rng), world.render_story(ann, rng))})
    return out

def find_narrowness(ckpts: list) -> float:
    """The SFT data's narrowness the SFT arms were trained on (train config, else the data's meta.json)."""
    for ckpt in ckpts:
        if ckpt.get("kind") != "sft":
            continue
        cfg = ckpt.get("config") or {}
        if cfg.get("narrowness") is not None:
            return float(cfg["narrowness"])
        meta_path = os.path.join(ckpt.get("data_dir") or "", "meta.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            for d in (meta, meta.get("knobs") or {}, meta.get("options") or {}):
                if isinstance(d, dict) and d.get("narrowness") is not None:
                    return float(d["narrowness"])
    return float(world.DEFAULT_NARROWNESS)

# -----------------------------------------------------------------------------
# arms: "name=path[,path...][:key=value...]"
#
# Several comma-separated checkpoint dirs are the seeds of one arm (e.g. three SFT runs that differ
# by their seed): seed i of the evaluation uses each arm's i-th checkpoint, or its only one (a base
# shared by every SFT seed is sampled once). Every headline number is then reported per seed and as
# the median over seeds.

ARM_OPTIONS = {"anchor": str, "temperature": str, "top_k": int, "top_p": float, "ann": str}

def parse_arm(spec: str, temperatures) -> dict:
    """'anchored_off=out/anchored:anchor=off' -> dict(name, path, paths, anchor, temperatures, top_k, top_p).
    temperature=0.6,0.8 in the spec overrides --temperature for this arm. 'sft=runs/s0,runs/s1' gives
    paths ['runs/s0', 'runs/s1'] (one per seed); path is the first."""
    if "=" not in spec:
        raise ValueError(f"arm spec {spec!r} must look like name=ckpt_dir[,ckpt_dir_seed2...][:anchor=off][:temperature=0.6,1.0]")
    name, rest = spec.split("=", 1)
    path, *opts = rest.split(":")
    paths = path.split(",")
    if any(not p for p in paths):
        raise ValueError(f"arm {name}: empty checkpoint dir in {path!r}; write name=dir_seed0,dir_seed1")
    arm = {"name": name, "path": paths[0], "paths": paths, "anchor": "auto", "temperatures": list(temperatures),
           "top_k": None, "top_p": None, "ann": "free"}
    for opt in opts:
        key, _, val = opt.partition("=")
        if key not in ARM_OPTIONS or not val:
            raise ValueError(f"arm {name}: unknown option {opt!r}; valid: {', '.join(k + '=...' for k in ARM_OPTIONS)}")
        if key == "temperature":
            arm["temperatures"] = [float(t) for t in val.split(",")]
        elif key == "anchor":
            if val not in ("auto", "on", "off"):
                raise ValueError(f"arm {name}: anchor={val!r}; valid: auto, on, off")
            arm["anchor"] = val
        elif key == "ann":
            if val not in ("free", "by_field"):
                raise ValueError(f"arm {name}: ann={val!r}; valid: free (the model writes the annotation), "
                                 f"by_field (keys forced, values sampled)")
            arm["ann"] = val
        else:
            arm[key] = ARM_OPTIONS[key](val)
    if not name or not path:
        raise ValueError(f"arm spec {spec!r} needs both a name and a checkpoint dir")
    return arm

def row_name(arm: dict, t: float, seed_index: int = 0) -> str:
    # one row per arm x temperature x seed; an arm sampled at one temperature keeps its bare name,
    # an arm with one checkpoint has no seed suffix
    name = arm["name"] if len(arm["temperatures"]) == 1 else f"{arm['name']}@T{t:g}"
    return name if len(arm.get("paths", [arm["path"]])) == 1 else f"{name}#s{seed_index}"

def num_seeds(arms) -> int:
    """Seeds of the evaluation: the most checkpoints any arm has; every arm has that many or one."""
    n = max(len(a["paths"]) for a in arms)
    bad = [f"{a['name']} ({len(a['paths'])})" for a in arms if len(a["paths"]) not in (1, n)]
    if bad:
        raise ValueError(f"arms with {n} seeds and arms with another count: {', '.join(bad)}; "
                         f"give every arm {n} checkpoints or one")
    return n

def resolve_row(rows: dict, name: str, seed_index: int = 0):
    """A derived-metric arm name: the row of that name, else that arm's row of this seed (or its
    only one) closest to T=1."""
    if name in rows:
        return rows[name]
    cands = [r for r in rows.values() if r["arm"] == name and r.get("seed_index") in (None, seed_index)]
    return min(cands, key=lambda r: abs(r["temperature"] - 1.0)) if cands else None

# -----------------------------------------------------------------------------
# the evaluation: sample every row, add the reference rows, measure

def sample_rows(arms, models, prompts, num_samples, seed, batch_size, max_new_tokens, progress=True,
                dtype=None) -> dict:
    """{row name: row} where row["samples"] = {prompt index: labelled samples}; a base model sees no
    prompt (it is sampled in its own document format), so its one sample set sits under the key None."""
    jobs = []
    for arm in arms:
        for si, path in enumerate(arm["paths"]):
            _, ckpt, _ = models[path]
            try:
                anchor = resolve_anchor(ckpt["fmt"], arm["anchor"])
            except ValueError as e:
                raise ValueError(f"arm {arm['name']} ({path}): {e}") from None
            is_base = ckpt.get("kind") == "base" or ckpt["fmt"] in BASE_FORMATS
            for t in arm["temperatures"]:
                jobs.append((arm, si, path, t, [None] if is_base else list(range(len(prompts))), is_base, anchor))
    rows = {}
    bar = tqdm(total=sum(len(j[4]) for j in jobs) * num_samples, desc="sampling", unit="sample", disable=not progress)
    for arm, si, path, t, pis, is_base, anchor in jobs:
        model, ckpt, enc = models[path]
        name = row_name(arm, t, si)
        bar.set_postfix_str(f"{name} {'(no prompt)' if is_base else f'{len(pis)} prompts'}")
        # every prompt of a row in shared generate calls (batch_size rows each); the same seed for
        # every arm: arms differ by their model, not by their luck; another seed index draws other samples
        per_prompt = sample_many(model, enc, ckpt["fmt"], [None if pi is None else prompts[pi]["prompt"] for pi in pis],
                                 num_samples, temperature=t, top_k=arm["top_k"], top_p=arm["top_p"],
                                 seed=seed + 104729 * si, max_new_tokens=max_new_tokens, anchor=anchor,
                                 batch_size=batch_size, ann_by_field=arm["ann"] == "by_field", dtype=dtype)
        bar.update(len(pis) * num_samples)
        row = rows.setdefault(name, {"row": name, "arm": arm["name"], "role": "base" if is_base else "sft",
                                     "ckpt": path, "seed_index": si if len(arm["paths"]) > 1 else None,
                                     "fmt": ckpt["fmt"], "temperature": t, "anchor": arm["anchor"],
                                     "ann": arm["ann"], "top_k": arm["top_k"], "top_p": arm["top_p"], "samples": {}})
        for pi, samples in zip(pis, per_prompt):
            row["samples"][pi] = label_samples(samples)
    bar.close()
    return rows

def reference_rows(prompts, num_samples, narrowness, seed) -> dict:
    """The pretraining data (ceiling, no prompt, like a base model) and the SFT data (floor, per prompt)."""
    pre = {"row": "pretrain_data", "arm": "pretrain_data", "role": "reference", "fmt": "-", "temperature": None,
           "samples": {None: label_samples(pretrain_reference(num_samples, seed))}}
    sft = {"row": "sft_data", "arm": "sft_data", "role": "reference", "fmt": "-", "temperature": None,
           "narrowness": narrowness, "samples": {}}
    for pi, p in enumerate(prompts):
        sft["samples"][pi] = label_samples(sft_reference(num_samples, narrowness, p, seed + pi))
    return {"pretrain_data": pre, "sft_data": sft}

def prompt_samples(row, pi):
    return row["samples"][None if None in row["samples"] else pi]

def measure_rows(rows, prompts):
    """Fill row["prompts"] (per-prompt metrics) and row["by_kind"] (averaged over open / constrained)."""
    for row in rows.values():
        row["prompts"] = []
        for pi, p in enumerate(prompts):
            m = prompt_metrics(prompt_samples(row, pi), p["constraints"])
            row["prompts"].append({"prompt": p["prompt"], "kind": p["kind"], "constraints": p["constraints"],
                                   "held_out": p.get("held_out", False), **m})
        row["by_kind"] = {k: kind_metrics([m for m in row["prompts"] if m["kind"] == k])
                          for k in KINDS if any(m["kind"] == k for m in row["prompts"])}
        row["gate"] = row_gate(row)
        row["annotation_prior"] = row_annotation_prior(row, prompts)

def exact_entropies(prompts, narrowness) -> dict:
    """The exact entropies world.py computes: the prior (ceiling) and the SFT data (floor), per prompt."""
    prior = world.prior_entropy()
    out = {"prior": prior, "narrowness": narrowness, "by_prompt": []}
    for p in prompts:
        free = world.free_fields(p["constraints"])
        sft = world.sft_entropy(narrowness, p["constraints"])
        out["by_prompt"].append({"prompt": p["prompt"], "kind": p["kind"], "D_prior": float(np.mean([prior[f] for f in free])),
                                 "D_sft_data": float(np.mean([sft[f] for f in free])), "sft_entropy": sft})
    return out

def evaluate(arms, prompts=None, num_samples=128, seed=1337, batch_size=128, max_new_tokens=None,
             narrowness=None, base_arm="base", sft_arm="sft", anchored_arm="anchored", n_boot=1000,
             device="cpu", progress=True, annotated_base_arm=None, dtype="auto") -> tuple:
    """Sample every arm (list of parse_arm() dicts) on every prompt, label, measure; on `device`
    (auto = cuda > mps > cpu), in dtype (auto = device.pick_dtype's policy). Several checkpoints per arm are seeds (see parse_arm).
    Returns (summary dict: every number, rows: {name: row with its labelled samples})."""
    prompts = prompts if prompts is not None else world.EVAL_PROMPTS
    n_seeds = num_seeds(arms)
    device = pick_device(device)
    dtype = pick_dtype(device, dtype)
    models = {}
    for arm in arms:
        for path in arm["paths"]:
            if path not in models:
                models[path] = load_model(path, device=device)
    if narrowness is None:
        narrowness = find_narrowness([ckpt for _, ckpt, _ in models.values()])
    t0 = time.time()
    rows = sample_rows(arms, models, prompts, num_samples, seed, batch_size, max_new_tokens, progress, dtype)
    elapsed = time.time() - t0
    n_sampled = sum(len(s) for r in rows.values() for s in r["samples"].values())
    rows.update(reference_rows(prompts, num_samples, narrowness, seed))
    measure_rows(rows, prompts)
    per_seed = [derive(rows, prompts, base_arm, sft_arm, anchored_arm, n_boot, seed, i) for i in range(n_seeds)]
    derived = dict(per_seed[0])  # seed 0 at the top level, as with one seed
    if n_seeds > 1:
        derived["per_seed"] = per_seed
    names = {"base": base_arm, "sft": sft_arm, "anchored": anchored_arm, "annotated_base": annotated_base_arm}
    abase = annotated_base_row(rows, annotated_base_arm)
    summary = {
        "config": {"num_samples": num_samples, "seed": seed, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                   "narrowness": narrowness, "base_arm": base_arm, "sft_arm": sft_arm, "anchored_arm": anchored_arm,
                   "annotated_base_arm": annotated_base_arm, "n_boot": n_boot, "arms": arms, "prompts": prompts,
                   "unknown_label": UNKNOWN, "device": device, "dtype": str(dtype).replace("torch.", ""),
                   "n_seeds": n_seeds},
        "rows": [{k: v for k, v in r.items() if k != "samples"} for r in rows.values()],
        "exact": exact_entropies(prompts, narrowness),
        "exact_annotation_prior": exact_annotation_prior(),
        "annotated_base_row": abase and abase["row"],
        "derived": derived,
        "over_seeds": seed_summary(rows, prompts, names, n_seeds, per_seed, n_boot, seed),
        "speed": {"samples": n_sampled, "seconds": elapsed, "samples_per_s": n_sampled / max(elapsed, 1e-9),
                  "threads": torch.get_num_threads(), "device": device},
    }
    return summary, rows

# -----------------------------------------------------------------------------
# derived numbers with bootstrap confidence intervals

def _codes(samples) -> np.ndarray:
    """(K, n_fields) integer matrix of labels, one column per field of world.FIELDS; code 0 is the
    unknown label, the field's values are 1..n (a label outside them gets a new code)."""
    cols = []
    for f in world.FIELDS:
        vocab = {v: i for i, v in enumerate([UNKNOWN] + list(world.FIELDS[f]))}
        cols.append([vocab.setdefault(UNKNOWN if s["labels"][f] is None else s["labels"][f], len(vocab)) for s in samples])
    return np.asarray(cols, dtype=np.int64).T

def _kind_plan(row, prompts, kind):
    """[(sample-set key, free column indices)] for the prompts of one kind."""
    names = list(world.FIELDS)
    key = lambda pi: None if None in row["samples"] else pi  # a base row: one sample set for all prompts
    return [(key(pi), [names.index(f) for f in world.free_fields(p["constraints"])])
            for pi, p in enumerate(prompts) if p["kind"] == kind]

def _diversity(mats: dict, plan, known=False) -> float:
    # D of a kind: mean over its prompts of the mean free-field entropy (known: unknown labels
    # dropped, and a field with no known label left out of the mean)
    per_prompt = [[_entropy_codes(mats[k][:, c], known) for c in cols] for k, cols in plan]
    vals = [np.mean([e for e in es if math.isfinite(e)]) if any(math.isfinite(e) for e in es) else math.nan
            for es in per_prompt]
    return float(np.mean(vals))

def _stat_groups(mats, plans, names, fn, known=False):
    """fn of the named rows' D as a bootstrap statistic: (statistic(*groups), groups), the groups
    being the sample sets of the named rows flattened in a fixed order."""
    keys = [(n, k) for n in names for k in sorted(mats[n], key=lambda x: -1 if x is None else x)]
    def stat(*groups):
        m = {}
        for (n, k), g in zip(keys, groups):
            m.setdefault(n, {})[k] = g
        return fn(*[_diversity(m[n], plans[n], known) for n in names])
    return stat, [mats[n][k] for n, k in keys]

HEADLINE_D = (("gap_closed", gap_closed, False), ("gap_closed_known", gap_closed, True),
              ("collapse_ratio", collapse_ratio, False), ("collapse_ratio_known", collapse_ratio, True))

def derive(rows, prompts, base_arm, sft_arm, anchored_arm, n_boot, seed, seed_index=0) -> dict:
    """Collapse of every row vs the base arm; collapse ratio and gap closed of sft vs anchored, with
    unknown labels as a label and dropped (_known). CIs resample the samples of each (row, prompt)
    set, a base row's one set shared by all prompts. seed_index: which seed's rows of each arm."""
    base, sft, anch = (resolve_row(rows, n, seed_index) for n in (base_arm, sft_arm, anchored_arm))
    out = {"base_row": base and base["row"], "sft_row": sft and sft["row"], "anchored_row": anch and anch["row"]}
    if base is None:
        out["note"] = f"no row named {base_arm!r} (--base_arm): no collapse numbers"
        return out
    # this seed's rows and the rows every seed shares (an arm with one checkpoint)
    rows = {n: r for n, r in rows.items() if r.get("seed_index") in (None, seed_index)}
    mats = {r["row"]: {k: _codes(v) for k, v in r["samples"].items()} for r in rows.values()}
    for kind in KINDS:
        if not any(p["kind"] == kind for p in prompts):
            continue
        plans = {name: _kind_plan(r, prompts, kind) for name, r in rows.items()}
        d = {name: _diversity(mats[name], plans[name]) for name in rows}
        res = {"D": d, "D_known": {name: _diversity(mats[name], plans[name], True) for name in rows}, "collapse": {}}
        for i, name in enumerate(rows):
            if name == base["row"]:
                continue
            stat, groups = _stat_groups(mats, plans, [base["row"], name], collapse)
            res["collapse"][name] = {"value": collapse(d[base["row"]], d[name]),
                                     "ci95": bootstrap_ci(stat, groups, n_boot, seed=seed + i)}
        if sft is not None and anch is not None:
            names = [base["row"], sft["row"], anch["row"]]
            for j, (key, fn, known) in enumerate(HEADLINE_D):
                stat, groups = _stat_groups(mats, plans, names, fn, known)
                res[key] = {"value": fn(*[(res["D_known"] if known else d)[n] for n in names]),
                            "ci95": bootstrap_ci(stat, groups, n_boot, seed=seed + 1000 + j)}
        out[kind] = res
    return out

# -----------------------------------------------------------------------------
# the gate, the annotation prior, and the numbers over seeds

def row_gate(row):
    """A row's annotation agreement per field, pooled over all its samples (None: no annotations)."""
    samples = [s for ss in row["samples"].values() for s in ss]
    return annotation_agreement(samples) if any(s.get("annotation") for s in samples) else None

def row_annotation_prior(row, prompts):
    """annotation_prior of a row: for each field, the samples of the prompts that leave it free
    (a base row's one sample set for every field). None: the row samples no annotation."""
    if not any(s.get("annotation") for ss in row["samples"].values() for s in ss):
        return None
    if None in row["samples"]:
        return annotation_prior({f: row["samples"][None] for f in world.FIELDS})
    by_field = {f: [s for pi, p in enumerate(prompts) if f in world.free_fields(p["constraints"])
                    for s in row["samples"][pi]] for f in world.FIELDS}
    return annotation_prior({f: ss for f, ss in by_field.items() if ss})

def annotated_base_row(rows, name, seed_index=0):
    """The annotated base: the row/arm named (--annotated_base_arm), else the first base row of fmt
    'annotated' sampled with its annotation."""
    if name:
        return resolve_row(rows, name, seed_index)
    cands = [r for r in rows.values() if r.get("fmt") == "annotated" and r.get("anchor") != "off"
             and r.get("seed_index") in (None, seed_index)]
    return cands[0] if cands else None

def seed_numbers(rows, names, seed_index) -> dict:
    """The headline numbers of one seed: {name: value or None}. names = dict(base, sft, anchored,
    annotated_base) arm names; rows already measured (measure_rows) and derived for this seed."""
    sft, anch = (resolve_row(rows, names[k], seed_index) for k in ("sft", "anchored"))
    abase = annotated_base_row(rows, names.get("annotated_base"), seed_index)
    get = lambda r, kind, key: (r or {}).get("by_kind", {}).get(kind, {}).get(key)
    drift = None
    if anch is not None and abase is not None and anch.get("annotation_prior") and abase.get("annotation_prior"):
        drift = prior_drift_max(anch["annotation_prior"], abase["annotation_prior"])
    return {"quality_sft": get(sft, "open", "quality_and_house"),
            "quality_anchored": get(anch, "open", "quality_and_house"),
            "instruction_sft": get(sft, "constrained", "instruction_following"),
            "instruction_anchored": get(anch, "constrained", "instruction_following"),
            "prior_drift_max": drift,
            "base_agreement_min": agreement_min(abase["gate"]) if abase and abase.get("gate") else None}

def seed_summary(rows, prompts, names, n_seeds, derived_per_seed, n_boot, seed, kind="open") -> dict:
    """Every headline statistic over seeds (over_seeds: median, per seed, min, max). The D-based ones
    (gap closed, collapse ratio, as-label and known) also get ci95 from seed_bootstrap_ci: seeds
    resampled, then samples within each seed (so the interval includes seed variance)."""
    out = {}
    mats = {r["row"]: {k: _codes(v) for k, v in r["samples"].items()} for r in rows.values()}
    plans = {name: _kind_plan(r, prompts, kind) for name, r in rows.items()}
    for j, (key, fn, known) in enumerate(HEADLINE_D):
        vals = [(d.get(kind) or {}).get(key, {}).get("value") for d in derived_per_seed]
        out[key] = over_seeds(vals)
        per_seed = [_stat_groups(mats, plans, [d["base_row"], d["sft_row"], d["anchored_row"]], fn, known)
                    for d in derived_per_seed if d.get(kind) and key in d[kind]]
        if per_seed:
            _, out[key]["ci95"] = seed_bootstrap_ci(per_seed, n_boot, seed=seed + 3000 + j)
    nums = [seed_numbers(rows, names, i) for i in range(n_seeds)]
    for key in nums[0]:
        out[key] = over_seeds([n[key] for n in nums])
    out["kind"], out["n_seeds"] = kind, n_seeds
    out["ci_method"] = ("two-level bootstrap: seeds resampled with replacement, then samples within each "
                        "drawn seed; basic interval around the median over seeds")
    return out

def headline(summary, size=None, wall_seconds=None) -> dict:
    """The headline numbers of one evaluation (results/<preset>/headline.json): each statistic as its
    median over seeds with its per-seed values (gap closed also with its interval). wall_seconds is
    the preset's, which reproduce.py knows and passes (None here)."""
    o = summary["over_seeds"]
    pick = lambda k, extra=(): {"median": o[k]["median"], "per_seed": o[k]["per_seed"],
                                **{e: o[k].get(e) for e in extra}}
    out = {"size": size, "seeds": o["n_seeds"], "prompts": o["kind"],
           "gap_closed": pick("gap_closed", ("ci95", "min", "max")),
           "gap_closed_known": pick("gap_closed_known", ("ci95", "min", "max"))}
    for k in ("collapse_ratio", "quality_sft", "quality_anchored", "instruction_sft", "instruction_anchored",
              "prior_drift_max", "base_agreement_min"):
        out[k] = pick(k)
    out["wall_seconds"] = wall_seconds
    return out

# -----------------------------------------------------------------------------
# outputs: summary.json, summary.md, samples.jsonl, plots

def _finite(x):
    # JSON has no inf/nan: write null (the Markdown table says "n/a")
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x

def _fmt(x, nd=2):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}f}"

def summary_markdown(summary) -> str:
    cfg, lines = summary["config"], []
    lines.append(f"K = {cfg['num_samples']} samples per prompt, seed {cfg['seed']}; D = mean per-field entropy "
                 f"(bits) of annotator labels over the prompt's free fields ('{UNKNOWN}' = unknown counts as a label).\n")
    for kind in KINDS:
        rows = [r for r in summary["rows"] if kind in r["by_kind"]]
        if not rows:
            continue
        coll = {}  # every seed's collapse numbers (seed 0's at the top level)
        for d in summary["derived"].get("per_seed", [summary["derived"]]):
            coll.update((d.get(kind) or {}).get("collapse", {}))
        lines.append(f"**{kind} prompts**\n")
        head = ("| row | fmt | T | D (bits) | D known | collapse [95% CI] | distinct/K | quality | house fmt | unknown "
                "| ann. valid | gate min |")
        sep = "|---|---|---|---|---|---|---|---|---|---|---|---|"
        if kind == "constrained":
            head, sep = head + " instr. follow | D compliant |", sep + "---|---|"
        lines += [head, sep]
        for r in rows:
            m = r["by_kind"][kind]
            c = coll.get(r["row"])
            cs = f"{_fmt(c['value'])} [{_fmt(c['ci95'][0])}, {_fmt(c['ci95'][1])}]" if c else "-"
            t = "-" if r["temperature"] is None else f"{r['temperature']:g}"
            gate = agreement_min(r["gate"]) if r.get("gate") else None
            line = (f"| {r['row']} | {r.get('fmt', '-')} | {t} "
                    f"| {_fmt(m['D'])} | {_fmt(m.get('D_known'))} | {cs} | {_fmt(m['distinct_frac'])} | {_fmt(m['quality'])} "
                    f"| {_fmt(m['house_format'])} | {_fmt(m['unknown_share'])} | {_fmt(m['annotation_valid'])} | {_fmt(gate)} |")
            if kind == "constrained":
                line += f" {_fmt(m['instruction_following'])} | {_fmt(m.get('D_compliant'))} |"
            lines.append(line)
        lines.append("")
    rows = [r for r in summary["rows"] if "open" in r["by_kind"]]
    if rows:
        fields = list(world.FIELDS)
        lines.append("**per-field entropy (bits), open prompts**\n")
        lines.append("| row | " + " | ".join(fields) + " |")
        lines.append("|---|" + "---|" * len(fields))
        for r in rows:
            ent = r["by_kind"]["open"]["entropy"]
            lines.append(f"| {r['row']} | " + " | ".join(_fmt(ent.get(f)) for f in fields) + " |")
        lines.append("")
    for kind in KINDS:
        d = summary["derived"].get(kind)
        if d and "collapse_ratio" in d:
            cr, gc = d["collapse_ratio"], d["gap_closed"]
            lines.append(f"- {kind}: collapse ratio ({summary['derived']['sft_row']} / {summary['derived']['anchored_row']}) "
                         f"= {_fmt(cr['value'])} [95% CI {_fmt(cr['ci95'][0])}, {_fmt(cr['ci95'][1])}]; "
                         f"gap closed = {_fmt(gc['value'])} [95% CI {_fmt(gc['ci95'][0])}, {_fmt(gc['ci95'][1])}]")
    lines += gate_markdown(summary) + prior_markdown(summary) + seeds_markdown(summary)
    ex = summary["exact"]
    for kind in KINDS:
        es = [e for e in ex["by_prompt"] if e["kind"] == kind]
        if es:
            lines.append(f"- exact D, {kind} prompts: pretraining prior {_fmt(np.mean([e['D_prior'] for e in es]))} bits, "
                         f"SFT data (narrowness {ex['narrowness']}) {_fmt(np.mean([e['D_sft_data'] for e in es]))} bits "
                         f"(a K-sample plug-in estimate is biased low: compare rows with the *_data rows, same K)")
    return "\n".join(lines) + "\n"

def gate_markdown(summary) -> list:
    """The gate before SFT: per field, does the story follow a non-favourite annotation value?"""
    rows = [r for r in summary["rows"] if r.get("gate")]
    if not rows:
        return []
    fields = [f for f in world.FIELDS if any(r["gate"][f]["n"] for r in rows)]
    out = ["\n**gate: annotation agreement** (share of samples whose story label equals their own annotation's "
           "value, over values outside the SFT favourites; n in brackets; target >= 0.8 on every field)\n",
           "| row | " + " | ".join(fields) + " | min |", "|---|" + "---|" * (len(fields) + 1)]
    for r in rows:
        g = r["gate"]
        out.append(f"| {r['row']} | " + " | ".join(f"{_fmt(g[f]['share'])} ({g[f]['n']})" for f in fields)
                   + f" | {_fmt(agreement_min(g))} |")
    return out + [""]

def prior_markdown(summary) -> list:
    """Prior drift: favourite share / entropy of the sampled annotation values, per field."""
    rows = [r for r in summary["rows"] if r.get("annotation_prior")]
    if not rows:
        return []
    exact = summary["exact_annotation_prior"]
    fields = [f for f in world.FIELDS if set(world.FIELDS[f]) - set(world.FAVOURITES[f])]  # length: all favourites
    out = ["**annotation prior: favourite share / entropy (bits) of the sampled annotation values** "
           "(fields the prompt leaves free)\n",
           "| row | " + " | ".join(fields) + " |", "|---|" + "---|" * len(fields),
           "| exact prior | " + " | ".join(f"{_fmt(exact[f]['fav_share'])} / {_fmt(exact[f]['entropy'])}" for f in fields) + " |"]
    for r in rows:
        a = r["annotation_prior"]
        out.append(f"| {r['row']} | " + " | ".join(
            f"{_fmt(a[f]['fav_share'])} / {_fmt(a[f]['entropy'])}" if f in a else "-" for f in fields) + " |")
    return out + [""]

def seeds_markdown(summary) -> list:
    o = summary.get("over_seeds")
    if not o:
        return []
    out = [f"**headline over {o['n_seeds']} seed(s)** ({o['kind']} prompts; interval: {o['ci_method']})\n",
           "| statistic | median | per seed | min | max | 95% interval |", "|---|---|---|---|---|---|"]
    for k, v in o.items():
        if isinstance(v, dict):
            ci = v.get("ci95")
            out.append(f"| {k} | {_fmt(v['median'])} | {', '.join(_fmt(x) for x in v['per_seed'])} | {_fmt(v['min'])} "
                       f"| {_fmt(v['max'])} | {f'[{_fmt(ci[0])}, {_fmt(ci[1])}]' if ci else '-'} |")
    return out + [""]

def plot_prior_drift(summary, path):
    """Per field: favourite share and entropy of the sampled annotation values, exact prior vs the
    annotated base vs every anchored row (is p(annotation) kept through SFT?)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fields = [f for f in world.FIELDS if set(world.FIELDS[f]) - set(world.FAVOURITES[f])]
    series = [("exact prior", summary["exact_annotation_prior"])]
    series += [(r["row"], r["annotation_prior"]) for r in summary["rows"] if r.get("annotation_prior")]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 1.6 * len(fields)), 4.5))
    w = 0.8 / len(series)
    for ax, key, label in ((axes[0], "fav_share", "favourite share"), (axes[1], "entropy", "entropy (bits)")):
        for i, (name, stats) in enumerate(series):
            ys = [(stats.get(f) or {}).get(key) for f in fields]
            ax.bar(np.arange(len(fields)) + i * w - 0.4 + w / 2, [np.nan if y is None else y for y in ys], w,
                   label=name, color="k" if i == 0 else f"C{i - 1}")
        ax.set_xticks(np.arange(len(fields)), fields, rotation=30)
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle("sampled annotation values: prior vs annotated base vs anchored (python eval_diversity.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

def plot_field_entropy(summary, path, kind="open"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in summary["rows"] if kind in r["by_kind"]]
    fields = list(world.FIELDS)
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(fields)), 4.5))
    w = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        ent = r["by_kind"][kind]["entropy"]
        ax.bar(np.arange(len(fields)) + i * w - 0.4 + w / 2, [ent.get(f, 0.0) for f in fields], w, label=r["row"])
    ax.set_xticks(np.arange(len(fields)), fields)
    ax.set_ylabel("entropy (bits)")
    ax.set_title(f"per-field label entropy, {kind} prompts, K={summary['config']['num_samples']}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

def kind_samples(row, prompts, kind) -> list:
    """A row's samples pooled over the prompts of one kind (a base row's one sample set, once)."""
    if None in row["samples"]:
        return row["samples"][None]
    return [s for pi, p in enumerate(prompts) if p["kind"] == kind for s in row["samples"][pi]]

def plot_label_histograms(rows, prompts, names, path, fields=("name", "setting"), kind="open"):
    """Label counts of some fields for a few rows side by side, on the prompts of one kind."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in names if n is not None and n in rows]
    ncol = max(1, len(names))
    fig, axes = plt.subplots(len(fields), ncol, figsize=(5 * ncol, 3.2 * len(fields)), squeeze=False)
    for i, f in enumerate(fields):
        values = list(world.FIELDS[f]) + [UNKNOWN]
        for j, n in enumerate(names):
            samples, ax = kind_samples(rows[n], prompts, kind), axes[i][j]
            c = Counter(UNKNOWN if s["labels"][f] is None else s["labels"][f] for s in samples)
            ax.bar(range(len(values)), [c.get(v, 0) for v in values], color=f"C{j}")
            ax.set_title(f"{n}: {f} (H = {entropy_bits([s['labels'][f] for s in samples]):.2f} bits, n = {len(samples)})", fontsize=9)
            ax.set_xticks(range(len(values)), values, rotation=90, fontsize=5)
    fig.suptitle(f"label histograms, {kind} prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

def plot_quality_diversity(summary, path, kind="open"):
    """Quality (judge.quality) vs D; rows of one arm at several temperatures drawn as a curve."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    by_arm = {}
    for r in summary["rows"]:
        if kind in r["by_kind"]:
            by_arm.setdefault(r["arm"], []).append(r)
    for i, (arm, rs) in enumerate(by_arm.items()):
        rs = sorted(rs, key=lambda r: r["temperature"] or 0)
        xs = [r["by_kind"][kind]["D"] for r in rs]
        ys = [r["by_kind"][kind]["quality"] for r in rs]
        marker = "s" if rs[0]["role"] == "reference" else "o"
        ax.plot(xs, ys, marker=marker, linestyle="-" if len(rs) > 1 else "none", color=f"C{i % 10}", label=arm)
        for r, x, y in zip(rs, xs, ys):
            if len(rs) > 1:
                ax.annotate(f"T={r['temperature']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"semantic diversity D (bits, {kind} prompts)")
    ax.set_ylabel("quality rate (judge.quality)")
    ax.set_title("quality vs diversity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

def sample_records(rows, prompts):
    """Every sample of every row as one flat dict: row, prompt, annotation text, story text, labels..."""
    for r in rows.values():
        for pi, samples in r["samples"].items():
            for s in samples:
                yield {"row": r["row"], "prompt_index": pi, "prompt": None if pi is None else prompts[pi]["prompt"], **s}

def write_outputs(summary, rows, out_dir, size=None):
    """summary.json, summary.md, headline.json, samples.jsonl.gz and the plots into out_dir."""
    import gzip
    os.makedirs(out_dir, exist_ok=True)
    prompts = summary["config"]["prompts"]
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(_finite(summary), f, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(summary_markdown(summary))
    with open(os.path.join(out_dir, "headline.json"), "w") as f:
        json.dump(_finite(headline(summary, size)), f, indent=1)
    # mtime=0: the same samples give the same bytes (a committed file changes only when they do)
    with gzip.GzipFile(os.path.join(out_dir, "samples.jsonl.gz"), "wb", mtime=0) as f:
        for rec in sample_records(rows, prompts):
            f.write((json.dumps(rec) + "\n").encode())
    plot_prior_drift(summary, os.path.join(out_dir, "prior_drift.png"))
    d = summary["derived"]
    plot_field_entropy(summary, os.path.join(out_dir, "field_entropy.png"))
    plot_label_histograms(rows, prompts, [d.get("base_row"), d.get("sft_row"), d.get("anchored_row")],
                          os.path.join(out_dir, "label_histograms.png"))
    plot_quality_diversity(summary, os.path.join(out_dir, "quality_vs_diversity.png"))

# -----------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpts", nargs="+", required=True,
                   help="arms as name=ckpt_dir[,ckpt_dir_seed1,...][:anchor=auto|on|off][:temperature=0.6,1.0]"
                        "[:top_k=N][:top_p=P][:ann=free|by_field]; several dirs = the seeds of one arm")
    p.add_argument("--num_samples", type=int, default=128, help="K samples per prompt (same K for every arm)")
    p.add_argument("--temperature", type=float, nargs="+", default=[1.0],
                   help="response temperature(s); several = a sweep, rows named arm@T0.8")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--batch_size", type=int, default=None,
                   help="rows per generate call, shared by the prompts of a row (default: 128 on CPU, where a "
                        "larger batch is no faster; 512 on a GPU)")
    p.add_argument("--max_new_tokens", type=int, default=None, help="response token budget (default: fill the context)")
    p.add_argument("--narrowness", type=float, default=None, help="SFT data narrowness of the floor row (default: from the SFT checkpoint)")
    p.add_argument("--base_arm", default="base")
    p.add_argument("--sft_arm", default="sft")
    p.add_argument("--anchored_arm", default="anchored")
    p.add_argument("--annotated_base_arm", default=None,
                   help="the annotated base, for the gate and the prior drift (default: the base row of fmt annotated)")
    p.add_argument("--device", default="auto", help="where to sample: auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="precision of generation (auto: device.pick_dtype's policy)")
    p.add_argument("--size", default=None, help="model size to record in headline.json (e.g. cpu-m)")
    p.add_argument("--n_boot", type=int, default=1000, help="bootstrap resamples for the confidence intervals")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)
    if args.num_samples < 2:
        p.error(f"--num_samples {args.num_samples}: need at least 2 samples to measure diversity")
    for name in ("batch_size", "n_boot", "threads", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} {getattr(args, name)}: need at least 1")
    if any(not t > 0 for t in args.temperature):
        p.error(f"--temperature {args.temperature}: every temperature must be > 0")
    if args.narrowness is not None and not 0 <= args.narrowness <= 1:
        p.error(f"--narrowness {args.narrowness}: must be in [0, 1]")
    check_out_dir(args.out, "--out")
    device = check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        arms = [parse_arm(s, args.temperature) for s in args.ckpts]
        names = [a["name"] for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        batch_size = args.batch_size or (128 if device == "cpu" else 512)
        summary, rows = evaluate(arms, num_samples=args.num_samples, seed=args.seed, batch_size=batch_size,
                                              max_new_tokens=args.max_new_tokens, narrowness=args.narrowness,
                                              base_arm=args.base_arm, sft_arm=args.sft_arm,
                                              anchored_arm=args.anchored_arm, n_boot=args.n_boot,
                                              device=device, annotated_base_arm=args.annotated_base_arm, dtype=args.dtype)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"eval_diversity.py: error: {e}")
    write_outputs(summary, rows, args.out, size=args.size)
    print(summary_markdown(summary))
    sp = summary["speed"]
    print(f"{sp['samples']} samples in {sp['seconds']:.1f}s = {sp['samples_per_s']:.1f} samples/s; wrote {args.out}/")

if __name__ == "__main__":
    main()
