"""
Measure semantic diversity of sampled stories: the number this repo is about.

For every arm (a checkpoint plus sampling options) and every eval prompt we draw K samples, label
each one with judge.annotate() (the judge), and compute per semantic field the entropy, in bits, of
the empirical label distribution. Semantic diversity D is the mean over the prompt's FREE fields
(those the prompt does not pin). Post-training "collapses" diversity; the paper's claim is that
anchored SFT (annotation first, then the response) collapses it much less than standard SFT.

    python eval_diversity.py --ckpts base=out/base sft=out/sft anchored=out/anchored \
        anchored_off=out/anchored:anchor=off --num_samples 128 --out results/cpu

Writes summary.json (every number), summary.md (a table for the README), samples.jsonl (every
sample with its labels) and PNG plots. The metric functions at the top are pure, so the tests can
check them on hand-made inputs with exact answers.
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
from sample import sample_stories
from tokenizer import BASE_FORMATS, resolve_anchor

UNKNOWN = "?"  # the annotator says None when it cannot tell; that counts as its own label
KINDS = ("open", "constrained")

# -----------------------------------------------------------------------------
# pure metric functions

def entropy_bits(labels) -> float:
    """Plug-in (empirical) entropy in bits of a list of labels; None counts as the label '?'."""
    counts = Counter(UNKNOWN if x is None else x for x in labels)
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

def _entropy_codes(codes) -> float:
    """entropy_bits for integer-coded labels (fast path used inside the bootstrap)."""
    counts = np.bincount(codes)
    p = counts[counts > 0] / len(codes)
    return float(0.0 - (p * np.log2(p)).sum())

# -----------------------------------------------------------------------------
# metrics of one set of samples (K samples of one arm on one prompt)

def label_samples(samples):
    """Add the judge's verdicts to every sample dict (in place): labels, quality, house format, words."""
    for s in samples:
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

def annotation_agreement(samples):
    """Share of fields where the story's label equals what its own sampled annotation asked for
    (does the response follow its anchor?); None for samples without an annotation."""
    scores = []
    for s in samples:
        if s.get("annotation"):
            ann = annotation_fields(s["annotation"])
            scores.append(sum(f in ann and ann[f] == s["labels"][f] for f in world.FIELDS) / len(world.FIELDS))
    return float(np.mean(scores)) if scores else None

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
    unknown = {f: sum(s["labels"][f] is None for s in samples) / k for f in free}
    follows = [all(s["labels"][f] == v for f, v in constraints.items()) for s in samples]
    n_distinct = distinct(tuple(s["labels"][f] for f in free) for s in samples)
    return {
        "K": k,
        "free_fields": free,
        "D": float(np.mean(list(per_field.values()))),
        "entropy": per_field,
        "unknown_share": float(np.mean(list(unknown.values()))),
        "unknown_by_field": unknown,
        "distinct": n_distinct,
        "distinct_frac": n_distinct / k,
        "quality": sum(s["quality"] for s in samples) / k,
        "house_format": sum(s["house"] for s in samples) / k,
        "quality_and_house": sum(s["quality"] and s["house"] for s in samples) / k,
        "instruction_following": (sum(follows) / k) if constraints else None,
        "words": sum(s["words"] for s in samples) / k,
        "finished": sum(s.get("finished", True) for s in samples) / k,
        "annotation_agreement": annotation_agreement(samples),
        "annotation_valid": annotation_valid(samples),
    }

def kind_metrics(per_prompt: list) -> dict:
    """Average per-prompt metrics over the prompts of one kind (open or constrained)."""
    out = {"n_prompts": len(per_prompt)}
    for key in ("D", "unknown_share", "distinct_frac", "quality", "house_format", "quality_and_house",
                "instruction_following", "words", "finished", "annotation_agreement", "annotation_valid"):
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
# arms: "name=path[:key=value...]"

ARM_OPTIONS = {"anchor": str, "temperature": str, "top_k": int, "top_p": float, "ann": str}

def parse_arm(spec: str, temperatures) -> dict:
    """'anchored_off=out/anchored:anchor=off' -> dict(name, path, anchor, temperatures, top_k, top_p).
    temperature=0.6,0.8 in the spec overrides --temperature for this arm."""
    if "=" not in spec:
        raise ValueError(f"arm spec {spec!r} must look like name=ckpt_dir[:anchor=off][:temperature=0.6,1.0]")
    name, rest = spec.split("=", 1)
    path, *opts = rest.split(":")
    arm = {"name": name, "path": path, "anchor": "auto", "temperatures": list(temperatures), "top_k": None,
           "top_p": None, "ann": "free"}
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

