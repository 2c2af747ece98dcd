"""Tests of sample.py, metrics.py and eval_diversity.py: the metrics on hand-made inputs with exact answers,
then the whole evaluation end to end on tiny checkpoints (CPU, seconds)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import eval_diversity as ev  # noqa: E402
import metrics  # noqa: E402
import sample  # noqa: E402
import tokenizer  # noqa: E402
import world  # noqa: E402

# -----------------------------------------------------------------------------
# pure metrics

def test_entropy_uniform_and_constant():
    assert metrics.label_entropy(list("abcdefgh")) == 3.0          # uniform over 8 labels
    assert metrics.label_entropy(["a"] * 50) == 0.0                # all equal
    assert metrics.label_entropy(["a", "b"]) == 1.0
    assert metrics.label_entropy(["a", "a", "b", "c"]) == 1.5      # 1/2, 1/4, 1/4
    # unknown (None) is its own label "?"
    assert metrics.label_entropy([None, "a"]) == 1.0
    assert metrics.label_entropy([None, "?"]) == 0.0
    with pytest.raises(ValueError):
        metrics.label_entropy([])

def test_one_entropy_from_counts_or_probabilities():
    assert world.entropy_bits([2, 1, 1]) == world.entropy_bits([0.5, 0.25, 0.25]) == 1.5
    assert world.entropy_bits([3, 0, 0]) == 0.0 and math.isnan(world.entropy_bits([0, 0]))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 7, 200)
    assert metrics.code_entropy(codes) == metrics.label_entropy(codes.tolist())  # the same counts, the same bits

def test_distinct():
    assert metrics.distinct([("a", "x"), ("a", "x"), ("b", "x"), ("a", "y")]) == 3
    assert metrics.distinct([("a",)] * 10) == 1
    assert metrics.distinct([(None, "x"), ("?", "x")]) == 1       # unknown counts as "?"
    assert metrics.distinct([]) == 0

def test_collapse_ratio_gap_closed():
    assert metrics.collapse(3.0, 1.0) == 2.0
    # base 4 bits, SFT 1 bit, anchored 3.5 bits: SFT loses 3, anchored 0.5
    assert metrics.collapse_ratio(4.0, 1.0, 3.5) == 6.0
    assert metrics.gap_closed(4.0, 1.0, 3.5) == (3.5 - 1.0) / 3.0
    assert math.isclose(metrics.gap_closed(4.0, 1.0, 3.5), 1 - 1 / metrics.collapse_ratio(4.0, 1.0, 3.5))
    assert metrics.gap_closed(4.0, 1.0, 1.0) == 0.0 and metrics.gap_closed(4.0, 1.0, 4.0) == 1.0
    assert metrics.collapse_ratio(4.0, 1.0, 4.0) == math.inf       # anchored lost nothing
    assert math.isnan(metrics.collapse_ratio(4.0, 4.0, 4.0))       # 0/0

def test_bootstrap_ci():
    const = np.full(30, 2.5)
    assert metrics.bootstrap_ci(np.mean, [const], n_boot=50) == (2.5, 2.5)
    g = np.arange(100, dtype=float)
    lo, hi = metrics.bootstrap_ci(np.mean, [g], n_boot=400, seed=3)
    assert lo < 49.5 < hi and 40 < lo and hi < 60
    assert metrics.bootstrap_ci(np.mean, [g], n_boot=400, seed=3) == (lo, hi)   # seeded
    # two independently resampled groups
    lo, hi = metrics.bootstrap_ci(lambda a, b: a.mean() - b.mean(), [np.ones(20), np.zeros(10)], n_boot=20)
    assert (lo, hi) == (1.0, 1.0)
    # basic interval = [2*est - q_hi, 2*est - q_lo]: min of a resample of [0, 1] is 1 a quarter of the
    # time, so q_lo = 0, q_hi = 1, est = 0 -> (-1, 0)
    assert metrics.bootstrap_ci(np.min, [np.array([0.0, 1.0])], n_boot=400, seed=0) == (-1.0, 0.0)

def _sample(annotation, **labels):
    full = {f: None for f in world.FIELDS}
    full.update(labels)
    return {"annotation": annotation, "labels": full}

def test_annotation_agreement_counts_non_favourites_only():
    # favourites: name Lily/Max/Mia, character girl/cat/bear; fox, dragon, Leo, Ava are not favourites
    s = _sample("character: fox | name: Leo | setting: q!x", character="fox", name="Mia")
    assert metrics.annotation_fields(s["annotation"]) == {"character": "fox", "name": "Leo", "setting": "q!x"}
    samples = [s,
               _sample("character: dragon | name: Mia", character="fox", name="Mia"),   # name Mia: a favourite
               _sample("character: girl | name: Leo", character="girl", name="Leo"),    # girl: a favourite
               _sample(None, character="fox", name="Leo")]                             # no annotation
    g = metrics.annotation_agreement(samples)
    assert g["character"] == {"share": 0.5, "n": 2}      # fox followed, dragon not
    assert g["name"] == {"share": 0.5, "n": 2}           # Leo: not followed, then followed
    assert g["setting"] == {"share": None, "n": 0}       # 'q!x' is no value
    assert g["length"] == {"share": None, "n": 0}        # every length is a favourite
    assert metrics.agreement_min(g) == 0.5
    assert metrics.agreement_min(metrics.annotation_agreement([_sample(None)])) is None
    good = world.format_annotation({f: v[0] for f, v in world.FIELDS.items()})
    assert metrics.annotation_valid([{"annotation": good}, s, {"annotation": None}]) == 0.5

def test_annotation_prior_and_drift():
    fav, other = "name: Lily", "name: Leo"
    base = metrics.annotation_prior({"name": [_sample(fav), _sample(other), _sample(other), _sample(other)]})
    assert base["name"] == {"fav_share": 0.25, "entropy": metrics.label_entropy(["Lily", "Leo", "Leo", "Leo"]), "n": 4,
                            "invalid": 0.0}
    anch = metrics.annotation_prior({"name": [_sample(fav), _sample(fav), _sample(other), _sample("name: Bob")]})
    assert anch["name"]["fav_share"] == 2 / 3 and anch["name"]["invalid"] == 0.25 and anch["name"]["n"] == 3
    assert math.isclose(metrics.prior_drift_max(anch, base), 2 / 3 - 0.25)
    assert metrics.prior_drift_max(base, base) == 0.0
    assert metrics.annotation_prior({"name": [_sample(None)]})["name"]["fav_share"] is None
    # the no-drift floor: sampling noise alone, large at a hundred annotations a field, ~0 at a million
    at = lambda n, share: {f: {"fav_share": share, "n": n} for f in ("name", "theme", "quest")}
    small, huge = metrics.prior_drift_floor(at(100, 0.3), at(100, 0.3)), metrics.prior_drift_floor(at(10**6, 0.3), at(10**6, 0.3))
    # the max of 3 differences of two shares, each with sd sqrt(2 * 0.3 * 0.7 / 100) = 0.065: median ~0.05
    assert 0.04 < small < 0.06 and huge < 0.002
    assert metrics.prior_drift_floor(at(100, 0.3), at(100, 0.3)) == small  # seeded
    assert 0.1 < metrics.prior_drift_floor(at(100, 0.3), at(100, 0.3), quantile=0.95) < 0.16
    # each row at its own n: more anchored samples shrink it, but the base's 100 still bound it
    assert metrics.prior_drift_floor(at(10**6, 0.3), at(100, 0.3)) < small
    assert metrics.prior_drift_floor(at(10**6, 0.3), at(100, 0.3)) > 0.03
    # pooled: the shares are pooled, not each row's own (a real rise of 0.3 reads ~0.05, not 0.3)
    assert metrics.prior_drift_floor(at(100, 0.6), at(100, 0.3)) < 0.08
    assert metrics.prior_drift_floor({"name": {"fav_share": None, "n": 0}}, at(100, 0.3)) is None
    exact = ev.exact_annotation_prior()
    p = world.PRIOR["name"]
    names = world.FIELDS["name"]
    assert math.isclose(exact["name"]["fav_share"], sum(p[names.index(v)] for v in ("Lily", "Max", "Mia")))
    assert exact["length"]["fav_share"] == pytest.approx(1.0)   # every length is a favourite
    assert exact["name"]["entropy"] == world.prior_entropy()["name"]

def test_unknown_dropped_and_compliant():
    assert metrics.label_entropy([None, None, "a", "a"]) == 1.0
    assert metrics.label_entropy([None, None, "a", "a"], drop_unknown=True) == 0.0
    assert math.isnan(metrics.label_entropy([None], drop_unknown=True))
    codes = np.array([0, 0, 1, 1, 2, 2, 2, 2])                 # code 0 = unknown
    assert metrics.code_entropy(codes) == 1.5
    assert metrics.code_entropy(codes, True) == metrics.label_entropy([1, 1, 2, 2, 2, 2])
    assert math.isnan(metrics.code_entropy(np.array([0, 0]), True))
    # a constrained prompt: D over compliant samples only
    rows = [_sample(None, character="dragon", name="Leo"), _sample(None, character="dragon", name="Mia"),
            _sample(None, character="fox", name="Ava"), _sample(None, character=None, name="Ava")]
    for s in rows:
        s.update(quality=True, house=True, words=10)
    m = metrics.prompt_metrics(rows, {"character": "dragon"})
    assert m["instruction_following"] == 0.5 and m["n_compliant"] == 2
    free = world.free_fields({"character": "dragon"})
    # compliant: names Leo, Mia (1 bit); every other free field unknown twice (0 bits)
    assert math.isclose(m["D_compliant"], 1.0 / len(free))
    # known: only name has known labels (Leo, Mia, Ava, Ava: 1.5 bits); the rest are all unknown -> left out
    assert m["D_known"] == 1.5
    assert metrics.prompt_metrics(rows, {})["D_compliant"] is None
    assert m["annotation_carries"] is None  # no annotations
    # the annotation carried the constraint in 3 of 4 samples; the story then followed it in 2 of those
    for s, ann in zip(rows, ["character: dragon | name: Leo", "character: dragon | name: Mia",
                             "character: dragon | name: Ava", "character: fox"]):
        s["annotation"] = ann
    m = metrics.prompt_metrics(rows, {"character": "dragon"})
    assert m["annotation_carries"] == 0.75 and m["instruction_following"] == 0.5
    assert metrics.prompt_metrics(rows, {})["annotation_carries"] is None  # an open prompt pins nothing

def test_seed_bootstrap_ci():
    # constant samples within seed: only the seeds vary. Median of 3 draws from {1, 2, 3}: the 2.5%
    # and 97.5% points are 1 and 3, the estimate 2 -> basic interval (1, 3)
    per_seed = [(np.mean, [np.full(10, v)]) for v in (1.0, 2.0, 3.0)]
    assert metrics.seed_bootstrap_ci(per_seed, n_boot=400, seed=0) == (2.0, (1.0, 3.0))
    # one seed: the within-seed bootstrap
    g = np.arange(100, dtype=float)
    est, (lo, hi) = metrics.seed_bootstrap_ci([(np.mean, [g])], n_boot=300, seed=1)
    assert est == 49.5 and lo < 49.5 < hi
    # identical seeds, constant samples: no spread
    assert metrics.seed_bootstrap_ci([(np.mean, [np.ones(5)])] * 3, n_boot=50) == (1.0, (1.0, 1.0))
    assert metrics.over_seeds([0.5, 0.7, None, 0.6]) == {"median": 0.6, "per_seed": [0.5, 0.7, None, 0.6],
                                                     "min": 0.5, "max": 0.7}
    assert metrics.over_seeds([None])["median"] is None

def test_headline_builder():
    stat = lambda med, per: {"median": med, "per_seed": per, "min": min(per), "max": max(per)}
    over = {k: stat(0.5, [0.4, 0.5, 0.6]) for k in
            ("collapse_ratio", "collapse_ratio_known", "quality_sft", "quality_anchored", "instruction_sft",
             "instruction_anchored", "prior_drift_max", "prior_drift_floor", "prior_drift_noise95", "base_agreement_min",
             "gap_closed_good", "quality_matched_sft", "quality_matched_anchored")}
    over["gap_closed"] = {**stat(0.8, [0.7, 0.8, 0.9]), "ci95": (0.6, 1.0)}
    over["gap_closed_known"] = {**stat(0.75, [0.7, 0.75, 0.8]), "ci95": (0.65, 0.85)}
    over.update(kind="open", n_seeds=3, ci_method="...")
    h = ev.headline({"over_seeds": over}, size="cpu-m")
    assert set(h) == {"size", "seeds", "prompts", "gap_closed", "gap_closed_known", "collapse_ratio", "quality_sft",
                      "quality_anchored", "instruction_sft", "instruction_anchored", "prior_drift_max",
                      "prior_drift_floor", "prior_drift_noise95", "base_agreement_min", "gap_closed_good", "quality_matched_sft",
                      "quality_matched_anchored", "quality_base", "quality_base_annotated",
                      "broken_text_max", "annotation_parse_min", "wall_seconds"}
    assert h["size"] == "cpu-m" and h["seeds"] == 3 and h["wall_seconds"] is None
    assert h["gap_closed"] == {"median": 0.8, "per_seed": [0.7, 0.8, 0.9], "ci95": (0.6, 1.0), "min": 0.7, "max": 0.9}
    assert h["prior_drift_max"] == {"median": 0.5, "per_seed": [0.4, 0.5, 0.6]}
    assert ev.headline({"over_seeds": over}, wall_seconds=12.0)["wall_seconds"] == 12.0
    assert h["broken_text_max"] is None  # no rows measured
    by_kind = lambda **m: {"open": {"broken_text": None, "annotation_valid": None, "quality": None, **m}}
    rows = [{"row": "base", "role": "base", "fmt": "plain", "temperature": 1.0, "by_kind": by_kind(quality=0.9, broken_text=0.0)},
            {"row": "base_annotated", "role": "base", "fmt": "annotated", "temperature": 1.0,
             "by_kind": by_kind(quality=0.8, broken_text=0.01, annotation_valid=0.97)},
            # another annotated base at T = 1 (a plain-T = 1 arm beside the top-p one): not the named row
            {"row": "base_annotated_T1", "role": "base", "fmt": "annotated", "temperature": 1.0,
             "by_kind": by_kind(quality=0.4, broken_text=0.0, annotation_valid=0.97)},
            {"row": "sft", "role": "sft", "fmt": "anchored", "temperature": 1.0, "by_kind": by_kind(broken_text=0.2, annotation_valid=0.5)},
            {"row": "sft_data", "role": "reference", "fmt": "-", "temperature": None, "by_kind": by_kind(quality=1.0, broken_text=0.9)}]
    named = {"derived": {"base_row": "base"}, "annotated_base_row": "base_annotated"}
    h = ev.headline({"over_seeds": over, "rows": rows, **named})
    assert (h["quality_base"], h["quality_base_annotated"], h["broken_text_max"], h["annotation_parse_min"]) == \
        (0.9, 0.8, 0.2, 0.5)

def test_quality_at_matched_content():
    top = {f: v[0] for f, v in world.FAVOURITES.items()}
    other = {f: next(v for v in world.FIELDS[f] if v != top[f]) for f in world.FIELDS}
    fields = list(world.FIELDS)
    def story(n_fav, quality=True, house=True):  # the first n_fav fields hold the top favourite
        return {"labels": {f: top[f] if i < n_fav else other[f] for i, f in enumerate(fields)},
                "quality": quality, "house": house}
    assert metrics.favourite_count(story(9)["labels"]) == 9 and metrics.favourite_count(story(0)["labels"]) == 0
    assert metrics.favourite_count({**story(9)["labels"], "name": None}) == 8  # unknown: not a favourite
    # an SFT-like row: typical stories written well, atypical ones badly
    sft = [story(8)] * 30 + [story(3, quality=False)] * 15 + [story(4)] * 5 + [story(1, house=False)] * 2
    t = metrics.quality_by_typicality(sft)
    assert [b["favourites"] for b in t] == ["0-2", "3-4", "5-6", "7-9"]
    assert [b["n"] for b in t] == [2, 20, 0, 30]
    assert t[0] == {"favourites": "0-2", "n": 2, "quality": 1.0, "quality_and_house": 0.0}
    assert t[1]["quality"] == t[1]["quality_and_house"] == 0.25 and t[2]["quality"] is None
    # an anchored-like row: atypical stories, written fairly well
    anch = [story(0)] * 30 + [story(2, quality=False)] * 10 + [story(3)] * 30 + [story(4, quality=False)] * 10
    a = metrics.quality_by_typicality(anch)
    m = metrics.quality_matched(a, t)  # only 3-4 has >= 20 of both
    assert m == {"a": 0.75, "b": 0.25, "bins": ["3-4"]}
    m = metrics.quality_matched(a, t, min_n=2)  # 0-2 too, each bin weighted by the anchored count
    assert m["bins"] == ["0-2", "3-4"]
    assert m["a"] == pytest.approx((40 * 0.75 + 40 * 0.75) / 80) and m["b"] == pytest.approx((40 * 0.0 + 40 * 0.25) / 80)
    assert metrics.quality_matched(a, t, min_n=31) is None

def test_judged_text_cut_at_special_token():
    assert tokenizer.cut_at_special("Mia ran.<|ann|>character: fox | name: Leo") == "Mia ran."
    assert tokenizer.cut_at_special("no special here") == "no special here"
    assert tokenizer.cut_at_special("a<|eos|>b<|bos|>c") == "a"
    s = {"text": "Once a fox named Leo ran home.<|ann|>character: dragon | name: Mia", "annotation": None}
    ev.label_samples([s])
    assert s["text"] == "Once a fox named Leo ran home." and s["labels"]["character"] == "fox"

def test_parse_arm():
    a = ev.parse_arm("anchored_no_annotation=out/anchored:anchor=off", [1.0])
    assert (a["name"], a["path"], a["anchor"], a["temperatures"]) == \
        ("anchored_no_annotation", "out/anchored", "off", [1.0])
    a = ev.parse_arm("sft=out/sft:temperature=0.6,1.2:top_k=50", [1.0])
    assert a["temperatures"] == [0.6, 1.2] and a["top_k"] == 50
    assert ev.parse_arm("s=out/a:ann=by_field", [1.0])["ann"] == "by_field"
    assert ev.parse_arm("s=out/a", [1.0], top_p=0.9)["top_p"] == 0.9  # --top_p: every arm's story
    assert ev.parse_arm("s=out/a:top_p=0.5", [1.0], top_p=0.9)["top_p"] == 0.5  # unless the arm sets its own
    assert ev.parse_arm("s=out/a", [1.0], no_repeat_ngram=8)["no_repeat_ngram"] == 8  # --no_repeat_ngram too
    assert ev.parse_arm("s=out/a:no_repeat_ngram=0", [1.0], no_repeat_ngram=8)["no_repeat_ngram"] is None  # 0: lifted
    a = ev.parse_arm("sft=runs/s0,runs/s1,runs/s2:temperature=0.8", [1.0])
    assert a["paths"] == ["runs/s0", "runs/s1", "runs/s2"] and a["path"] == "runs/s0" and a["temperatures"] == [0.8]
    assert ev.num_seeds([a, ev.parse_arm("base=runs/b", [1.0])]) == 3
    with pytest.raises(ValueError, match="seeds"):
        ev.num_seeds([a, ev.parse_arm("x=runs/a,runs/b", [1.0])])
    for bad in ("out/sft", "x=out:anchor=maybe", "x=out:colour=red", "x=out:ann=fixed", "x=a,,b",
                "x=out:no_repeat_ngram=1", "x=out:top_k=many"):
        with pytest.raises(ValueError):
            ev.parse_arm(bad, [1.0])

# -----------------------------------------------------------------------------
# end to end on tiny checkpoints: the shared session fixtures of tests/conftest.py (a few training
# steps through pretrain.py / sft.py; the models are noise, so these tests check plumbing)

@pytest.fixture(scope="module")
def ckpts(tiny_base_dirs, tiny_sft_dirs):
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine
    yield {"base": str(tiny_base_dirs["annotated"]), "base_plain": str(tiny_base_dirs["plain"]),
            "sft": str(tiny_sft_dirs["standard"]), "anchored": str(tiny_sft_dirs["anchored"])}
    torch.set_num_threads(n)

def _load(path):
    from checkpoint import load_model
    return load_model(path)

def test_annotation_tokenization_matches_training(ckpts):
    # the field-by-field pieces sampling forces must be the very ids the model was trained on
    import random
    _, _, enc = _load(ckpts["base"])
    rng, story = random.Random(0), enc.encode_single_token("<|story|>")
    for _ in range(50):
        ann = world.sample_annotation(rng)
        ids, _ = tokenizer.encode_example(enc, {"story": "x", "annotation": ann}, "annotated")
        pieces = tokenizer.annotation_pieces(enc.encode_ordinary, ann)  # as sample.sample_annotations forces them
        assert ids[2:ids.index(story)] == [i for _, key, value in pieces for i in key + value]
    assert enc.encode_ordinary(" |")[0] in tokenizer.separator_ids(enc)

def test_anchored_sampling_draws_annotations(ckpts):
    model, ckpt, enc = _load(ckpts["anchored"])
    assert ckpt["format"] == "anchored"
    kw = dict(seed=3, max_new_tokens=16, batch_size=4)
    a = sample.sample_stories(model, enc, "anchored", "Write a story.", 6, **kw)
    assert [s["annotation"] for s in a] == [s["annotation"] for s in sample.sample_stories(model, enc, "anchored", "Write a story.", 6, **kw)]
    anns = [s["annotation"] for s in a]
    assert all(isinstance(x, str) for x in anns) and len(set(anns)) > 1   # sampled by the model, not fixed
    off = sample.sample_stories(model, enc, "anchored", "Write a story.", 3, anchor=False, **kw)
    assert all(s["annotation"] is None for s in off)
    # base formats: annotated base samples an annotation, plain base none
    model_b, _, _ = _load(ckpts["base_plain"])
    assert all(s["annotation"] is None for s in sample.sample_stories(model_b, enc, "plain", None, 2, **kw))

def test_annotations_alone_are_the_stories_annotations(ckpts):
    """sample_annotation_texts draws what sample_many's first batch draws before its stories, for
    an SFT format (with its prompt) and the annotated base (no prompt); a plain format has none."""
    for name, fmt, prompt in (("anchored", "anchored", "Write a story."), ("base", "annotated", None)):
        model, _, enc = _load(ckpts[name])
        alone = sample.sample_annotation_texts(model, enc, fmt, prompt, 5, seed=4, batch_size=8)
        with_story = sample.sample_stories(model, enc, fmt, prompt, 5, seed=4, batch_size=8, max_new_tokens=6)
        assert alone == [s["annotation"] for s in with_story] and len(set(alone)) > 1
    assert len(sample.sample_annotation_texts(model, enc, "annotated", None, 5, seed=4, batch_size=2)) == 5
    with pytest.raises(ValueError, match="no annotation"):
        sample.sample_annotation_texts(model, enc, "plain", None, 2)

def test_pinned_fields_are_forced(ckpts):
    model, _, enc = _load(ckpts["anchored"])
    pinned = world.parse_annotation("name: Mia | setting: desert")
    out = sample.sample_stories(model, enc, "anchored", "Write a story.", 4, seed=0, max_new_tokens=8, pinned=pinned)
    for s in out:
        assert "name: Mia |" in s["annotation"] and "setting: desert |" in s["annotation"]
        # every field key is present, in FIELDS order (free ones sampled after the forced "key:")
        pos = [s["annotation"].find(f"{f}:") for f in world.FIELDS]
        assert -1 not in pos and pos == sorted(pos)
    out = sample.sample_stories(model, enc, "anchored", "Write a story.", 3, seed=0, max_new_tokens=4, ann_by_field=True)
    for s in out:
        pos = [s["annotation"].find(f"{f}:") for f in world.FIELDS]
        assert -1 not in pos and pos == sorted(pos) and s["annotation"].count(" |") >= len(world.FIELDS) - 1
    everything = world.sample_annotation(__import__("random").Random(1))
    out = sample.sample_stories(model, enc, "anchored", "Write a story.", 2, seed=0, max_new_tokens=4, pinned=everything)
    assert all(s["annotation"] == world.format_annotation(everything) for s in out)

def _main(module, *args):
    """Run a script's main() in this process (fast: no new interpreter); -> its error message or None."""
    import importlib
    mod = importlib.import_module(module)
    old = sys.argv
    sys.argv = [module + ".py", *args]
    try:
        mod.main()
    except SystemExit as e:
        return str(e.code)
    finally:
        sys.argv = old
    return None

