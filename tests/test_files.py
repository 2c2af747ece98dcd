"""Interrupted and damaged files: a clear error or a correct recovery, never a hang or silent training.

A table of damaged datasets (a copy of the session's tiny one, damaged one way each) and the script
that must refuse it: a non-zero exit with one line that names the file and says how to rebuild it,
before any checkpoint is written. Then the recoveries: a build killed with SIGKILL is rebuilt at once
by the next run, a live builder is waited for (and named), `python data.py` repairs a damaged build,
an older build (no file records in meta.json) is still reused and still checked, a checkpoint with
the older key names still loads, and a write that fails half-way leaves the old file and no
temporary one.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import checkpoint
import data
import pretrain
import sample
import sft
from conftest import QUIET, TINY_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--n_stories", "300", "--n_sft", "20", "--n_sft_val", "5", "--vocab_size", "500"]  # data.py flags
SMALL = ["--n_stories", "2000", "--n_sft", "100", "--n_sft_val", "10", "--vocab_size", "600"]  # a build to kill


def cut(name, keep):
    """Damage: keep the first `keep(size)` bytes of a file (a half-copied file)."""
    def damage(d):
        p = d / name
        p.write_bytes(p.read_bytes()[: keep(p.stat().st_size)])
    return damage


def swap_lines(name, i=10, j=11):
    def damage(d):
        lines = (d / name).read_text().splitlines(keepends=True)
        lines[i], lines[j] = lines[j], lines[i]
        (d / name).write_text("".join(lines))
    return damage


def swap_tokens(d, i=300, j=301):
    """Two tokens trade ranks (the lines keep their order): another tokenizer, not just another file."""
    lines = (d / "tokenizer.tiktoken").read_text().splitlines()
    (a, ra), (b, rb) = lines[i].split(), lines[j].split()
    lines[i], lines[j] = f"{b} {ra}", f"{a} {rb}"
    (d / "tokenizer.tiktoken").write_text("\n".join(lines) + "\n")


def break_line(name, n):
    """Line n (1-based) of a jsonl cut in half; the lines after it stay."""
    def damage(d):
        lines = (d / name).read_text().splitlines(keepends=True)
        lines[n - 1] = lines[n - 1][: len(lines[n - 1]) // 2] + "\n"
        (d / name).write_text("".join(lines))
    return damage


def older_build(then=None):
    """meta.json as a build from before the file records wrote it (no "files"), then `then`."""
    def damage(d):
        meta = json.loads((d / "meta.json").read_text())
        del meta["files"]
        (d / "meta.json").write_text(json.dumps(meta))
        if then:
            then(d)
    return damage


def _drop_line(d):
    lines = (d / "sft_train.jsonl").read_text().splitlines(keepends=True)
    (d / "sft_train.jsonl").write_text("".join(lines[:50] + lines[51:]))


SHARD = "pretrain_annotated_train.bin"
odd = lambda n: n - 2 * 1000 - 1  # noqa: E731
even = lambda n: n - 2 * 1000  # noqa: E731

# (case, damage, script, expected in the one error line)
DAMAGED = [
    ("shard cut at an odd length", cut(SHARD, odd), "pretrain", "not a whole number of 2-byte tokens"),
    ("shard cut at an even length", cut(SHARD, even), "pretrain", "but meta.json recorded"),
    ("shard cut, resumed run", cut(SHARD, even), "pretrain_resume", "but meta.json recorded"),
    ("val shard missing", lambda d: (d / "pretrain_annotated_val.bin").unlink(), "pretrain", "is missing"),
    ("tokenizer: two lines swapped", swap_lines("tokenizer.tiktoken"), "pretrain", "changed since the build"),
    ("tokenizer: two lines swapped, SFT", swap_lines("tokenizer.tiktoken"), "sft", "changed since the build"),
    ("tokenizer cut short", cut("tokenizer.tiktoken", lambda n: n // 2), "sft", "tokenizer.tiktoken is"),
    ("SFT jsonl: line 7 cut in half", break_line("sft_train.jsonl", 7), "sft", "sft_train.jsonl line 7"),
    ("SFT jsonl: last line cut", cut("sft_val.jsonl", lambda n: n - 30), "sft", "sft_val.jsonl line 40"),
    ("SFT jsonl: one line gone", lambda d: _drop_line(d), "sft", "sft_train.jsonl is"),
    ("meta.json not JSON", lambda d: (d / "meta.json").write_text("{\"options\": {"), "pretrain",
     "meta.json is not readable JSON"),
    ("older build: shard cut at an even length", older_build(cut(SHARD, even)), "pretrain",
     "but meta.json recorded"),
    ("older build: two tokens swapped", older_build(swap_tokens), "pretrain", "not the tokenizer the shards"),
]


@pytest.fixture
def copy_of(tiny_data_dir, tmp_path):
    """A fresh copy of the tiny dataset to damage (the session's one stays whole)."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_data_dir, dst)
    return dst


def _argv(script, d, tiny_base_dirs, tmp_path):
    if script == "pretrain":
        return pretrain.main, ["--data_dir", str(d), "--out_dir", str(tmp_path / "p"), "--max_iters", "2",
                               "--batch_size", "2", "--device", "cpu", *TINY_MODEL, *QUIET]
    if script == "pretrain_resume":
        run = tmp_path / "resumed"
        shutil.copytree(tiny_base_dirs["annotated"], run)
        return pretrain.main, ["--resume", "--out_dir", str(run), "--data_dir", str(d), "--max_iters", "12"]
    return sft.main, ["--init_from", str(tiny_base_dirs["annotated"]), "--format", "anchored", "--data_dir",
                      str(d), "--out_dir", str(tmp_path / "s"), "--max_iters", "2", "--batch_size", "2",
                      "--device", "cpu", *QUIET]


@pytest.mark.parametrize("case,damage,script,expected", DAMAGED, ids=[c[0] for c in DAMAGED])
def test_damaged_dataset_is_one_line_error(case, damage, script, expected, copy_of, tiny_base_dirs, tmp_path,
                                           capsys, one_thread):
    damage(copy_of)
    main, argv = _argv(script, copy_of, tiny_base_dirs, tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith("error: ") and "\n" not in msg, msg
    assert expected in msg and "rebuild" in msg, msg
    assert "Traceback" not in capsys.readouterr().err
    assert _listing(tmp_path) == before, "a run wrote something from damaged data"


def _listing(root):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file())


def test_the_whole_dataset_passes_and_older_builds_are_reused(copy_of, capsys):
    meta = json.loads((copy_of / "meta.json").read_text())
    assert data.check_dataset(copy_of) == meta
    assert set(meta["files"]) == set(data.OUTPUT_FILES) - {"meta.json"}
    assert all("sha256" in meta["files"][n] for n in data.HASHED) and "sha256" not in meta["files"][SHARD]
    older_build()(copy_of)  # a build from before the file records: reused as it is, not rebuilt
    stamp = (copy_of / SHARD).stat().st_mtime_ns
    opts = {k: v for k, v in meta["options"].items() if k not in data.DERIVED_OPTIONS}
    assert "files" not in data.ensure_dataset(str(copy_of), progress=False, **opts)
    assert (copy_of / SHARD).stat().st_mtime_ns == stamp and "rebuilding" not in capsys.readouterr().out


# A real checkpoint with the older key names (fmt, kind, base_fmt; config["mode"]), made by the code
# of commit d19f7aa: data.ensure_dataset(n_stories=300, n_sft=40, vocab_size=512), pretrain.py
# --n_layer 1 --n_head 2 --n_embd 16 --block_size 1024 --max_iters 2 --batch_size 1, then
# sft.py --mode anchored --max_iters 2 --batch_size 1 (its tokenizer copied beside it).
OLD_CKPT = Path(ROOT) / "tests" / "data" / "pre_rename_sft"


def test_a_checkpoint_with_the_older_key_names_loads_and_resumes(tmp_path, one_thread):
    raw = torch.load(OLD_CKPT / "ckpt.pt", weights_only=True)
    old = (raw["kind"], raw["fmt"], raw["base_fmt"], raw["config"]["mode"])
    assert old == ("sft", "anchored", "annotated", "anchored")
    model, ckpt, enc = checkpoint.load_model(OLD_CKPT)
    assert (ckpt["stage"], ckpt["format"], ckpt["base_format"]) == ("sft", "anchored", "annotated")
    assert ckpt["config"]["format"] == "anchored" and not {"kind", "fmt", "base_fmt"} & set(ckpt)
    assert "mode" not in ckpt["config"] and ckpt["step"] == raw["step"]
    assert all(torch.equal(ckpt["model"][k], v) for k, v in raw["model"].items())
    story, = sample.sample_stories(model, enc, ckpt["format"], "Write a story.", 1, max_new_tokens=4)
    assert isinstance(story["text"], str)
    new = checkpoint.load_checkpoint(OLD_CKPT)
    assert checkpoint.translate_keys(new) is new  # today's keys: nothing to translate
    # resuming reads the stage and the config under the new names too (both refused before any work)
    shutil.copytree(OLD_CKPT, tmp_path / "old")
    with pytest.raises(SystemExit, match="cannot change --format when resuming"):
        sft.main(["--resume", "--out_dir", str(tmp_path / "old"), "--format", "standard"])
    with pytest.raises(SystemExit, match="is an SFT run; resume it with sft.py"):
        pretrain.main(["--resume", "--out_dir", str(tmp_path / "old")])


def _data_py(out, flags=TINY):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "data.py"), "--out_dir", str(out), *flags],
                            cwd=ROOT, env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def test_data_py_repairs_a_damaged_build(tmp_path):
    out = tmp_path / "d"
    assert _data_py(out).wait(timeout=300) == 0
    swap_lines("tokenizer.tiktoken")(out)
    p = _data_py(out)
    said, _ = p.communicate(timeout=300)
    assert p.returncode == 0 and "tokenizer.tiktoken changed since the build" in said and "rebuilding" in said
    data.check_dataset(out)  # whole again


