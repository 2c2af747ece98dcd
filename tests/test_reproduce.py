"""reproduce.py and jobs.py: jobs are skipped when their command already ran and resumed when
stopped; the whole recipe runs end to end on its `test` preset (tiny data, 1-layer models, a few
steps, K = 4), writing every output, and a run killed with SIGKILL in the middle of any kind of
job reruns to the same outputs. bench/plan.py: every job gets an expected time."""

import gzip
import hashlib
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import reproduce
import jobs

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("plan", REPO / "bench" / "plan.py")
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)

TINY_MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32"]


def estimate(job, throughput):
    """Expected seconds of one job, start-up included."""
    return sum(plan.job_seconds(job, throughput))


def counting_job(tmp_path, *extra):
    counter = tmp_path / "count.txt"
    cmd = [sys.executable, "-c", f"p = {str(counter)!r}; import os; "
           f"n = int(open(p).read()) if os.path.exists(p) else 0; open(p, 'w').write(str(n + 1))", *extra]
    return jobs.Job("count", cmd, tmp_path / "job"), counter


def test_job_runs_once_per_command(tmp_path):
    timings = {}
    job, counter = counting_job(tmp_path)
    jobs.run_job(job, timings)
    jobs.run_job(job, timings)   # same command: skipped
    assert counter.read_text() == "1"
    (job.out_dir / "stale.txt").write_text("from the old command")
    changed, _ = counting_job(tmp_path, "changed")
    jobs.run_job(changed, timings)  # another command: runs again, in a clean folder
    assert counter.read_text() == "2"
    assert not (job.out_dir / "stale.txt").exists()
    assert json.loads((job.out_dir / ".job.json").read_text())["cmd"].endswith("changed")


def test_a_job_runs_again_when_a_folder_it_reads_holds_another_commands_output(tmp_path):
    """An evaluation of checkpoints retrained under another command is not done: it runs again, in
    a clean folder. The same command run again (data.py reusing its build) changes nothing."""
    upstream, up_counter = counting_job(tmp_path / "a")
    (tmp_path / "a").mkdir()
    job, counter = counting_job(tmp_path / "b")
    job = job._replace(reads=(upstream.out_dir,))
    timings = {}
    jobs.run_job(upstream, timings)
    jobs.run_job(job, timings)
    (upstream.out_dir / ".job.json").unlink()
    jobs.run_job(upstream, timings)  # rerun by the same command
    jobs.run_job(job, timings)  # what it reads is the same command's output: skipped
    assert up_counter.read_text() == "2" and counter.read_text() == "1" and timings["count"].get("skipped")
    (job.out_dir / "old_output.txt").write_text("from the old checkpoints")
    changed = upstream._replace(cmd=[*upstream.cmd, "changed"])
    jobs.run_job(changed, timings)  # the upstream job runs again under another command
    assert jobs.changed_inputs(job, jobs.read_marker(job.out_dir)) == [str(upstream.out_dir)]
    jobs.run_job(job, timings)
    assert counter.read_text() == "2" and not (job.out_dir / "old_output.txt").exists()
    jobs.run_job(job, timings)  # and then it is done again
    assert counter.read_text() == "2"
    # a marker from before the record (no "reads") counts as current
    old = {k: v for k, v in jobs.read_marker(job.out_dir).items() if k != "reads"}
    (job.out_dir / ".job.json").write_text(json.dumps(old))
    jobs.run_job(upstream, timings)
    jobs.run_job(job, timings)
    assert counter.read_text() == "2"


def test_reproduce_jobs_read_the_folders_of_the_jobs_before_them():
    data, bases, post, evals = reproduce.recipe(reproduce.PRESETS["cpu"], "runs/x")
    made = {j.out_dir for wave in (data, bases, post) for j in wave}
    for wave, before in ((bases, data), (post, bases), (evals, bases + post)):
        for job in wave:
            assert job.reads and set(job.reads) <= {j.out_dir for j in before}, job.name
    sft0 = next(j for j in post if j.name == "sft cpu-4l128 anchored seed 0")
    ev = next(j for j in evals if j.name == "eval cpu-4l128")
    assert sft0.out_dir in ev.reads and set(ev.reads) <= made  # the sweep's :options stripped


