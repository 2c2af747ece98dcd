"""
data.py: build the nanoanchor dataset on disk (and its CLI: `python data.py`).

The world lives in chapters: world.py (schema, prior, SFT data, exact entropies) and grammar.py (the
stories) draw on templates.py (the tables), judge.py reads texts back (annotate, quality), tokenizer.py
trains the BPE and holds every format and loss mask. This file puts them together: generate the
pretraining docs (a `noise` fraction corrupted), the SFT examples and the evaluation prompts,
train the tokenizer, write the token shards, and record everything in meta.json. A build is
reused only when its options (and the grammar's hash) are identical.
It also holds the one packer (pack_rows) that puts whole documents into training rows, for
pretraining and SFT alike.

Files on disk prove they are whole. Every file is written whole or not at all (write_atomic), and
meta.json last: a folder without it holds no finished build. meta.json records each file's size and,
for the small ones (tokenizer, SFT jsonl, prompts), a sha256 of its bytes; check_dataset compares
them (sizes always, hashes where a file is read anyway) and raises DatasetError naming the file and
the command that rebuilds it. A build from before these records (no "files" in meta.json) is still
reused: its shards are checked against their recorded token counts and its tokenizer against
tokenizer_hash. One builder per folder at a time: an OS lock that ends with its holder.
"""

import argparse
import bisect
import contextlib
import hashlib
import json
import os
import random
import socket
import time
from collections import Counter

try:
    import fcntl
except ImportError:  # Windows (not a target): msvcrt's byte lock also ends with its holder
    fcntl = None
    import msvcrt

import numpy as np
from tqdm import tqdm

import templates
import world
from judge import quality
from checkpoint import write_atomic
from grammar import render_story
from tokenizer import (MIN_VOCAB_SIZE, PAT_STR, SPECIAL_TOKENS, TOKENIZER_FILE, encode_example, load_tokenizer,
                       special_ids, tokenizer_file, tokenizer_hash, train_tokenizer)
from world import (DEFAULT_NARROWNESS, EVAL_PROMPTS, FIELDS, TITLE_PREFIX, corrupt, format_annotation,
                   make_sft_example, make_sft_examples, make_title, mean_free_entropy, prior_entropy, sample_annotation,
                   sft_distribution, sft_entropy)


DATA_VERSION = 3  # bump when the generator code changes (edits to the template tables are caught by _grammar_hash)


# -----------------------------------------------------------------------------
# Building the dataset on disk

DEFAULTS = dict(n_stories=100_000, seed=1337, noise=0.2, titled=0.0, quality_tag=0, narrowness=DEFAULT_NARROWNESS,
                vocab_size=2048, n_sft=20_000, n_sft_val=1_000, val_frac=0.02, tokenizer_docs=20_000)
# options added after builds were made: a meta.json without one was built with this value
ADDED_LATER = dict(titled=0.0, quality_tag=0)
OUTPUT_FILES = [TOKENIZER_FILE, "pretrain_plain_train.bin", "pretrain_plain_val.bin",
                "pretrain_annotated_train.bin", "pretrain_annotated_val.bin", "sft_train.jsonl", "sft_val.jsonl",
                "eval_prompts.json", "meta.json"]
HASHED = (TOKENIZER_FILE, "sft_train.jsonl", "sft_val.jsonl", "eval_prompts.json")  # the shards: size only
TOKEN_BYTES = np.dtype(np.uint16).itemsize


def _put(out_dir, name, data, files):
    """Write out_dir/name whole (write_atomic) and record its size (and hash) in files."""
    data = data.encode() if isinstance(data, str) else data
    write_atomic(os.path.join(out_dir, name), data)
    files[name] = {"bytes": len(data)}
    if name in HASHED:
        files[name]["sha256"] = hashlib.sha256(data).hexdigest()[:16]


def generate_pretraining_docs(n, seed, noise, titled=0.0, progress=True):
    """n docs: (story text, true annotation, corruption defect or None). A `noise` fraction is corrupted.
    A `titled` fraction opens with the house title line (world.make_title, no closing line), as web
    text carries titles: the base then learns to title what it annotates, and SFT has only the house
    format left to teach. titled=0 draws the same docs as before the option existed; titled > 0 takes
    one more draw per doc, so the stories after the first differ from the untitled build's too."""
    rng = random.Random(seed)
    docs = []
    for _ in tqdm(range(n), desc="stories", disable=not progress, mininterval=1.0):
        ann = sample_annotation(rng)
        story = render_story(ann, rng)
        defect = None
        if rng.random() < noise:
            story, defect = corrupt(story, ann, rng)
        if titled and rng.random() < titled:
            story = f"{TITLE_PREFIX}{make_title(ann, rng)}\n\n{story}"
        docs.append((story, ann, defect))
    return docs


