"""
How reproduce.py runs a job of its recipe: a job is an ordinary command and the folder it fills.

- done: the folder's .job.json records this exact command and its seconds, and the commands of
  the jobs whose folders it reads (`reads`: its data, the checkpoints it starts from or
  evaluates) are the ones it ran on: skipped;
- done, but a folder it reads now holds another command's output (an SFT run at another LR): it
  runs again, in a clean folder. A job rerun by the same command counts as the same output (the
  rule every skip rests on), so a folder retrained by hand under the same command needs the
  folders that read it removed by hand;
- stopped half way (the marker records the command but no seconds): a training job with a
  checkpoint continues from it (--resume; the checkpoint holds its config), any other starts over
  in a clean folder (data.py checks its own folder);
- another command's output: removed, and the job starts over.

The marker is written whole or not at all (checkpoint.write_atomic), "started" before the command
and "done" after it, so a run killed at any moment (SIGKILL included) leaves no job marked done
that is not. Jobs of one wave of the recipe may run side by side: `jobs` at a time.
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
# student can type it); out_dir: the folder the command fills (its .job.json marks it done); reads:
# the out_dirs of the jobs whose output it reads
Job = namedtuple("Job", "name cmd out_dir reads", defaults=((),))

MARKER, OLD_MARKER = ".job.json", ".stage.json"  # OLD_MARKER: what an older reproduce.py wrote

STOPPING = threading.Event()  # set by Ctrl-C: no job starts, and none that returns is marked done


def job_hash(cmd):
    return hashlib.sha256(" ".join(cmd).encode()).hexdigest()[:16]


def read_marker(out_dir):
    """What a folder's marker records ({} if none, or unreadable: not done). Only .job.json is
    written; an older folder's .stage.json is read in its place, so its finished jobs stay done."""
    for name in (MARKER, OLD_MARKER):
        try:
            return json.loads((Path(out_dir) / name).read_text())
        except FileNotFoundError:
            continue
        except json.JSONDecodeError:
            return {}
    return {}


def read_hashes(job):
    """{folder: the command hash its marker records} for each folder job reads (None: no marker)."""
    return {str(d): read_marker(d).get("hash") for d in job.reads}


def changed_inputs(job, done):
    """The folders job reads whose command differs from the one recorded when job finished (done:
    its marker; one written before this record existed records none, and counts as current)."""
    ran_on = done.get("reads", {})
    return [d for d, h in read_hashes(job).items() if d in ran_on and ran_on[d] != h]


def run_job(job, timings, threads=None):
    """Run a job unless its marker says this exact command finished there, on what the folders it
    reads hold now (the module docstring's rules). With `threads` set, the job gets that many CPU
    threads and writes its output to <out_dir>/job.log (jobs side by side would garble one terminal)."""
    if STOPPING.is_set():  # Ctrl-C: start nothing new
        return
    out_dir, cmd, h = Path(job.out_dir), job.cmd, job_hash(job.cmd)
    done = read_marker(out_dir)
    changed = changed_inputs(job, done)
    if done.get("hash") == h and "seconds" in done and not changed:
        print(f"[skip] {job.name}: done already ({out_dir})")
        timings[job.name] = {"seconds": done["seconds"], "skipped": True}
        return
    if changed:
        print(f"[again] {job.name}: {', '.join(changed)} now holds another command's output")
        done = {}
    script = Path(cmd[1]).name
    if done.get("hash") == h and script in ("pretrain.py", "sft.py") and (out_dir / "ckpt.pt").exists():
        cmd = [PY, cmd[1], "--resume", "--out_dir", str(out_dir)]  # the checkpoint holds the config
    elif out_dir.exists() and script != "data.py":  # data.py checks its own folder
        shutil.rmtree(out_dir)  # another command's (or an unfinished) output: start clean
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / MARKER
    write_atomic(marker, json.dumps({"hash": h, "cmd": shlex.join(job.cmd)}))  # started, not done
    print(f"\n[run] {job.name}\n  $ {shlex.join(['python', *cmd[1:]])}", flush=True)
    t0 = time.time()
    env = os.environ if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(out_dir / "job.log", "w") if threads else contextlib.nullcontext() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if log else None, env=env)
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:  # the job got the Ctrl-C too: let it save its checkpoint
            STOPPING.set()
            proc.wait()
            raise
    if STOPPING.is_set():  # stopped by Ctrl-C while side by side: unfinished, whatever it returned
        return
    if returncode:
        raise SystemExit(f"error: job '{job.name}' failed" + (f"; see {out_dir / 'job.log'}" if log else ""))
    seconds = round(time.time() - t0, 1)
    timings[job.name] = {"seconds": seconds}
    write_atomic(marker, json.dumps({"hash": h, "cmd": shlex.join(job.cmd), "seconds": seconds,
                                     "reads": read_hashes(job)}))
    print(f"[done] {job.name} in {seconds:.0f} s", flush=True)


def run_jobs(wave, timings, jobs=1):
    """Run a wave's independent jobs in the order given, `jobs` at a time (then each on cpus / jobs
    threads)."""
    if jobs <= 1:  # on the main thread: Ctrl-C reaches run_job itself
        for job in wave:
            run_job(job, timings)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_job, job, timings, threads) for job in wave]
        try:
            for future in futures:
                future.result()  # re-raises the first failure
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):  # it reached the running jobs too: they save a
                STOPPING.set()                    # checkpoint and exit, and none is marked done
            for future in futures:  # a failure or Ctrl-C: no queued job starts
                future.cancel()
            raise
