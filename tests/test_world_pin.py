"""The generated world, pinned: a hash of a seeded sample of everything data.py makes.

If one of these fails, the world changed: stories, annotations, SFT data, the tokenizer or the
token layout of a format. That is fine when it is meant (then bump DATA_VERSION and paste the new
hashes printed by the failure); it is a bug when it was a refactor.
"""

import hashlib
import json
import random

from grammar import render_story
from judge import annotate, quality_problem
from tokenizer import FORMATS, encode_example, train_tokenizer
from world import corrupt, format_annotation, make_sft_examples, sample_annotation


def _digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _stories(n=300, seed=7):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ann = sample_annotation(rng)
        record = []
        story = render_story(ann, rng, record)
        bad, kind = corrupt(story, ann, rng)
        out.append({"ann": ann, "story": story, "record": record, "bad": bad, "kind": kind})
    return out


def test_stories_are_pinned():
    assert _digest(_stories()) == "d0295e6c6f9c2558"


def test_judge_is_pinned():
    judged = [(annotate(s["story"]), annotate(s["bad"]), quality_problem(s["bad"])) for s in _stories(200)]
    assert _digest(judged) == "66925d596963a6ee"


def test_sft_examples_are_pinned():
    assert _digest(make_sft_examples(200, seed=3)) == "271c186f121ecb2b"


def _small_tokenizer():
    docs = _stories(200)
    texts = [d["story"] for d in docs] + [format_annotation(d["ann"]) for d in docs]
    return train_tokenizer(texts, vocab_size=600)


def test_tokenizer_and_formats_are_pinned():
    enc = _small_tokenizer()
    ranks = [enc.decode_single_token_bytes(i).hex() for i in range(enc.n_vocab)]
    assert _digest(ranks) == "8893f17ac2298b47"
    ex = make_sft_examples(20, seed=5)
    story = _stories(5)[0]
    encoded = [encode_example(enc, {"story": story["story"], "annotation": story["ann"]}, f)
               for f in ("plain", "annotated")]
    encoded += [encode_example(enc, e, f) for e in ex for f in FORMATS[2:]]
    assert _digest(encoded) == "e318b773e8dd5c1d"


def test_dataset_files_are_pinned(tiny_data_dir):
    """The files `python data.py` writes (the session's tiny build), byte for byte."""
    names = ["tokenizer.tiktoken", "pretrain_plain_train.bin", "pretrain_plain_val.bin",
             "pretrain_annotated_train.bin", "pretrain_annotated_val.bin", "sft_train.jsonl", "sft_val.jsonl",
             "eval_prompts.json"]
    digests = {n: hashlib.sha256((tiny_data_dir / n).read_bytes()).hexdigest()[:16] for n in names}
    assert digests == {
        "tokenizer.tiktoken": "62a8b4245ab07e22", "pretrain_plain_train.bin": "f540188b63e40863",
        "pretrain_plain_val.bin": "a858c9e52fc9ce39", "pretrain_annotated_train.bin": "c477d109dec2c11e",
        "pretrain_annotated_val.bin": "031d58eeca34099f", "sft_train.jsonl": "0da96915606cc686",
        "sft_val.jsonl": "843d63bb180da103", "eval_prompts.json": "9bdf4cbe7afeff6a"}