def doc_annotation(ann, defect, quality_tag):
    """The annotation an annotated document carries: its nine fields, and with quality_tag its
    quality (world.quality_tag: 'poor' for a corrupted doc) as the last key."""
    return {**ann, world.QUALITY: world.quality_tag(defect)} if quality_tag else ann


def _write_shards(enc, docs, out_dir, split, files, quality_tag=0, progress=True):
    """pretrain_{plain,annotated}_{split}.bin from the same docs, each story tokenized once."""
    chunks = {"plain": [], "annotated": []}
    for story, ann, defect in tqdm(docs, desc=f"tokenize {split}", disable=not progress, mininterval=1.0):
        story_ids = enc.encode_ordinary(story)
        encode = lambda t: story_ids if t is story else enc.encode_ordinary(t)  # noqa: E731
        example = {"story": story, "annotation": doc_annotation(ann, defect, quality_tag)}
        for format, ch in chunks.items():
            ids, _ = encode_example(enc, example, format, encode=encode)
            ch.append(np.asarray(ids, dtype=np.uint16))
    tokens = {}
    for format, ch in chunks.items():
        name = f"pretrain_{format}_{split}"
        arr = np.concatenate(ch) if ch else np.zeros(0, dtype=np.uint16)
        _put(out_dir, name + ".bin", arr.tobytes(), files)
        tokens[name] = int(arr.size)
    return tokens


def _grammar_hash():
    """Fingerprint of the world's tables, so a dataset built by an older grammar is never reused."""
    w, t = world, templates
    tables = [w.FIELDS, w.PRIOR_ZIPF, t.SETTINGS, t.QUESTS, t.OPEN_PREFIX, t.OPEN_BODY, t.SETTING_GENERIC,
              t.SETTING_SPECIFIC, t.QUEST_INTRO, t.QUEST_EXTRA, t.FILLERS, t.STYLE_SENTENCES, t.FEATURE_SENTENCES,
              t.THEME_GENERIC, t.THEME_SPECIFIC, t.ENDING_SENTENCES, t.LENGTH_WORDS, w.FAVOURITES, w.FAV_WEIGHTS,
              t.OPEN_PROMPTS, t.LEADS, t.CLAUSES, w.EVAL_PROMPTS, SPECIAL_TOKENS, PAT_STR, DATA_VERSION]
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:12]


DERIVED_OPTIONS = ("version", "grammar")  # recorded in meta.json options, not chosen by the caller


