"""The quality tag (data.py --quality_tag 1): each annotated document's annotation ends with whether
the document was corrupted; SFT's data, all good, trains the tag's value as it trains a pinned one."""

import random

import numpy as np
import pytest
import torch

import data
import metrics
import sft
import tokenizer
import world
from model import GPT, GPTConfig
from sample import sample_many

SMALL = dict(n_stories=300, n_sft=20, n_sft_val=5, vocab_size=600)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    return {tag: (str(root / str(tag)), data.ensure_dataset(str(root / str(tag)), progress=False, quality_tag=tag,
                                                            **SMALL)) for tag in (0, 1)}


def _docs(path, split="train"):
    """A shard cut into its documents (each starts with <|bos|>)."""
    enc = tokenizer.load_tokenizer(path)
    ids = np.fromfile(f"{path}/pretrain_annotated_{split}.bin", dtype=np.uint16).tolist()
    bos = tokenizer.special_id(enc, "<|bos|>")
    starts = [i for i, t in enumerate(ids) if t == bos] + [len(ids)]
    return enc, [ids[a:b] for a, b in zip(starts, starts[1:])]


def test_a_tagged_build_differs_only_by_the_tag(builds):
    """The same tokenizer, the same plain shard byte for byte; each annotated doc is the untagged one
    with ' | quality: good' or ' | quality: poor' before <|story|>, 'poor' exactly for a corrupted doc."""
    (p0, m0), (p1, m1) = builds[0], builds[1]
    assert m0["tokenizer_hash"] == m1["tokenizer_hash"] and m1["options"]["quality_tag"] == 1
    for name in ("pretrain_plain_train.bin", "sft_train.jsonl"):
        assert open(f"{p0}/{name}", "rb").read() == open(f"{p1}/{name}", "rb").read()
    docs = data.generate_pretraining_docs(SMALL["n_stories"], m1["options"]["seed"], m1["options"]["noise"],
                                          progress=False)[m1["n_docs"]["val"]:]
    n_val = m1["n_docs"]["val"]
    docs = docs + data.generate_pretraining_docs(SMALL["n_stories"], m1["options"]["seed"], m1["options"]["noise"],
                                                 progress=False)[:n_val]
    enc, untagged = _docs(p0)
    untagged += _docs(p0, "val")[1]
    tagged = _docs(p1)[1] + _docs(p1, "val")[1]
    assert len(tagged) == len(untagged) == len(docs)
    story = tokenizer.special_id(enc, "<|story|>")
    seen = set()
    for (_, ann, defect), a, b in zip(docs, untagged, tagged):
        cut = a.index(story)
        tag = "poor" if defect else "good"
        assert b == a[:cut] + enc.encode_ordinary(f" | quality: {tag}") + a[cut:]
        assert world.parse_annotation(enc.decode(b[2:b.index(story)])) == {**ann, "quality": tag}
        seen.add(tag)
    assert seen == {"good", "poor"}


def test_anchored_sft_trains_the_tag_and_masks_the_free_values(builds):
    enc = tokenizer.load_tokenizer(builds[1][0])
    ex = sft.with_quality_tag([world.make_sft_example(random.Random(1), 0.95, "constrained")])[0]
    assert ex["annotation"]["quality"] == "good"
    pieces = tokenizer.annotation_pieces(enc.encode_ordinary, ex["annotation"], list(world.KEYS))
    assert sum((k + v for _, k, v in pieces), []) == enc.encode_ordinary(world.format_annotation(ex["annotation"]))
    masks = {fmt: tokenizer.encode_example(enc, ex, fmt) for fmt in tokenizer.ANCHORED_FORMATS}
    ids, mask = masks["anchored"]
    # find each value in the ids, after its key: trained for the tag and the pinned fields only
    pos = ids.index(tokenizer.special_id(enc, "<|ann|>")) + 1
    for f, key, value in pieces:
        assert ids[pos:pos + len(key)] == key and all(mask[pos:pos + len(key)])
        pos += len(key)
        trained = f == "quality" or ex["constraints"].get(f) == ex["annotation"][f]
        assert ids[pos:pos + len(value)] == value and mask[pos:pos + len(value)] == [int(trained)] * len(value)
        pos += len(value)
    assert masks["anchored_strict"][0] == ids and masks["anchored_unmasked"][0] == ids
    tag = enc.encode_ordinary(" | quality: good")
    at = next(i for i in range(len(ids)) if ids[i:i + len(tag)] == tag)
    assert masks["anchored_strict"][1][at:at + len(tag)] == [0] * len(tag)
    assert masks["anchored_unmasked"][1][at:at + len(tag)] == [1] * len(tag)
    # a document of the pretraining mix keeps its own tag; an example without annotation is left alone
    doc = {"story": "x", "annotation": {"quality": "poor"}, "format": "annotated"}
    assert sft.with_quality_tag([doc, {"prompt": "p", "annotation": None}]) == [doc, {"prompt": "p", "annotation": None}]