def test_killed_build_is_rebuilt_at_once(tmp_path):
    """SIGKILL mid-build (the tokenizer written, the shards not yet): no meta.json, and the lock died with
    its holder, so the next run builds at once instead of waiting for a stale lock."""
    out = tmp_path / "d"
    p = _data_py(out, SMALL)
    deadline = time.time() + 300
    while not (out / "tokenizer.tiktoken").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (out / ".lock").exists() and not (out / "meta.json").exists(), "killed too late: the build finished"
    t0 = time.time()
    p = _data_py(out, SMALL)
    said, _ = p.communicate(timeout=300)  # (the old lock made this wait 15 minutes)
    assert p.returncode == 0 and "waiting" not in said and "unfinished build" in said, said
    assert data.check_dataset(out)["files"] and time.time() - t0 < 300


def test_a_live_builder_is_named_and_waited_for(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    with data.build_lock(str(out)):
        p = _data_py(out)
        ready, _, _ = select.select([p.stdout], [], [], 120)
        line = p.stdout.readline() if ready else ""
        assert f"waiting for pid {os.getpid()} on " in line and "since" in line and "end it" in line, line
        time.sleep(0.5)
        assert p.poll() is None, "it did not wait for the lock's holder"
    assert p.wait(timeout=300) == 0 and (out / "meta.json").exists()


@pytest.mark.parametrize("write", [
    lambda p, v: checkpoint.write_atomic(p, v),
    lambda p, v: checkpoint.write_atomic(p, v.decode()),
    lambda p, v: checkpoint.save_figure(_figure(), p),
], ids=["bytes", "str", "figure"])
def test_interrupted_write_keeps_the_old_file(write, tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    checkpoint.write_atomic(path, b"old")

    def killed(*args):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.png"]
    monkeypatch.undo()
    write(path, b"new")
    assert path.read_bytes() != b"old" and os.listdir(tmp_path) == ["out.png"]


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    return fig


def _probe_many(out_dir, n):
    for _ in range(n):
        checkpoint.check_out_dir(out_dir)


def test_processes_probing_one_out_dir_together_do_not_trip_each_other(tmp_path):
    """DDP ranks all check the out_dir as they start: each probes with a file of its own."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_probe_many, args=(str(tmp_path), 300)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0] and not list(tmp_path.iterdir())
