"""
data.py: build the nanoanchor dataset on disk (and its CLI: `python data.py`).

The world lives in chapters: world.py (schema, prior, stories, SFT data, exact entropies) draws on
templates.py (the sentence tables), judge.py reads texts back (annotate, quality), tokenizer.py
trains the BPE and holds every format and loss mask. This file puts them together: generate the
pretraining docs (a `noise` fraction corrupted), the SFT examples and the evaluation prompts,
train the tokenizer, write the token shards, and record everything in meta.json. A build is
reused only when its options (and the grammar's hash) are identical.
"""

import argparse
import hashlib
import json
import os
import random
import time
from collections import Counter

import numpy as np
from tqdm import tqdm

import templates
import world
from judge import quality
from tokenizer import (MIN_VOCAB_SIZE, PAT_STR, SPECIAL_TOKENS, TOKENIZER_FILE, encode_example, save_tokenizer,
                       special_ids, tokenizer_hash, train_tokenizer)
from world import (DEFAULT_NARROWNESS, EVAL_PROMPTS, FIELDS, corrupt, format_annotation, make_sft_example,
                   make_sft_examples, mean_free_entropy, prior_entropy, render_story, sample_annotation,
                   sft_distribution, sft_entropy)


DATA_VERSION = 3  # bump when the generator code changes (edits to the template tables are caught by _grammar_hash)


# -----------------------------------------------------------------------------
# Building the dataset on disk

DEFAULTS = dict(n_stories=100_000, seed=1337, noise=0.2, narrowness=DEFAULT_NARROWNESS, vocab_size=2048,
                n_sft=20_000, n_sft_val=1_000, val_frac=0.02, tokenizer_docs=20_000)
OUTPUT_FILES = [TOKENIZER_FILE, "pretrain_plain_train.bin", "pretrain_plain_val.bin",
                "pretrain_annotated_train.bin", "pretrain_annotated_val.bin", "sft_train.jsonl", "sft_val.jsonl",
                "eval_prompts.json", "meta.json"]


def generate_pretraining_docs(n, seed, noise, progress=True):
    """n docs: (story text, true annotation, corruption defect or None). A `noise` fraction is corrupted."""
    rng = random.Random(seed)
    docs = []
    for _ in tqdm(range(n), desc="stories", disable=not progress, mininterval=1.0):
        ann = sample_annotation(rng)
        story = render_story(ann, rng)
        defect = None
        if rng.random() < noise:
            story, defect = corrupt(story, ann, rng)
        docs.append((story, ann, defect))
    return docs


def _write_shards(enc, docs, out_dir, split, progress=True):
    """pretrain_{plain,annotated}_{split}.bin from the same docs, each story tokenized once."""
    chunks = {"plain": [], "annotated": []}
    for story, ann, _ in tqdm(docs, desc=f"tokenize {split}", disable=not progress, mininterval=1.0):
        story_ids = enc.encode_ordinary(story)
        encode = lambda t: story_ids if t is story else enc.encode_ordinary(t)  # noqa: E731
        for fmt, ch in chunks.items():
            ids, _ = encode_example(enc, {"story": story, "annotation": ann}, fmt, encode=encode)
            ch.append(np.asarray(ids, dtype=np.uint16))
    tokens = {}
    for fmt, ch in chunks.items():
        name = f"pretrain_{fmt}_{split}"
        arr = np.concatenate(ch) if ch else np.zeros(0, dtype=np.uint16)
        path = os.path.join(out_dir, name + ".bin")
        arr.tofile(path + ".tmp")
        os.replace(path + ".tmp", path)
        tokens[name] = int(arr.size)
    return tokens


def _grammar_hash():
    """Fingerprint of the world's tables, so a dataset built by an older grammar is never reused."""
    w, t = world, templates
    tables = [w.FIELDS, w.PRIOR_ZIPF, w.SETTINGS, w.QUESTS, t.OPEN_PREFIX, t.OPEN_BODY, t.SETTING_GENERIC,
              t.SETTING_SPECIFIC, t.QUEST_INTRO, t.QUEST_EXTRA, t.FILLERS, t.STYLE_SENTENCES, t.FEATURE_SENTENCES,
              t.THEME_GENERIC, t.THEME_SPECIFIC, t.ENDING_SENTENCES, w.LENGTH_WORDS, w.FAVOURITES, w.FAV_WEIGHTS,
              t.OPEN_PROMPTS, t.LEADS, t.CLAUSES, w.EVAL_PROMPTS, SPECIAL_TOKENS, PAT_STR, DATA_VERSION]
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:12]


