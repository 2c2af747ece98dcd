"""The record of how this run's bases were made (run from the repository root: python results/cpu-2026-12-03/bases_wave.py PID).
Run wave 1 of the cpu preset's recipe (the bases) by jobs.run_job, the 4L/128 bases excepted:
those were trained by the same commands outside reproduce.py and are marked done here with the
seconds their logs record. Worker 2 starts when the 4L/128 plain base's process has exited."""
import json, os, queue, sys, threading, time
sys.path.insert(0, ".")
import jobs, reproduce
from checkpoint import write_atomic
from pathlib import Path

PID = int(sys.argv[1])
waves = reproduce.recipe(reproduce.PRESETS["cpu"], "runs/cpu", False, "auto", "auto")
wave1 = waves[1]
todo = [j for j in wave1 if "cpu-4l128" not in str(j.out_dir)]
todo.sort(key=lambda j: "cpu-4l64" in str(j.out_dir))  # the long 4L/96 bases first
print("to run:", [j.name for j in todo], flush=True)

def mark(job, seconds):
    write_atomic(Path(job.out_dir) / jobs.MARKER, json.dumps({"hash": jobs.job_hash(job.cmd), "cmd": " ".join(job.cmd),
                                                              "seconds": seconds, "note": "trained by the same command outside reproduce.py"}))

q = queue.Queue()
for j in todo:
    q.put(j)
timings = {}

def worker(wait):
    if wait:
        while os.path.exists(f"/proc/{PID}"):
            time.sleep(10)
        for j in wave1:
            if "cpu-4l128" in str(j.out_dir):
                d = Path(j.out_dir)  # the tokenizer is written at start, the log at the last step
                secs = round((d / "log.jsonl").stat().st_mtime - (d / "tokenizer.tiktoken").stat().st_mtime, 1)
                mark(j, secs)
                print("marked", j.name, secs, flush=True)
    while True:
        try:
            j = q.get_nowait()
        except queue.Empty:
            return
        jobs.run_job(j, timings, threads=1)
        print("done", j.name, timings.get(j.name), flush=True)

ts = [threading.Thread(target=worker, args=(w,)) for w in (False, True)]
[t.start() for t in ts]; [t.join() for t in ts]
print("WAVE1 DONE", json.dumps(timings), flush=True)