def test_a_job_done_under_the_old_marker_name_stays_done(tmp_path):
    """A runs/ folder from an older reproduce.py marks its jobs with .stage.json: one that records
    this command as done is skipped; a job that runs there writes .job.json only."""
    job, counter = counting_job(tmp_path)
    job.out_dir.mkdir()
    done = {"hash": jobs.job_hash(job.cmd), "cmd": "...", "seconds": 3.0}
    (job.out_dir / ".stage.json").write_text(json.dumps(done))
    timings = {}
    jobs.run_job(job, timings)
    assert not counter.exists() and timings == {"count": {"seconds": 3.0, "skipped": True}}
    changed, _ = counting_job(tmp_path, "changed")  # another command: runs in a clean folder
    jobs.run_job(changed, timings)
    assert counter.read_text() == "1" and [f.name for f in job.out_dir.glob(".*.json")] == [".job.json"]


def test_stopped_training_job_resumes(tmp_path):
    """A training job whose marker says 'started' and whose folder has a checkpoint continues with
    --resume (the checkpoint holds its config) instead of starting over."""
    script = tmp_path / "pretrain.py"  # stands in for pretrain.py: records how it was called
    script.write_text("import sys, pathlib; pathlib.Path(sys.argv[-1], 'argv.txt').write_text(' '.join(sys.argv[1:]))")
    out = tmp_path / "base"
    job = jobs.Job("pretrain", [sys.executable, str(script), "--max_iters", "9", "--out_dir", str(out)], out)
    out.mkdir()
    (out / "ckpt.pt").write_text("a checkpoint from the stopped run")
    (out / ".job.json").write_text(json.dumps({"hash": jobs.job_hash(job.cmd), "cmd": "..."}))
    timings = {}
    jobs.run_job(job, timings, threads=1)
    assert (out / "argv.txt").read_text() == f"--resume --out_dir {out}"
    assert (out / "ckpt.pt").exists() and (out / "job.log").exists()
    assert "seconds" in json.loads((out / ".job.json").read_text()) and "pretrain" in timings


def test_failed_job_in_parallel_says_where_its_log_is(tmp_path):
    bad = jobs.Job("bad", [sys.executable, "-c", "raise SystemExit('boom')"], tmp_path / "bad")
    good, counter = counting_job(tmp_path)
    with pytest.raises(SystemExit, match="bad.*job.log"):
        jobs.run_jobs([bad, good], {}, jobs=2)
    assert "boom" in (tmp_path / "bad" / "job.log").read_text()
    assert "seconds" not in json.loads((tmp_path / "bad" / ".job.json").read_text())  # not marked done


def test_ctrl_c_marks_no_job_done(tmp_path, monkeypatch):
    """Ctrl-C while jobs run side by side: each running job saves and exits (often with status
    0), so reproduce.py must not take its return for "done"; and no queued job starts."""
    import threading
    monkeypatch.setattr(jobs, "STOPPING", threading.Event())
    slow = jobs.Job("slow", [sys.executable, "-c", "import time; time.sleep(1)"], tmp_path / "slow")
    threading.Timer(0.3, jobs.STOPPING.set).start()  # what run_jobs does on KeyboardInterrupt
    jobs.run_job(slow, {}, threads=1)
    assert "seconds" not in json.loads((tmp_path / "slow" / ".job.json").read_text())
    queued, counter = counting_job(tmp_path)
    jobs.run_job(queued, {})
    assert not counter.exists()


@pytest.mark.parametrize("at_once", [1, 2])
def test_ctrl_c_in_a_wave_marks_no_job_done(at_once, tmp_path):
    """A real Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while run_jobs runs a
    wave, one or two at a time: the running jobs stop, none is marked done, the queued one never starts."""
    # like pretrain.py, a sleeper that saves (0.5 s) and exits 0 on Ctrl-C: not to be taken for "done"
    def sleeper(d):
        return [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: "
                f"(time.sleep(0.5), sys.exit(0))); open({str(d / 'ready')!r}, 'w'); time.sleep(60)"]
    wave = [(d.name, sleeper(d), str(d)) for d in [tmp_path / f"s{i}" for i in range(at_once)] + [tmp_path / "queued"]]
    # Python leaves SIGINT ignored where it starts ignored (a command put in the background by a
    # shell without job control): give the runner the handler a terminal's foreground process has
    runner = (f"import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
              f"import jobs; jobs.run_jobs([jobs.Job(n, c, jobs.Path(d)) for n, c, d in {wave!r}], "
              f"{{}}, {at_once})")
    proc = subprocess.Popen([sys.executable, "-c", runner], cwd=REPO, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not all((tmp_path / f"s{i}" / "ready").exists() for i in range(at_once)) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) != 0  # KeyboardInterrupt, after the running jobs returned
    for i in range(at_once):
        assert "seconds" not in json.loads((tmp_path / f"s{i}" / ".job.json").read_text())
    assert not (tmp_path / "queued").exists()


