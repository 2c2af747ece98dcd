"""
The measures of the paper, on labelled samples. Every function here is pure (no model, no files),
so the tests check them on hand-made inputs with exact answers; eval_diversity.py samples the
models and labels the stories, this file only counts.

A labelled sample is a dict: "labels" {field: value, or None where the judge cannot tell},
"quality", "house" and "words" (judge.py's verdicts), and "annotation", the annotation text the
model wrote before its story (None where it wrote none).

- Semantic diversity D. For the K samples of one prompt: the entropy, in bits, of the labels of
  each field the prompt leaves FREE (does not pin), averaged over those fields. D of a prompt
  type (open, constrained) is the mean over its prompts. A plug-in estimate from K samples is
  at most log2(K) and biased low: compare rows at the same K. One function computes it
  (diversity), for a row's numbers and inside every bootstrap alike.
- Unknown labels. None counts as one more label, "?". An unknown mixed into a collapsed field adds
  entropy the model did not write, so every D also comes as D_known, unknowns left out: report both.
- Collapse. collapse = D(base) - D(model), the bits post-training lost. collapse_ratio =
  collapse(SFT) / collapse(anchored): how many times more standard SFT collapses (paper: ~6).
- Gap closed. (D(anchored) - D(SFT)) / (D(base) - D(SFT)): the share of the lost diversity that
  anchoring keeps (paper: ~0.85). It equals 1 - 1/collapse_ratio; it is the headline number.
- The gate. Anchoring only helps if the stories follow their annotation, so before SFT we check
  the annotated base: per field, over samples whose own annotation picks a value OUTSIDE the SFT
  favourites (an SFT model writes those anyway), the share whose story has that value (target:
  >= 0.8 on every field). The gate value is the smallest field's share.
- Prior drift. Anchored SFT masks the annotation's loss, so p(annotation) should stay the base's.
  Per field, the share of sampled annotation values that are SFT favourites, anchored vs the
  annotated base; prior_drift_max is the largest rise.
- Quality by typicality. A post-trained model writes its SFT data's favourite stories best; SFT
  samples are mostly those, anchored samples are spread like the prior. So quality is also reported
  per bin of favourite_count (how many fields hold the SFT data's top favourite), and
  quality_matched compares two rows on the bins both fill, weighted like the anchored row.
- Intervals and seeds. Every derived number has a bootstrap interval over the samples (basic, see
  bootstrap_ci). With several training seeds per arm every headline number is reported per seed
  and as the median over seeds, its interval from a two-level bootstrap (seeds, then the samples
  within a seed) so that it includes seed variance.
"""
import math
from collections import Counter
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

import world

UNKNOWN = "?"  # the annotator says None when it cannot tell; that counts as its own label
PROMPT_TYPES = ("open", "constrained")  # a prompt's "kind" in world.EVAL_PROMPTS

# -----------------------------------------------------------------------------
# the diversity of a set of labels
#
# The entropy is world.entropy_bits; here labels are counted. D counts integer codes, one (K, n_fields)
# matrix per sample set: a bootstrap resample is one fancy index, an entropy one bincount.

def label_entropy(labels, drop_unknown=False) -> float:
    """Plug-in (empirical) entropy in bits of a list of labels; None counts as the label '?'.
    drop_unknown: leave the unknown labels out instead (an unknown mixed with a collapsed label
    adds entropy the model did not write; report both). Nothing left to count gives nan."""
    counts = Counter(UNKNOWN if x is None else x for x in labels)
    if drop_unknown:
        counts.pop(UNKNOWN, None)
    elif not counts:
        raise ValueError("label_entropy: no labels (need at least one sample)")
    return world.entropy_bits(counts.values())

def distinct(tuples) -> int:
    """Number of distinct joint label tuples (NoveltyBench-style distinct count; divide by K)."""
    return len({tuple(UNKNOWN if x is None else x for x in t) for t in tuples})

def label_codes(samples) -> np.ndarray:
    """(K, n_fields) integer matrix of labels, one column per field of world.FIELDS; code 0 is the
    unknown label, the field's values are 1..n (a label outside them gets a new code)."""
    cols = []
    for f in world.FIELDS:
        vocab = {v: i for i, v in enumerate([UNKNOWN] + list(world.FIELDS[f]))}
        cols.append([vocab.setdefault(UNKNOWN if s["labels"][f] is None else s["labels"][f], len(vocab))
                     for s in samples])
    return np.asarray(cols, dtype=np.int64).T

