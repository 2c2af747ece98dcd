"""Tests of the story world (world.py, templates.py), the judge (judge.py), the tokenizer and its
formats and masks (tokenizer.py), and the on-disk dataset (data.py). Fast and CPU-only (seconds)."""

import json
import math
import os
import random
import socket
from collections import Counter

import numpy as np
import pytest

import data
import judge
import templates
import tokenizer
import world


def _empirical_entropy(labels):
    n = len(labels)
    return -sum(c / n * math.log2(c / n) for c in Counter(labels).values())


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(123)
    anns = [world.sample_annotation(rng) for _ in range(5000)]
    return anns, [world.render_story(a, rng) for a in anns]


def _block_sockets(mp):
    def no_network(*args, **kwargs):
        raise RuntimeError("network access attempted")
    mp.setattr(socket, "socket", no_network)
    mp.setattr(socket, "create_connection", no_network)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A tiny dataset built (tokenizer trained, saved, loaded) with sockets blocked."""
    out = str(tmp_path_factory.mktemp("data"))
    with pytest.MonkeyPatch.context() as mp:
        _block_sockets(mp)
        meta = data.ensure_dataset(out, progress=False, n_stories=400, n_sft=200, n_sft_val=20)
        enc = tokenizer.load_tokenizer(out)
    return out, meta, enc


# --- the world ---------------------------------------------------------------------------------

def test_schema_sizes():
    assert list(world.FIELDS) == ["character", "name", "setting", "theme", "quest", "style", "feature",
                              "ending", "length"]
    sizes = {f: len(v) for f, v in world.FIELDS.items()}
    assert sizes["character"] >= 30 and sizes["name"] >= 60 and sizes["setting"] >= 25 and sizes["theme"] >= 15
    assert math.prod(sizes.values()) > 1e6
    for f, vals in world.FIELDS.items():
        assert len(set(vals)) == len(vals) and all("|" not in v and ":" not in v for v in vals), f


def test_determinism_by_seed():
    a = data.generate_pretraining_docs(300, seed=7, noise=0.2, progress=False)
    b = data.generate_pretraining_docs(300, seed=7, noise=0.2, progress=False)
    c = data.generate_pretraining_docs(300, seed=8, noise=0.2, progress=False)
    assert a == b and a != c
    assert world.make_sft_examples(50, 0.9, seed=3) == world.make_sft_examples(50, 0.9, seed=3)


def test_annotation_round_trip(corpus):
    anns, stories = corpus
    wrong = Counter()
    for a, s in zip(anns, stories):
        got = judge.annotate(s)
        assert set(got) == set(world.FIELDS)
        wrong.update(f for f in world.FIELDS if got[f] != a[f])
    total = len(anns) * len(world.FIELDS)
    assert 1 - sum(wrong.values()) / total >= 0.99, wrong
    assert wrong["name"] == wrong["character"] == wrong["setting"] == 0, wrong


def test_story_lengths(corpus):
    anns, stories = corpus
    for a, s in zip(anns, stories):
        lo, hi = world.LENGTH_WORDS[a["length"]]
        assert lo <= len(s.split()) <= hi


class _ConstRandom(random.Random):
    """Adversarial draws: random() always returns the same number (every pick collides)."""

    def __init__(self, x):
        super().__init__(0)
        self.x = x

    def random(self):
        return self.x


def test_render_survives_unlucky_draws():
    base = world.sample_annotation(random.Random(0))
    for x in (0.0, 0.37, 0.999999):
        for feature in world.FEATURES:
            for length in world.LENGTHS:
                a = dict(base, feature=feature, length=length)
                s = world.render_story(a, _ConstRandom(x))
                assert judge.annotate(s)["feature"] == feature and judge.quality(s)


def test_annotate_garbage_and_noise():
    assert all(v is None for v in judge.annotate("").values())
    assert all(v is None for v in judge.annotate("the of and a to it was then went on over").values())
    # a sample that is a little broken still gets its dominant cues
    noisy = ("Once upon a time there was a dragon named Mia. The dragon lived in the desert desert. "
             "Mia wanted to find a lost key. the fox key the dragon. Mia found the key and lived happily.")
    got = judge.annotate(noisy)
    assert got["character"] == "dragon" and got["name"] == "Mia" and got["setting"] == "desert"
    assert got["quest"] == "key" and got["ending"] == "happy" and got["style"] == "fairytale"
    # a tie between two cues is "unknown", never a guess
    assert judge.annotate("A fox and a dragon went on.")["character"] is None


def test_surface_variety():
    rng = random.Random(5)
    shared = []
    for _ in range(300):
        a = world.sample_annotation(rng)
        s1 = set(world.split_sentences(world.render_story(a, rng)))
        s2 = set(world.split_sentences(world.render_story(a, rng)))
        shared.append(len(s1 & s2) / min(len(s1), len(s2)))
    assert np.mean(shared) < 0.5, np.mean(shared)
    ids = []
    for _ in range(3000):
        world.render_story(world.sample_annotation(rng), rng, record=ids)
    assert len(set(ids)) >= 150, len(set(ids))
    assert world.count_templates() >= len(set(ids))


def test_vocabulary_is_small(corpus):
    _, stories = corpus
    sft = [e["response"] for e in world.make_sft_examples(500, 0.5, seed=1)]
    words = Counter(w for s in stories + sft for w in s.lower().translate(judge._WORDS_TABLE).split())
    assert len(words) <= 1500, len(words)


# --- quality -----------------------------------------------------------------------------------

def test_quality_accepts_clean_rejects_corrupted(corpus):
    anns, stories = corpus
    assert np.mean([judge.quality(s) for s in stories]) >= 0.99
    rng = random.Random(11)
    bad = Counter()
    kinds = Counter()
    for a, s in zip(anns[:3000], stories[:3000]):
        text, kind = world.corrupt(s, a, rng)
        kinds[kind] += 1
        bad[kind] += not judge.quality(text)
    assert set(kinds) == set(world.CORRUPTIONS)
    assert sum(bad.values()) / sum(kinds.values()) >= 0.95
    for k in kinds:
        assert bad[k] / kinds[k] >= 0.9, (k, bad[k] / kinds[k])


def test_quality_problem_names_the_corruption(corpus):
    """quality_problem says why a text fails: a repeated sentence or a renamed hero is called that."""
    anns, stories = corpus
    assert all(judge.quality_problem(s) is None for s in stories[:200] if judge.quality(s))
    rng = random.Random(12)
    seen = {}
    for a, s in zip(anns[:1000], stories[:1000]):
        text, kind = world.corrupt(s, a, rng)
        seen.setdefault(kind, Counter())[judge.quality_problem(text)] += 1
        assert (judge.quality_problem(text) is None) == judge.quality(text)
    assert seen["repeat"].most_common(1)[0][0] == "repeated sentence"
    assert seen["rename"].most_common(1)[0][0] == "not one name"
    assert seen["truncate"][None] == 0


def test_noise_fraction():
    docs = data.generate_pretraining_docs(2000, seed=1, noise=0.2, progress=False)
    frac = np.mean([k is not None for _, _, k in docs])
    assert 0.17 < frac < 0.23
    assert all(k is None for _, _, k in data.generate_pretraining_docs(200, seed=1, noise=0.0, progress=False))


def test_house_format():
    exs = world.make_sft_examples(400, world.DEFAULT_NARROWNESS, seed=2)
    for e in exs:
        r = e["response"]
        assert judge.is_house_format(r) and judge.quality(r)
        assert r.startswith("Title: ") and r.endswith("\nThe End.")
        body = world.split_response(r)
        assert not judge.is_house_format(body) and "Title:" not in body and "The End." not in body
    # pretraining docs never have the house format
    for s, _, _ in data.generate_pretraining_docs(500, seed=3, noise=0.2, progress=False):
        assert not judge.is_house_format(s) and "Title:" not in s and "The End." not in s
    assert not judge.is_house_format("Title: x\n\n\nThe End")
    # a sample that puts the closing on the story's last line is still a story (but not house format)
    body = world.split_response(exs[0]["response"])
    assert world.split_response(body + " The End.") == body and judge.quality(body + " The End.")
    assert not judge.is_house_format("Title: T\n\n" + body + " The End.")


# --- SFT data ----------------------------------------------------------------------------------

def test_sft_examples_are_true_and_follow_prompts():
    exs = world.make_sft_examples(1000, world.DEFAULT_NARROWNESS, seed=4)
    kinds = Counter(e["kind"] for e in exs)
    assert kinds["open"] > 300 and kinds["constrained"] > 300
    agree = []
    for e in exs:
        assert set(e) == {"prompt", "annotation", "response", "kind", "constraints"}
        assert (e["kind"] == "open") == (e["constraints"] == {})
        for f, v in e["constraints"].items():
            assert e["annotation"][f] == v
        got = judge.annotate(e["response"])
        agree += [got[f] == e["annotation"][f] for f in world.FIELDS]
    assert np.mean(agree) >= 0.99
    assert len({e["prompt"] for e in exs if e["kind"] == "open"}) >= 10
    assert len({e["prompt"] for e in exs if e["kind"] == "constrained"}) >= 300


def test_eval_prompts():
    assert 3 <= len(world.EVAL_PROMPTS) <= 6
    kinds = Counter((p["kind"], p["held_out"]) for p in world.EVAL_PROMPTS)
    for k in [("open", True), ("open", False), ("constrained", True), ("constrained", False)]:
        assert kinds[k] >= 1, k
    rng = random.Random(0)
    train_prompts = {world.make_prompt(rng, kind)[0] for kind in ("open", "constrained") for _ in range(30000)}
    for p in world.EVAL_PROMPTS:
        world.parse_annotation(world.format_annotation(p["constraints"]))  # valid values
        assert p["prompt"] not in train_prompts if p["held_out"] else True
    # the seen phrasings are SFT templates: an open prompt and a lead + one character clause
    seen = [p for p in world.EVAL_PROMPTS if not p["held_out"]]
    assert any(p["prompt"] in templates.OPEN_PROMPTS for p in seen if p["kind"] == "open")
    for p in seen:
        if p["kind"] == "constrained":
            (f, v), = p["constraints"].items()
            phrasings = {lead.format(a="a", c=c.format(art=world._article(v), v=v)) for lead in templates.LEADS
                         for c in templates.CLAUSES[f]}
            assert p["prompt"] in phrasings
    words = Counter(w for t in train_prompts for w in t.lower().split())
    assert words["tale"] == 0 and words["invent"] == 0 and words["i'd"] == 0


# --- entropies ---------------------------------------------------------------------------------

def test_prior_entropy_matches_samples():
    rng = random.Random(0)
    samples = [world.sample_annotation(rng) for _ in range(50000)]
    exact = world.prior_entropy()
    for f in world.FIELDS:
        assert abs(exact[f] - _empirical_entropy([s[f] for s in samples])) < 0.05, f
    assert exact["length"] <= math.log2(3) and exact["name"] > 5


def test_sft_entropy_default_is_narrow_and_exact():
    prior = world.mean_free_entropy(world.prior_entropy())
    sft = world.sft_entropy(world.DEFAULT_NARROWNESS)
    assert world.mean_free_entropy(sft) <= prior / 3
    # the preferred distribution has a long thin tail, so the plug-in estimate needs many samples
    rng = random.Random(0)
    samples = [world.sample_sft_annotation(rng, world.DEFAULT_NARROWNESS) for _ in range(100000)]
    for f in world.FIELDS:
        assert abs(sft[f] - _empirical_entropy([s[f] for s in samples])) < 0.05, f
    # the knob: 0 = the prior, 1 = favourites only; entropy decreases with narrowness
    assert world.sft_entropy(0.0) == pytest.approx(world.prior_entropy())
    means = [world.mean_free_entropy(world.sft_entropy(n)) for n in (0.0, 0.5, 0.9, 1.0)]
    assert means == sorted(means, reverse=True)
    with pytest.raises(ValueError, match="narrowness"):
        world.sft_entropy(1.5)
    # pinned fields have 0 bits, the others are unchanged
    c = {"character": "dragon", "setting": "desert"}
    e = world.sft_entropy(world.DEFAULT_NARROWNESS, c)
    assert e["character"] == e["setting"] == 0.0 and e["name"] == sft["name"]
    assert world.free_fields(c) == [f for f in world.FIELDS if f not in c]


def test_sft_data_entropy_matches_definition():
    """Open examples of make_sft_examples follow sft_entropy(narrowness)."""
    exs = [e for e in world.make_sft_examples(8000, world.DEFAULT_NARROWNESS, seed=9) if e["kind"] == "open"]
    exact = world.sft_entropy(world.DEFAULT_NARROWNESS)
    emp = {f: _empirical_entropy([e["annotation"][f] for e in exs]) for f in world.FIELDS}
    for f in world.FIELDS:  # ~4000 examples: per-field sampling noise is a few hundredths of a bit
        assert abs(exact[f] - emp[f]) < 0.15, f
    assert abs(world.mean_free_entropy(exact) - world.mean_free_entropy(emp)) < 0.05


# --- annotation format -------------------------------------------------------------------------

def test_format_and_parse_annotation():
    rng = random.Random(1)
    a = world.sample_annotation(rng)
    s = world.format_annotation(a)
    assert s.startswith(f"character: {a['character']} | name: {a['name']} | setting:")
    assert world.parse_annotation(s) == a
    assert world.format_annotation({"setting": "desert", "name": "Mia"}) == "name: Mia | setting: desert"
    assert world.parse_annotation(" name: Mia |setting: desert ") == {"name": "Mia", "setting": "desert"}
    with pytest.raises(ValueError, match="'colour'.*valid fields"):
        world.parse_annotation("colour: red")
    with pytest.raises(ValueError, match="'Bob'.*'name'.*Mia"):
        world.parse_annotation("name: Bob")
    with pytest.raises(ValueError, match="field: value"):
        world.parse_annotation("dragon")
    with pytest.raises(ValueError, match="colour"):
        world.format_annotation({"colour": "red"})


# --- tokenizer, formats and masks --------------------------------------------------------------

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
    for fmt in tokenizer.FORMATS:
        ids, mask = tokenizer.encode_example(enc, ex, fmt)
        assert len(ids) == len(mask) and enc.decode(ids) == expect[fmt], fmt


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
    rng = __import__("random").Random(3)
    for i in range(200):
        ex = world.make_sft_example(rng, world.DEFAULT_NARROWNESS, "constrained" if i % 2 else "open")
        ids, mask = tokenizer.encode_example(enc, ex, "anchored")
        assert ids == tokenizer.encode_example(enc, ex, "anchored_strict")[0] == tokenizer.encode_example(enc, ex, "anchored_unmasked")[0]
        untrained = enc.decode([t for t, m in zip(ids, mask) if not m]).split("<|assistant|>")[1]
        free = [ex["annotation"][f] for f in world.free_fields(ex["constraints"])]
        assert untrained.split() == free


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
    for fmt in tokenizer.ANCHORED_FORMATS:
        assert tokenizer.prompt_ids(enc, fmt, ex["prompt"]) == head + [sp["<|ann|>"]]
        assert tokenizer.prompt_ids(enc, fmt, ex["prompt"], annotation="character: dragon") == \
            head + [sp["<|ann|>"]] + A + [sp["<|story|>"]]
        assert tokenizer.prompt_ids(enc, fmt, ex["prompt"], anchor=False) == head + [sp["<|story|>"]]
    # every prefix is a prefix of the training example built by the same code
    for fmt in tokenizer.FORMATS:
        full, _ = tokenizer.encode_example(enc, ex, fmt)
        pre = tokenizer.prompt_ids(enc, fmt, ex["prompt"])
        assert full[:len(pre)] == pre, fmt
    with pytest.raises(ValueError, match="fmt"):
        tokenizer.prompt_ids(enc, "chat", "x")


# --- the dataset on disk -----------------------------------------------------------------------

def test_dataset_files(tiny_data):
    out, meta, enc = tiny_data
    for name in data.OUTPUT_FILES:
        assert os.path.exists(os.path.join(out, name)), name
    bos = meta["special_ids"]["<|bos|>"]
    for shard in ("pretrain_plain_train", "pretrain_annotated_val"):
        arr = np.fromfile(os.path.join(out, shard + ".bin"), dtype=np.uint16)
        assert arr.size == meta["tokens"][shard] and arr[0] == bos
    arr = np.fromfile(os.path.join(out, "pretrain_plain_train.bin"), dtype=np.uint16)
    assert (arr == bos).sum() == meta["n_docs"]["train"]
    with open(os.path.join(out, "sft_train.jsonl")) as f:
        exs = [json.loads(line) for line in f]
    assert len(exs) == 200 and all(judge.is_house_format(e["response"]) for e in exs)
    with open(os.path.join(out, "eval_prompts.json")) as f:
        assert json.load(f) == world.EVAL_PROMPTS
    ent = meta["entropy"]
    assert ent["prior"] == pytest.approx(world.prior_entropy())
    assert ent["sft_open_mean"] <= ent["prior_mean"] / 3


def test_ensure_dataset_reuse_and_rebuild(tmp_path, capsys):
    out = str(tmp_path / "d")
    opts = dict(n_stories=200, n_sft=50, n_sft_val=10, vocab_size=600)
    m1 = data.ensure_dataset(out, progress=False, **opts)
    stamp = os.path.getmtime(os.path.join(out, "pretrain_plain_train.bin"))
    m2 = data.ensure_dataset(out, progress=False, **opts)
    assert m1 == m2 and os.path.getmtime(os.path.join(out, "pretrain_plain_train.bin")) == stamp
    m3 = data.ensure_dataset(out, progress=False, **dict(opts, noise=0.0))
    assert "rebuilding" in capsys.readouterr().out
    assert m3["options"]["noise"] == 0.0 and m3["n_corrupted"] == {}
    with open(os.path.join(out, "meta.json")) as f:
        assert json.load(f)["options"]["noise"] == 0.0
    with pytest.raises(ValueError, match="n_storys"):
        data.ensure_dataset(out, n_storys=5)


def test_ensure_dataset_parallel_callers_build_once(tmp_path, capsys):
    import threading
    out = str(tmp_path / "p")
    opts = dict(n_stories=100, n_sft=20, n_sft_val=5, vocab_size=500)
    metas = []
    threads = [threading.Thread(target=lambda: metas.append(data.ensure_dataset(out, progress=False, **opts)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(metas) == 2 and metas[0] == metas[1]
    # a file missing from a finished build: an error naming it, or (repair, as python data.py) a rebuild
    os.remove(os.path.join(out, "sft_val.jsonl"))
    with pytest.raises(data.DatasetError, match="sft_val.jsonl is missing"):
        data.ensure_dataset(out, progress=False, **opts)
    data.ensure_dataset(out, progress=False, repair=True, **opts)
    assert "rebuilding" in capsys.readouterr().out and os.path.exists(os.path.join(out, "sft_val.jsonl"))


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