def row_name(arm: dict, t: float) -> str:
    # one row per arm x temperature; an arm sampled at one temperature keeps its bare name
    return arm["name"] if len(arm["temperatures"]) == 1 else f"{arm['name']}@T{t:g}"

def resolve_row(rows: dict, name: str):
    """A derived-metric arm name: the row of that name, else that arm's row closest to T=1."""
    if name in rows:
        return rows[name]
    cands = [r for r in rows.values() if r["arm"] == name]
    return min(cands, key=lambda r: abs(r["temperature"] - 1.0)) if cands else None

# -----------------------------------------------------------------------------
# the evaluation: sample every row, add the reference rows, measure

def sample_rows(arms, models, prompts, num_samples, seed, batch_size, max_new_tokens, progress=True) -> dict:
    """{row name: row} where row["samples"] = {prompt index: labelled samples}; a base model sees no
    prompt (it is sampled in its own document format), so its one sample set sits under the key None."""
    jobs = []
    for arm in arms:
        _, ckpt, _ = models[arm["path"]]
        try:
            anchor = resolve_anchor(ckpt["fmt"], arm["anchor"])
        except ValueError as e:
            raise ValueError(f"arm {arm['name']} ({arm['path']}): {e}") from None
        is_base = ckpt.get("kind") == "base" or ckpt["fmt"] in BASE_FORMATS
        for t in arm["temperatures"]:
            for pi in ([None] if is_base else range(len(prompts))):
                jobs.append((arm, t, pi, is_base, anchor))
    rows = {}
    bar = tqdm(total=len(jobs) * num_samples, desc="sampling", unit="sample", disable=not progress)
    for arm, t, pi, is_base, anchor in jobs:
        model, ckpt, enc = models[arm["path"]]
        name = row_name(arm, t)
        bar.set_postfix_str(f"{name} {'(no prompt)' if pi is None else f'prompt {pi}'}")
        # the same seed per prompt for every arm: arms differ by their model, not by their luck
        samples = sample_stories(model, enc, ckpt["fmt"], None if pi is None else prompts[pi]["prompt"],
                                 num_samples, temperature=t, top_k=arm["top_k"], top_p=arm["top_p"],
                                 seed=seed + 7919 * (0 if pi is None else pi + 1), max_new_tokens=max_new_tokens,
                                 anchor=anchor, batch_size=batch_size, ann_by_field=arm["ann"] == "by_field")
        bar.update(len(samples))
        row = rows.setdefault(name, {"row": name, "arm": arm["name"], "role": "base" if is_base else "sft",
                                     "ckpt": arm["path"], "fmt": ckpt["fmt"], "temperature": t, "anchor": arm["anchor"],
                                     "ann": arm["ann"], "top_k": arm["top_k"], "top_p": arm["top_p"], "samples": {}})
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
             device="cpu", progress=True) -> tuple:
    """Sample every arm (list of parse_arm() dicts) on every prompt, label, measure.
    Returns (summary dict: every number, rows: {name: row with its labelled samples})."""
    prompts = prompts if prompts is not None else world.EVAL_PROMPTS
    models = {}
    for arm in arms:
        if arm["path"] not in models:
            models[arm["path"]] = load_model(arm["path"], device=device)
    if narrowness is None:
        narrowness = find_narrowness([ckpt for _, ckpt, _ in models.values()])
    t0 = time.time()
    rows = sample_rows(arms, models, prompts, num_samples, seed, batch_size, max_new_tokens, progress)
    elapsed = time.time() - t0
    n_sampled = sum(len(s) for r in rows.values() for s in r["samples"].values())
    rows.update(reference_rows(prompts, num_samples, narrowness, seed))
    measure_rows(rows, prompts)
    summary = {
        "config": {"num_samples": num_samples, "seed": seed, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                   "narrowness": narrowness, "base_arm": base_arm, "sft_arm": sft_arm, "anchored_arm": anchored_arm,
                   "n_boot": n_boot, "arms": arms, "prompts": prompts, "unknown_label": UNKNOWN},
        "rows": [{k: v for k, v in r.items() if k != "samples"} for r in rows.values()],
        "exact": exact_entropies(prompts, narrowness),
        "derived": derive(rows, prompts, base_arm, sft_arm, anchored_arm, n_boot, seed),
        "speed": {"samples": n_sampled, "seconds": elapsed, "samples_per_s": n_sampled / max(elapsed, 1e-9),
                  "threads": torch.get_num_threads()},
    }
    return summary, rows

