#!/usr/bin/env python3
"""Re-time the GPU bench summaries of one `benches/gpu/device.sh` run from criterion's own estimates.

The summaries of git ca23b7b (the first GPU run) averaged every timed call, criterion's warm-up
included, and on a GPU the warm-up holds kernel compilation and autotuning of every shape met for
the first time: one LayerNorm call of that warm-up took seconds. Later revisions count only the
measurement samples (`vl_bench::Row::record`). For that run, this script takes criterion's point
estimate of the time per call (the middle of `time: [low estimate high]`, warm-up excluded) from
device.log, in run order, and rewrites each summary's rows with it; the old mean stays in the row
as `mean_incl_warmup_ms`.

    python3 benches/gpu/from_log.py experiments/results/bench/gpu

Standard library only.
"""
import json
import os
import re
import sys

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
PHASE = re.compile(r"^=== (enc|steps|prompting|ops) (\w+)(?: (\w+))? \(")
TIME = re.compile(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]")


def summary_name(kind, device, dtype):
    stem = {"enc": "vl", "steps": "vl-steps", "prompting": "vl-prompting", "ops": "vl-ops"}[kind]
    suffix = "" if dtype in (None, "f32") else f"-{dtype}"
    return f"{stem}-{device}{suffix}.json"


def phases(log):
    """{summary file name: [seconds per call, ...]} in run order."""
    found, current = {}, None
    for line in log.splitlines():
        m = PHASE.match(line)
        if m:
            current = summary_name(*m.groups())
            found[current] = []
            continue
        if line.startswith("==="):
            continue
        t = TIME.search(line)
        if t and current and "change:" not in line:
            found[current].append(float(t.group(1)) * UNITS[t.group(2)])
    return found


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "experiments/results/bench/gpu"
    with open(os.path.join(folder, "device.log")) as f:
        log = f.read()
    for name, times in phases(log).items():
        path = os.path.join(folder, name)
        if not times or not os.path.exists(path):
            continue
        with open(path) as f:
            doc = json.load(f)
        rows = doc["rows"]
        if len(rows) != len(times):
            sys.exit(f"{name}: {len(rows)} rows but {len(times)} criterion estimates")
        for row, seconds in zip(rows, times):
            row.setdefault("mean_incl_warmup_ms", row["ms_per_iter"])
            row["ms_per_iter"] = seconds * 1e3
            row["items_per_s"] = row["batch"] / seconds
        doc["timing"] = "criterion point estimate per call (warm-up excluded), from device.log"
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
        print(f"{name}: {len(rows)} rows re-timed")


if __name__ == "__main__":
    main()
