"""
Measure semantic diversity of sampled stories: the number this repo is about.

For every arm (a checkpoint plus sampling options) and every eval prompt we draw K samples, label
each one with judge.annotate() (the judge), and compute per semantic field the entropy, in bits, of
the empirical label distribution. Semantic diversity D is the mean over the prompt's FREE fields
(those the prompt does not pin). Post-training "collapses" diversity; the paper's claim is that
anchored SFT (annotation first, then the response) collapses it much less than standard SFT.

    python eval_diversity.py --ckpts base=out/base sft=out/sft anchored=out/anchored \
        anchored_no_annotation=out/anchored:anchor=off --num_samples 128 --out results/cpu

Several checkpoints per arm (name=dir_s0,dir_s1,dir_s2) are seeds: every headline number is then
reported per seed and as the median over seeds, with an interval that includes seed variance.

Writes summary.json (every number), summary.md (a table for the README), headline.json (the
headline numbers), samples.jsonl.gz (every sample with its labels) and PNG plots. This file samples
and labels; the measures are pure functions in metrics.py, which says what each one means, and
report.py draws the tables and plots.
"""
import argparse
import io
import json
import math
import os
import random
import time

import numpy as np
import torch
from tqdm import tqdm

import grammar
import judge
import world
from checkpoint import check_out_dir, load_model, write_atomic
from device import add_device_flags, check_device, pick_device, pick_dtype
from engine import COMPILE_FLAG
from metrics import UNKNOWN, EvalRow, annotated_base_row, derive, seed_summary
from report import (plot_field_entropy, plot_label_histograms, plot_prior_drift, plot_quality_diversity,
                    summary_markdown)
from sample import sample_many
from tokenizer import BASE_FORMATS, SPECIAL_TOKENS, cut_at_special, resolve_anchor

# -----------------------------------------------------------------------------
# labelling: the judge reads every sample

def is_broken(text):
    """Does a sampled text hold bytes that are not UTF-8 (U+FFFD after decoding) or a special token's text?"""
    return bool(text) and ("\ufffd" in text or any(t in text for t in SPECIAL_TOKENS))


def label_samples(samples):
    """Add the judge's verdicts to every sample dict (in place): broken (read before the cut), labels,
    quality, house format, words. The judge reads the story only: the text is cut at the first special
    token."""
    for s in samples:
        s["broken"] = is_broken(s["text"]) or is_broken(s.get("annotation"))
        s["text"] = cut_at_special(s["text"])
        s["labels"] = judge.annotate(s["text"])
        s["quality"] = bool(judge.quality(s["text"]))
        s["house"] = bool(judge.is_house_format(s["text"]))
        s["words"] = len(s["text"].split())
    return samples

# -----------------------------------------------------------------------------
# reference rows: the pretraining data (ceiling) and the SFT data (floor), same estimator and K

def pretrain_reference(k: int, seed: int) -> list:
    """K pretraining documents (annotation drawn from the prior, then its story): the ceiling row."""
    rng = random.Random(seed)
    out = []
    for _ in range(k):
        ann = world.sample_annotation(rng)
        out.append({"annotation": world.format_annotation(ann), "text": grammar.render_story(ann, rng)})
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
                    "text": world.house_format(world.make_title(ann, rng), grammar.render_story(ann, rng))})
    return out

