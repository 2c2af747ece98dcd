"""reproduce.py: stages are skipped when their command already ran, and the whole recipe runs end to
end on a tiny configuration (tiny data, 1-layer models, a few steps, K = 4), writing every output."""

import json
import sys

import reproduce

TINY_LOOP = ["--batch_size", "2", "--device", "cpu", "--eval_interval", "0", "--eval_iters", "1", "--log_interval", "1"]
TINY_MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", *TINY_LOOP]
TINY = dict(
    data_flags=["--n_stories", "1500", "--n_sft", "100", "--n_sft_val", "20"],
    sizes=["tiny"], pretrain_iters={"tiny": 4}, sft_iters=2, num_samples=4, temperatures=[0.6],
    study_narrowness=[0.5], study_size="tiny", extra_pretrain=TINY_MODEL, extra_sft=TINY_LOOP,
    extra_eval=["--n_boot", "10", "--max_new_tokens", "24", "--threads", "1"])


def test_stage_runs_once_per_command(tmp_path):
    out, timings = tmp_path / "stage", {}
    counter = tmp_path / "count.txt"
    cmd = [sys.executable, "-c", f"p = {str(counter)!r}; import os; "
           f"n = int(open(p).read()) if os.path.exists(p) else 0; open(p, 'w').write(str(n + 1))"]
    reproduce.run_stage("count", cmd, out, timings)
    reproduce.run_stage("count", cmd, out, timings)   # same command: skipped
    assert counter.read_text() == "1"
    reproduce.run_stage("count", cmd + ["changed"], out, timings)  # another command: runs again
    assert counter.read_text() == "2"
    assert json.loads((out / ".stage.json").read_text())["cmd"].endswith("changed")


def test_recipe_end_to_end(tmp_path):
    run = reproduce.reproduce(TINY, tmp_path / "results", tmp_path / "runs", "python reproduce.py --test")
    res = tmp_path / "results"
    for name in ("results.md", "scaling.png", "controlled_study.png", "run.json",
                 "tiny/summary.json", "tiny/summary.md"):
        assert (res / name).exists(), name
    summary = json.loads((res / "tiny" / "summary.json").read_text())
    rows = {r["row"] for r in summary["rows"]}
    for row in ("base", "base_annotated", "sft@T0.6", "sft@T1", "anchored", "anchored_no_annotation",
                "anchored_plain_base", "anchored_unmasked", "anchored_strict", "pretrain_data", "sft_data"):
        assert row in rows, row
    assert "| tiny |" in (res / "results.md").read_text()
    assert set(run["stage_seconds"]) >= {"data", "pretrain tiny plain", "eval tiny", "eval study nu=0.5"}
    # a second invocation finds every stage done and only redraws the results
    again = reproduce.reproduce(TINY, tmp_path / "results", tmp_path / "runs", "python reproduce.py --test")
    assert again["wall_seconds_this_invocation"] < run["wall_seconds_this_invocation"]
