"""Tests of tokenizer.py: the BPE and its file, and every format's token ids, loss mask and
inference prefix, by hand and on generated examples. Fast and CPU-only (seconds)."""

import json
import os
import random

import pytest

import sft
import tokenizer
import world


@pytest.fixture(scope="module")
def tiny_data(tiny_data_dir):
    """The session's tiny dataset (conftest.py): its folder, meta.json and tokenizer."""
    out = str(tiny_data_dir)
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    return out, meta, tokenizer.load_tokenizer(out)


def test_tokenizer(tiny_data):
    out, meta, enc = tiny_data
    assert 1000 <= enc.n_vocab <= 65535 and enc.n_vocab == meta["vocab_size"] == 2048
    assert len(enc.encode_ordinary(" |")) == 1
    assert meta["tokenizer_hash"] == tokenizer.tokenizer_hash(enc) == tokenizer.tokenizer_hash(tokenizer.load_tokenizer(out))
    for t in tokenizer.SPECIAL_TOKENS:
        assert meta["special_ids"][t] == enc.encode(t, allowed_special="all")[0]
    # rank file: "base64 rank" per line
    with open(os.path.join(out, tokenizer.TOKENIZER_FILE)) as f:
        first = f.readline().split()
    assert len(first) == 2 and first[1] == "0"
    text = "Title: The Tiny Owl\n\nÜber \"quoted\" 123 text!\n\nThe End."
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_encode_round_trip_all_formats(tiny_data):
    _, _, enc = tiny_data
    ex = world.make_sft_examples(1, 0.5, seed=0)[0]
    ex["story"] = world.split_response(ex["response"])
    ann = world.format_annotation(ex["annotation"])
    expect = {
        "plain": f"<|bos|><|story|>{ex['story']}<|eos|>",
        "annotated": f"<|bos|><|ann|>{ann}<|story|>{ex['story']}<|eos|>",
        "standard": f"<|bos|><|user|>{ex['prompt']}<|assistant|>{ex['response']}<|eos|>",
        "anchored": f"<|bos|><|user|>{ex['prompt']}<|assistant|><|ann|>{ann}<|story|>{ex['response']}<|eos|>",
        "anchored_strict": f"<|bos|><|user|>{ex['prompt']}<|assistant|><|ann|>{ann}<|story|>{ex['response']}<|eos|>",
        "anchored_unmasked": f"<|bos|><|user|>{ex['prompt']}<|assistant|><|ann|>{ann}<|story|>{ex['response']}<|eos|>",
    }
    for format in tokenizer.FORMATS:
        ids, mask = tokenizer.encode_example(enc, ex, format)
        assert len(ids) == len(mask) and enc.decode(ids) == expect[format], format


