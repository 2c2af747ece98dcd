"""
Trained slots per wall-second of a wave: jobs run side by side, each read from its own log.jsonl.

    python bench/wave.py --before A/log.jsonl B/log.jsonl --after C/log.jsonl D/log.jsonl --skip 50

A job's rate is the median of its logged throughput (`slots_per_s`, or `tokens_per_s` in logs of
code from before that key was named) over the records past --skip steps, so a compile, which happens
in the first steps, is left out; the wave's rate is the sum of its jobs' rates. A validation
record carries no throughput and is skipped. Prints each job's rate and the after/before ratio.
"""

import argparse
import json
import statistics


def job_rate(path, skip):
    """Median slots per second of one job's log records past step `skip` (None if there are none)."""
    rates = []
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            rate = record.get("slots_per_s", record.get("tokens_per_s"))
            if rate is not None and record["step"] > skip:
                rates.append(rate)
    return statistics.median(rates) if rates else None, len(rates)


def wave_rate(paths, skip):
    """(sum of the jobs' median rates, [(path, rate, records)]) of one wave."""
    jobs = [(p, *job_rate(p, skip)) for p in paths]
    missing = [p for p, rate, _ in jobs if rate is None]
    if missing:
        raise SystemExit(f"error: no throughput records past step {skip} in {', '.join(missing)}")
    return sum(rate for _, rate, _ in jobs), jobs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--before", nargs="+", required=True, help="log.jsonl of each job of the first wave")
    p.add_argument("--after", nargs="+", required=True, help="log.jsonl of each job of the second wave")
    p.add_argument("--skip", type=int, default=50, help="leave out records up to this step (the compile)")
    args = p.parse_args(argv)
    totals = []
    for name, paths in (("before", args.before), ("after", args.after)):
        total, jobs = wave_rate(paths, args.skip)
        for path, rate, n in jobs:
            print(f"{name}: {path}: median {rate:,.0f} slots/s over {n} records")
        print(f"{name}: the wave {total:,.0f} slots/s")
        totals.append(total)
    print(f"after / before: {totals[1] / totals[0]:.2f}x")


if __name__ == "__main__":
    main()
