"""reproduce.py: stages are skipped when their command already ran, and the whole recipe runs end to
end on a tiny configuration (tiny data, 1-layer models, a few steps, K = 4), writing every output."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

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


def test_ctrl_c_marks_no_stage_done(tmp_path, monkeypatch):
    """Ctrl-C while stages run side by side: each running stage saves and exits (often with status
    0), so reproduce.py must not take its return for "done"; and no queued stage starts."""
    import threading
    monkeypatch.setattr(reproduce, "STOPPING", threading.Event())
    slow = reproduce.Stage("slow", [sys.executable, "-c", "import time; time.sleep(1)"], tmp_path / "slow")
    threading.Timer(0.3, reproduce.STOPPING.set).start()  # what run_stages does on KeyboardInterrupt
    reproduce.run_stage(slow, {}, threads=1)
    assert "seconds" not in json.loads((tmp_path / "slow" / ".stage.json").read_text())
    queued, counter = counting_stage(tmp_path)
    reproduce.run_stage(queued, {})
    assert not counter.exists()


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
                "pretrain_data", "sft_data"):
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


def test_device_and_dtype_reach_every_stage(tmp_path):
    """--device and --dtype of reproduce.py land in every training and evaluation command, where the
    scripts' own parsers read them back; "auto" (every script's default) leaves the commands, and so
    the stage hashes of runs started before these flags, as they were."""
    import eval_diversity
    import pretrain
    import sft
    cfg = reproduce.PRESETS["gpu"]
    stages = [s for wave in reproduce.plan(cfg, tmp_path, device="cuda:1", dtype="float16") for s in wave]
    for stage in stages:
        script, args = stage.cmd[1], stage.cmd[2:]
        if script == "pretrain.py":
            got = vars(pretrain.build_parser(pretrain.TrainConfig, pretrain.PRESETS, "").parse_args(args))
        elif script == "sft.py":
            got = vars(sft.build_parser(sft.SFTConfig, sft.SFT_PRESETS, "").parse_args(args))
        elif script == "eval_diversity.py":
            got = vars(eval_diversity.build_parser().parse_args(args))
        else:
            assert script == "data.py"
            continue
        assert (got["device"], got["dtype"]) == ("cuda:1", "float16"), stage.name
    auto = [s.cmd for wave in reproduce.plan(cfg, tmp_path, device="auto", dtype="auto") for s in wave]
    assert auto == [s.cmd for wave in reproduce.plan(cfg, tmp_path) for s in wave]
    assert not any("--device" in cmd for cmd in auto)


def test_plan_estimate_is_work_over_throughput(tmp_path):
    """A pretraining stage's expected time is its tokens / the table's tokens/s (+ start-up); an
    evaluation's is its samples / samples/s (+ start-up)."""
    cfg = reproduce.PRESETS["cpu"]
    cpu = reproduce.THROUGHPUT["cpu"]
    data_wave, pretraining, _, evaluation = reproduce.plan(cfg, tmp_path)
    stage = next(s for s in pretraining if s.name == "pretrain cpu-4l128 ann")
    tokens = 3600 * 4 * 512  # pretrain.PRESETS["cpu-4l128"]: steps x batch x block
    assert reproduce.stage_work(stage) == ("train", "cpu-4l128", tokens)
    assert reproduce.estimate_seconds(stage, cpu) == pytest.approx(tokens / 9200 + cpu["startup_s"])
    cuda = reproduce.THROUGHPUT["cuda"]
    stage = next(s for s in evaluation if s.name == "eval cpu-4l64")
    # base + base_annotated once each; sft, anchored x 3 seeds, 2 sweeps x 2 T, pinned, replay per prompt
    samples = 100 * (2 + 4 * (3 + 3 + 2 + 2 + 1 + 1))
    assert reproduce.stage_work(stage) == ("sample", "cpu-4l64", samples)
    assert reproduce.estimate_seconds(stage, cuda) == pytest.approx(samples / cuda["samples_s"] + cuda["startup_s"])
    assert reproduce.estimate_seconds(data_wave[0], cpu) == pytest.approx(100_000 / cpu["stories_s"] + cpu["startup_s"])