def code_entropy(column, drop_unknown=False) -> float:
    """label_entropy of one column of label_codes (code 0, the unknown label, left out with drop_unknown)."""
    counts = np.bincount(column).tolist()
    return world.entropy_bits(counts[1:] if drop_unknown else counts)

def diversity(sets: dict, plan, known=False) -> float:
    """Semantic diversity D, its one home. sets: {sample-set key: label_codes matrix}; plan: one
    (sample-set key, free column indices) per prompt. Per prompt the mean entropy of its free fields,
    then the mean over the prompts. known: unknown labels dropped, a field with no known label left
    out of its prompt's mean and a prompt with none left out of the mean over prompts (nan: none)."""
    per_prompt = []
    for key, cols in plan:
        es = [e for e in (code_entropy(sets[key][:, c], known) for c in cols) if math.isfinite(e)]
        per_prompt.append(float(np.mean(es)) if es else math.nan)
    vals = [d for d in per_prompt if math.isfinite(d)]
    return float(np.mean(vals)) if vals else math.nan

# -----------------------------------------------------------------------------
# collapse and gap closed, from the D of three models

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

# -----------------------------------------------------------------------------
# the annotation a model wrote: the gate, its prior, its form

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
                  "entropy": label_entropy(valid) if valid else None, "n": len(valid),
                  "invalid": 1 - len(valid) / len(vals) if vals else None}
    return out

def prior_drift_max(anchored: dict, base: dict):
    """Largest rise of the favourite share of any field, anchored vs annotated base (annotation_prior
    dicts): did SFT pull the masked annotation values toward the favourites? None if not measurable."""
    rises = [anchored[f]["fav_share"] - base[f]["fav_share"] for f in anchored
             if f in base and anchored[f]["fav_share"] is not None and base[f]["fav_share"] is not None]
    return max(rises) if rises else None

def no_drift_readings(anchored: dict, base: dict, draws=4000, seed=0):
    """What prior_drift_max reads, draw by draw, when nothing drifted: per field, both rows'
    favourite shares drawn from one distribution (the two rows pooled) at each row's own n, then the
    largest rise. -> (draws,) array, or None if not measurable."""
    fields = [f for f in anchored if f in base and anchored[f]["fav_share"] is not None
              and base[f]["fav_share"] is not None and anchored[f]["n"] and base[f]["n"]]
    if not fields:
        return None
    rng = np.random.default_rng(seed)
    rises = []
    for f in fields:
        a, b = anchored[f], base[f]
        p = (a["fav_share"] * a["n"] + b["fav_share"] * b["n"]) / (a["n"] + b["n"])
        rises.append(rng.binomial(a["n"], p, draws) / a["n"] - rng.binomial(b["n"], p, draws) / b["n"])
    return np.max(rises, axis=0)

def prior_drift_floor(anchored: dict, base: dict, quantile=0.5, readings=None):
    """This quantile of no_drift_readings (0.5: the typical reading of a model with no drift; 0.95:
    what such a model stays under 95% of the time; readings: reuse draws already made). With ~100
    annotations a field it is several points, so a drift below the 0.95 quantile is consistent
    with sampling noise. None if not measurable."""
    readings = no_drift_readings(anchored, base) if readings is None else readings
    return None if readings is None else float(np.quantile(readings, quantile))

def annotation_parses(text, closed=True) -> bool:
    """Is a sampled annotation well formed: every field once, in FIELDS order, each value in the
    schema, then at most the tags of a quality-tagged build (world.TAGS), and closed by the model's
    own <|story|> (closed)? (SFT can damage a model's annotation writing even with the annotation
    loss masked.)"""
    parts = [p.partition(":") for p in (text or "").split("|")]
    keys = [k.strip() for k, _, _ in parts]
    n = len(world.FIELDS)
    return (bool(closed) and keys[:n] == list(world.FIELDS) and keys[n:] in ([], list(world.TAGS)) and
            all(sep and v.strip() in world.KEYS[k.strip()] for k, sep, v in parts))