# -----------------------------------------------------------------------------
# derived numbers with bootstrap confidence intervals

def _codes(samples) -> np.ndarray:
    """(K, n_fields) integer matrix of labels, one column per field of world.FIELDS (unknown = its own code)."""
    cols = []
    for f in world.FIELDS:
        vocab = {v: i for i, v in enumerate(list(world.FIELDS[f]) + [UNKNOWN])}
        cols.append([vocab.setdefault(UNKNOWN if s["labels"][f] is None else s["labels"][f], len(vocab)) for s in samples])
    return np.asarray(cols, dtype=np.int64).T

def _kind_plan(row, prompts, kind):
    """[(sample-set key, free column indices)] for the prompts of one kind."""
    names = list(world.FIELDS)
    key = lambda pi: None if None in row["samples"] else pi  # a base row: one sample set for all prompts
    return [(key(pi), [names.index(f) for f in world.free_fields(p["constraints"])])
            for pi, p in enumerate(prompts) if p["kind"] == kind]

def _diversity(mats: dict, plan) -> float:
    # D of a kind: mean over its prompts of the mean free-field entropy
    return float(np.mean([np.mean([_entropy_codes(mats[k][:, c]) for c in cols]) for k, cols in plan]))

def derive(rows, prompts, base_arm, sft_arm, anchored_arm, n_boot, seed) -> dict:
    """Collapse of every row vs the base arm; collapse ratio and gap closed of sft vs anchored. CIs
    resample the samples of each (row, prompt) set, a base row's one set shared by all prompts."""
    base, sft, anch = (resolve_row(rows, n) for n in (base_arm, sft_arm, anchored_arm))
    out = {"base_row": base and base["row"], "sft_row": sft and sft["row"], "anchored_row": anch and anch["row"]}
    if base is None:
        out["note"] = f"no row named {base_arm!r} (--base_arm): no collapse numbers"
        return out
    mats = {r["row"]: {k: _codes(v) for k, v in r["samples"].items()} for r in rows.values()}
    for kind in KINDS:
        if not any(p["kind"] == kind for p in prompts):
            continue
        plans = {name: _kind_plan(r, prompts, kind) for name, r in rows.items()}

        def stat_fn(names, fn):
            # flatten the sample sets of the named rows into bootstrap groups, and back
            keys = [(n, k) for n in names for k in sorted(mats[n], key=lambda x: -1 if x is None else x)]
            def stat(*groups):
                m = {}
                for (n, k), g in zip(keys, groups):
                    m.setdefault(n, {})[k] = g
                return fn(*[_diversity(m[n], plans[n]) for n in names])
            return stat, [mats[n][k] for n, k in keys]

        d = {name: _diversity(mats[name], plans[name]) for name in rows}
        res = {"D": d, "collapse": {}}
        for i, name in enumerate(rows):
            if name == base["row"]:
                continue
            stat, groups = stat_fn([base["row"], name], collapse)
            res["collapse"][name] = {"value": collapse(d[base["row"]], d[name]),
                                     "ci95": bootstrap_ci(stat, groups, n_boot, seed=seed + i)}
        if sft is not None and anch is not None:
            names = [base["row"], sft["row"], anch["row"]]
            for j, fn in enumerate((collapse_ratio, gap_closed)):
                stat, groups = stat_fn(names, fn)
                res[fn.__name__] = {"value": fn(*[d[n] for n in names]),
                                    "ci95": bootstrap_ci(stat, groups, n_boot, seed=seed + 1000 + j)}
        out[kind] = res
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
        coll = (summary["derived"].get(kind) or {}).get("collapse", {})
        lines.append(f"**{kind} prompts**\n")
        head = "| row | fmt | T | D (bits) | collapse [95% CI] | distinct/K | quality | house fmt | unknown | ann. valid | follows own ann. |"
        sep = "|---|---|---|---|---|---|---|---|---|---|---|"
        if kind == "constrained":
            head, sep = head + " instr. follow |", sep + "---|"
        lines += [head, sep]
        for r in rows:
            m = r["by_kind"][kind]
            c = coll.get(r["row"])
            cs = f"{_fmt(c['value'])} [{_fmt(c['ci95'][0])}, {_fmt(c['ci95'][1])}]" if c else "-"
            t = "-" if r["temperature"] is None else f"{r['temperature']:g}"
            line = (f"| {r['row']} | {r.get('fmt', '-')} | {t} "
                    f"| {_fmt(m['D'])} | {cs} | {_fmt(m['distinct_frac'])} | {_fmt(m['quality'])} "
                    f"| {_fmt(m['house_format'])} | {_fmt(m['unknown_share'])} | {_fmt(m['annotation_valid'])} | {_fmt(m['annotation_agreement'])} |")
            if kind == "constrained":
                line += f" {_fmt(m['instruction_following'])} |"
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
    ex = summary["exact"]
    for kind in KINDS:
        es = [e for e in ex["by_prompt"] if e["kind"] == kind]
        if es:
            lines.append(f"- exact D, {kind} prompts: pretraining prior {_fmt(np.mean([e['D_prior'] for e in es]))} bits, "
                         f"SFT data (narrowness {ex['narrowness']}) {_fmt(np.mean([e['D_sft_data'] for e in es]))} bits "
                         f"(a K-sample plug-in estimate is biased low: compare rows with the *_data rows, same K)")
    return "\n".join(lines) + "\n"

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