def _resolve_options(options):
    options = {k: v for k, v in options.items() if k not in DERIVED_OPTIONS}
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown dataset option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    opts = dict(DEFAULTS, **options)
    for name in ("noise", "titled"):
        if not 0.0 <= opts[name] <= 1.0:
            raise ValueError(f"{name}={opts[name]} must be in [0, 1]")
    if not MIN_VOCAB_SIZE <= opts["vocab_size"] <= 65535:
        raise ValueError(f"vocab_size={opts['vocab_size']} must be in [{MIN_VOCAB_SIZE}, 65535] (256 bytes, the "
                         f"special tokens and a merge at least; at most what the uint16 token shards hold)")
    for name, least in (("n_stories", 2), ("n_sft", 1), ("n_sft_val", 1), ("tokenizer_docs", 1)):
        if opts[name] < least:  # n_stories: at least one validation and one training story
            raise ValueError(f"{name}={opts[name]} must be at least {least}")
    if opts["quality_tag"] not in (0, 1):
        raise ValueError(f"quality_tag={opts['quality_tag']} must be 0 (no tag) or 1 (each annotation ends with "
                         f"its document's quality)")
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
    docs = generate_pretraining_docs(opts["n_stories"], opts["seed"], opts["noise"], opts["titled"], progress)
    sft_train = make_sft_examples(opts["n_sft"], opts["narrowness"], opts["seed"] + 1)
    sft_val = make_sft_examples(opts["n_sft_val"], opts["narrowness"], opts["seed"] + 2)
    # tokenizer: trained on the first docs (annotated layout) and some SFT text
    tdocs = docs[: opts["tokenizer_docs"]]
    texts = [s for s, _, _ in tdocs] + [format_annotation(a) for _, a, _ in tdocs]
    texts += [e["prompt"] for e in sft_train[:5000]] + [e["response"] for e in sft_train[:2000]]
    texts += [p["prompt"] for p in EVAL_PROMPTS] + [format_annotation({f: v}) for f in FIELDS for v in FIELDS[f]]
    enc = train_tokenizer(texts, opts["vocab_size"])
    files = {}
    _put(out_dir, TOKENIZER_FILE, tokenizer_file(enc), files)
    n_val = max(1, int(len(docs) * opts["val_frac"])) if docs else 0
    splits = {"train": docs[n_val:], "val": docs[:n_val]}
    tokens = {}
    for split, ds in splits.items():
        tokens.update(_write_shards(enc, ds, out_dir, split, files, opts["quality_tag"], progress))
    for name, exs in (("sft_train", sft_train), ("sft_val", sft_val)):
        _put(out_dir, name + ".jsonl", "".join(json.dumps(e) + "\n" for e in exs), files)
    _put(out_dir, "eval_prompts.json", json.dumps(EVAL_PROMPTS, indent=1), files)
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
        "files": files,
        "build_seconds": round(time.time() - t0, 1),
    }
    write_atomic(meta_path, json.dumps(meta, indent=1))  # last: now the build is complete
    return meta


# -----------------------------------------------------------------------------
# Checking a build: every file the size (and hash) meta.json recorded

class DatasetError(ValueError):
    """A dataset file is missing or not the one meta.json recorded: `problem`, then what to run."""

    def __init__(self, problem, data_dir, options=None):
        self.problem = problem
        super().__init__(f"{problem}; rebuild the dataset: {rebuild_command(data_dir, options or {})}")


# main()'s flags
CLI_OPTIONS = ("n_stories", "seed", "noise", "titled", "quality_tag", "narrowness", "vocab_size", "n_sft", "n_sft_val")


def rebuild_command(data_dir, options):
    """The command that rebuilds data_dir with these options (data.py repairs a damaged build)."""
    changed = {k: v for k, v in options.items() if k in DEFAULTS and v != DEFAULTS[k]}
    if set(changed) - set(CLI_OPTIONS):  # options data.py has no flag for
        return f"data.ensure_dataset({str(data_dir)!r}, repair=True, **{changed})"
    return " ".join([f"python data.py --out_dir {data_dir}", *(f"--{k} {v}" for k, v in changed.items())])


def read_meta(data_dir):
    """meta.json of data_dir as a dict; None if there is none (no build, or one that did not finish)."""
    path = os.path.join(data_dir, "meta.json")
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as e:  # (never half-written: someone edited or cut it)
        raise DatasetError(f"{path} is not readable JSON ({e})", data_dir) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("options"), dict):
        raise DatasetError(f"{path} is not a meta.json of data.py (no options)", data_dir)
    return meta


def _records(meta):
    """{file name: {"bytes": n[, "sha256": h]}} of what a build vouches for. An older build (no "files")
    vouches for each shard's size through its token count only."""
    if "files" in meta:
        return meta["files"]
    return {f"{name}.bin": {"bytes": n * TOKEN_BYTES} for name, n in meta.get("tokens", {}).items()}


def check_file(data_dir, name, meta, content=None):
    """DatasetError unless data_dir/name is the file meta.json recorded: its size; a shard, a whole
    number of tokens; its sha256 if one is recorded and `content` (its bytes, read by the caller) given."""
    path = os.path.join(data_dir, name)
    try:
        size = os.path.getsize(path) if content is None else len(content)
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing from a finished build", data_dir, meta["options"]) from None
    want = _records(meta).get(name, {})
    if name.endswith(".bin") and size % TOKEN_BYTES:
        raise DatasetError(f"{path} is {size:,} bytes, not a whole number of {TOKEN_BYTES}-byte tokens: a cut "
                           f"or half-copied file", data_dir, meta["options"])
    if "bytes" in want and size != want["bytes"]:
        raise DatasetError(f"{path} is {size:,} bytes but meta.json recorded {want['bytes']:,}: a damaged "
                           f"or half-copied file", data_dir, meta["options"])
    if content is not None and "sha256" in want:
        have = hashlib.sha256(content).hexdigest()[:16]
        if have != want["sha256"]:
            raise DatasetError(f"{path} changed since the build (sha256 {have}, meta.json recorded "
                               f"{want['sha256']})", data_dir, meta["options"])