def annotation_valid(samples):
    """Share of the samples with an annotation whose annotation parses (None: no annotations)."""
    anns = [s for s in samples if s.get("annotation") is not None]
    return (sum(annotation_parses(s["annotation"], s.get("annotation_closed", True)) for s in anns) / len(anns)
            if anns else None)

# -----------------------------------------------------------------------------
# quality by typicality
#
# A post-trained model writes best the stories its SFT data is full of. SFT samples sit on the
# favourites and anchored samples spread over the prior, so their quality shares compare different
# stories. Binned by how many fields a story shares with the SFT data's top favourite, two rows are
# compared on the same kind of story.

TYPICALITY_BINS = ((0, 2), (3, 4), (5, 6), (7, 9))  # fields holding their top favourite, of 9
MATCH_MIN_N = 20  # quality_matched: a bin counts where both rows have at least this many samples

def favourite_count(labels) -> int:
    """How many fields of a story's labels hold that field's top SFT favourite (FAVOURITES[f][0], the
    favourite the SFT data draws most); an unknown label counts as not a favourite."""
    return sum(labels.get(f) == world.FAVOURITES[f][0] for f in world.FIELDS)

def quality_by_typicality(samples) -> list:
    """Per TYPICALITY_BINS bin: {"favourites": "lo-hi", "n", "quality", "quality_and_house"}, the
    share of the bin's samples that are well-formed stories, and that are so in the house format
    too (None where n = 0)."""
    out = []
    for lo, hi in TYPICALITY_BINS:
        ss = [s for s in samples if lo <= favourite_count(s["labels"]) <= hi]
        share = lambda hit: sum(map(hit, ss)) / len(ss) if ss else None
        out.append({"favourites": f"{lo}-{hi}", "n": len(ss), "quality": share(lambda s: bool(s["quality"])),
                    "quality_and_house": share(lambda s: bool(s["quality"] and s["house"]))})
    return out

def quality_matched(a: list, b: list, min_n=MATCH_MIN_N, key="quality_and_house"):
    """The quality of rows a and b on the same kind of story (quality_by_typicality's lists): over
    the bins where both have at least min_n (>= 1) samples, each row's share (key) with every bin
    weighted by a's count there. {"a", "b", "bins"}, or None where no bin has min_n of both."""
    both = [(x, y) for x, y in zip(a, b) if x["n"] >= max(min_n, 1) and y["n"] >= max(min_n, 1)]
    if not both:
        return None
    w = sum(x["n"] for x, _ in both)
    return {"a": sum(x["n"] * x[key] for x, _ in both) / w,
            "b": sum(x["n"] * y[key] for x, y in both) / w, "bins": [x["favourites"] for x, _ in both]}

# -----------------------------------------------------------------------------
# every number of one set of samples (K samples of one row on one prompt), and of a prompt type

