"""
tokenizer.py: tokens, and the one home of every format and loss mask.

  1. a byte-level BPE trained on the synthetic corpus's word frequencies, saved in tiktoken's
     rank-file format and loaded as a tiktoken.Encoding with nanoanchor's special tokens
  2. THE format function: encode_example gives the token ids AND the loss mask of a training
     example; prompt_ids gives the inference prefix of the same layout; the pinned-annotation
     segments that sampling writes field by field come from here too. Training, sampling and
     tests all use these functions, so a format cannot drift between them.
"""

import base64
import hashlib
import json
import os
from collections import Counter

import numpy as np
import regex  # tiktoken's pattern syntax (\p{L}) needs the `regex` module, not `re`
import tiktoken

from world import FIELDS, KEYS, TAGS, format_annotation

# -----------------------------------------------------------------------------
# 1. Tokenizer: byte-level BPE trained on word frequencies, stored as a tiktoken rank file

SPECIAL_TOKENS = ["<|bos|>", "<|ann|>", "<|story|>", "<|user|>", "<|assistant|>", "<|eos|>", "<|pad|>"]
PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""  # GPT-2's
_PAT = regex.compile(PAT_STR)
TOKENIZER_FILE = "tokenizer.tiktoken"
FORCED_MERGES = [b" |"]  # one token for the field separator: handy for field-by-field sampling
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + len(FORCED_MERGES)  # the bytes, the specials, the forced merges


def train_tokenizer(texts, vocab_size=2048):
    """Byte-level BPE on the word (pre-token) frequencies of `texts`. vocab_size counts the 256
    bytes, the merges and the special tokens. Stops early if every word is a single token."""
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is too small; need at least {MIN_VOCAB_SIZE}")
    freqs = Counter()
    for t in texts:
        freqs.update(_PAT.findall(t))
    words = [list(w.encode("utf-8")) for w in freqs]
    counts = list(freqs.values())
    vocab = [bytes([i]) for i in range(256)]
    index = {b: i for i, b in enumerate(vocab)}
    pairs = Counter()
    where = {}
    for wi, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += counts[wi]
            where.setdefault(p, set()).add(wi)

    def merge(pair):
        a, b = pair
        new_bytes = vocab[a] + vocab[b]
        if new_bytes in index:  # already reachable another way: reuse, spend no rank
            new = index[new_bytes]
        else:
            new = len(vocab)
            vocab.append(new_bytes)
            index[new_bytes] = new
        for wi in sorted(where.pop(pair, ())):
            w, c = words[wi], counts[wi]
            for p in zip(w, w[1:]):
                pairs[p] -= c
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pairs[p] += c
                where.setdefault(p, set()).add(wi)
        pairs.pop(pair, None)

    for fb in FORCED_MERGES:
        merge((fb[0], fb[1]))  # forced merges are 2-byte tokens
    while len(vocab) < 256 + n_merges:
        best = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]), default=None)
        if best is None or best[1] <= 0:
            break
        merge(best[0])
    ranks = {b: i for i, b in enumerate(vocab)}
    return _make_encoding(ranks)


def _make_encoding(ranks):
    n = len(ranks)
    return tiktoken.Encoding(name="nanoanchor", pat_str=PAT_STR, mergeable_ranks=ranks,
                             special_tokens={t: n + i for i, t in enumerate(SPECIAL_TOKENS)})


def special_id(enc, token):
    """The id of a special token, e.g. special_id(enc, "<|story|>"): the one helper every file uses."""
    return enc.encode_single_token(token)


def special_ids(enc):
    return {t: special_id(enc, t) for t in SPECIAL_TOKENS}


def cut_at_special(text):
    """Text up to the first special token's text ('<|...|>'): the part the judge may read.
    (Sampling already stops there; this guards text from elsewhere, e.g. an old samples file.)"""
    cut = min((i for i in (text.find(t) for t in SPECIAL_TOKENS) if i >= 0), default=len(text))
    return text[:cut]


def dead_tokens(vocab_size, *id_arrays):
    """The ids that occur in none of id_arrays (each an int array of a dataset's tokens), sorted:
    the raw bytes an ASCII corpus never holds and the BPE merges that every word skips past. The
    model masks them out of its output (GPTConfig.dead_tokens), so nothing can sample them."""
    seen = np.zeros(vocab_size, dtype=bool)
    for ids in id_arrays:
        seen |= np.bincount(np.asarray(ids).ravel(), minlength=vocab_size)[:vocab_size] > 0
    return tuple(int(i) for i in np.flatnonzero(~seen))


