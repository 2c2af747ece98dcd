"""
How reproduce.py runs a stage of its recipe: a stage is an ordinary command and the folder it fills.

- done: the folder's .stage.json records this exact command and its seconds: skipped;
- stopped half way (the marker records the command but no seconds): a training stage with a
  checkpoint continues from it (--resume; the checkpoint holds its config), any other starts over
  in a clean folder (data.py checks its own folder);
- another command's output: removed, and the stage starts over.

The marker is written whole or not at all (checkpoint.write_atomic), "started" before the command
and "done" after it, so a run killed at any moment (SIGKILL included) leaves no stage marked done
that is not. Stages of one wave of the recipe may run side by side: `jobs` at a time.
"""

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from checkpoint import write_atomic

PY = sys.executable

# name: what progress lines and run.json call it; cmd: an ordinary command line (printed, so a
# student can type it); out_dir: the folder the command fills (its .stage.json marks it done)
Stage = namedtuple("Stage", "name cmd out_dir")


STOPPING = threading.Event()  # set by Ctrl-C: no stage starts, and none that returns is marked done


def stage_hash(cmd):
    return hashlib.sha256(" ".join(cmd).encode()).hexdigest()[:16]


def run_stage(stage, timings, threads=None):
    """Run a stage unless its marker says this exact command finished there. With `threads` set, the
    stage gets that many CPU threads and writes its output to <out_dir>/stage.log (stages side by
    side would garble one terminal)."""
    if STOPPING.is_set():  # Ctrl-C: start nothing new
        return
    out_dir, cmd, h = Path(stage.out_dir), stage.cmd, stage_hash(stage.cmd)
    marker = out_dir / ".stage.json"
    try:
        done = json.loads(marker.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # none, or unreadable: not done
        done = {}
    if done.get("hash") == h and "seconds" in done:
        print(f"[skip] {stage.name}: done already ({out_dir})")
        timings[stage.name] = {"seconds": done["seconds"], "skipped": True}
        return
    script = Path(cmd[1]).name
    if done.get("hash") == h and script in ("pretrain.py", "sft.py") and (out_dir / "ckpt.pt").exists():
        cmd = [PY, cmd[1], "--resume", "--out_dir", str(out_dir)]  # the checkpoint holds the config
    elif out_dir.exists() and script != "data.py":  # data.py checks its own folder
        shutil.rmtree(out_dir)  # another command's (or an unfinished) output: start clean
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, json.dumps({"hash": h, "cmd": shlex.join(stage.cmd)}))  # started, not done
    print(f"\n[run] {stage.name}\n  $ {shlex.join(['python', *cmd[1:]])}", flush=True)
    t0 = time.time()
    env = os.environ if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(out_dir / "stage.log", "w") if threads else contextlib.nullcontext() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if log else None, env=env)
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:  # the stage got the Ctrl-C too: let it save its checkpoint
            STOPPING.set()
            proc.wait()
            raise
    if STOPPING.is_set():  # stopped by Ctrl-C while side by side: unfinished, whatever it returned
        return
    if returncode:
        raise SystemExit(f"error: stage '{stage.name}' failed" + (f"; see {out_dir / 'stage.log'}" if log else ""))
    seconds = round(time.time() - t0, 1)
    timings[stage.name] = {"seconds": seconds}
    write_atomic(marker, json.dumps({"hash": h, "cmd": shlex.join(stage.cmd), "seconds": seconds}))
    print(f"[done] {stage.name} in {seconds:.0f} s", flush=True)


def run_stages(stages, timings, jobs=1):
    """Run independent stages in the order given, `jobs` at a time (then each on cpus / jobs threads)."""
    if jobs <= 1:  # on the main thread: Ctrl-C reaches run_stage itself
        for stage in stages:
            run_stage(stage, timings)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_stage, stage, timings, threads) for stage in stages]
        try:
            for future in futures:
                future.result()  # re-raises the first failure
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):  # it reached the running stages too: they save a
                STOPPING.set()                    # checkpoint and exit, and none is marked done
            for future in futures:  # a failure or Ctrl-C: no queued stage starts
                future.cancel()
            raise