def prompt_metrics(samples, constraints) -> dict:
    """Every per-prompt number, from labelled samples; entropy over the fields the prompt leaves free."""
    free = world.free_fields(constraints)
    plan = [(None, [list(world.FIELDS).index(f) for f in free])]
    codes = label_codes(samples)
    k = len(samples)
    d_of = lambda mask, known=False: diversity({None: codes[np.asarray(mask, dtype=bool)]}, plan, known)
    unknown = {f: sum(s["labels"][f] is None for s in samples) / k for f in free}
    good = [bool(s["quality"]) for s in samples]  # well-formed stories (house format not required)
    ok = [all(s["labels"][f] == v for f, v in constraints.items()) for s in samples]  # obeys the prompt
    anns = [annotation_fields(s["annotation"]) for s in samples if s.get("annotation") is not None]
    n_distinct = distinct(tuple(s["labels"][f] for f in free) for s in samples)
    d_known = d_of([True] * k, True)
    return {
        "K": k,
        "free_fields": free,
        "D": d_of([True] * k),
        # unknown labels dropped (fields with no known label left out of the mean)
        "D_known": d_known if math.isfinite(d_known) else None,
        # over the well-formed stories only (None under 2 of them): diversity nobody must take on trust
        "D_good": d_of(good) if sum(good) >= 2 else None,
        "n_good": sum(good),
        # constrained prompts: D over the samples that obey the prompt only (None under 2 of them)
        "D_compliant": d_of(ok) if constraints and sum(ok) >= 2 else None,
        "n_compliant": sum(ok) if constraints else None,
        "entropy": {f: code_entropy(codes[:, c]) for f, c in zip(free, plan[0][1])},
        "entropy_known": {f: code_entropy(codes[:, c], True) for f, c in zip(free, plan[0][1])},
        "unknown_share": float(np.mean(list(unknown.values()))),
        "unknown_by_field": unknown,
        "distinct": n_distinct,
        "distinct_frac": n_distinct / k,
        "quality": sum(good) / k,
        "house_format": sum(s["house"] for s in samples) / k,
        "quality_and_house": sum(s["quality"] and s["house"] for s in samples) / k,
        "instruction_following": (sum(ok) / k) if constraints else None,
        # of the samples' own annotations, the share holding every value the prompt pins: where an
        # anchored row's instruction following is lost, in the annotation or after it
        "annotation_carries": (sum(all(a.get(f) == v for f, v in constraints.items()) for a in anns) / len(anns)
                               if constraints and anns else None),
        "words": sum(s["words"] for s in samples) / k,
        "finished": sum(s.get("finished", True) for s in samples) / k,
        # share of stories that ended at <|eos|>, not at another special token (None: reference rows)
        "eos_stop": (sum(s["stop"] == "<|eos|>" for s in samples) / k) if all("stop" in s for s in samples) else None,
        "annotation_agreement": agreement_min(annotation_agreement(samples)),  # the smallest field's (see row gate)
        "annotation_valid": annotation_valid(samples),
        # bytes that are not UTF-8 or a special token's text in the story or the annotation
        "broken_text": (sum(s["broken"] for s in samples) / k) if all("broken" in s for s in samples) else None,
    }

AVERAGED = ("D_good", "n_good", "broken_text", "D_compliant", "unknown_share", "distinct_frac", "quality",
            "house_format", "quality_and_house", "instruction_following", "annotation_carries", "words", "finished",
            "eos_stop", "annotation_agreement", "annotation_valid")

def prompt_type_metrics(per_prompt: list, d: float, d_known: float) -> dict:
    """The numbers of one prompt type (open or constrained): D and D_known as diversity() gives them
    (d, d_known), every other per-prompt number averaged over its prompts."""
    out = {"n_prompts": len(per_prompt), "D": d, "D_known": d_known if math.isfinite(d_known) else None}
    for key in AVERAGED:
        vals = [m[key] for m in per_prompt if m[key] is not None]
        out[key] = float(np.mean(vals)) if vals else None
    fields = [f for f in world.FIELDS if any(f in m["entropy"] for m in per_prompt)]
    out["entropy"] = {f: float(np.mean([m["entropy"][f] for m in per_prompt if f in m["entropy"]])) for f in fields}
    return out

# -----------------------------------------------------------------------------
# rows: one arm at one temperature (and one seed), with its samples and, measured, its numbers

