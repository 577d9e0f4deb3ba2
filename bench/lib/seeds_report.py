"""Report of bench/seeds.sh: reads OUT/runs.jsonl and pgbench's per-transaction logs, writes
OUT/results.json and prints markdown. Figures per (query, login) are the median over repetitions of
each run's mean latency; p99 pools every transaction of every repetition."""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1]
env = os.environ
runs = [json.loads(line) for line in open(os.path.join(out, "runs.jsonl"))]


def latencies(prefix):
    """Microseconds per transaction from pgbench --log files (prefix.PID[.THREAD])."""
    values = []
    for path in glob.glob(prefix + ".[0-9]*"):
        if path.endswith(".txt"):
            continue
        for line in open(path):
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                values.append(int(fields[2]))
    return values


cells = {}
for r in runs:
    lat = latencies(r["prefix"])
    if not lat:
        sys.exit(f"no transactions logged for {r['prefix']}")
    cell = cells.setdefault(r["label"], {"means": [], "all": []})
    cell["means"].append(statistics.fmean(lat) / 1000)
    cell["all"].extend(lat)
summary = {}
for label, c in cells.items():
    ordered = sorted(c["all"])
    summary[label] = {
        "mean_ms": statistics.median(c["means"]),
        "means_ms": c["means"],
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] / 1000,
        "transactions": len(ordered),
    }


def mean(label):
    return summary[label]["mean_ms"]


order = env["ORDER"].split()
COMPLEX = {"search"}  # a full-text search of the RLS table: no index under RLS (sql/ V7)
standard = [q for q in order if q not in COMPLEX]
verdicts = {}
lines = [
    f"# The seeds' targets: {env['MOLECULES']} molecules, PostgreSQL {env['PG_VERSION']}, "
    f"through CryoProxy (JWT login as `authenticated`, reads on the replica, result cache off)",
    "",
    f"pgbench -M simple, {env['CLIENTS']} clients, {env['DURATION']} s per run, median of "
    f"{env['REPS']} runs' mean latency (ms, as the client sees it: proxy and network included).",
    "",
    "## 1. RLS policy overhead per standard query (target < 5 ms)",
    "",
    "The V5 tables against copies with the same indexes and RLS off, same query, same subject.",
    "",
    "| query | RLS on (V5) | RLS off | overhead |",
    "|---|---:|---:|---:|",
]
worst = 0.0
for q in order:
    a, r = mean(q), mean(q + ".norls")
    if q in COMPLEX:
        lines.append(f"| {q} (complex) | {a:.2f} | {r:.2f} | {a - r:+.2f} |")
        continue
    worst = max(worst, a - r)
    lines.append(f"| {q} | {a:.2f} | {r:.2f} | {a - r:+.2f} |")
verdicts["rls_overhead_ms"] = {"worst": worst, "target": 5, "met": worst < 5}
lines += ["", f"Worst overhead of a standard query {worst:.2f} ms: "
          f"{'met' if worst < 5 else 'NOT met'}.", ""]

lines += [
    "## 2. Optimized policies and indexes against naive per-row policies (target ≥ 50 % faster)",
    "",
    "The same subject, on copies of the same rows.",
    "",
    "| query | optimized (V5) | naive | reduction |",
    "|---|---:|---:|---:|",
]


def reductions(pairs, total_label):
    """Table rows of (label, faster, slower) pairs and their sum; returns the sum's reduction."""
    fast_sum = slow_sum = 0.0
    for label, fast, slow in pairs:
        fast_sum += fast
        slow_sum += slow
        lines.append(f"| {label} | {fast:.2f} | {slow:.2f} | {100 * (1 - fast / slow):.1f} % |")
    reduction = 1 - fast_sum / slow_sum
    lines.append(f"| **{total_label}** | {fast_sum:.2f} | {slow_sum:.2f} | "
                 f"**{100 * reduction:.1f} %** |")
    return reduction


mix = reductions([(q, mean(q), mean(q + ".naive")) for q in order], "the six, one after another")
c, n = mean("catalogue"), mean("search.naive")
lines.append(f"| (search, as the public catalogue (public_molecules)) | {c:.2f} | {n:.2f} | "
             f"{100 * (1 - c / n):.1f} % |")


def reduction_verdict(key, what, reduction, target):
    verdicts[key] = {"mix": reduction, "target": target, "met": reduction >= target}
    lines.extend(["", f"{what} {100 * reduction:.1f} % faster: "
                      f"{'met' if reduction >= target else 'NOT met'}.", ""])


reduction_verdict("rls_optimized_reduction", "Query mix", mix, 0.5)

lines += [
    "## 3. Toxicity queries from the materialized view against the base tables (target ≥ 70 %)",
    "",
    "The base side reads the copies without RLS: only the aggregation is compared.",
    "",
    "| query | toxicity_summary | base tables | reduction |",
    "|---|---:|---:|---:|",
]
tox = reductions([(t, mean(t + ".view"), mean(t + ".base"))
                  for t in ("tox_one", "tox_top", "tox_assay")], "the three, one after another")
reduction_verdict("toxicity_view_reduction", "Toxicity mix", tox, 0.7)

lines += [
    "## 4. Standard queries under 100 ms, complex ones under 500 ms (as `authenticated`)",
    "",
    "| query | kind | mean | p99 | transactions |",
    "|---|---|---:|---:|---:|",
]
worst_p99 = worst_complex = 0.0
for q in standard + ["catalogue", "tox_one.view", "tox_top.view", "tox_assay.view"] + sorted(COMPLEX):
    s = summary[q]
    kind = "complex" if q in COMPLEX else "standard"
    if q in COMPLEX:
        worst_complex = max(worst_complex, s["p99_ms"])
    else:
        worst_p99 = max(worst_p99, s["p99_ms"])
    lines.append(f"| {q} | {kind} | {s['mean_ms']:.2f} | {s['p99_ms']:.2f} | {s['transactions']} |")
verdicts["standard_p99_ms"] = {"worst": worst_p99, "target": 100, "met": worst_p99 < 100}
verdicts["complex_p99_ms"] = {"worst": worst_complex, "target": 500, "met": worst_complex < 500}
lines += ["", f"Worst p99 of a standard query {worst_p99:.2f} ms: "
          f"{'met' if worst_p99 < 100 else 'NOT met'}; of a complex one {worst_complex:.2f} ms: "
          f"{'met' if worst_complex < 500 else 'NOT met'}."]

json.dump({"params": {k.lower(): env[k] for k in ("MOLECULES", "DURATION", "CLIENTS", "REPS",
                                                    "PG_VERSION")},
           "cells": summary, "verdicts": verdicts},
          open(os.path.join(out, "results.json"), "w"), indent=2)
print("\n".join(lines))
