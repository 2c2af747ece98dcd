"""Tests of sample.py and eval_diversity.py: metric functions on hand-made inputs with exact answers,
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
import sample  # noqa: E402
import tokenizer  # noqa: E402
import world  # noqa: E402

# -----------------------------------------------------------------------------
# pure metrics

def test_entropy_uniform_and_constant():
    assert ev.entropy_bits(list("abcdefgh")) == 3.0          # uniform over 8 labels
    assert ev.entropy_bits(["a"] * 50) == 0.0                # all equal
    assert ev.entropy_bits(["a", "b"]) == 1.0
    assert ev.entropy_bits(["a", "a", "b", "c"]) == 1.5      # 1/2, 1/4, 1/4
    # unknown (None) is its own label "?"
    assert ev.entropy_bits([None, "a"]) == 1.0
    assert ev.entropy_bits([None, "?"]) == 0.0
    with pytest.raises(ValueError):
        ev.entropy_bits([])

def test_entropy_codes_matches_entropy_bits():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 7, 200)
    assert math.isclose(ev._entropy_codes(codes), ev.entropy_bits(codes.tolist()), rel_tol=1e-12)

def test_distinct():
    assert ev.distinct([("a", "x"), ("a", "x"), ("b", "x"), ("a", "y")]) == 3
    assert ev.distinct([("a",)] * 10) == 1
    assert ev.distinct([(None, "x"), ("?", "x")]) == 1       # unknown counts as "?"
    assert ev.distinct([]) == 0

def test_collapse_ratio_gap_closed():
    assert ev.collapse(3.0, 1.0) == 2.0
    # base 4 bits, SFT 1 bit, anchored 3.5 bits: SFT loses 3, anchored 0.5
    assert ev.collapse_ratio(4.0, 1.0, 3.5) == 6.0
    assert ev.gap_closed(4.0, 1.0, 3.5) == (3.5 - 1.0) / 3.0
    assert math.isclose(ev.gap_closed(4.0, 1.0, 3.5), 1 - 1 / ev.collapse_ratio(4.0, 1.0, 3.5))
    assert ev.gap_closed(4.0, 1.0, 1.0) == 0.0 and ev.gap_closed(4.0, 1.0, 4.0) == 1.0
    assert ev.collapse_ratio(4.0, 1.0, 4.0) == math.inf       # anchored lost nothing
    assert math.isnan(ev.collapse_ratio(4.0, 4.0, 4.0))       # 0/0

def test_bootstrap_ci():
    const = np.full(30, 2.5)
    assert ev.bootstrap_ci(np.mean, [const], n_boot=50) == (2.5, 2.5)
    g = np.arange(100, dtype=float)
    lo, hi = ev.bootstrap_ci(np.mean, [g], n_boot=400, seed=3)
    assert lo < 49.5 < hi and 40 < lo and hi < 60
    assert ev.bootstrap_ci(np.mean, [g], n_boot=400, seed=3) == (lo, hi)   # seeded
    # two independently resampled groups
    lo, hi = ev.bootstrap_ci(lambda a, b: a.mean() - b.mean(), [np.ones(20), np.zeros(10)], n_boot=20)
    assert (lo, hi) == (1.0, 1.0)
    # basic interval = [2*est - q_hi, 2*est - q_lo]: min of a resample of [0, 1] is 1 a quarter of the
    # time, so q_lo = 0, q_hi = 1, est = 0 -> (-1, 0)
    assert ev.bootstrap_ci(np.min, [np.array([0.0, 1.0])], n_boot=400, seed=0) == (-1.0, 0.0)

def test_annotation_agreement():
    labels = {f: None for f in world.FIELDS}
    labels.update(character="fox", name="Mia")
    s = {"annotation": "character: fox | name: Leo | setting: q!x", "labels": labels}
    assert ev.annotation_fields(s["annotation"]) == {"character": "fox", "name": "Leo", "setting": "q!x"}
    assert ev.annotation_agreement([s]) == 1 / len(world.FIELDS)
    assert ev.annotation_agreement([{"annotation": None, "labels": labels}]) is None
    good = world.format_annotation({f: v[0] for f, v in world.FIELDS.items()})
    assert ev.annotation_valid([{"annotation": good}, s, {"annotation": None}]) == 0.5

def test_parse_arm():
    a = ev.parse_arm("anchored_off=out/anchored:anchor=off", [1.0])
    assert (a["name"], a["path"], a["anchor"], a["temperatures"]) == ("anchored_off", "out/anchored", "off", [1.0])
    a = ev.parse_arm("sft=out/sft:temperature=0.6,1.2:top_k=50", [1.0])
    assert a["temperatures"] == [0.6, 1.2] and a["top_k"] == 50
    assert ev.parse_arm("s=out/a:ann=by_field", [1.0])["ann"] == "by_field"
    assert ev.row_name(a, 0.6) == "sft@T0.6"
    assert ev.row_name(ev.parse_arm("sft=out/sft", [1.0]), 1.0) == "sft"
    for bad in ("out/sft", "x=out:anchor=maybe", "x=out:colour=red", "x=out:ann=fixed"):
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
        assert ids[2:ids.index(story)] == tokenizer.annotation_ids(enc, ann)
    assert enc.encode_ordinary(" |")[0] in tokenizer.separator_ids(enc)

def test_anchored_sampling_draws_annotations(ckpts):
    model, ckpt, enc = _load(ckpts["anchored"])
    assert ckpt["fmt"] == "anchored"
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
                 f"sft={ckpts['sft']}", f"anchored={ckpts['anchored']}", f"anchored_off={ckpts['anchored']}:anchor=off",
                 "--num_samples", "6", "--max_new_tokens", "24", "--n_boot", "20", "--out", str(out)) is None
    s = json.loads((out / "summary.json").read_text())
    rows = {row["row"]: row for row in s["rows"]}
    assert set(rows) == {"base", "base_plain", "sft", "anchored", "anchored_off", "pretrain_data", "sft_data"}
    for row in rows.values():
        assert set(row["by_kind"]) == {"open", "constrained"}
        for m in row["prompts"]:
            assert m["K"] == 6 and 0 <= m["D"] <= math.log2(6) + 1e-9
            assert set(m["entropy"]) == set(world.free_fields(m["constraints"]))
    assert rows["sft_data"]["by_kind"]["constrained"]["instruction_following"] == 1.0
    assert rows["pretrain_data"]["by_kind"]["open"]["quality"] == 1.0
    assert rows["sft_data"]["by_kind"]["open"]["house_format"] == 1.0
    for kind in ("open", "constrained"):
        d = s["derived"][kind]
        assert set(d["collapse"]) == set(rows) - {"base"}
        assert "collapse_ratio" in d and "gap_closed" in d
    for f in ("summary.md", "samples.jsonl", "field_entropy.png", "label_histograms.png", "quality_vs_diversity.png"):
        assert (out / f).stat().st_size > 0, f
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 * (1 + 1 + 4 + 4 + 4) + 6 + 6 * 4    # base rows see no prompt; + references
    assert all(s["annotation"] is None for s in samples if s["row"] in ("anchored_off", "base_plain", "sft"))
    assert all(s["annotation"] for s in samples if s["row"] in ("anchored", "base"))
    assert "| anchored |" in (out / "summary.md").read_text()
    # the same seed gives the same numbers (evaluate() directly, one arm)
    s2, _ = ev.evaluate([ev.parse_arm(f"sft={ckpts['sft']}", [1.0])], num_samples=6, max_new_tokens=24,
                        n_boot=5, base_arm="sft", progress=False)
    assert [x for x in s2["rows"] if x["row"] == "sft"][0]["prompts"] == rows["sft"]["prompts"]

def test_eval_diversity_errors(ckpts, tmp_path):
    for args, needle in ((["--ckpts", f"x={ckpts['base_plain']}:anchor=on"], "without annotations"),
                         (["--ckpts", "x=/nonexistent"], "no checkpoint"),
                         (["--ckpts", f"x={ckpts['sft']}:colour=red"], "unknown option"),
                         (["--ckpts", f"x={ckpts['sft']}", f"x={ckpts['sft']}"], "unique")):
        msg = _main("eval_diversity", *args, "--num_samples", "2", "--out", str(tmp_path / "e"))
        assert msg is not None and needle in msg, (args, msg)