def _ranks(enc):
    """[(token bytes, rank)] of the BPE, rank order. tiktoken has no public getter for the
    mergeable ranks, so we read them back token by token with its public decode_single_token_bytes."""
    specials = set(special_ids(enc).values())
    return [(enc.decode_single_token_bytes(i), i) for i in range(enc.n_vocab) if i not in specials]


def tokenizer_file(enc):
    """The text of tokenizer.tiktoken, tiktoken's rank-file format: base64(token bytes) + ' ' + rank,
    one per line. data.py writes it (checkpoint.write_atomic) and records its size and hash."""
    return "".join(f"{base64.b64encode(b).decode()} {r}\n" for b, r in _ranks(enc))


def load_tokenizer(data_dir):
    """Load tokenizer.tiktoken from a data dir (or a file path) with the special tokens; no network."""
    path = data_dir if os.path.isfile(data_dir) else os.path.join(data_dir, TOKENIZER_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no tokenizer at {path}; run `python data.py --out_dir {data_dir}` first")
    ranks = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    tok, r = line.split()
                    ranks[base64.b64decode(tok, validate=True)] = int(r)
                except ValueError:
                    raise ValueError(f"{path} line {n} is not 'base64 rank': the tokenizer file is damaged; "
                                     f"rebuild it with `python data.py`") from None
    return _make_encoding(ranks)


def tokenizer_hash(enc):
    """Fingerprint of a tokenizer: a checkpoint records it, so it is never read with another one."""
    h = hashlib.sha256()
    for b, r in _ranks(enc):
        h.update(b + b"\x00" + str(r).encode() + b"\n")
    h.update(json.dumps([PAT_STR, sorted(special_ids(enc).items())]).encode())
    return h.hexdigest()[:16]

# -----------------------------------------------------------------------------
# 2. THE format function: token ids and loss mask of a training example, and inference prefixes

FORMATS = ("plain", "annotated", "standard", "anchored", "anchored_strict", "anchored_unmasked")
# The three anchored SFT formats share one token layout and differ only in which annotation
# tokens carry loss (the response and <|eos|> always do):
#   anchored           every annotation token except the values of the fields the prompt left free
#                      (the format and the pinned values are determined by the prompt, a quality tag
#                      by the SFT data, whose responses are all good; the free values are the model's
#                      own choices, and get no gradient)
#   anchored_strict    no annotation token: the paper's recipe taken literally (see README: at toy
#                      scale the model never learns to write an annotation after a prompt)
#   anchored_unmasked  every annotation token (the ablation: the annotation collapses too)
# An SFT example without a response (annotation replay, sft.py --replay) is trained on its whole
# annotation in each of them (encode_example).
ANCHORED_FORMATS = ("anchored", "anchored_strict", "anchored_unmasked")
BASE_FORMATS = ("plain", "annotated")  # pretraining documents: no prompt
ANNOTATED_FORMATS = ("annotated", *ANCHORED_FORMATS)  # formats with an <|ann|> segment


def _ann_text(annotation):
    return annotation if isinstance(annotation, str) else format_annotation(annotation)


def annotation_pieces(encode, values, fields=FIELDS):
    """The annotation cut at field boundaries: [(field, key ids, value ids or None)] in `fields`
    order. Key ids are 'field:' (' | field:' after the first); value ids ' value', or None where
    `values` lacks the field (sampling: the model writes it). Concatenated, the pieces equal
    encode(format_annotation(values)): BPE never merges across the pre-token boundaries we cut at.
    Training masks the free values with them; sampling forces the keys and pinned values with them."""
    return [(f, encode((" | " if i else "") + f + ":"), encode(" " + values[f]) if f in values else None)
            for i, f in enumerate(fields)]


def _segments(enc, format, prompt=None, annotation=None, body=None, anchor=True, encode=None, pinned=None,
              train_keys=True, train_pinned=True):
    """Segments (ids, loss flag) of a format, in order. A `body` of None means: stop right where
    generation starts (the inference prefix). This is the single place the formats live.
    train_keys=False (anchored only): the annotation's keys, separators and markers carry no loss
    in this example either, as in the paper's mask (sft.py --key_share); train_pinned=False: neither
    do the values the prompt pins (sft.py --no-pinned_values)."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {FORMATS}")
    special = lambda t: [special_id(enc, t)]  # noqa: E731
    text = encode or enc.encode_ordinary
    segs = [(special("<|bos|>"), 0)]
    if format == "plain" or (format == "annotated" and not anchor):  # anchor off: a plain document
        segs.append((special("<|story|>"), 1))
    elif format == "annotated":
        segs.append((special("<|ann|>"), 1))
        if body is None and annotation is None:
            return segs
        segs += [(text(_ann_text(annotation)), 1), (special("<|story|>"), 1)]
    else:
        segs += [(special("<|user|>"), 0), (text(prompt), 0), (special("<|assistant|>"), 0)]
        if format in ANCHORED_FORMATS and anchor:
            # which annotation tokens carry loss: all (unmasked), none (strict), or all but the
            # free choices (anchored: the format and the values the prompt pins, see ANCHORED_FORMATS)
            a = 0 if format == "anchored_strict" or (format == "anchored" and not train_keys) else 1
            segs.append((special("<|ann|>"), a))
            if body is None and annotation is None:
                return segs
            if format == "anchored" and body is not None:
                if isinstance(annotation, str):  # the free values could not be found to mask them
                    raise ValueError("format='anchored' needs the annotation as a {field: value} dict, not a string")
                pinned = pinned or {}
                for f, key, value in annotation_pieces(text, annotation, [f for f in KEYS if f in annotation]):
                    segs += [(key, a), (value, a if f in TAGS else int(train_pinned and pinned.get(f) == annotation[f]))]
            else:
                segs.append((text(_ann_text(annotation)), a))
            segs.append((special("<|story|>"), a))
        elif format != "standard":  # anchor=False: the "no annotation first" ablation
            segs.append((special("<|story|>"), 0))
    if body is not None:
        segs += [(text(body), 1), (special("<|eos|>"), 1)]
    return segs


def encode_example(enc, example, format, encode=None):
    """(ids, loss_mask) of one example; loss_mask[i] == 1 means ids[i] is a training target.
    plain/annotated take {'story', 'annotation'}; SFT formats take {'prompt', 'annotation', 'response'}.
    An SFT example without a response is an annotation replay example (sft.make_replay_examples):
    `<|bos|><|user|>{prompt}<|assistant|><|ann|>{annotation}<|story|>` with every annotation token
    a target, in every anchored format (the anchored_unmasked layout, cut where the response starts).
    `encode` (text -> ids, default enc.encode_ordinary) lets the dataset build reuse a story's ids."""
    if format in BASE_FORMATS:
        segs = _segments(enc, format, annotation=example.get("annotation"), body=example["story"], encode=encode)
    elif example.get("response") is None:  # annotation replay
        if format not in ANCHORED_FORMATS:
            raise ValueError(f"an example without a response (annotation replay) needs an anchored format, "
                             f"not format={format!r}")
        segs = _segments(enc, "anchored_unmasked", prompt=example["prompt"], annotation=example["annotation"],
                         encode=encode)
    else:
        segs = _segments(enc, format, prompt=example["prompt"], annotation=example.get("annotation"),
                       body=example["response"], encode=encode, pinned=example.get("constraints"),
                       train_keys=example.get("train_keys", True), train_pinned=example.get("train_pinned", True))
    ids, mask = [], []
    for s, m in segs:
        ids += s
        mask += [m] * len(s)
    return ids, mask


def prompt_ids(enc, format, prompt=None, annotation=None, anchor=True):
    """The inference prefix of a format (same code as encode_example, cut where generation starts).
    anchor=False: no annotation first (the ablation): an SFT format goes straight to <|story|>, an
    annotated base document starts as a plain one."""
    if format not in BASE_FORMATS and prompt is None:
        raise ValueError(f"format={format!r} needs a prompt")
    ids = []
    for s, _ in _segments(enc, format, prompt=prompt, annotation=annotation, anchor=anchor):
        ids += s
    return ids


def resolve_anchor(format, anchor):
    """--anchor auto|on|off -> whether sampling writes an annotation before the story (the
    "no annotation first" ablation is anchor off on an annotated format)."""
    if anchor not in ("auto", "on", "off"):
        raise ValueError(f"--anchor {anchor!r}: valid are auto, on, off")
    if anchor == "on" and format not in ANNOTATED_FORMATS:
        raise ValueError(f"--anchor on: this checkpoint (format {format}) was trained without annotations; "
                         "use --anchor auto or off")
    return anchor != "off" and format in ANNOTATED_FORMATS


_SEPARATOR_IDS = {}


def separator_ids(enc):
    """Every token whose text contains '|', the field separator: a sampled field value ends there.
    (With our tokenizer ' |' is one token; this also works if some merge swallowed it.)"""
    key = (enc.name, enc.n_vocab)
    if key not in _SEPARATOR_IDS:
        specials = set(special_ids(enc).values())
        texts = {i: enc.decode_single_token_bytes(i).decode("utf-8", errors="replace")
                 for i in range(enc.n_vocab) if i not in specials}
        _SEPARATOR_IDS[key] = {i for i, s in texts.items() if "|" in s}
    return _SEPARATOR_IDS[key]