def find_narrowness(ckpts: list) -> float:
    """The SFT data's narrowness the SFT arms were trained on (train config, else the data's meta.json)."""
    for ckpt in ckpts:
        if ckpt.get("stage") != "sft":
            continue
        cfg = ckpt.get("config") or {}
        if cfg.get("narrowness") is not None:
            return float(cfg["narrowness"])
        meta_path = os.path.join(ckpt.get("data_dir") or "", "meta.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                options = json.load(f).get("options", {})  # data.py records the narrowness there
            if options.get("narrowness") is not None:
                return float(options["narrowness"])
    return float(world.DEFAULT_NARROWNESS)

# -----------------------------------------------------------------------------
# arms: "name=path[,path...][:key=value...]"
#
# Several comma-separated checkpoint dirs are the seeds of one arm (e.g. three SFT runs that differ
# by their seed): seed i of the evaluation uses each arm's i-th checkpoint, or its only one (a base
# shared by every SFT seed is sampled once). Every headline number is then reported per seed and as
# the median over seeds.

ARM_OPTIONS = {"anchor": str, "temperature": str, "top_k": int, "top_p": float, "no_repeat_ngram": int, "ann": str}

def parse_arm(spec: str, temperatures, top_p=None, no_repeat_ngram=None) -> dict:
    """'anchored_no_annotation=out/anchored:anchor=off' -> dict(name, path, paths, anchor,
    temperatures, top_k, top_p). temperature=0.6,0.8 in the spec overrides --temperature for this arm. 'sft=runs/s0,runs/s1' gives
    paths ['runs/s0', 'runs/s1'] (one per seed); path is the first. top_p, no_repeat_ngram: the story
    sampling of every arm (--top_p, --no_repeat_ngram), unless the spec sets its own (0: no ban)."""
    if "=" not in spec:
        raise ValueError(f"arm spec {spec!r} must look like name=ckpt_dir[,ckpt_dir_seed2...][:anchor=off][:temperature=0.6,1.0]")
    name, rest = spec.split("=", 1)
    path, *opts = rest.split(":")
    paths = path.split(",")
    if any(not p for p in paths):
        raise ValueError(f"arm {name}: empty checkpoint dir in {path!r}; write name=dir_seed0,dir_seed1")
    arm = {"name": name, "path": paths[0], "paths": paths, "anchor": "auto", "temperatures": list(temperatures),
           "top_k": None, "top_p": top_p, "no_repeat_ngram": no_repeat_ngram, "ann": "free"}
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
            if val not in ("free", "by_field", "prompt"):
                raise ValueError(f"arm {name}: ann={val!r}; valid: free (the model writes the annotation), "
                                 f"by_field (keys forced, values sampled), prompt (the prompt's constraints "
                                 f"pinned in the annotation, the rest sampled)")
            arm["ann"] = val
        else:
            try:
                arm[key] = ARM_OPTIONS[key](val)
            except ValueError:
                raise ValueError(f"arm {name}: {key}={val!r} is not a number") from None
    if arm["no_repeat_ngram"] == 0:  # :no_repeat_ngram=0 lifts --no_repeat_ngram for this arm
        arm["no_repeat_ngram"] = None
    if arm["no_repeat_ngram"] is not None and arm["no_repeat_ngram"] < 2:
        raise ValueError(f"arm {name}: no_repeat_ngram={arm['no_repeat_ngram']}: need at least 2 (0: no ban)")
    if not name or not path:
        raise ValueError(f"arm spec {spec!r} needs both a name and a checkpoint dir")
    return arm

def num_seeds(arms) -> int:
    """Seeds of the evaluation: the most checkpoints any arm has; every arm has that many or one."""
    n = max(len(a["paths"]) for a in arms)
    bad = [f"{a['name']} ({len(a['paths'])})" for a in arms if len(a["paths"]) not in (1, n)]
    if bad:
        raise ValueError(f"arms with {n} seeds and arms with another count: {', '.join(bad)}; "
                         f"give every arm {n} checkpoints or one")
    return n

# -----------------------------------------------------------------------------
# the evaluation: sample every row, add the reference rows, measure

def sample_rows(arms, models, prompts, num_samples, seed, batch_size, max_new_tokens, progress=True,
                dtype=None, compile="auto") -> dict:
    """{row name: EvalRow}, one per arm, temperature and seed, with its labelled samples: {prompt
    index: samples}; a base model sees no prompt (it is sampled in its own document format), so its
    one sample set sits under the key None. compile: engine.generate's (the compiled decode step)."""
    jobs = []
    for arm in arms:
        for si, path in enumerate(arm["paths"]):
            _, ckpt, _ = models[path]
            try:
                anchor = resolve_anchor(ckpt["format"], arm["anchor"])
            except ValueError as e:
                raise ValueError(f"arm {arm['name']} ({path}): {e}") from None
            is_base = ckpt.get("stage") == "base" or ckpt["format"] in BASE_FORMATS
            for t in arm["temperatures"]:
                row = EvalRow(arm=arm["name"], role="base" if is_base else "sft", format=ckpt["format"], temperature=t,
                              samples={}, seed_index=si if len(arm["paths"]) > 1 else None,
                              swept=len(arm["temperatures"]) > 1, ckpt=path, anchor=arm["anchor"], ann=arm["ann"],
                              top_k=arm["top_k"], top_p=arm["top_p"], no_repeat_ngram=arm["no_repeat_ngram"])
                jobs.append((row, arm, si, [None] if is_base else list(range(len(prompts))), anchor))
    bar = tqdm(total=sum(len(j[3]) for j in jobs) * num_samples, desc="sampling", unit="sample", disable=not progress)
    for row, arm, si, pis, anchor in jobs:
        model, ckpt, enc = models[row.ckpt]
        bar.set_postfix_str(f"{row.name} {'(no prompt)' if row.role == 'base' else f'{len(pis)} prompts'}")
        # every prompt of a row in shared generate calls (batch_size rows each); the same seed for
        # every arm: arms differ by their model, not by their luck; another seed index draws other samples
        kw = dict(temperature=row.temperature, top_k=row.top_k, top_p=row.top_p,
                  no_repeat_ngram=row.no_repeat_ngram, seed=seed + 104729 * si,
                  max_new_tokens=max_new_tokens, anchor=anchor, batch_size=batch_size,
                  ann_by_field=row.ann == "by_field", dtype=dtype, compile=compile,
                  quality_tag=ckpt.get("quality_tag", 0))
        texts = [None if pi is None else prompts[pi]["prompt"] for pi in pis]
        if row.ann == "prompt":  # the upper bound of constraint carrying: pins written by the sampler
            per_prompt = [sample_many(model, enc, row.format, [text], num_samples,
                                      pinned=prompts[pi]["constraints"] if pi is not None else None, **kw)[0]
                          for pi, text in zip(pis, texts)]
        else:
            per_prompt = sample_many(model, enc, row.format, texts, num_samples, **kw)
        bar.update(len(pis) * num_samples)
        for pi, samples in zip(pis, per_prompt):
            row.samples[pi] = label_samples(samples)
    bar.close()
    return {row.name: row for row, *_ in jobs}

def reference_rows(prompts, num_samples, narrowness, seed) -> dict:
    """The pretraining data (ceiling, no prompt, like a base model) and the SFT data (floor, per prompt)."""
    pre = EvalRow(arm="pretrain_data", role="reference", format="-", temperature=None,
                  samples={None: label_samples(pretrain_reference(num_samples, seed))})
    sft = EvalRow(arm="sft_data", role="reference", format="-", temperature=None, narrowness=narrowness,
                  samples={pi: label_samples(sft_reference(num_samples, narrowness, p, seed + pi))
                           for pi, p in enumerate(prompts)})
    return {r.name: r for r in (pre, sft)}

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

def exact_annotation_prior() -> dict:
    """metrics.annotation_prior's two numbers for the pretraining prior itself, exactly:
    {field: {"fav_share", "entropy"}}, to read the sampled annotation values by."""
    ent = world.prior_entropy()
    return {f: {"fav_share": float(sum(p for v, p in zip(world.FIELDS[f], world.PRIOR[f]) if v in world.FAVOURITES[f])),
                "entropy": ent[f]} for f in world.FIELDS}

def load_models(arms, device) -> dict:
    """{checkpoint dir: (model, ckpt, tokenizer)}: a dir several arms share (a base shared by every
    SFT seed, anchored sampled with anchor=off too) is loaded once."""
    models = {}
    for arm in arms:
        for path in arm["paths"]:
            if path not in models:
                models[path] = load_model(path, device=device)
    return models

def evaluate(arms, prompts=None, num_samples=128, seed=1337, batch_size=128, max_new_tokens=None,
             narrowness=None, base_arm="base", sft_arm="sft", anchored_arm="anchored", n_boot=1000,
             device="cpu", progress=True, annotated_base_arm=None, dtype="auto", compile="auto") -> tuple:
    """Sample every arm (list of parse_arm() dicts) on every prompt, label, measure; on `device`
    (auto = cuda > mps > cpu), in dtype (auto = device.pick_dtype's policy). Several checkpoints per arm are seeds (see parse_arm).
    compile: engine.generate's (auto, on, off: the compiled decode step).
    Returns (summary dict: every number, rows: {name: measured EvalRow, with its labelled samples})."""
    prompts = prompts if prompts is not None else world.EVAL_PROMPTS
    n_seeds = num_seeds(arms)
    device = pick_device(device)
    dtype = pick_dtype(device, dtype)
    models = load_models(arms, device)
    if narrowness is None:
        narrowness = find_narrowness([ckpt for _, ckpt, _ in models.values()])
    t0 = time.time()
    rows = sample_rows(arms, models, prompts, num_samples, seed, batch_size, max_new_tokens, progress, dtype,
                       compile)
    elapsed = time.time() - t0
    n_sampled = sum(len(s) for r in rows.values() for s in r.samples.values())
    rows.update(reference_rows(prompts, num_samples, narrowness, seed))
    rows = {name: row.measured(prompts) for name, row in rows.items()}
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
        "rows": [r.to_json() for r in rows.values()],
        "exact": exact_entropies(prompts, narrowness),
        "exact_annotation_prior": exact_annotation_prior(),
        "annotated_base_row": abase and abase.name,
        "derived": derived,
        "over_seeds": seed_summary(rows, prompts, names, n_seeds, per_seed, n_boot, seed),
        "speed": {"samples": n_sampled, "seconds": elapsed, "samples_per_s": n_sampled / max(elapsed, 1e-9),
                  "threads": torch.get_num_threads(), "device": device},
    }
    return summary, rows