def write_outputs(summary, rows, out_dir):
    """summary.json, summary.md, samples.jsonl and the three plots into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    prompts = summary["config"]["prompts"]
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(_finite(summary), f, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(summary_markdown(summary))
    with open(os.path.join(out_dir, "samples.jsonl"), "w") as f:
        for r in rows.values():
            for pi, samples in r["samples"].items():
                for s in samples:
                    f.write(json.dumps({"row": r["row"], "prompt_index": pi,
                                        "prompt": None if pi is None else prompts[pi]["prompt"], **s}) + "\n")
    d = summary["derived"]
    plot_field_entropy(summary, os.path.join(out_dir, "field_entropy.png"))
    plot_label_histograms(rows, prompts, [d.get("base_row"), d.get("sft_row"), d.get("anchored_row")],
                          os.path.join(out_dir, "label_histograms.png"))
    plot_quality_diversity(summary, os.path.join(out_dir, "quality_vs_diversity.png"))

# -----------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpts", nargs="+", required=True,
                   help="arms as name=ckpt_dir[:anchor=auto|on|off][:temperature=0.6,1.0][:top_k=N][:top_p=P][:ann=free|by_field]")
    p.add_argument("--num_samples", type=int, default=128, help="K samples per prompt (same K for every arm)")
    p.add_argument("--temperature", type=float, nargs="+", default=[1.0],
                   help="response temperature(s); several = a sweep, rows named arm@T0.8")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--batch_size", type=int, default=128, help="samples per generate call")
    p.add_argument("--max_new_tokens", type=int, default=None, help="response token budget (default: fill the context)")
    p.add_argument("--narrowness", type=float, default=None, help="SFT data narrowness of the floor row (default: from the SFT checkpoint)")
    p.add_argument("--base_arm", default="base")
    p.add_argument("--sft_arm", default="sft")
    p.add_argument("--anchored_arm", default="anchored")
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
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        arms = [parse_arm(s, args.temperature) for s in args.ckpts]
        names = [a["name"] for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        summary, rows = evaluate(arms, num_samples=args.num_samples, seed=args.seed, batch_size=args.batch_size,
                                              max_new_tokens=args.max_new_tokens, narrowness=args.narrowness,
                                              base_arm=args.base_arm, sft_arm=args.sft_arm,
                                              anchored_arm=args.anchored_arm, n_boot=args.n_boot)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"eval_diversity.py: error: {e}")
    write_outputs(summary, rows, args.out)
    print(summary_markdown(summary))
    sp = summary["speed"]
    print(f"{sp['samples']} samples in {sp['seconds']:.1f}s = {sp['samples_per_s']:.1f} samples/s; wrote {args.out}/")

if __name__ == "__main__":
    main()
