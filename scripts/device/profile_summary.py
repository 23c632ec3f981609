#!/usr/bin/env python3
"""Per-kernel summary of a CubeCL profiling log (CUBECL_DEBUG_OPTION=profile) of `trainer bench
generate`: splits the log into decode steps at the sampling (the prefix sums of burn's
operations, CumulativeKernel, two per sampled token, or the sampling kernel, SampleRowsKernel)
and prints, for the last steps, the launches and GPU time of each kind of kernel (names without
their hash suffix), largest first.

    python3 scripts/device/profile_summary.py cubecl_profile.log [--steps 3] [--top 14]
"""
import argparse
import collections
import re

UNITS = {"ns": 1e-3, "µs": 1.0, "ms": 1e3, "s": 1e6}


def launches(path):
    """(microseconds, kernel name) of every profiled launch, in order."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"\|\s*([\d.]+)(ns|µs|ms|s)\s*\|\s*(.*)", line)
            if m:
                out.append((float(m.group(1)) * UNITS[m.group(2)], m.group(3).strip()))
    return out


def kind(name):
    """The kernel's name without hashes and without the long argument lists of products."""
    name = re.sub(r"_[0-9a-f]{8}\b", "", name)
    return re.sub(r"\s*\|\s*(TensorArgs|DynamicScalar).*", "", name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--steps", type=int, default=3, help="how many of the last steps to show")
    parser.add_argument("--top", type=int, default=14, help="kinds of kernel shown per step")
    args = parser.parse_args()
    rows = launches(args.log)
    marks = []
    for i, (_, name) in enumerate(rows):
        # The two prefix sums of one sampled token are a few launches apart; a step is hundreds.
        if name.startswith(("CumulativeKernel", "SampleRowsKernel")) and (not marks or i - marks[-1] > 200):
            marks.append(i)
    if len(marks) < 2:
        raise SystemExit(f"{args.log}: fewer than two decode steps found ({len(rows)} launches)")
    for a, b in list(zip(marks, marks[1:]))[-args.steps:]:
        step = rows[a:b]
        total = collections.defaultdict(lambda: [0, 0.0])
        for us, name in step:
            total[kind(name)][0] += 1
            total[kind(name)][1] += us
        print(f"step of {len(step)} launches, {sum(us for us, _ in step) / 1e3:.2f} ms of GPU time")
        for name, (n, us) in sorted(total.items(), key=lambda kv: -kv[1][1])[: args.top]:
            print(f"  {n:5d} launches {us / 1e3:8.2f} ms {us / n:8.1f} µs each  {name}")


if __name__ == "__main__":
    main()