# -----------------------------------------------------------------------------
# outputs: summary.json, summary.md, headline.json, samples.jsonl.gz, plots (report.py draws them)

def _finite(x):
    # JSON has no inf/nan: write null (the Markdown table says "n/a")
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x

def sample_records(rows, prompts):
    """Every sample of every row as one flat dict: row, prompt, annotation text, story text, labels..."""
    for r in rows.values():
        for pi, samples in r.samples.items():
            for s in samples:
                yield {"row": r.name, "prompt_index": pi, "prompt": None if pi is None else prompts[pi]["prompt"], **s}

def headline(summary, size=None, wall_seconds=None) -> dict:
    """The headline numbers of one evaluation (headline.json), from its summary: each statistic as its
    median over seeds with its per-seed values (gap closed also with its interval). size and
    wall_seconds: reproduce.py knows them and sets them in the headline.json of a reproduction."""
    o = summary["over_seeds"]
    pick = lambda k, extra=(): {"median": o[k]["median"], "per_seed": o[k]["per_seed"],
                                **{e: o[k].get(e) for e in extra}}
    out = {"size": size, "seeds": o["n_seeds"], "prompts": o["kind"],
           "gap_closed": pick("gap_closed", ("ci95", "min", "max")),
           "gap_closed_known": pick("gap_closed_known", ("ci95", "min", "max"))}
    for k in ("collapse_ratio", "quality_sft", "quality_anchored", "instruction_sft", "instruction_anchored",
              "prior_drift_max", "prior_drift_floor", "prior_drift_noise95", "base_agreement_min", "gap_closed_good",
              "quality_matched_sft", "quality_matched_anchored"):
        if k in o:  # prior_drift_floor / _noise95, quality_matched_*: not in summaries made before them
            out[k] = pick(k)
    out.update(text_health(summary))
    out["wall_seconds"] = wall_seconds
    return out