@pytest.mark.parametrize("kind", list(reproduce.THROUGHPUT))
def test_every_stage_gets_an_estimate(kind, tmp_path, capsys):
    throughput = reproduce.THROUGHPUT[kind]
    for name, cfg in reproduce.PRESETS.items():
        waves = reproduce.plan(cfg, tmp_path)
        for stage in (s for wave in waves for s in wave):
            assert 0 < reproduce.estimate_seconds(stage, throughput) < math.inf, (name, stage.name)
        total = reproduce.print_plan(waves, throughput, cfg["jobs"])
        out = capsys.readouterr().out
        assert out.count(" s  ") == sum(len(w) for w in waves) and "expected total" in out
        assert total >= max(reproduce.estimate_seconds(s, throughput) for w in waves for s in w)
    if kind != "cpu":
        assert "not measured" in throughput["source"]  # an assumption is printed as one


def test_gpu_preset_fits_the_lease_by_its_own_estimate(tmp_path):
    """The gpu preset's plan, at the table's (assumed) H100 throughput: at most 26 minutes (it was
    sized for a 25-minute lease at a flat 30% MFU; the MFU falling below width 512 and the 8 ms
    step floor add about 20 s; the lease now is gpu-quick's, see the next test), no stage over 10 (a longer one resumes from its checkpoint, see the next test), K >= 128, and 4
    sizes from about 1M to about 30M parameters."""
    cfg = reproduce.PRESETS["gpu"]
    cuda = reproduce.THROUGHPUT["cuda"]
    waves = reproduce.plan(cfg, tmp_path)
    total = sum(reproduce.wave_seconds([reproduce.stage_seconds(s, cuda) for s in w], cfg["jobs"], True)
                for w in waves)
    assert total <= 26 * 60
    assert all(reproduce.estimate_seconds(s, cuda) <= 10 * 60 for w in waves for s in w)
    assert cfg["num_samples"] >= 128 and len(cfg["sizes"]) == 4
    import model
    import pretrain
    params = []
    for size in cfg["sizes"]:
        c = pretrain.PRESETS[size]
        with torch.device("meta"):
            gpt = model.GPT(model.GPTConfig(vocab_size=2048, **{k: c[k] for k in ("n_layer", "n_head", "n_embd")}))
        params.append(gpt.num_params(non_embedding=False))
    assert 0.8e6 < params[0] < 1.5e6 and 20e6 < params[-1] < 40e6, params


def test_gpu_quick_fits_one_command_by_its_own_estimate(tmp_path):
    """gpu-quick (issue 21): at most 6 minutes of GPU work (the waves after the data) at the table's
    assumed H100 throughput; 3 sizes, each at >= 20 tokens per parameter, both bases per size, 3
    SFT seeds of both paper arms at the top rung, the ablations there, K >= 100, and data the top
    rung sees at most 2 times (~190 annotated tokens a story)."""
    import model
    import pretrain
    cfg = reproduce.PRESETS["gpu-quick"]
    cuda = reproduce.THROUGHPUT["cuda"]
    waves = reproduce.plan(cfg, tmp_path)
    gpu = sum(reproduce.wave_seconds([reproduce.stage_seconds(s, cuda) for s in w], cfg["jobs"], True)
              for w in waves[1:])
    assert gpu <= 6 * 60, gpu
    assert len(cfg["sizes"]) >= 3 and cfg["num_samples"] >= 100
    for size in cfg["sizes"]:
        c = pretrain.PRESETS[size]
        with torch.device("meta"):
            n = model.GPT(model.GPTConfig(vocab_size=2048, **{k: c[k] for k in ("n_layer", "n_head", "n_embd")}))
        assert c["max_iters"] * c["batch_size"] * c["block_size"] >= 20 * n.num_params(non_embedding=False), size
    names = {s.name for w in waves for s in w}
    top = cfg["sizes"][-1]
    assert {f"pretrain {size} {tag}" for size in cfg["sizes"] for tag in ("plain", "ann")} <= names
    assert {f"sft {top} {arm} seed {seed}" for arm in ("standard", "anchored") for seed in (0, 1, 2)} <= names
    assert {f"sft {top} anchored on plain base", f"sft {top} anchored_unmasked"} <= names
    assert f"sft {cfg['sizes'][0]} standard seed 1" not in names  # one seed below the top rung
    c = pretrain.PRESETS[top]
    stories = int(cfg["data_flags"][cfg["data_flags"].index("--n_stories") + 1])
    assert c["max_iters"] * c["batch_size"] * c["block_size"] <= 2 * 190 * stories


