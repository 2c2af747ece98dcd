"""The evaluation row and its one D, and report.py read from the committed results: regenerating
summary.md and results.md from committed summary.json files gives the committed tables."""
import json
import math
from pathlib import Path

import pytest

import metrics
import report
import world
from metrics import EvalRow

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _sample(**labels):
    full = {f: None for f in world.FIELDS}
    full.update(labels)
    return {"labels": full, "annotation": None, "quality": True, "house": True, "words": 10}


def test_row_name_comes_from_its_fields():
    row = lambda **kw: EvalRow(arm="sft", role="sft", format="standard", temperature=0.6, samples={}, **kw)
    assert row().name == "sft"
    assert row(swept=True).name == "sft@T0.6"
    assert row(swept=True, seed_index=2).name == "sft@T0.6#s2"
    assert row(seed_index=0).name == "sft#s0"
    j = row(seed_index=1, ckpt="runs/s1").to_json()
    assert (j["row"], j["arm"], j["fmt"], j["seed_index"], j["ckpt"]) == ("sft#s1", "sft", "standard", 1, "runs/s1")


def test_a_row_D_is_the_statistic_its_intervals_resample():
    prompts = [{"prompt": "Write a story.", "kind": "open", "constraints": {}},
               {"prompt": "A dragon story.", "kind": "constrained", "constraints": {"character": "dragon"}}]
    names = ["Mia", "Leo", "Ava", "Max"]
    base = EvalRow(arm="base", role="base", format="plain", temperature=1.0,
                   samples={None: [_sample(name=n, setting=s) for n in names for s in ("forest", "desert")]})
    sft = EvalRow(arm="sft", role="sft", format="standard", temperature=1.0,
                  samples={0: [_sample(name="Mia")] * 6 + [_sample(name="Leo")] * 2,
                           1: [_sample(character="dragon", name=n) for n in names * 2]})
    rows = {r.name: r.measured(prompts) for r in (base, sft)}
    m = rows["sft"].by_prompt_type
    assert m["open"]["D"] == rows["sft"].prompts[0]["D"]
    assert m["constrained"]["D"] == rows["sft"].prompts[1]["D"]
    assert math.isclose(rows["base"].by_prompt_type["open"]["D"], 3.0 / len(world.FIELDS))  # name 2 bits, setting 1
    d = metrics.derive(rows, prompts, "base", "sft", "anchored", n_boot=5, seed=0)
    for t in ("open", "constrained"):
        assert d[t]["collapse"]["sft"]["value"] == rows["base"].by_prompt_type[t]["D"] - m[t]["D"]
        assert "D" not in d[t]  # stored once, in the rows
    codes = {n: {k: metrics.label_codes(v) for k, v in r.samples.items()} for n, r in rows.items()}
    plans = {n: r.plan(prompts, "open") for n, r in rows.items()}
    stat, groups = metrics._stat_groups(codes, plans, ["base", "sft"], metrics.collapse)
    assert stat(*groups) == d["open"]["collapse"]["sft"]["value"]
    assert json.loads(json.dumps(rows["sft"].to_json()))["by_kind"]["open"]["D"] == m["open"]["D"]


@pytest.mark.parametrize("folder", ["cpu-top/cpu-4l128", "science/eval", "science/anc_lr1e-3_eval", "science/sft_lr",
                                    "science/sft_lr2", "cpu-2026-12-03/cpu-4l128", "cpu-untitled/cpu-4l128", "cpu/cpu-4l128",
                                    "science/anchor_kl", "science/replay_kl", "science/titled", "science/titled/extras",
                                    "science/titled/cpu-4l64", "science/titled/cpu-4l96", "science/quality_tag",
                                    "science/quality_tag/extras",
                                    "science/quality_tag/key_share",
                                    "science/quality_tag/no_pinned_values",
                                    "science/quality_tag/lr6e-4", "cpu-2026-12-07/cpu-4l128",
                                    "science/pinned_copy/eval_lr3e-3", "science/pinned_copy/eval_lr3e-3_extras",
                                    "science/pinned_copy/eval_20k", "science/pinned_copy/eval_baseB",
                                    "science/pinned_copy/eval_lr3e-3_kl", "cpu-lr3e-3/cpu-4l128",
                                    "science/pinned_copy/eval_lr3e-3_kl_cpu-4l64", "science/pinned_copy/eval_lr3e-3_kl_cpu-4l96",
                                    "science/next_size/eval_3seeds", "science/next_size/eval_kl_3seeds",
                                    "science/next_size/eval_kl_lr3e-3", "science/next_size/bases_k300_4l128",
                                    "science/next_size/bases_k300_4l192", "science/next_size/bases_k100_4l128_seed1",
                                    "science/next_size/bases_k100_4l128_seed2", "science/next_size/eval_base1338",
                                    "science/next_size/eval_x2_3seeds", "science/next_size/bases_k300_4l192_x2",
                                    "science/next_size/bases_k300_4l192_x2_seed1", "science/next_size/bases_k300_4l192_x2_seed2"])