def text_health(summary) -> dict:
    """Over the model rows of a summary (reference rows left out): the well-formed story share (open
    prompts) of the base row and the annotated base row it names (derived["base_row"],
    annotated_base_row), the largest broken-text share and the smallest annotation-parse share of any row."""
    rows = [r for r in summary.get("rows", []) if r.get("role") != "reference"]
    open_ = lambda r, key: (r["by_kind"].get("open") or {}).get(key)
    by_name = {r.get("row"): r for r in rows}
    quality_of = lambda name: open_(by_name[name], "quality") if name in by_name else None
    broken = [v for r in rows for v in [open_(r, "broken_text")] if v is not None]
    parse = [v for r in rows for m in r["by_kind"].values() for v in [m.get("annotation_valid")] if v is not None]
    return {"quality_base": quality_of((summary.get("derived") or {}).get("base_row")),
            "quality_base_annotated": quality_of(summary.get("annotated_base_row")),
            "broken_text_max": max(broken) if broken else None, "annotation_parse_min": min(parse) if parse else None}

def write_outputs(summary, rows, out_dir):
    """summary.json, summary.md, headline.json, samples.jsonl.gz and the plots into out_dir."""
    import gzip
    os.makedirs(out_dir, exist_ok=True)
    prompts = summary["config"]["prompts"]
    # each file whole or not at all (write_atomic): a killed evaluation leaves the old file or the new
    write_atomic(os.path.join(out_dir, "summary.json"), json.dumps(_finite(summary), indent=1))
    write_atomic(os.path.join(out_dir, "summary.md"), summary_markdown(summary))
    write_atomic(os.path.join(out_dir, "headline.json"), json.dumps(_finite(headline(summary)), indent=1))
    # mtime=0: the same samples give the same bytes (a committed file changes only when they do)
    buf = io.BytesIO()
    with gzip.GzipFile("samples.jsonl.gz", "wb", fileobj=buf, mtime=0) as f:  # (the name goes in the header)
        for rec in sample_records(rows, prompts):
            f.write((json.dumps(rec) + "\n").encode())
    write_atomic(os.path.join(out_dir, "samples.jsonl.gz"), buf.getvalue())
    plot_prior_drift(summary, os.path.join(out_dir, "prior_drift.png"))
    d = summary["derived"]
    plot_field_entropy(summary, os.path.join(out_dir, "field_entropy.png"))
    plot_label_histograms(rows, prompts, [d.get("base_row"), d.get("sft_row"), d.get("anchored_row")],
                          os.path.join(out_dir, "label_histograms.png"))
    plot_quality_diversity(summary, os.path.join(out_dir, "quality_vs_diversity.png"))

