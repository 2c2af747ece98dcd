"""Tests of the story world: the schema and prior (world.py), the grammar (grammar.py, templates.py),
the judge (judge.py) on its stories, corruption, the SFT data and the exact entropies. Fast and
CPU-only (seconds)."""

import math
import random
from collections import Counter

import numpy as np
import pytest

import data
import grammar
import judge
import templates
import world


def _empirical_entropy(labels):
    n = len(labels)
    return -sum(c / n * math.log2(c / n) for c in Counter(labels).values())


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(123)
    anns = [world.sample_annotation(rng) for _ in range(5000)]
    return anns, [grammar.render_story(a, rng) for a in anns]


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
        lo, hi = templates.LENGTH_WORDS[a["length"]]
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
        for feature in templates.FEATURES:
            for length in templates.LENGTHS:
                a = dict(base, feature=feature, length=length)
                s = grammar.render_story(a, _ConstRandom(x))
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
        s1 = set(world.split_sentences(grammar.render_story(a, rng)))
        s2 = set(world.split_sentences(grammar.render_story(a, rng)))
        shared.append(len(s1 & s2) / min(len(s1), len(s2)))
    assert np.mean(shared) < 0.5, np.mean(shared)
    ids = []
    for _ in range(3000):
        grammar.render_story(world.sample_annotation(rng), rng, record=ids)
    assert len(set(ids)) >= 150, len(set(ids))
    assert grammar.count_templates() >= len(set(ids))


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
    defects = Counter()
    for a, s in zip(anns[:3000], stories[:3000]):
        text, defect = world.corrupt(s, a, rng)
        defects[defect] += 1
        bad[defect] += not judge.quality(text)
    assert set(defects) == set(world.CORRUPTIONS)
    assert sum(bad.values()) / sum(defects.values()) >= 0.95
    for k in defects:
        assert bad[k] / defects[k] >= 0.9, (k, bad[k] / defects[k])


def test_quality_problem_names_the_corruption(corpus):
    """quality_problem says why a text fails: a repeated sentence or a renamed hero is called that."""
    anns, stories = corpus
    assert all(judge.quality_problem(s) is None for s in stories[:200] if judge.quality(s))
    rng = random.Random(12)
    seen = {}
    for a, s in zip(anns[:1000], stories[:1000]):
        text, defect = world.corrupt(s, a, rng)
        seen.setdefault(defect, Counter())[judge.quality_problem(text)] += 1
        assert (judge.quality_problem(text) is None) == judge.quality(text)
    assert seen["repeat"].most_common(1)[0][0] == "repeated sentence"
    assert seen["rename"].most_common(1)[0][0] == "not one name"
    assert seen["truncate"][None] == 0


def test_noise_fraction():
    docs = data.generate_pretraining_docs(2000, seed=1, noise=0.2, progress=False)
    frac = np.mean([k is not None for _, _, k in docs])
    assert 0.17 < frac < 0.23
    assert all(k is None for _, _, k in data.generate_pretraining_docs(200, seed=1, noise=0.0, progress=False))


def test_titled_pretraining_docs():
    """--titled: a share of docs opens with the house title line of its own annotation, over an ordinary
    story (corrupted or not), and the judge reads a titled doc as its story."""
    plain = data.generate_pretraining_docs(600, seed=3, noise=0.2, progress=False)
    assert data.generate_pretraining_docs(600, seed=3, noise=0.2, titled=0.0, progress=False) == plain
    titled = data.generate_pretraining_docs(600, seed=3, noise=0.2, titled=0.5, progress=False)
    heads = [s.startswith(world.TITLE_PREFIX) for s, _, _ in titled]
    assert 0.4 < np.mean(heads) < 0.6
    assert [a for _, a, _ in titled][:1] == [a for _, a, _ in plain][:1]  # the same first draw
    for (s, ann, defect), head in zip(titled, heads):
        assert not judge.is_house_format(s) and world.CLOSING not in s
        if not head:
            continue
        line, body = s.split("\n\n", 1)
        assert line[len(world.TITLE_PREFIX):] in {world.make_title(ann, random.Random(k)) for k in range(200)}
        assert world.split_response(s) == body and judge.quality(s) == judge.quality(body)
        if defect is None:
            assert judge.quality(s) and judge.annotate(s) == judge.annotate(body)
    with pytest.raises(ValueError, match="titled=1.5"):
        data.ensure_dataset("unused", titled=1.5)


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
    prompt_types = Counter(e["kind"] for e in exs)  # the prompt type, under the dataset's key
    assert prompt_types["open"] > 300 and prompt_types["constrained"] > 300
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
    prompt_types = Counter((p["kind"], p["held_out"]) for p in world.EVAL_PROMPTS)
    for k in [("open", True), ("open", False), ("constrained", True), ("constrained", False)]:
        assert prompt_types[k] >= 1, k
    rng = random.Random(0)
    train_prompts = {world.make_prompt(rng, t)[0] for t in ("open", "constrained") for _ in range(30000)}
    for p in world.EVAL_PROMPTS:
        world.parse_annotation(world.format_annotation(p["constraints"]))  # valid values
        assert p["prompt"] not in train_prompts if p["held_out"] else True
    # the seen phrasings are SFT templates: an open prompt and a lead + one character clause
    seen = [p for p in world.EVAL_PROMPTS if not p["held_out"]]
    assert any(p["prompt"] in templates.OPEN_PROMPTS for p in seen if p["kind"] == "open")
    for p in seen:
        if p["kind"] == "constrained":
            (f, v), = p["constraints"].items()
            phrasings = {lead.format(a="a", c=c.format(art=grammar.article(v), v=v)) for lead in templates.LEADS
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