# -----------------------------------------------------------------------------
# The recipe end to end (the `test` preset), uninterrupted and killed with SIGKILL mid-job

def start_recipe(root, *extra):
    """`python reproduce.py --preset test` with its folders under root, in its own process group
    (so a kill reaches the running job too, as when a machine goes down)."""
    cmd = [sys.executable, "reproduce.py", "--preset", "test", "--out", str(root / "results"),
           "--runs", str(root / "runs"), *extra]
    return subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc, timeout=600):
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"reproduce.py did not finish in {timeout} s")
    assert proc.returncode == 0, err.decode()[-2000:]


def kill_when(proc, ready, what, timeout=300):
    """SIGKILL the recipe and its running jobs as soon as ready() holds."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the recipe ended before {what}: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def unfinished(out_dir):
    """A job started with its command recorded but not marked done (killed half way)."""
    marker = Path(out_dir) / ".job.json"
    return marker.exists() and "seconds" not in json.loads(marker.read_text())


def final_outputs(root):
    """What a rerun must reproduce exactly: results.md, headline.json and every summary.json (but for
    their seconds), the samples, and the weights of every checkpoint."""
    res = root / "results"
    out = {"results.md": (res / "results.md").read_text()}
    head = json.loads((res / "headline.json").read_text())
    out["headline.json"] = {k: v for k, v in head.items() if k != "wall_seconds"}
    for f in sorted(res.glob("*/summary.json")) + sorted((root / "runs").glob("tiny/study/eval_*/summary.json")):
        out[str(f.relative_to(root))] = {k: v for k, v in json.loads(f.read_text()).items() if k != "speed"}
    for f in sorted(res.glob("*/samples.jsonl.gz")):
        out[str(f.relative_to(root))] = gzip.decompress(f.read_bytes())
    for f in sorted((root / "runs").rglob("ckpt.pt")):
        model = torch.load(f, weights_only=True)["model"]
        out[str(f.relative_to(root))] = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.values())).hexdigest()
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted `--preset test` run: (its folder, its final outputs, its run.json)."""
    root = tmp_path_factory.mktemp("recipe")
    finish(start_recipe(root))
    return root, final_outputs(root), json.loads((root / "results" / "run.json").read_text())


def test_recipe_end_to_end(uninterrupted):
    root, _, run = uninterrupted
    res = root / "results"
    for name in ("results.md", "scaling.png", "controlled_study.png", "run.json", "headline.json",
                 "tiny/summary.json", "tiny/summary.md", "tiny/samples.jsonl.gz"):
        assert (res / name).exists(), name
    summary = json.loads((res / "tiny" / "summary.json").read_text())
    rows = {r["row"] for r in summary["rows"]}
    for row in ("base", "base_annotated", "sft", "anchored", "anchored_kl", "sft_sweep", "anchored_sweep", "anchored_pinned",
                "anchored_no_annotation", "anchored_plain_base", "anchored_unmasked", "anchored_strict",
                "pretrain_data", "sft_data"):
        assert row in rows, row
    results_md = (res / "results.md").read_text()
    assert "| tiny |" in results_md
    assert "| 0.5 |" in results_md and "| 0.95 |" in results_md  # 0.95: the main arms' own evaluation
    assert set(run["job_seconds"]) >= {"data", "pretrain tiny plain", "eval tiny", "eval study nu=0.5"}
    assert run["jobs_run_now"] == list(run["job_seconds"])  # a first run runs every job
    assert not list(root.rglob("*.tmp"))  # every atomic write completed