# -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The flags; --help prints the first paragraph of this file's docstring above them."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpts", nargs="+", required=True,
                   help="arms as name=ckpt_dir[,ckpt_dir_seed1,...][:anchor=auto|on|off][:temperature=0.6,1.0]"
                        "[:top_k=N][:top_p=P][:no_repeat_ngram=N][:ann=free|by_field|prompt]; several dirs = the seeds of one arm")
    p.add_argument("--num_samples", type=int, default=128, help="K samples per prompt (same K for every arm)")
    p.add_argument("--temperature", type=float, nargs="+", default=[1.0],
                   help="response temperature(s); several = a sweep, rows named arm@T0.8")
    p.add_argument("--top_p", type=float, default=None,
                   help="nucleus sampling of every arm's story (the annotation is always sampled at T = 1, "
                        "untruncated); default: none, the paper's plain T = 1")
    p.add_argument("--no_repeat_ngram", type=int, default=None,
                   help="ban, in every arm's story, any token that would repeat an N-token run of that story "
                        "(engine.NoRepeat; never in the annotation); default: no ban")
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
                   help="the annotated base, for the gate and the prior drift (default: the base row of format annotated)")
    add_device_flags(p, "for sampling")
    p.add_argument("--compile_sampling", **COMPILE_FLAG)
    p.add_argument("--n_boot", type=int, default=1000, help="bootstrap resamples for the confidence intervals")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", required=True, help="output directory")
    return p

def check_args(p, args):
    """Every flag in range, before any work: a bad value ends in one line naming it (p.error)."""
    if args.num_samples < 2:
        p.error(f"--num_samples {args.num_samples}: need at least 2 samples to measure diversity")
    for name in ("batch_size", "n_boot", "threads", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} {getattr(args, name)}: need at least 1")
    if any(not t > 0 for t in args.temperature):
        p.error(f"--temperature {args.temperature}: every temperature must be > 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        p.error(f"--top_p {args.top_p}: must be in (0, 1]")
    if args.no_repeat_ngram is not None and args.no_repeat_ngram < 2:
        p.error(f"--no_repeat_ngram {args.no_repeat_ngram}: need at least 2")
    if args.narrowness is not None and not 0 <= args.narrowness <= 1:
        p.error(f"--narrowness {args.narrowness}: must be in [0, 1]")

def main(argv=None):
    """Parse and check the flags, evaluate, write the outputs; a bad arm or checkpoint is one line."""
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    check_out_dir(args.out, "--out")
    device = check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        arms = [parse_arm(s, args.temperature, args.top_p, args.no_repeat_ngram) for s in args.ckpts]
        names = [a["name"] for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        batch_size = args.batch_size or (128 if device == "cpu" else 512)
        summary, rows = evaluate(arms, num_samples=args.num_samples, seed=args.seed, batch_size=batch_size,
                                 max_new_tokens=args.max_new_tokens, narrowness=args.narrowness,
                                 base_arm=args.base_arm, sft_arm=args.sft_arm,
                                 anchored_arm=args.anchored_arm, n_boot=args.n_boot,
                                 device=device, annotated_base_arm=args.annotated_base_arm, dtype=args.dtype,
                                 compile=args.compile_sampling)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"eval_diversity.py: error: {e}")
    write_outputs(summary, rows, args.out)
    print(summary_markdown(summary))
    sp = summary["speed"]
    print(f"{sp['samples']} samples in {sp['seconds']:.1f}s = {sp['samples_per_s']:.1f} samples/s; wrote {args.out}/")

if __name__ == "__main__":
    main()
