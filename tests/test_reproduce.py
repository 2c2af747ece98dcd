"""reproduce.py: stages are skipped when their command already ran, and the whole recipe runs end to
end on a tiny configuration (tiny data, 1-layer models, a few steps, K = 4), writing every output."""

import json
import sys
from pathlib import Path

import pytest

import reproduce

TINY_LOOP = ["--batch_size", "2", "--device", "cpu", "--eval_interval", "0", "--eval_iters", "1", "--log_interval", "1"]
TINY_MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", *TINY_LOOP]
TINY = dict(
    data_flags=["--n_stories", "1500", "--n_sft", "100", "--n_sft_val", "20"],
    sizes=["tiny"], pretrain_iters={"tiny": 4}, sft_iters=2, num_samples=4, temperatures=[0.6],
    study_narrowness=[0.5, 0.95], study_size="tiny", extra_pretrain=TINY_MODEL, extra_sft=TINY_LOOP,
    extra_eval=["--n_boot", "10", "--max_new_tokens", "24", "--threads", "1"])


def counting_stage(tmp_path, *extra):
    counter = tmp_path / "count.txt"
    cmd = [sys.executable, "-c", f"p = {str(counter)!r}; import os; "
           f"n = int(open(p).read()) if os.path.exists(p) else 0; open(p, 'w').write(str(n + 1))", *extra]
    return reproduce.Stage("count", cmd, tmp_path / "stage"), counter


def test_stage_runs_once_per_command(tmp_path):
    timings = {}
    stage, counter = counting_stage(tmp_path)
    reproduce.run_stage(stage, timings)
    reproduce.run_stage(stage, timings)   # same command: skipped
    assert counter.read_text() == "1"
    (stage.out_dir / "stale.txt").write_text("from the old command")
    changed, _ = counting_stage(tmp_path, "changed")
    reproduce.run_stage(changed, timings)  # another command: runs again, in a clean folder
    assert counter.read_text() == "2"
    assert not (stage.out_dir / "stale.txt").exists()
    assert json.loads((stage.out_dir / ".stage.json").read_text())["cmd"].endswith("changed")


def test_stopped_training_stage_resumes(tmp_path):
    """A training stage whose marker says 'started' and whose folder has a checkpoint continues with
    --resume (the checkpoint holds its config) instead of starting over."""
    script = tmp_path / "pretrain.py"  # stands in for pretrain.py: records how it was called
    script.write_text("import sys, pathlib; pathlib.Path(sys.argv[-1], 'argv.txt').write_text(' '.join(sys.argv[1:]))")
    out = tmp_path / "base"
    stage = reproduce.Stage("pretrain", [sys.executable, str(script), "--max_iters", "9", "--out_dir", str(out)], out)
    out.mkdir()
    (out / "ckpt.pt").write_text("a checkpoint from the stopped run")
    (out / ".stage.json").write_text(json.dumps({"hash": reproduce.stage_hash(stage.cmd), "cmd": "..."}))
    timings = {}
    reproduce.run_stage(stage, timings, threads=1)
    assert (out / "argv.txt").read_text() == f"--resume --out_dir {out}"
    assert (out / "ckpt.pt").exists() and (out / "stage.log").exists()
    assert "seconds" in json.loads((out / ".stage.json").read_text()) and "pretrain" in timings


def test_failed_stage_in_parallel_says_where_its_log_is(tmp_path):
    bad = reproduce.Stage("bad", [sys.executable, "-c", "raise SystemExit('boom')"], tmp_path / "bad")
    good, counter = counting_stage(tmp_path)
    with pytest.raises(SystemExit, match="bad.*stage.log"):
        reproduce.run_stages([bad, good], {}, jobs=2)
    assert "boom" in (tmp_path / "bad" / "stage.log").read_text()
    assert "seconds" not in json.loads((tmp_path / "bad" / ".stage.json").read_text())  # not marked done


def test_recipe_end_to_end(tmp_path):
    run = reproduce.reproduce(TINY, tmp_path / "results", tmp_path / "runs", "python reproduce.py --test", jobs=2)
    res = tmp_path / "results"
    for name in ("results.md", "scaling.png", "controlled_study.png", "run.json",
                 "tiny/summary.json", "tiny/summary.md"):
        assert (res / name).exists(), name
    summary = json.loads((res / "tiny" / "summary.json").read_text())
    rows = {r["row"] for r in summary["rows"]}
    for row in ("base", "base_annotated", "sft", "anchored", "sft_sweep", "anchored_sweep", "anchored_pinned",
                "anchored_no_annotation", "anchored_plain_base", "anchored_unmasked", "anchored_strict",
                "pretrain_data", "sft_data"):  # the temperature sweep: arms of their own since e363ce2
        assert row in rows, row
    results_md = (res / "results.md").read_text()
    assert "| tiny |" in results_md
    assert "| 0.5 |" in results_md and "| 0.95 |" in results_md  # 0.95: the main arms' own evaluation
    assert set(run["stage_seconds"]) >= {"data", "pretrain tiny plain", "eval tiny", "eval study nu=0.5"}
    # a second invocation finds every stage done and only redraws the results
    again = reproduce.reproduce(TINY, tmp_path / "results", tmp_path / "runs", "python reproduce.py --test")
    assert again["wall_seconds_this_invocation"] < run["wall_seconds_this_invocation"]


@pytest.mark.parametrize("preset", list(reproduce.PRESETS))
def test_every_preset_plans_commands_the_scripts_accept(preset, tmp_path):
    """The gpu preset cannot run in CI: at least its every command must parse, with presets that exist."""
    import eval_diversity
    import loop
    import pretrain
    import sft
    cfg = reproduce.PRESETS[preset]
    waves = reproduce.plan(cfg, tmp_path)
    assert [len(w) for w in waves[:2]] == [1, 2 * len(cfg["sizes"])]
    for stage in (s for wave in waves for s in wave):
        script, args = stage.cmd[1], stage.cmd[2:]
        if script == "pretrain.py":
            explicit = vars(loop.build_parser(pretrain.TrainConfig, pretrain.PRESETS, "").parse_args(args))
            pretrain.check_train_config(loop.make_config(pretrain.TrainConfig, pretrain.PRESETS, explicit))
        elif script == "sft.py":
            explicit = vars(loop.build_parser(sft.SFTConfig, sft.SFT_PRESETS, "").parse_args(args))
            size = Path(explicit["init_from"]).parent.name  # runs/<size>/base_*: its SFT defaults exist
            assert size in sft.SFT_PRESETS and explicit["mode"] in sft.MODES
        elif script == "eval_diversity.py":
            specs = args[args.index("--ckpts") + 1:args.index("--num_samples")]
            arms = [eval_diversity.parse_arm(spec, [1.0]) for spec in specs]
            assert "base" in [a["name"] for a in arms]
        else:
            assert script == "data.py"