def test_recipe_killed_mid_job_reruns_to_the_same_outputs(uninterrupted):
    """SIGKILL (the recipe and its running job at once, as when a machine goes down) in the middle
    of a pretraining job, then of an SFT job, then of an evaluation, each time rerunning the same
    command: the last rerun ends with exactly the uninterrupted run's checkpoints, summaries, samples
    and tables. A killed training job resumes from its checkpoint; a killed evaluation starts over.
    One job of each kind is redone (its folder removed), the others are done already; the data
    job: the next test."""
    root, reference, _ = uninterrupted  # the same folder: summaries record their checkpoints' paths
    runs = root / "runs" / "tiny"
    base, post, evaluation = runs / "base_plain", runs / "sft_strict", runs / "study" / "eval_nu0.5"
    for d in (base, post, evaluation, root / "results"):
        shutil.rmtree(d)
    kill_when(start_recipe(root), lambda: unfinished(base) and (base / "ckpt.pt").exists(), "pretraining checkpoint")
    assert unfinished(base)
    kill_when(start_recipe(root), lambda: unfinished(post) and (post / "ckpt.pt").exists(), "SFT checkpoint")
    assert not unfinished(base) and unfinished(post)
    marker = evaluation / ".job.json"  # written as the evaluation starts; it runs for seconds
    kill_when(start_recipe(root), lambda: unfinished(evaluation) and time.time() - marker.stat().st_mtime > 1.5,
              "evaluation under way")
    assert not unfinished(post) and unfinished(evaluation)
    finish(start_recipe(root))
    run = json.loads((root / "results" / "run.json").read_text())
    assert run["jobs_run_now"] == ["eval study nu=0.5"]  # the others were done, or resumed and done
    got = final_outputs(root)
    assert got.keys() == reference.keys()
    for name in reference:
        assert got[name] == reference[name], name


def test_recipe_killed_in_the_data_job_rebuilds_the_same_data(uninterrupted):
    """SIGKILL while data.py builds the dataset (holding its lock, data/.lock), then the same command
    again: the lock died with its holder, so the data job is rebuilt at once to the same
    files as the uninterrupted run's (the other jobs are done already)."""
    root, reference, _ = uninterrupted
    data = root / "runs" / "data"
    # the data's files; not meta.json (its build time), .job.json, job.log (the killed run's log
    # goes on in it) or .lock (it names its last holder)
    skip = ("meta.json", ".job.json", "job.log", ".lock")
    before = {f.name: f.read_bytes() for f in data.iterdir() if f.name not in skip}
    shutil.rmtree(data)
    kill_when(start_recipe(root), lambda: unfinished(data) and (data / ".lock").exists(), "data build under way")
    assert unfinished(data) and not (data / "meta.json").exists()
    finish(start_recipe(root), timeout=90)
    after = {f.name: f.read_bytes() for f in data.iterdir() if f.name not in skip}
    assert after == before and not unfinished(data)
    assert final_outputs(root) == reference


@pytest.mark.parametrize("preset", list(reproduce.PRESETS))
def test_every_preset_plans_commands_the_scripts_accept(preset, tmp_path):
    """The gpu preset cannot run in CI: at least its every command must parse, with presets that exist."""
    import eval_diversity
    import loop
    import pretrain
    import sft
    cfg = reproduce.PRESETS[preset]
    waves = reproduce.recipe(cfg, tmp_path)
    assert [len(w) for w in waves[:2]] == [1, 2 * len(cfg["sizes"])]
    for job in (s for wave in waves for s in wave):
        script, args = job.cmd[1], job.cmd[2:]
        if script == "pretrain.py":
            explicit = vars(loop.build_parser(pretrain.TrainConfig, pretrain.PRESETS, "").parse_args(args))
            pretrain.check_train_config(loop.make_config(pretrain.TrainConfig, pretrain.PRESETS, explicit))
        elif script == "sft.py":
            explicit = vars(loop.build_parser(sft.SFTConfig, {}, "").parse_args(args))
            size = Path(explicit["init_from"]).parent.name  # runs/<size>/base_*: a pretraining preset
            assert size in pretrain.PRESETS and explicit["format"] in sft.SFT_FORMATS
        elif script == "eval_diversity.py":
            specs = args[args.index("--ckpts") + 1:args.index("--num_samples")]
            arms = [eval_diversity.parse_arm(spec, [1.0]) for spec in specs]
            assert "base" in [a["name"] for a in arms]
        else:
            assert script == "data.py"