def test_loss_masks_by_hand(tiny_data):
    _, _, enc = tiny_data
    sp = {t: enc.encode(t, allowed_special="all")[0] for t in tokenizer.SPECIAL_TOKENS}
    ex = {"prompt": "Write a story.", "annotation": {"character": "dragon", "name": "Mia"},
          "response": "Title: T\n\nA dragon named Mia.\n\nThe End.", "story": "A dragon named Mia."}
    P, A = enc.encode_ordinary(ex["prompt"]), enc.encode_ordinary("character: dragon | name: Mia")
    R, S = enc.encode_ordinary(ex["response"]), enc.encode_ordinary(ex["story"])

    ids, mask = tokenizer.encode_example(enc, ex, "plain")
    assert ids == [sp["<|bos|>"], sp["<|story|>"]] + S + [sp["<|eos|>"]]
    assert mask == [0] + [1] * (len(ids) - 1)

    ids, mask = tokenizer.encode_example(enc, ex, "annotated")
    assert ids == [sp["<|bos|>"], sp["<|ann|>"]] + A + [sp["<|story|>"]] + S + [sp["<|eos|>"]]
    assert mask == [0] + [1] * (len(ids) - 1)

    ids, mask = tokenizer.encode_example(enc, ex, "standard")
    head = [sp["<|bos|>"], sp["<|user|>"]] + P + [sp["<|assistant|>"]]
    assert ids == head + R + [sp["<|eos|>"]]
    assert mask == [0] * len(head) + [1] * (len(R) + 1)

    ids, mask = tokenizer.encode_example(enc, ex, "anchored_strict")
    seg = [sp["<|ann|>"]] + A + [sp["<|story|>"]]
    assert ids == head + seg + R + [sp["<|eos|>"]]
    assert mask == [0] * (len(head) + len(seg)) + [1] * (len(R) + 1)
    # the annotation segment is the same token sequence as in annotated pretraining
    ann_ids, _ = tokenizer.encode_example(enc, ex, "annotated")
    assert ann_ids[1:2 + len(A) + 1] == seg

    ids2, mask2 = tokenizer.encode_example(enc, ex, "anchored_unmasked")
    assert ids2 == ids
    assert mask2 == [0] * len(head) + [1] * (len(seg) + len(R) + 1)

    # anchored: the free values (dragon, Mia: an open prompt pins nothing) carry no loss, every
    # other annotation token (the format) does
    dragon, mia = enc.encode_ordinary(" dragon"), enc.encode_ordinary(" Mia")
    ids3, mask3 = tokenizer.encode_example(enc, ex, "anchored")
    assert ids3 == ids
    ann_mask = mask3[len(head):len(head) + len(seg)]
    free = [i for i, t in enumerate(seg) if [t] in (dragon, mia)]
    assert len(free) == 2 and all(ann_mask[i] == 0 for i in free)
    assert all(m == 1 for i, m in enumerate(ann_mask) if i not in free)
    assert mask3[len(head) + len(seg):] == [1] * (len(R) + 1)
    # a prompt that pins the character: its value is determined by the prompt, so it is trained
    _, mask4 = tokenizer.encode_example(enc, {**ex, "constraints": {"character": "dragon"}}, "anchored")
    ann_mask4 = mask4[len(head):len(head) + len(seg)]
    assert [ann_mask4[i] for i in free] == [1, 0]


def test_anchored_masks_on_generated_examples(tiny_data):
    """On real SFT examples: the three anchored formats share their ids; in `anchored` exactly the
    free fields' values carry no loss."""
    _, _, enc = tiny_data
    rng = random.Random(3)
    for i in range(200):
        ex = world.make_sft_example(rng, world.DEFAULT_NARROWNESS, "constrained" if i % 2 else "open")
        ids, mask = tokenizer.encode_example(enc, ex, "anchored")
        assert ids == tokenizer.encode_example(enc, ex, "anchored_strict")[0] == tokenizer.encode_example(enc, ex, "anchored_unmasked")[0]
        untrained = enc.decode([t for t, m in zip(ids, mask) if not m]).split("<|assistant|>")[1]
        free = [ex["annotation"][f] for f in world.free_fields(ex["constraints"])]
        assert untrained.split() == free


def test_key_share_masks_the_keys_of_an_example_and_keeps_its_pinned_values(tiny_data):
    """train_keys=False (sft.py --key_share): in `anchored` the whole annotation but the pinned values
    carries no loss; the response does; train_keys=True is the default mask. with_key_share marks
    about its share of the SFT examples, and never a replay example."""
    _, _, enc = tiny_data
    rng = random.Random(5)
    for i in range(100):
        ex = world.make_sft_example(rng, world.DEFAULT_NARROWNESS, "constrained" if i % 2 else "open")
        ids, mask = tokenizer.encode_example(enc, ex, "anchored")
        assert (ids, mask) == tokenizer.encode_example(enc, {**ex, "train_keys": True}, "anchored")
        ids2, mask2 = tokenizer.encode_example(enc, {**ex, "train_keys": False}, "anchored")
        trained = enc.decode([t for t, m in zip(ids2, mask2) if m])
        pinned = "".join(f" {ex['annotation'][f]}" for f in world.FIELDS if f in ex["constraints"])
        assert ids2 == ids and trained == pinned + ex["response"] + "<|eos|>"
        ids3, mask3 = tokenizer.encode_example(enc, {**ex, "train_keys": False, "train_pinned": False}, "anchored")
        assert ids3 == ids and enc.decode([t for t, m in zip(ids3, mask3) if m]) == ex["response"] + "<|eos|>"
        _, mask4 = tokenizer.encode_example(enc, {**ex, "train_pinned": False}, "anchored")  # the keys only
        assert sum(mask4) == sum(mask) - len(enc.encode_ordinary(pinned))
    examples = world.make_sft_examples(1000, seed=1) + sft.make_replay_examples(50, seed=1)
    marked = sft.with_key_share(examples, 0.1, seed=0)
    assert 60 < sum(ex.get("train_keys", False) for ex in marked[:1000]) < 140
    assert all("train_keys" not in ex for ex in marked[1000:])