DERIVED_OPTIONS = ("version", "grammar")  # recorded in meta.json options, not chosen by the caller


def _resolve_options(options):
    options = {k: v for k, v in options.items() if k not in DERIVED_OPTIONS}
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown dataset option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    opts = dict(DEFAULTS, **options)
    if not 0.0 <= opts["noise"] <= 1.0:
        raise ValueError(f"noise={opts['noise']} must be in [0, 1]")
    if not MIN_VOCAB_SIZE <= opts["vocab_size"] <= 65535:
        raise ValueError(f"vocab_size={opts['vocab_size']} must be in [{MIN_VOCAB_SIZE}, 65535] (256 bytes, the "
                         f"special tokens and a merge at least; at most what the uint16 token shards hold)")
    for name, least in (("n_stories", 2), ("n_sft", 1), ("n_sft_val", 1), ("tokenizer_docs", 1)):
        if opts[name] < least:  # n_stories: at least one validation and one training story
            raise ValueError(f"{name}={opts[name]} must be at least {least}")
    if not 0.0 < opts["val_frac"] < 1.0:
        raise ValueError(f"val_frac={opts['val_frac']} must be in (0, 1)")
    sft_distribution("name", opts["narrowness"])  # validates narrowness
    opts["version"] = DATA_VERSION
    opts["grammar"] = _grammar_hash()
    return opts


def build_dataset(out_dir, opts, progress=True):
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)  # meta.json is written last: its presence marks a complete build
    docs = generate_pretraining_docs(opts["n_stories"], opts["seed"], opts["noise"], progress)
    sft_train = make_sft_examples(opts["n_sft"], opts["narrowness"], opts["seed"] + 1)
    sft_val = make_sft_examples(opts["n_sft_val"], opts["narrowness"], opts["seed"] + 2)
    # tokenizer: trained on the first docs (annotated layout) and some SFT text
    tdocs = docs[: opts["tokenizer_docs"]]
    texts = [s for s, _, _ in tdocs] + [format_annotation(a) for _, a, _ in tdocs]
    texts += [e["prompt"] for e in sft_train[:5000]] + [e["response"] for e in sft_train[:2000]]
    texts += [p["prompt"] for p in EVAL_PROMPTS] + [format_annotation({f: v}) for f in FIELDS for v in FIELDS[f]]
    enc = train_tokenizer(texts, opts["vocab_size"])
    save_tokenizer(enc, os.path.join(out_dir, TOKENIZER_FILE))
    n_val = max(1, int(len(docs) * opts["val_frac"])) if docs else 0
    splits = {"train": docs[n_val:], "val": docs[:n_val]}
    tokens = {}
    for split, ds in splits.items():
        tokens.update(_write_shards(enc, ds, out_dir, split, progress))
    for name, exs in (("sft_train", sft_train), ("sft_val", sft_val)):
        with open(os.path.join(out_dir, name + ".jsonl"), "w") as f:
            for e in exs:
                f.write(json.dumps(e) + "\n")
    with open(os.path.join(out_dir, "eval_prompts.json"), "w") as f:
        json.dump(EVAL_PROMPTS, f, indent=1)
    pe = prior_entropy()
    so = sft_entropy(opts["narrowness"])
    meta = {
        "options": opts,
        "n_docs": {"train": len(splits["train"]), "val": len(splits["val"])},
        "n_corrupted": dict(Counter(k for _, _, k in docs if k)),
        "n_sft": {"train": len(sft_train), "val": len(sft_val)},
        "tokens": tokens,
        "tokenizer_hash": tokenizer_hash(enc),
        "vocab_size": enc.n_vocab,
        "special_ids": special_ids(enc),
        "entropy": {
            "prior": pe, "prior_mean": mean_free_entropy(pe),
            "sft_open": so, "sft_open_mean": mean_free_entropy(so),
            "sft_eval_prompts": [{"prompt": p["prompt"], "constraints": p["constraints"],
                                  "entropy": sft_entropy(opts["narrowness"], p["constraints"]),
                                  "mean_free": mean_free_entropy(sft_entropy(opts["narrowness"], p["constraints"]),
                                                                 p["constraints"])} for p in EVAL_PROMPTS],
        },
        "build_seconds": round(time.time() - t0, 1),
    }
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return meta