def test_the_cpu_ladder_puts_seeds_and_extras_at_its_top_size_only(tmp_path):
    """Every size gets the trend's four arms; the seeds, extras and the one named ablation only the
    largest; a typo in a preset's size list or ablation names is an error, not a missing arm."""
    cfg = reproduce.PRESETS["cpu"]
    post = {j.name for j in reproduce.recipe(cfg, tmp_path)[2]}
    assert {"sft cpu-4l64 standard seed 0", "sft cpu-4l64 anchored seed 0", "sft cpu-4l96 anchored seed 0"} <= post
    assert not any(n.startswith(("sft cpu-4l64", "sft cpu-4l96")) and ("seed 1" in n or "replay" in n) for n in post)
    assert {"sft cpu-4l128 anchored seed 2", "sft cpu-4l128 anchored_replay", "sft cpu-4l128 anchored_kl",
            "sft cpu-4l128 anchored on plain base"} <= post
    kl = next(j for j in reproduce.recipe(cfg, tmp_path)[2] if j.name == "sft cpu-4l128 anchored_kl")
    assert kl.cmd[kl.cmd.index("--anchor_kl") + 1] == "1" and "base_ann" in str(kl.cmd)
    assert not any("unmasked" in n or "strict" in n or "pretrain_mix" in n for n in post)
    assert any(n.startswith("study cpu-4l64") for n in post)
    mixed = [j for j in reproduce.recipe({**cfg, "pretrain_mix": True}, tmp_path)[2] if "pretrain_mix" in j.name]
    assert [j.name for j in mixed] == ["sft cpu-4l128 anchored_pretrain_mix"]
    assert "--pretrain_mix" in mixed[0].cmd and "base_ann" in str(mixed[0].cmd)
    for typo in (dict(full_sizes=["cpu-4l129"]), dict(ablations=["plain-base"]), dict(ablation_sizes=["cpu-m"])):
        with pytest.raises(ValueError, match="preset"):
            reproduce.recipe({**cfg, **typo}, tmp_path)


def test_the_cpu_ladder_sweeps_plainly_beside_its_declared_story_sampling(tmp_path):
    """Every evaluation of the cpu preset samples stories at its declared setting (top-p 0.9, no
    8-token run twice); the temperature sweep alone samples plainly, the T = 1 numbers beside."""
    import eval_diversity
    evals = {j.name: j.cmd for j in reproduce.recipe(reproduce.PRESETS["cpu"], tmp_path)[3]}
    assert evals and all(c[c.index("--no_repeat_ngram") + 1] == "8" and c[c.index("--top_p") + 1] == "0.9"
                         for c in evals.values())
    top = evals["eval cpu-4l128"]
    specs = top[top.index("--ckpts") + 1:top.index("--num_samples")]
    arms = {a["name"]: a for a in (eval_diversity.parse_arm(s, [1.0], 0.9, 8) for s in specs)}
    assert (arms["sft_sweep"]["top_p"], arms["sft_sweep"]["no_repeat_ngram"]) == (1.0, None)
    assert (arms["anchored"]["top_p"], arms["anchored"]["no_repeat_ngram"]) == (0.9, 8)


def test_device_and_dtype_reach_every_job(tmp_path):
    """--device and --dtype of reproduce.py land in every training and evaluation command, where the
    scripts' own parsers read them back; "auto" (every script's default) adds nothing to the commands,
    so a job's hash is the same with --device auto as without the flag."""
    import eval_diversity
    import pretrain
    import sft
    cfg = reproduce.PRESETS["gpu"]
    all_jobs = [s for wave in reproduce.recipe(cfg, tmp_path, device="cuda:1", dtype="float16") for s in wave]
    for job in all_jobs:
        script, args = job.cmd[1], job.cmd[2:]
        if script == "pretrain.py":
            got = vars(pretrain.build_parser(pretrain.TrainConfig, pretrain.PRESETS, "").parse_args(args))
        elif script == "sft.py":
            got = vars(sft.build_parser(sft.SFTConfig, {}, "").parse_args(args))
        elif script == "eval_diversity.py":
            got = vars(eval_diversity.build_parser().parse_args(args))
        else:
            assert script == "data.py"
            continue
        assert (got["device"], got["dtype"]) == ("cuda:1", "float16"), job.name
    auto = [s.cmd for wave in reproduce.recipe(cfg, tmp_path, device="auto", dtype="auto") for s in wave]
    assert auto == [s.cmd for wave in reproduce.recipe(cfg, tmp_path) for s in wave]
    assert not any("--device" in cmd for cmd in auto)