def read_checked(data_dir, name, meta):
    """The bytes of data_dir/name, checked against meta.json (size and hash)."""
    check_file(data_dir, name, meta)  # missing / wrong size: said before reading
    with open(os.path.join(data_dir, name), "rb") as f:
        content = f.read()
    check_file(data_dir, name, meta, content)
    return content


def check_dataset(data_dir, names=None, meta=None):
    """-> meta of data_dir after checking the files `names` (default: all): sizes, and the hash of
    the tokenizer and the prompts (small; the SFT jsonl are hashed by sft.py, which reads them)."""
    meta = meta or read_meta(data_dir)
    if meta is None:
        raise DatasetError(f"{data_dir} holds no finished dataset (no meta.json)", data_dir)
    names = names or [n for n in OUTPUT_FILES if n != "meta.json"]
    for name in names:
        if name in (TOKENIZER_FILE, "eval_prompts.json"):
            read_checked(data_dir, name, meta)
        else:
            check_file(data_dir, name, meta)
    if TOKENIZER_FILE in names and "files" not in meta:  # an older build: no file hash, the tokenizer's own
        if tokenizer_hash(load_tokenizer(str(data_dir))) != meta.get("tokenizer_hash"):
            raise DatasetError(f"{os.path.join(data_dir, TOKENIZER_FILE)} is not the tokenizer the shards were "
                               f"made with (tokenizer_hash differs from meta.json's)", data_dir, meta["options"])
    return meta


def built_with(meta):
    """The options of a build, those added since it was made at the value it was built with."""
    return dict(ADDED_LATER, **meta["options"])


def _reusable(out_dir, opts, repair, quiet=False):
    """The meta of a whole build in out_dir made with exactly `opts`, else None (build it). A damaged
    build: DatasetError, or None (with a line saying so unless quiet) if `repair`."""
    try:
        meta = read_meta(out_dir)
        return check_dataset(out_dir, meta=meta) if meta is not None and built_with(meta) == opts else None
    except DatasetError as e:
        if not repair:
            raise
        if not quiet:
            print(f"data: {e.problem}; rebuilding")
        return None

# -----------------------------------------------------------------------------
# One builder at a time: a lock that ends with its holder

@contextlib.contextmanager
def build_lock(out_dir):
    """Hold out_dir/.lock for a build. It is an OS lock (flock), so the kernel drops it when its
    holder ends in any way, SIGKILL included: a killed build never blocks the next. A caller that
    finds it held says on one line who holds it, and waits. (Not over NFS, where flock may not lock.)"""
    with open(os.path.join(out_dir, ".lock"), "a+") as f:
        if not _try_lock(f):
            f.seek(0)
            holder = f.read().strip() or "another process"
            print(f"data: waiting for {holder}, which is building {out_dir} (the lock {f.name} ends with "
                  f"that process: let it finish, or end it and this run builds at once)", flush=True)
            while not _try_lock(f):
                time.sleep(0.2)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        f.flush()
        yield


def _try_lock(f):
    try:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when f closes or we die
        else:
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _say_why(out_dir, opts):
    """One line when a build replaces what is in out_dir: other options, or an unfinished build."""
    try:
        old = read_meta(out_dir)
    except DatasetError:
        return  # (a damaged meta.json: _reusable said so)
    was = built_with(old) if old is not None else None
    if was is not None and was != opts:
        diff = {k: (was.get(k), opts[k]) for k in opts if was.get(k) != opts[k]}
        print(f"data: {out_dir} was built with other options {diff} (old, new); rebuilding")
    elif old is None and any(os.path.exists(os.path.join(out_dir, n)) for n in OUTPUT_FILES):
        print(f"data: {out_dir} holds an unfinished build (no meta.json: it was stopped); rebuilding")