def _reusable(out_dir, opts):
    """The meta of a complete build in out_dir made with exactly `opts`, else None."""
    meta_path = os.path.join(out_dir, "meta.json")
    if not os.path.exists(meta_path):
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("options") == opts and all(os.path.exists(os.path.join(out_dir, n)) for n in OUTPUT_FILES):
        return meta
    return None


def ensure_dataset(out_dir="data", progress=True, **options):
    """Build the dataset in out_dir unless an identical build (same options, all files) is there.
    Different options never mix with old files: the old build is replaced (and we say so).
    A lock file makes parallel callers (several training runs) wait for one builder."""
    opts = _resolve_options(options)
    meta = _reusable(out_dir, opts)
    if meta is not None:
        return meta
    os.makedirs(out_dir, exist_ok=True)
    lock = os.path.join(out_dir, ".building")
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(lock) > 900:  # a builder that died long ago
                    os.remove(lock)
            except FileNotFoundError:
                pass
            time.sleep(1)
    try:
        meta = _reusable(out_dir, opts)  # the builder we waited for may have made just this
        if meta is not None:
            return meta
        meta_path = os.path.join(out_dir, "meta.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                old = json.load(f).get("options", {})
            diff = {k: (old.get(k), opts[k]) for k in opts if old.get(k) != opts[k]}
            print(f"data: {out_dir} was built with other options {diff} (old, new) or is incomplete; rebuilding")
        for n in OUTPUT_FILES:
            p = os.path.join(out_dir, n)
            if os.path.exists(p):
                os.remove(p)
        return build_dataset(out_dir, opts, progress)
    finally:
        os.remove(lock)


def show(n, seed):
    rng = random.Random(seed)
    for i in range(n):
        ann = sample_annotation(rng)
        print(f"--- story {i}\n[{format_annotation(ann)}]\n{render_story(ann, rng)}\n")
    ann = sample_annotation(rng)
    bad, defect = corrupt(render_story(ann, rng), ann, rng)
    print(f"--- corrupted ({defect}); quality={quality(bad)}\n[{format_annotation(ann)}]\n{bad}\n")
    for kind in ("open", "constrained"):
        ex = make_sft_example(rng, DEFAULT_NARROWNESS, kind)
        print(f"--- SFT example ({kind})\nprompt: {ex['prompt']}\n[{format_annotation(ex['annotation'])}]\n"
              f"{ex['response']}\n")


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate the nanoanchor synthetic story dataset.")
    p.add_argument("--out_dir", default="data")
    p.add_argument("--n_stories", type=int, default=DEFAULTS["n_stories"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--noise", type=float, default=DEFAULTS["noise"], help="fraction of corrupted pretraining docs")
    p.add_argument("--narrowness", type=float, default=DEFAULTS["narrowness"],
                   help="SFT free-field narrowness in [0,1]: 0 = as broad as the prior, 1 = favourites only")
    p.add_argument("--vocab_size", type=int, default=DEFAULTS["vocab_size"])
    p.add_argument("--n_sft", type=int, default=DEFAULTS["n_sft"])
    p.add_argument("--n_sft_val", type=int, default=DEFAULTS["n_sft_val"])
    p.add_argument("--show", type=int, default=0, help="print N annotated stories, a corrupted one, SFT examples; exit")
    a = p.parse_args(argv)
    if a.show < 0:
        p.error(f"--show {a.show}: the number of stories to print must be >= 0")
    if a.show:
        show(a.show, a.seed)
        return
    try:
        meta = ensure_dataset(a.out_dir, n_stories=a.n_stories, seed=a.seed, noise=a.noise, narrowness=a.narrowness,
                              vocab_size=a.vocab_size, n_sft=a.n_sft, n_sft_val=a.n_sft_val)
    except ValueError as e:
        p.error(str(e))
    except OSError as e:
        p.error(f"--out_dir {a.out_dir}: cannot write there ({e.strerror or e})")
    print(json.dumps({k: meta[k] for k in ("n_docs", "tokens", "vocab_size", "tokenizer_hash")}, indent=1))


if __name__ == "__main__":
    main()