def test_plan_estimate_is_work_over_throughput(tmp_path, monkeypatch):
    """A pretraining job's expected time is its tokens / the table's tokens/s (+ start-up); an
    evaluation's is its samples / samples/s (+ start-up)."""
    monkeypatch.setenv("CXX", sys.executable)  # a compiler as far as compile_pays can tell, on any machine
    cfg = reproduce.PRESETS["cpu"]
    cpu = plan.THROUGHPUT["cpu"]
    data_wave, pretraining, _, evaluation = reproduce.recipe(cfg, tmp_path)
    job = next(s for s in pretraining if s.name == "pretrain cpu-4l128 ann")
    tokens = 5400 * 8 * 512  # pretrain.PRESETS["cpu-4l128"]: steps x batch x block
    assert plan.job_work(job) == ("train", "cpu-4l128", tokens)
    # 5,400 steps of 8 rows: past device.compile_pays' break-even, so the start-up includes the compile
    assert plan.compiles(job, "cpu")
    assert estimate(job, cpu) == pytest.approx(tokens / cpu["train_ref"][1] + cpu["startup_s"] + cpu["compile_s"])
    short = next(s for s in reproduce.recipe(reproduce.PRESETS["test"], tmp_path)[2] if "sft.py" in s.cmd[1])
    assert not plan.compiles(short, "cpu")  # 20 steps of 2 rows: eager
    cuda = plan.THROUGHPUT["cuda"]
    job = next(s for s in evaluation if s.name == "eval cpu-4l128")
    # the full size: base + base_annotated once each; per prompt type, sft and anchored x 3 seeds,
    # 2 sweeps x 4 T, pinned, replay, anchor KL, no annotation, plain base
    samples = 100 * (2 + 4 * (3 + 3 + 2 * 4 + 1 + 1 + 1 + 1 + 1))
    assert plan.job_work(job) == ("sample", "cpu-4l128", samples)
    assert estimate(job, cuda) == pytest.approx(samples / cuda["samples_s"] + cuda["startup_s"])
    # a smaller size: the two bases and the two paper arms once (the trend needs no more)
    job = next(s for s in evaluation if s.name == "eval cpu-4l64")
    assert plan.job_work(job) == ("sample", "cpu-4l64", 100 * (2 + 4 * 2))
    assert estimate(data_wave[0], cpu) == pytest.approx(100_000 / cpu["stories_s"] + cpu["startup_s"])


@pytest.mark.parametrize("device_type", list(plan.THROUGHPUT))
def test_every_job_gets_an_estimate(device_type, tmp_path, capsys):
    throughput = plan.THROUGHPUT[device_type]
    for name, cfg in reproduce.PRESETS.items():
        waves = reproduce.recipe(cfg, tmp_path)
        for job in (s for wave in waves for s in wave):
            assert 0 < estimate(job, throughput) < math.inf, (name, job.name)
        total = plan.print_plan(waves, throughput, cfg["jobs"])
        out = capsys.readouterr().out
        assert out.count(" s  ") == sum(len(w) for w in waves) and "expected total" in out
        assert total >= max(estimate(s, throughput) for w in waves for s in w)
    if device_type != "cpu":
        assert "not measured" in throughput["source"]  # an assumption is printed as one