def test_prompt_ids(tiny_data):
    _, _, enc = tiny_data
    sp = {t: enc.encode(t, allowed_special="all")[0] for t in tokenizer.SPECIAL_TOKENS}
    ex = {"prompt": "Write a story.", "annotation": {"character": "dragon"}, "response": "R.", "story": "R."}
    P, A = enc.encode_ordinary(ex["prompt"]), enc.encode_ordinary("character: dragon")
    assert tokenizer.prompt_ids(enc, "plain") == [sp["<|bos|>"], sp["<|story|>"]]
    assert tokenizer.prompt_ids(enc, "annotated") == [sp["<|bos|>"], sp["<|ann|>"]]
    assert tokenizer.prompt_ids(enc, "annotated", annotation=ex["annotation"]) == \
        [sp["<|bos|>"], sp["<|ann|>"]] + A + [sp["<|story|>"]]
    head = [sp["<|bos|>"], sp["<|user|>"]] + P + [sp["<|assistant|>"]]
    assert tokenizer.prompt_ids(enc, "standard", ex["prompt"]) == head
    for format in tokenizer.ANCHORED_FORMATS:
        assert tokenizer.prompt_ids(enc, format, ex["prompt"]) == head + [sp["<|ann|>"]]
        assert tokenizer.prompt_ids(enc, format, ex["prompt"], annotation="character: dragon") == \
            head + [sp["<|ann|>"]] + A + [sp["<|story|>"]]
        assert tokenizer.prompt_ids(enc, format, ex["prompt"], anchor=False) == head + [sp["<|story|>"]]
    # every prefix is a prefix of the training example built by the same code
    for format in tokenizer.FORMATS:
        full, _ = tokenizer.encode_example(enc, ex, format)
        pre = tokenizer.prompt_ids(enc, format, ex["prompt"])
        assert full[:len(pre)] == pre, format
    with pytest.raises(ValueError, match="format"):
        tokenizer.prompt_ids(enc, "chat", "x")


def test_anchored_example_needs_a_dict_annotation():
    # with a string annotation the free values cannot be found to mask them: an error, not a silent
    # "train on the whole annotation"
    enc = tokenizer.train_tokenizer(["Write a story. character: fox | name: Mia"], vocab_size=300)
    ex = {"prompt": "Write a story.", "annotation": "character: fox", "response": "A fox."}
    with pytest.raises(ValueError, match="dict"):
        tokenizer.encode_example(enc, ex, "anchored")
    assert tokenizer.encode_example(enc, ex, "anchored_unmasked")[0]  # the other formats take a string


def test_no_annotation_first_is_one_rule_in_tokenizer():
    enc = tokenizer.train_tokenizer(["Write a story."], vocab_size=300)
    sp = lambda t: enc.encode_single_token(t)  # noqa: E731
    assert tokenizer.prompt_ids(enc, "annotated", anchor=False) == tokenizer.prompt_ids(enc, "plain")
    assert tokenizer.prompt_ids(enc, "annotated") == [sp("<|bos|>"), sp("<|ann|>")]
    off = tokenizer.prompt_ids(enc, "anchored", "Write a story.", anchor=False)
    assert off[-2:] == [sp("<|assistant|>"), sp("<|story|>")]