def test_sample_cli_and_errors(ckpts, capsys):
    assert _main("sample", "--ckpt", ckpts["anchored"], "--num_samples", "2", "--max_new_tokens", "8",
                 "--annotation", "name: Mia") is None
    out = capsys.readouterr().out
    assert out.count("[annotation] character:") == 2 and "name: Mia" in out
    bad = [(["--ckpt", ckpts["anchored"], "--annotation", "colour: red"], "colour"),
           (["--ckpt", ckpts["anchored"], "--annotation", "name: Bob"], "Bob"),
           (["--ckpt", ckpts["anchored"], "--annotation", "  "], "pins no field"),
           (["--ckpt", ckpts["anchored"], "--prompt", "  "], "empty prompt"),
           (["--ckpt", ckpts["anchored"], "--prompt", "word " * 600], "too long"),
           (["--ckpt", ckpts["base_plain"], "--anchor", "on"], "without annotations"),
           (["--ckpt", ckpts["anchored"], "--anchor", "off", "--annotation", "name: Mia"], "--anchor off"),
           (["--ckpt", os.path.join(ckpts["base"], "missing")], "no checkpoint")]
    for args, needle in bad:
        msg = _main("sample", *args)
        assert msg is not None and msg.startswith("sample.py: error:") and needle in msg, (args, msg)
        assert "\n" not in msg
    # as a real process: one line on stderr, non-zero exit, no traceback
    r = subprocess.run([sys.executable, os.path.join(ROOT, "sample.py"), "--ckpt", ckpts["anchored"],
                        "--annotation", "colour: red"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "colour" in r.stderr

def test_eval_diversity_end_to_end(ckpts, tmp_path):
    out = tmp_path / "res"
    assert _main("eval_diversity", "--ckpts", f"base={ckpts['base']}", f"base_plain={ckpts['base_plain']}",
                 f"sft={ckpts['sft']}", f"anchored={ckpts['anchored']}",
                 f"anchored_no_annotation={ckpts['anchored']}:anchor=off",
                 "--num_samples", "6", "--max_new_tokens", "24", "--n_boot", "20", "--out", str(out)) is None
    s = json.loads((out / "summary.json").read_text())
    rows = {row["row"]: row for row in s["rows"]}
    assert set(rows) == {"base", "base_plain", "sft", "anchored", "anchored_no_annotation", "pretrain_data",
                         "sft_data"}
    for row in rows.values():
        assert set(row["by_kind"]) == {"open", "constrained"}
        for m in row["prompts"]:
            assert m["K"] == 6 and 0 <= m["D"] <= math.log2(6) + 1e-9
            assert set(m["entropy"]) == set(world.free_fields(m["constraints"]))
    assert rows["sft_data"]["by_kind"]["constrained"]["instruction_following"] == 1.0
    assert rows["pretrain_data"]["by_kind"]["open"]["quality"] == 1.0
    assert rows["sft_data"]["by_kind"]["open"]["house_format"] == 1.0
    for prompt_type in ("open", "constrained"):
        d = s["derived"][prompt_type]
        assert set(d["collapse"]) == set(rows) - {"base"}
        assert "collapse_ratio" in d and "gap_closed" in d
    for f in ("summary.md", "samples.jsonl.gz", "headline.json", "field_entropy.png", "label_histograms.png",
              "quality_vs_diversity.png", "prior_drift.png"):
        assert (out / f).stat().st_size > 0, f
    import gzip
    samples = [json.loads(x) for x in gzip.open(out / "samples.jsonl.gz", "rt").read().splitlines()]
    assert {"row", "prompt", "annotation", "text", "labels"} <= set(samples[0])
    assert len(samples) == 6 * (1 + 1 + 4 + 4 + 4) + 6 + 6 * 4    # base rows see no prompt; + references
    no_annotation = ("anchored_no_annotation", "base_plain", "sft")
    assert all(s["annotation"] is None for s in samples if s["row"] in no_annotation)
    assert all(s["annotation"] for s in samples if s["row"] in ("anchored", "base"))
    md = (out / "summary.md").read_text()
    assert "| anchored |" in md and "gate: annotation agreement" in md and "annotation prior" in md
    assert "quality by typicality" in md and "ann. carries" in md
    assert rows["sft_data"]["by_kind"]["constrained"]["annotation_carries"] == 1.0  # its true annotations
    assert rows["sft"]["by_kind"]["constrained"]["annotation_carries"] is None
    # every row is binned by content; the bins hold every one of its samples
    n_samples = {"base": 6, "base_plain": 6, "pretrain_data": 6}
    for name, row in rows.items():
        assert sum(b["n"] for b in row["typicality"]) == n_samples.get(name, 6 * 4), name
    # the gate and the prior of the annotated base (found by its format), the drift of the anchored row
    assert s["annotated_base_row"] == "base"
    assert set(rows["base"]["gate"]) == set(world.FIELDS) and rows["sft"]["gate"] is None
    assert set(rows["anchored"]["annotation_prior"]) == set(world.FIELDS)
    assert rows["anchored_no_annotation"]["annotation_prior"] is None
    for prompt_type in ("open", "constrained"):
        assert {"gap_closed_known", "collapse_ratio_known"} <= set(s["derived"][prompt_type])
    h = json.loads((out / "headline.json").read_text())
    assert h["seeds"] == 1 and len(h["gap_closed"]["per_seed"]) == 1 and "prior_drift_max" in h
    m = metrics.quality_matched(rows["anchored"]["typicality"], rows["sft"]["typicality"])  # the headline's rows
    assert h["quality_matched_sft"]["per_seed"] == [m and m["b"]]
    assert h["quality_matched_anchored"]["per_seed"] == [m and m["a"]]
    # the same seed gives the same numbers (evaluate() directly, one arm)
    s2, _ = ev.evaluate([ev.parse_arm(f"sft={ckpts['sft']}", [1.0])], num_samples=6, max_new_tokens=24,
                        n_boot=5, base_arm="sft", progress=False)
    assert ev._finite([x for x in s2["rows"] if x["row"] == "sft"][0]["prompts"]) == rows["sft"]["prompts"]


def test_no_repeat_ngram_reaches_the_story_only(ckpts, monkeypatch):
    """--no_repeat_ngram reaches every story's generate call, and no annotation's (the annotation
    is sampled first, in calls of its own, untouched); the row records it."""
    import engine
    import sample
    calls = []

    def spy(*a, **kw):
        calls.append(kw.get("no_repeat_ngram"))
        return engine.generate(*a, **kw)
    monkeypatch.setattr(sample, "generate", spy)
    arms = [ev.parse_arm(f"anchored={ckpts['anchored']}", [1.0], no_repeat_ngram=2)]
    _, rows = ev.evaluate(arms, num_samples=6, max_new_tokens=24, n_boot=5, base_arm="anchored", progress=False)
    assert rows["anchored"].no_repeat_ngram == 2 and rows["anchored"].to_json()["no_repeat_ngram"] == 2
    assert calls.count(2) >= 1 and calls.count(None) == calls.count(2)  # one annotation call per story call

def test_eval_diversity_errors(ckpts, tmp_path):
    for args, needle in ((["--ckpts", f"x={ckpts['base_plain']}:anchor=on"], "without annotations"),
                         (["--ckpts", "x=/nonexistent"], "no checkpoint"),
                         (["--ckpts", f"x={ckpts['sft']}:colour=red"], "unknown option"),
                         (["--ckpts", f"x={ckpts['sft']}", f"x={ckpts['sft']}"], "unique")):
        msg = _main("eval_diversity", *args, "--num_samples", "2", "--out", str(tmp_path / "e"))
        assert msg is not None and needle in msg, (args, msg)


def test_eval_diversity_seeds(ckpts, tmp_path):
    """Several checkpoints per arm are seeds: per-seed rows, numbers per seed and their median.
    (The same SFT checkpoint twice: the two seeds then differ by their sampling seed only.)"""
    arms = [ev.parse_arm(spec, [1.0]) for spec in
            (f"base={ckpts['base_plain']}", f"base_annotated={ckpts['base']}",
             f"sft={ckpts['sft']},{ckpts['sft']}", f"anchored={ckpts['anchored']},{ckpts['anchored']}")]
    s, rows = ev.evaluate(arms, num_samples=4, max_new_tokens=12, n_boot=10, progress=False,
                          annotated_base_arm="base_annotated")
    assert {"sft#s0", "sft#s1", "anchored#s0", "anchored#s1", "base", "base_annotated"} <= set(rows)
    assert rows["sft#s0"].prompts != rows["sft#s1"].prompts          # other samples
    assert [d["sft_row"] for d in s["derived"]["per_seed"]] == ["sft#s0", "sft#s1"]
    assert [d["base_row"] for d in s["derived"]["per_seed"]] == ["base", "base"]   # one base, shared
    assert "sft#s1" not in s["derived"]["open"]["collapse"] and "sft#s1" in s["derived"]["per_seed"][1]["open"]["collapse"]
    assert rows["sft#s1"].name == "sft#s1" and rows["sft#s1"].seed_index == 1 and rows["base"].seed_index is None
    o = s["over_seeds"]
    assert o["n_seeds"] == 2 and len(o["gap_closed"]["per_seed"]) == 2 and len(o["base_agreement_min"]["per_seed"]) == 2
    assert "ci95" in o["gap_closed"] and o["gap_closed"]["median"] == pytest.approx(
        float(np.median([v for v in o["gap_closed"]["per_seed"] if v is not None and math.isfinite(v)])))
    h = ev.headline(s, size="tiny")
    assert h["seeds"] == 2 and h["size"] == "tiny"

def test_sampling_lives_on_the_model_device(ckpts, monkeypatch):
    """The generator and every tensor sampling makes live on the model's device (a CPU generator
    with CUDA logits is what broke --device cuda): checked on CPU by watching what engine.generate gets."""
    import sample
    model, _, enc = _load(ckpts["anchored"])
    seen = []
    real = sample.generate  # engine.generate, as sample.py calls it
    def spy(model, prompts, max_new, *rules, **kw):
        seen.append(kw["generator"].device)
        return real(model, prompts, max_new, *rules, **kw)
    monkeypatch.setattr(sample, "generate", spy)
    sample.sample_stories(model, enc, "anchored", "Write a story.", 2, seed=0, max_new_tokens=4)
    dev = next(model.parameters()).device
    assert seen and all(d == dev for d in seen)
    assert sample.model_device(model) == dev

def test_stories_stop_at_every_special_token(ckpts, monkeypatch):
    """A story ends at the first special token of any kind, and the judge never sees one."""
    import sample
    model, _, enc = _load(ckpts["anchored"])
    stops = []
    real = sample.generate  # engine.generate, as sample.py calls it
    def spy(model, prompts, max_new, *rules, **kw):
        stops.append(set(kw["stop_ids"]))
        return real(model, prompts, max_new, *rules, **kw)
    monkeypatch.setattr(sample, "generate", spy)
    out = sample.sample_stories(model, enc, "anchored", "Write a story.", 3, seed=1, max_new_tokens=24)
    specials = set(tokenizer.special_ids(enc).values())
    assert len(specials) == len(tokenizer.SPECIAL_TOKENS) and stops[-1] == specials
    assert all("<|" not in s["text"] and "<|" not in s["annotation"] for s in out)
    assert all(s["stop"] in (None, *tokenizer.SPECIAL_TOKENS) and s["finished"] == (s["stop"] is not None) for s in out)

def test_gate_and_prior_on_the_data_itself():
    """The pretraining data's stories follow their annotations (the judge agrees on >= 99% of fields),
    so its gate is near 1 on every field; its annotation values follow the exact prior."""
    samples = ev.label_samples(ev.pretrain_reference(2000, seed=0))
    gate = metrics.annotation_agreement(samples)
    assert metrics.agreement_min(gate) >= 0.95, gate
    prior, exact = metrics.annotation_prior({f: samples for f in world.FIELDS}), ev.exact_annotation_prior()
    for f in world.FIELDS:
        assert abs(prior[f]["fav_share"] - exact[f]["fav_share"]) < 0.05, f
        assert prior[f]["invalid"] == 0.0
    # the SFT data leans on the favourites: a drift of most of the narrowness
    sft = ev.label_samples(ev.sft_reference(500, world.DEFAULT_NARROWNESS, world.EVAL_PROMPTS[0], seed=0))
    assert metrics.prior_drift_max(metrics.annotation_prior({f: sft for f in world.FIELDS}), prior) > 0.6

def test_sample_many_shares_batches_across_prompts(ckpts):
    import sample
    model, _, enc = _load(ckpts["anchored"])
    kw = dict(seed=5, max_new_tokens=6, batch_size=4)
    many = sample.sample_many(model, enc, "anchored", ["Write a story.", "Write a story about a dragon."], 3, **kw)
    assert [len(x) for x in many] == [3, 3]
    assert many == sample.sample_many(model, enc, "anchored", ["Write a story.", "Write a story about a dragon."], 3, **kw)
    assert sample.sample_many(model, enc, "anchored", ["Write a story."], 3, **kw)[0] == \
        sample.sample_stories(model, enc, "anchored", "Write a story.", 3, **kw)
    with pytest.raises(ValueError, match="empty prompt"):
        sample.sample_many(model, enc, "anchored", ["Write a story.", " "], 1, **kw)