def test_the_pretrain_mix_of_a_tagged_build_is_its_shard(builds):
    path, meta = builds[1]
    enc = tokenizer.load_tokenizer(path)
    docs = sft.make_pretrain_mix(8, meta, "annotated")
    ids = [t for ex in docs for t in tokenizer.encode_example(enc, ex, ex["format"])[0]]
    shard = np.fromfile(f"{path}/pretrain_annotated_train.bin", dtype=np.uint16)
    assert shard[:len(ids)].tolist() == ids and all("quality" in d["annotation"] for d in docs)


def test_an_annotation_parses_with_or_without_a_tag():
    ann = world.format_annotation(world.sample_annotation(random.Random(0)))
    assert metrics.annotation_parses(ann) and metrics.annotation_parses(ann + " | quality: good")
    assert not metrics.annotation_parses(ann + " | quality: fine")
    assert not metrics.annotation_parses(ann + " | quality: good | quality: good")
    assert not metrics.annotation_parses("quality: good | " + ann)
    assert metrics.annotation_fields(ann + " | quality: poor") == world.parse_annotation(ann)
    with pytest.raises(ValueError, match="quality_tag=2"):
        data.ensure_dataset("unused", quality_tag=2)


def _cfg(path, **kw):
    return sft.SFTConfig(data_dir=path, init_from="base", **kw)


def test_a_tagged_runs_examples_end_with_good_and_its_free_values_stay_untrained(builds):
    """sft.training_examples: every SFT, validation and replay annotation of a tagged anchored run ends
    with 'quality: good'; an untagged build's and a standard run's do not. The anchor KL's free
    positions are the same with the tag as without it."""
    for tag in (0, 1):
        path, meta = builds[tag]
        cfg = _cfg(path, replay=0.5)
        tagged = sft.quality_tagged({"format": "annotated", "quality_tag": tag}, meta, cfg)
        assert tagged == tag
        train, val = sft.training_examples(cfg, meta, "annotated", tagged)
        assert len(train) == 30 and any("response" not in ex for ex in train)  # 20 SFT + 10 replay
        assert all((ex["annotation"].get("quality") == "good") == bool(tag) for ex in train + val)
    assert sft.quality_tagged({"format": "plain", "quality_tag": 0}, builds[1][1], _cfg(builds[1][0], format="standard")) == 0
    with pytest.raises(SystemExit, match="quality tag"):
        sft.quality_tagged({"format": "annotated", "quality_tag": 0}, builds[1][1], _cfg(builds[1][0]))
    assert sft.quality_tagged({"format": "annotated"}, builds[1][1], _cfg(builds[1][0])) == 1  # from before the tag
    enc = tokenizer.load_tokenizer(builds[1][0])
    exs, _ = sft.training_examples(_cfg(builds[1][0]), builds[1][1], "annotated", 0)
    markers = [tokenizer.special_id(enc, t) for t in ("<|ann|>", "<|story|>", "<|bos|>")]
    free = [sft.free_value_positions(*sft.pack_examples(enc, e, "anchored", 512), *markers).sum()
            for e in (exs, sft.with_quality_tag(exs))]
    assert free[0] == free[1] > 0


def test_a_built_annotation_ends_with_the_tag_of_a_tagged_checkpoint(builds):
    """sample_many with pins on a tagged checkpoint: the keys forced, the tag pinned or sampled after
    the nine fields; pinning the tag on an untagged checkpoint is an error naming the fields."""
    enc = tokenizer.load_tokenizer(builds[1][0])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=enc.n_vocab, block_size=256, n_layer=1, n_head=2, n_embd=16,
                          bos_id=tokenizer.special_id(enc, "<|bos|>"))).eval()
    for pinned, want in (({"quality": "poor"}, "poor"), ({"name": "Mia"}, None)):
        out = sample_many(model, enc, "annotated", [None], 3, pinned=pinned, max_new_tokens=4, quality_tag=1,
                          compile="off")[0]
        for s in out:
            head, _, tag = s["annotation"].rpartition(" | quality:")
            assert [k.strip() for k, _, _ in (p.partition(":") for p in head.split("|"))] == list(world.FIELDS)
            assert want is None or tag.strip() == want
    untagged = sample_many(model, enc, "annotated", [None], 2, pinned={"name": "Mia"}, max_new_tokens=4,
                           compile="off")[0]
    assert all("quality" not in s["annotation"] for s in untagged)
    with pytest.raises(ValueError, match="fields: character"):
        sample_many(model, enc, "annotated", [None], 1, pinned={"quality": "good"}, max_new_tokens=4, compile="off")