def test_gpu_estimate_scales_mfu_with_width_and_floors_a_step(tmp_path):
    """On the GPU table: the assumed MFU is 30% from width 512 up and in proportion below it, and a
    training stage takes at least its steps x step_s (a small model is bound by launches, not FLOPs)."""
    cuda = reproduce.THROUGHPUT["cuda"]
    peak = cuda["train_flops"]
    assert reproduce.tokens_per_s("gpu-8l512", cuda) == pytest.approx(peak / reproduce.model_flops("gpu-8l512"))
    assert reproduce.tokens_per_s("gpu-6l256", cuda) == pytest.approx(peak / 2 / reproduce.model_flops("gpu-6l256"))
    pretraining = reproduce.plan(reproduce.PRESETS["gpu"], tmp_path)[1]
    small = next(s for s in pretraining if s.name == "pretrain gpu-4l128 ann")
    big = next(s for s in pretraining if s.name == "pretrain gpu-8l512 ann")
    assert reproduce.stage_seconds(small, cuda)[0] == pytest.approx(1400 * cuda["step_s"])  # the floor
    tokens = 16400 * 64 * 512
    assert reproduce.stage_seconds(big, cuda)[0] == pytest.approx(tokens / reproduce.tokens_per_s("gpu-8l512", cuda))


def test_wave_seconds_on_a_shared_gpu():
    # two workers: the start-ups overlap; on one GPU the work does not
    assert reproduce.wave_seconds([(10, 1), (10, 1)], jobs=2, shared=False) == 11
    assert reproduce.wave_seconds([(10, 1), (10, 1)], jobs=2, shared=True) == 21
    assert reproduce.wave_seconds([(1, 10), (1, 10)], jobs=2, shared=True) == 12  # 10 s together, then 1 + 1


def test_measure_times_real_steps(one_thread):
    assert reproduce.measure_tokens_per_s("tiny", "cpu", "float32", steps=3) > 0


def test_main_plan_prints_times(capsys):
    reproduce.main(["--preset", "gpu", "--plan", "--device", "cuda"])  # no GPU needed for a plan
    out = capsys.readouterr().out
    assert "estimated, not measured" in out and "expected total" in out
    with pytest.raises(SystemExit):
        reproduce.main(["--preset", "gpu", "--plan", "--device", "tpu"])


def test_stage_cut_by_timeout_resumes_from_its_checkpoint(tiny_data_dir, tmp_path):
    """`timeout 10m python reproduce.py ...` sends SIGTERM to reproduce.py and its running stage: the
    stage saves a checkpoint and stops, reproduce.py dies with the stage unfinished; the next
    invocation continues that stage from its checkpoint (--resume), not from step 0."""
    import os
    import signal
    import subprocess
    import time
    out = tmp_path / "base"
    cmd = [sys.executable, "pretrain.py", "--data_dir", str(tiny_data_dir), "--out_dir", str(out), "--max_iters",
           "100", *TINY_MODEL[:6], "--batch_size", "2", "--device", "cpu", "--eval_interval", "10",
           "--eval_iters", "1", "--log_interval", "1"]
    runner = (f"import reproduce; reproduce.run_stage(reproduce.Stage('pretrain', {cmd!r}, "
              f"reproduce.Path({str(out)!r})), {{}}, threads=1)")
    proc = subprocess.Popen([sys.executable, "-c", runner], start_new_session=True)  # its own process group
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # what timeout(1) does at its limit: the whole group
    proc.wait()
    while time.time() < deadline:  # wait for the stage (reproduce's child) to save and exit
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break
    marker = json.loads((out / ".stage.json").read_text())
    assert "seconds" not in marker  # not marked done
    stopped_at = torch.load(out / "ckpt.pt", weights_only=False)["step"]
    assert 0 < stopped_at < 100
    (out / "sentinel").write_text("a restarted stage would start in a clean folder")
    reproduce.run_stage(reproduce.Stage("pretrain", cmd, out), {}, threads=1)
    assert (out / "sentinel").exists()  # continued in place, with --resume
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 100 and len(steps) == len(set(steps))  # no step redone
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == 100
    assert "seconds" in json.loads((out / ".stage.json").read_text())