def test_summary_md_regenerates_from_a_committed_summary(folder):
    summary = json.loads((RESULTS / folder / "summary.json").read_text())
    assert report.summary_markdown(summary) == (RESULTS / folder / "summary.md").read_text()


@pytest.mark.parametrize("preset", ["cpu-top", "cpu-quick", "cpu-2026-12-02", "cpu-2026-12-03", "cpu-untitled", "cpu",
                                    "cpu-2026-12-07", "cpu-lr3e-3"])
def test_results_md_regenerates_from_committed_summaries(preset):
    """results.md reads every D from the rows (older summaries also hold a second copy under
    "derived"; the tables match the committed ones made from that copy). The study's summaries
    are not committed: its table is left out of the comparison."""
    run = json.loads((RESULTS / preset / "run.json").read_text())
    cfg = run["preset"]
    sizes = [(s, json.loads((RESULTS / preset / s / "summary.json").read_text())) for s in cfg["sizes"]]
    committed = (RESULTS / preset / "results.md").read_text().split("\n### Controlled study")[0]
    assert report.results_markdown(sizes, [], cfg, run["command"]) == committed


def test_every_arm_has_its_own_colour_and_marker():
    styles = list(report.ARM_STYLE.values())
    assert len(set(styles)) == len(styles)
    # one colour per arm, but for the sweeps: the same checkpoint as sft / anchored, another marker
    own = {a: s for a, s in report.ARM_STYLE.items() if not a.endswith("_sweep")}
    assert len({c for c, _ in own.values()}) == len(own)
    assert report.arm_style("sft_sweep")[0] == report.arm_style("sft")[0]
    new = report.arm_style("some_new_arm")
    assert new[0] not in {c for c, _ in styles} and report.arm_style("some_new_arm") == new


def test_sft_curve_reads_rows_named_by_examples_seen(tmp_path):
    """Rows <arm>_n<examples> become one point per length, sorted; other rows are ignored; the
    anchored row's drift is prior_drift_max against the annotated base."""
    def row(name, quality, D, prior=None):
        open_ = dict(quality_and_house=quality, D=D, D_good=D - 0.1, n_good=50, annotation_valid=0.9 if prior else None)
        return {"row": name, "by_kind": {"open": open_, "constrained": {"instruction_following": 0.8}},
                "annotation_prior": prior}
    prior = lambda fav: {"name": {"fav_share": fav, "n": 100}}
    summary = {"rows": [row("base_annotated", 0.7, 3.4, prior(0.10)), row("anchored_n2000", 0.6, 3.0, prior(0.35)),
                        row("sft_n2000", 0.9, 0.8), row("anchored_n500", 0.2, 3.2, prior(0.15)),
                        row("sft_n500", 0.5, 1.5), row("sft#s0", 0.95, 0.7)]}
    points = report.sft_curve_points(summary)
    assert [n for n, _ in points] == [500, 2000]
    assert points[1][1]["sft"]["quality"] == 0.9 and points[1][1]["sft"]["drift"] is None
    assert points[0][1]["anchored"]["drift"] == pytest.approx(0.05) and points[1][1]["anchored"]["drift"] == pytest.approx(0.25)
    md = report.sft_curve_markdown(points)
    assert "| 2,000 | 0.90 / 0.80 / 0.80 | 0.60 / 0.80 / 3.00 | 2.90 (50) / 0.90 / 0.25 |" in md
    report.plot_sft_curve(points, tmp_path / "c.png", "test", base_D=3.3)
    assert (tmp_path / "c.png").stat().st_size > 0


def test_quality_matched_table_only_where_measured():
    stat = lambda v: {"median": v, "per_seed": [v]}
    old = {"over_seeds": {"quality_sft": stat(0.9), "quality_anchored": stat(0.6)}}  # made before the measure
    new = {"over_seeds": {"quality_sft": stat(0.9), "quality_anchored": stat(0.6),
                          "quality_matched_sft": stat(0.4), "quality_matched_anchored": stat(0.75)}}
    assert report.quality_matched_markdown([("cpu-4l64", old)]) == []
    lines = report.quality_matched_markdown([("cpu-4l64", old), ("cpu-4l128", new)])
    rows = [x for x in lines if x.startswith("| cpu-")]
    assert rows == ["| cpu-4l128 | 0.90 / 0.60 | 0.40 / 0.75 |"]