def test_gpu_preset_fits_the_lease_by_its_own_estimate(tmp_path):
    """The gpu preset's plan, at the table's (assumed) H100 throughput: at most 26 minutes, no job
    over 10 (a longer one resumes from its checkpoint), K >= 128, and 4 sizes from about 1M to
    about 30M parameters."""
    cfg = reproduce.PRESETS["gpu"]
    cuda = plan.THROUGHPUT["cuda"]
    waves = reproduce.recipe(cfg, tmp_path)
    total = sum(plan.wave_seconds([plan.job_seconds(s, cuda) for s in w], cfg["jobs"], True)
                for w in waves)
    assert total <= 26 * 60, total
    assert all(estimate(s, cuda) <= 10 * 60 for w in waves for s in w)
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
    """gpu-quick: at most 6 minutes of GPU work (the waves after the data) at the table's
    assumed H100 throughput; 3 sizes, each at >= 20 tokens per parameter, both bases per size, 3
    SFT seeds of both paper arms at the top rung, the ablations there, K >= 100, and data the top
    rung sees at most 2 times (~190 annotated tokens a story)."""
    import model
    import pretrain
    cfg = reproduce.PRESETS["gpu-quick"]
    cuda = plan.THROUGHPUT["cuda"]
    waves = reproduce.recipe(cfg, tmp_path)
    gpu = sum(plan.wave_seconds([plan.job_seconds(s, cuda) for s in w], cfg["jobs"], True)
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
    training job takes at least its steps x step_s (a small model is bound by launches, not FLOPs)."""
    cuda = plan.THROUGHPUT["cuda"]
    peak = cuda["train_flops"]
    assert plan.tokens_per_s("gpu-8l512", cuda) == pytest.approx(peak / plan.model_flops("gpu-8l512"))
    assert plan.tokens_per_s("gpu-6l256", cuda) == pytest.approx(peak / 2 / plan.model_flops("gpu-6l256"))
    pretraining = reproduce.recipe(reproduce.PRESETS["gpu"], tmp_path)[1]
    small = next(s for s in pretraining if s.name == "pretrain gpu-4l128 ann")
    big = next(s for s in pretraining if s.name == "pretrain gpu-8l512 ann")
    assert plan.job_seconds(small, cuda)[0] == pytest.approx(1400 * cuda["step_s"])  # the floor
    tokens = 16400 * 64 * 512
    assert plan.job_seconds(big, cuda)[0] == pytest.approx(tokens / plan.tokens_per_s("gpu-8l512", cuda))


def test_wave_seconds_on_a_shared_gpu():
    # two workers: the start-ups overlap; on one GPU the work does not
    assert plan.wave_seconds([(10, 1), (10, 1)], jobs=2, shared=False) == 11
    assert plan.wave_seconds([(10, 1), (10, 1)], jobs=2, shared=True) == 21
    assert plan.wave_seconds([(1, 10), (1, 10)], jobs=2, shared=True) == 12  # 10 s together, then 1 + 1


def test_measure_times_real_steps(one_thread):
    assert plan.measure_tokens_per_s("tiny", "cpu", "float32", steps=3) > 0


def test_main_plan_prints_times(capsys):
    plan.main(["--preset", "gpu", "--device", "cuda"])  # no GPU needed for a plan
    out = capsys.readouterr().out
    assert "estimated, not measured" in out and "expected total" in out
    with pytest.raises(SystemExit):
        plan.main(["--preset", "gpu", "--device", "tpu"])


def test_reproduce_plan_prints_every_command_in_order(capsys, tmp_path):
    reproduce.main(["--preset", "cpu", "--plan", "--runs", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    waves = reproduce.recipe(reproduce.PRESETS["cpu"], tmp_path)
    commands = [line for line in lines if not line.startswith("#")]
    assert commands == [" ".join(["python", *job.cmd[1:]]) for wave in waves for job in wave]
    assert [line for line in lines if line.startswith("# wave")] == [
        f"# wave {i}: {len(w)} job(s), 2 at a time" for i, w in enumerate(waves)]
    assert not tmp_path.joinpath("data").exists()  # a plan runs nothing


def test_job_cut_by_timeout_resumes_from_its_checkpoint(tiny_data_dir, tmp_path):
    """`timeout 10m python reproduce.py ...` sends SIGTERM to reproduce.py and its running job: the
    job saves a checkpoint and stops, reproduce.py dies with the job unfinished; the next
    invocation continues that job from its checkpoint (--resume), not from step 0."""
    out = tmp_path / "base"
    cmd = [sys.executable, "pretrain.py", "--data_dir", str(tiny_data_dir), "--out_dir", str(out), "--max_iters",
           "100", *TINY_MODEL, "--batch_size", "2", "--device", "cpu", "--eval_interval", "10",
           "--eval_iters", "1", "--log_interval", "1"]
    runner = (f"import jobs; jobs.run_job(jobs.Job('pretrain', {cmd!r}, "
              f"jobs.Path({str(out)!r})), {{}}, threads=1)")
    proc = subprocess.Popen([sys.executable, "-c", runner], start_new_session=True)  # its own process group
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # what timeout(1) does at its limit: the whole group
    proc.wait()
    while time.time() < deadline:  # wait for the job (reproduce's child) to save and exit
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break
    marker = json.loads((out / ".job.json").read_text())
    assert "seconds" not in marker  # not marked done
    stopped_at = torch.load(out / "ckpt.pt", weights_only=False)["step"]
    assert 0 < stopped_at < 100
    (out / "sentinel").write_text("a restarted job would start in a clean folder")
    jobs.run_job(jobs.Job("pretrain", cmd, out), {}, threads=1)
    assert (out / "sentinel").exists()  # continued in place, with --resume
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 100 and len(steps) == len(set(steps))  # no step redone
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == 100
    assert "seconds" in json.loads((out / ".job.json").read_text())