@dataclass(frozen=True)
class EvalRow:
    """One row of an evaluation; its fields are the schema of a row of summary.json (to_json).
    A base model sees no prompt, so its one sample set sits under the key None and stands for every
    prompt. eval_diversity.sample_rows builds the rows, measured() adds the numbers."""
    arm: str
    role: str                       # "base" (no prompt), "sft", or "reference" (the data itself)
    format: str                     # the checkpoint's format; "-" for a reference row
    temperature: float | None       # None: a reference row
    samples: dict                   # {prompt index, or None for a base row: labelled samples}
    seed_index: int | None = None   # None: the arm has one checkpoint
    swept: bool = False             # the arm is sampled at several temperatures
    ckpt: str | None = None         # how it was sampled (parse_arm's options)
    anchor: str | None = None
    ann: str | None = None
    top_k: int | None = None
    top_p: float | None = None
    no_repeat_ngram: int | None = None  # the story's n-gram ban (engine.NoRepeat); None: no ban
    narrowness: float | None = None  # the SFT data's (the sft_data row)
    prompts: list | None = None      # measured: per prompt, its prompt and prompt_metrics
    by_prompt_type: dict | None = None  # measured: {prompt type: prompt_type_metrics}
    gate: dict | None = None         # measured: annotation_agreement of all its samples (None: no annotations)
    annotation_prior: dict | None = None  # measured: annotation_prior (None: no annotations)
    typicality: list | None = None   # measured: quality_by_typicality of all its samples

    @property
    def name(self) -> str:
        """arm, then @T<temperature> if the arm is swept, then #s<seed index> if it has several seeds."""
        return (self.arm + (f"@T{self.temperature:g}" if self.swept else "")
                + ("" if self.seed_index is None else f"#s{self.seed_index}"))

    @cached_property
    def codes(self) -> dict:
        """{sample-set key: label_codes matrix}: what diversity() and the bootstraps count, made once."""
        return {k: label_codes(v) for k, v in self.samples.items()}

    def sample_set(self, pi):
        return None if None in self.samples else pi  # a base row: one sample set for every prompt

    def plan(self, prompts, prompt_type):
        """diversity()'s plan of this row on the prompts of one type."""
        return [(self.sample_set(pi), [list(world.FIELDS).index(f) for f in world.free_fields(p["constraints"])])
                for pi, p in enumerate(prompts) if p["kind"] == prompt_type]

    def measured(self, prompts) -> "EvalRow":
        """This row with its numbers: per prompt, per prompt type, the gate and the annotation prior."""
        per_prompt = [{"prompt": p["prompt"], "kind": p["kind"], "constraints": p["constraints"],
                       "held_out": p.get("held_out", False),
                       **prompt_metrics(self.samples[self.sample_set(pi)], p["constraints"])}
                      for pi, p in enumerate(prompts)]
        by_type = {}
        for t in PROMPT_TYPES:
            if any(p["kind"] == t for p in prompts):
                plan = self.plan(prompts, t)
                by_type[t] = prompt_type_metrics([m for m in per_prompt if m["kind"] == t],
                                                 diversity(self.codes, plan), diversity(self.codes, plan, True))
        pooled = [s for ss in self.samples.values() for s in ss]
        annotated = any(s.get("annotation") for s in pooled)
        return replace(self, prompts=per_prompt, by_prompt_type=by_type,
                       gate=annotation_agreement(pooled) if annotated else None,
                       annotation_prior=self._annotation_prior(prompts) if annotated else None,
                       typicality=quality_by_typicality(pooled))

    def _annotation_prior(self, prompts):
        # for each field, the samples of the prompts that leave it free (a base row's one set: every field)
        if None in self.samples:
            return annotation_prior({f: self.samples[None] for f in world.FIELDS})
        by_field = {f: [s for pi, p in enumerate(prompts) if f in world.free_fields(p["constraints"])
                        for s in self.samples[pi]] for f in world.FIELDS}
        return annotation_prior({f: ss for f, ss in by_field.items() if ss})

    def to_json(self) -> dict:
        """The row as summary.json holds it (its samples go to samples.jsonl.gz), with the keys
        committed files have: "row" (the name), "fmt" (format), "by_kind" (by_prompt_type); a
        reference row has no sampling keys, a row without a narrowness no "narrowness"."""
        out = {"row": self.name, "arm": self.arm, "role": self.role, "ckpt": self.ckpt,
               "seed_index": self.seed_index, "fmt": self.format, "temperature": self.temperature,
               "anchor": self.anchor, "ann": self.ann, "top_k": self.top_k, "top_p": self.top_p,
               "no_repeat_ngram": self.no_repeat_ngram, "narrowness": self.narrowness, "prompts": self.prompts, "by_kind": self.by_prompt_type,
               "gate": self.gate, "annotation_prior": self.annotation_prior, "typicality": self.typicality}
        drop = {"ckpt", "seed_index", "anchor", "ann", "top_k", "top_p", "no_repeat_ngram"} if self.role == "reference" else set()
        return {k: v for k, v in out.items() if k not in drop and (k not in ("narrowness", "no_repeat_ngram") or v is not None)}

def stored_D(by_prompt_type, prompt_type, known=False):
    """The D (or D_known) a measured row stores for one prompt type, from its by_prompt_type (an
    EvalRow's, or "by_kind" of a row in summary.json); nan: not measured there."""
    m = (by_prompt_type or {}).get(prompt_type) or {}
    v = m.get("D_known" if known else "D")
    return math.nan if v is None else v