def ensure_dataset(out_dir="data", progress=True, repair=False, **options):
    """Build the dataset in out_dir unless an identical, whole build (same options, every file its
    recorded size and hash) is there. Different options never mix with old files: the old build is
    replaced (and we say so). A damaged build is a DatasetError naming the file, or rebuilt if
    `repair` (what `python data.py` does). Parallel callers wait for one builder (build_lock)."""
    opts = _resolve_options(options)
    meta = _reusable(out_dir, opts, repair, quiet=True)
    if meta is not None:
        return meta
    os.makedirs(out_dir, exist_ok=True)
    with build_lock(out_dir):
        meta = _reusable(out_dir, opts, repair)  # the builder we waited for may have made just this
        if meta is not None:
            return meta
        _say_why(out_dir, opts)
        for n in ["meta.json", *OUTPUT_FILES]:  # meta.json first: from here on no finished build is here
            for p in (os.path.join(out_dir, n), os.path.join(out_dir, n + ".tmp")):
                if os.path.exists(p):
                    os.remove(p)
        return build_dataset(out_dir, opts, progress)


# -----------------------------------------------------------------------------
# Packing: whole documents into training rows, for pretraining (pretrain.TokenRows) and SFT
# (sft.pack_examples) alike


def pack_rows(sizes, width, window=1024):
    """Best-fit decreasing bin packing of items of `sizes` tokens into rows of `width`, one window
    of consecutive items at a time (so a row holds documents from nearby in the stream): each item,
    longest first, goes into the open row with the least room that still fits it, else opens a row.
    Next-fit in stream order would leave about a fifth of the slots as padding with ~200-token
    stories in 513-token rows; this leaves a few percent. -> list of rows, each a list of item
    indices in stream order. Deterministic. Every size must be <= width."""
    rows = []
    for lo in range(0, len(sizes), window):
        chunk = range(lo, min(lo + window, len(sizes)))
        free, mine = [], []  # free: sorted (room left, row) of this window's open rows
        for i in sorted(chunk, key=lambda i: (-sizes[i], i)):
            k = bisect.bisect_left(free, (int(sizes[i]), -1))
            if k < len(free):
                room, r = free.pop(k)
            else:
                room, r = width, len(mine)
                mine.append([])
            mine[r].append(i)
            if room - sizes[i] > 0:
                bisect.insort(free, (int(room - sizes[i]), r))
        rows += [sorted(row) for row in mine]
    return rows

def show(n, seed):
    rng = random.Random(seed)
    for i in range(n):
        ann = sample_annotation(rng)
        print(f"--- story {i}\n[{format_annotation(ann)}]\n{render_story(ann, rng)}\n")
    ann = sample_annotation(rng)
    bad, defect = corrupt(render_story(ann, rng), ann, rng)
    print(f"--- corrupted ({defect}); quality={quality(bad)}\n[{format_annotation(ann)}]\n{bad}\n")
    for prompt_type in ("open", "constrained"):
        ex = make_sft_example(rng, DEFAULT_NARROWNESS, prompt_type)
        print(f"--- SFT example ({prompt_type})\nprompt: {ex['prompt']}\n[{format_annotation(ex['annotation'])}]\n"
              f"{ex['response']}\n")


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate the nanoanchor synthetic story dataset.")
    p.add_argument("--out_dir", default="data")
    p.add_argument("--n_stories", type=int, default=DEFAULTS["n_stories"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--noise", type=float, default=DEFAULTS["noise"], help="fraction of corrupted pretraining docs")
    p.add_argument("--titled", type=float, default=DEFAULTS["titled"],
                   help="fraction of pretraining docs that open with the house title line")
    p.add_argument("--quality_tag", type=int, default=DEFAULTS["quality_tag"],
                   help="1: each annotated doc's annotation ends with 'quality: good' or 'quality: poor' (corrupted)")
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
        meta = ensure_dataset(a.out_dir, repair=True, n_stories=a.n_stories, seed=a.seed, noise=a.noise,
                              titled=a.titled, quality_tag=a.quality_tag, narrowness=a.narrowness,
                              vocab_size=a.vocab_size, n_sft=a.n_sft, n_sft_val=a.n_sft_val)
    except ValueError as e:
        p.error(str(e))
    except OSError as e:
        p.error(f"--out_dir {a.out_dir}: cannot write there ({e.strerror or e})")
    print(json.dumps({k: meta[k] for k in ("n_docs", "tokens", "vocab_size", "tokenizer_hash")}, indent=1))


if __name__ == "__main__":
    main()