def resolve_row(rows: dict, name: str, seed_index: int = 0):
    """A derived-metric arm name: the row of that name, else that arm's row of this seed (or its
    only one) closest to T=1."""
    if name in rows:
        return rows[name]
    cands = [r for r in rows.values() if r.arm == name and r.seed_index in (None, seed_index)]
    return min(cands, key=lambda r: abs(r.temperature - 1.0)) if cands else None

def annotated_base_row(rows, name, seed_index=0):
    """The annotated base: the row/arm named (--annotated_base_arm), else the first base row of
    format 'annotated' sampled with its annotation."""
    if name:
        return resolve_row(rows, name, seed_index)
    cands = [r for r in rows.values() if r.format == "annotated" and r.anchor != "off"
             and r.seed_index in (None, seed_index)]
    return cands[0] if cands else None

# -----------------------------------------------------------------------------
# bootstrap intervals: within one seed, and over seeds

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
    return _basic_interval(est, vals, alpha)

def _basic_interval(est, vals, alpha):
    # [2*est - q_hi, 2*est - q_lo] over the finite resampled values (nan, nan: none, or no estimate)
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0 or not math.isfinite(est):
        return (math.nan, math.nan)
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(2 * est - hi), float(2 * est - lo))

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
    return est, _basic_interval(est, np.asarray(vals, dtype=float), alpha)

def over_seeds(values) -> dict:
    """A headline statistic over seeds: the median, each seed's value, min and max (None = missing)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return {"median": float(np.median(vals)) if vals else None, "per_seed": list(values),
            "min": min(vals) if vals else None, "max": max(vals) if vals else None}

# -----------------------------------------------------------------------------
# derived numbers with bootstrap intervals: a statistic of the D of some rows, resampled

def _stat_groups(codes, plans, names, fn, known=False):
    """fn of the named rows' D as a bootstrap statistic: (statistic(*groups), groups), the groups
    being the sample sets (label_codes) of the named rows flattened in a fixed order."""
    keys = [(n, k) for n in names for k in sorted(codes[n], key=lambda x: -1 if x is None else x)]
    def stat(*groups):
        m = {}
        for (n, k), g in zip(keys, groups):
            m.setdefault(n, {})[k] = g
        return fn(*[diversity(m[n], plans[n], known) for n in names])
    return stat, [codes[n][k] for n, k in keys]

HEADLINE_D = (("gap_closed", gap_closed, False), ("gap_closed_known", gap_closed, True),
              ("collapse_ratio", collapse_ratio, False), ("collapse_ratio_known", collapse_ratio, True))

def derive(rows, prompts, base_arm, sft_arm, anchored_arm, n_boot, seed, seed_index=0) -> dict:
    """Collapse of every row vs the base arm; collapse ratio and gap closed of sft vs anchored, with
    unknown labels as a label and dropped (_known), from the measured rows' D. CIs resample each
    (row, prompt) sample set (a base row's one set shared by all prompts); seed_index: whose rows."""
    base, sft, anch = (resolve_row(rows, n, seed_index) for n in (base_arm, sft_arm, anchored_arm))
    out = {"base_row": base and base.name, "sft_row": sft and sft.name, "anchored_row": anch and anch.name}
    if base is None:
        out["note"] = f"no row named {base_arm!r} (--base_arm): no collapse numbers"
        return out
    # this seed's rows and the rows every seed shares (an arm with one checkpoint)
    rows = {n: r for n, r in rows.items() if r.seed_index in (None, seed_index)}
    codes = {n: r.codes for n, r in rows.items()}
    for t in PROMPT_TYPES:
        if not any(p["kind"] == t for p in prompts):
            continue
        plans = {n: r.plan(prompts, t) for n, r in rows.items()}
        res = {"collapse": {}}
        for i, (n, r) in enumerate(rows.items()):
            if n == base.name:
                continue
            stat, groups = _stat_groups(codes, plans, [base.name, n], collapse)
            res["collapse"][n] = {"value": collapse(stored_D(base.by_prompt_type, t), stored_D(r.by_prompt_type, t)),
                                  "ci95": bootstrap_ci(stat, groups, n_boot, seed=seed + i)}
        if sft is not None and anch is not None:
            for j, (key, fn, known) in enumerate(HEADLINE_D):
                stat, groups = _stat_groups(codes, plans, [base.name, sft.name, anch.name], fn, known)
                res[key] = {"value": fn(*[stored_D(r.by_prompt_type, t, known) for r in (base, sft, anch)]),
                            "ci95": bootstrap_ci(stat, groups, n_boot, seed=seed + 1000 + j)}
        out[t] = res
    return out

# -----------------------------------------------------------------------------
# the headline numbers: per seed and over seeds (eval_diversity.headline picks headline.json's)

def seed_numbers(rows, names, seed_index) -> dict:
    """The headline numbers of one seed: {name: value or None}. names = dict(base, sft, anchored,
    annotated_base) arm names; rows measured (EvalRow.measured)."""
    base, sft, anch = (resolve_row(rows, names[k], seed_index) for k in ("base", "sft", "anchored"))
    abase = annotated_base_row(rows, names.get("annotated_base"), seed_index)
    get = lambda r, t, key: ((r.by_prompt_type or {}).get(t) or {}).get(key) if r is not None else None
    good = [get(r, "open", "D_good") for r in (base, sft, anch)]
    matched = quality_matched(anch.typicality, sft.typicality) if anch and sft and anch.typicality and sft.typicality else None
    drift, floor = None, [None, None]
    if anch is not None and abase is not None and anch.annotation_prior and abase.annotation_prior:
        drift = prior_drift_max(anch.annotation_prior, abase.annotation_prior)
        readings = no_drift_readings(anch.annotation_prior, abase.annotation_prior)  # drawn once, read twice
        floor = [prior_drift_floor(anch.annotation_prior, abase.annotation_prior, q, readings) for q in (0.5, 0.95)]
    return {"quality_sft": get(sft, "open", "quality_and_house"),
            "quality_anchored": get(anch, "open", "quality_and_house"),
            "instruction_sft": get(sft, "constrained", "instruction_following"),
            "instruction_anchored": get(anch, "constrained", "instruction_following"),
            "prior_drift_max": drift,
            # what prior_drift_max reads at these n with no drift at all: typically, and at most 95% of the time
            "prior_drift_floor": floor[0], "prior_drift_noise95": floor[1],
            "base_agreement_min": agreement_min(abase.gate) if abase and abase.gate else None,
            # gap closed over the well-formed stories alone (D_good of base, SFT, anchored)
            "gap_closed_good": gap_closed(*good) if None not in good else None,
            # quality (house format too) on the same kind of story: every prompt's samples, binned by
            # favourite_count, each bin weighted by the anchored row's count (quality_matched; each
            # seed's own bins)
            "quality_matched_sft": matched and matched["b"], "quality_matched_anchored": matched and matched["a"]}

def seed_summary(rows, prompts, names, n_seeds, derived_per_seed, n_boot, seed, prompt_type="open") -> dict:
    """Every headline statistic over seeds (over_seeds: median, per seed, min, max). The D-based ones
    (gap closed, collapse ratio, as-label and known) also get ci95 from seed_bootstrap_ci: seeds
    resampled, then samples within each seed (so the interval includes seed variance)."""
    out = {}
    codes = {n: r.codes for n, r in rows.items()}
    plans = {n: r.plan(prompts, prompt_type) for n, r in rows.items()}
    for j, (key, fn, known) in enumerate(HEADLINE_D):
        vals = [(d.get(prompt_type) or {}).get(key, {}).get("value") for d in derived_per_seed]
        out[key] = over_seeds(vals)
        per_seed = [_stat_groups(codes, plans, [d["base_row"], d["sft_row"], d["anchored_row"]], fn, known)
                    for d in derived_per_seed if d.get(prompt_type) and key in d[prompt_type]]
        if per_seed:
            _, out[key]["ci95"] = seed_bootstrap_ci(per_seed, n_boot, seed=seed + 3000 + j)
    nums = [seed_numbers(rows, names, i) for i in range(n_seeds)]
    for key in nums[0]:
        out[key] = over_seeds([n[key] for n in nums])
    out["kind"], out["n_seeds"] = prompt_type, n_seeds  # "kind": the key committed summaries hold
    out["ci_method"] = ("two-level bootstrap: seeds resampled with replacement, then samples within each "
                        "drawn seed; basic interval around the median over seeds")
    return out
