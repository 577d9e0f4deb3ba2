#!/usr/bin/env python3
"""Turn one bench/run.sh results folder into a markdown report (stdout) and a JSON file.

Reads, from the folder run.sh filled:
  meta.json                 parameters, machine, versions, load, notes
  runs.jsonl                one line per measured pgbench run: scenario, label, target, rep,
                            clients, rc, output file, proxy CPU ticks used during the run, p50
                            and p99 latency of the run's sampled transactions
  scale.json                connection-scale numbers (memory, idle client status)
  acquire/NAME.{before,after}.prom   /metrics scrapes around each acquisition run
Medians are taken per (scenario, target) over the repetitions, for TPS, average latency, p50 and
p99 separately. Ratios are of medians.

`report.py merge OUT PART...` instead writes, to OUT, one pgbench-style summary of several pgbench
outputs that ran side by side (tps and transactions summed, latency averaged by transactions).

`report.py latency PREFIX` prints, as one JSON object, p50 and p99 (ms) of the transactions in
pgbench's per-transaction logs PREFIX.* (`pgbench -l --log-prefix PREFIX`).
"""

import glob
import json
import math
import os
import re
import statistics
import sys

TARGETS = ("direct", "pgbouncer", "cryoproxy")


def parse_pgbench(path):
    out = {}
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return out
    m = re.search(r"^tps = ([0-9.]+)", text, re.M)
    if m:
        out["tps"] = float(m.group(1))
    m = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
    if m:
        out["latency_ms"] = float(m.group(1))
    m = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    if m:
        out["transactions"] = int(m.group(1))
    m = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    if m:
        out["failed_transactions"] = int(m.group(1))
    m = re.search(r"^average connection time = ([0-9.]+) ms", text, re.M)
    if m:
        out["connection_ms"] = float(m.group(1))
    errors = [l for l in text.splitlines() if "error" in l.lower() or "fatal" in l.lower()]
    if errors:
        out["error"] = errors[0][:300]
    return out


def merge(out, parts):
    """One pgbench-style summary of pgbench runs that ran at the same time."""
    runs = [parse_pgbench(p) for p in parts]
    lines = []
    for p, r in zip(parts, runs):
        lines.append(f"# {os.path.basename(p)}: " + json.dumps(r))
    errors = [r["error"] for r in runs if "error" in r]
    lines.extend(errors[:1])
    if all("tps" in r and r.get("transactions") for r in runs):
        tx = sum(r["transactions"] for r in runs)
        lines.append(f"number of transactions actually processed: {tx}")
        lines.append("number of failed transactions: %d"
                     % sum(r.get("failed_transactions", 0) for r in runs))
        lat = sum(r["latency_ms"] * r["transactions"] for r in runs) / tx
        lines.append(f"latency average = {lat:.3f} ms")
        lines.append("tps = %f (sum of %d processes)" % (sum(r["tps"] for r in runs), len(runs)))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0 if "tps" in "\n".join(lines) and not errors else 1


# client_id transaction_no time script_no time_epoch time_us [schedule_lag ...]; time is the
# transaction's latency in µs ("failed" or "skipped" for one that did not run: not a sample)
LOG_LINE = re.compile(r"\s*\d+\s+\d+\s+(\d+)\s+\d+\s+\d+\s+\d+(\s|$)", re.ASCII)


def latency(prefix):
    """p50 and p99 (nearest rank) of the logged transactions: pgbench writes PREFIX.<pid> for
    its thread 0 and PREFIX.<pid>.<n> for the others."""
    samples = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_LINE.match(line)
                if m:
                    samples.append(int(m.group(1)))
    samples.sort()

    def q(p):
        return round(samples[max(0, math.ceil(p * len(samples)) - 1)] / 1000, 3) if samples else None
    return {"p50_ms": q(0.5), "p99_ms": q(0.99), "lat_samples": len(samples)}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def load_runs(folder, clk_tck):
    runs = []
    path = os.path.join(folder, "runs.jsonl")
    if not os.path.exists(path):
        return runs
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        r.update(parse_pgbench(os.path.join(folder, r["file"])))
        if r.get("cpu_ticks") is not None and r.get("transactions"):
            r["proxy_cpu_us_per_tx"] = r["cpu_ticks"] / clk_tck * 1e6 / r["transactions"]
        r["ok"] = r.get("rc") == 0 and "tps" in r
        runs.append(r)
    return runs


def paired_ratios(runs_a, runs_b):
    """tps(a) / tps(b) for each repetition both ran well."""
    by_rep = {r["rep"]: r["tps"] for r in runs_b if r["rc"] == 0 and r.get("tps")}
    return [r["tps"] / by_rep[r["rep"]] for r in runs_a
            if r["rc"] == 0 and r.get("tps") is not None and r["rep"] in by_rep]


def summarise(runs):
    """{scenario: {"label", "clients", "targets": {target: summary}}} in first-seen order."""
    scenarios = {}
    for r in runs:
        s = scenarios.setdefault(r["scenario"], {"label": r.get("label", r["scenario"]),
                                                 "clients": r.get("clients"), "targets": {}})
        t = s["targets"].setdefault(r["target"], {"runs": []})
        t["runs"].append({k: r.get(k) for k in ("rep", "rc", "tps", "latency_ms", "p50_ms", "p99_ms",
                                                 "lat_samples", "transactions",
                                                 "failed_transactions", "connection_ms",
                                                 "proxy_cpu_us_per_tx", "error", "file")})
    for s in scenarios.values():
        for t in s["targets"].values():
            good = [r for r in t["runs"] if r["rc"] == 0 and r.get("tps") is not None]
            t["ok"] = len(good) == len(t["runs"])
            t["tps"] = median([r["tps"] for r in good])
            t["latency_ms"] = median([r["latency_ms"] for r in good])
            # each run's quantile, then the median over repetitions, of p50 and of p99 apart
            t["p50_ms"] = median([r.get("p50_ms") for r in good])
            t["p99_ms"] = median([r.get("p99_ms") for r in good])
            t["proxy_cpu_us_per_tx"] = median([r.get("proxy_cpu_us_per_tx") for r in good])
            tps = [r["tps"] for r in good]
            t["tps_min"], t["tps_max"] = (min(tps), max(tps)) if tps else (None, None)
            if not t["ok"]:
                bad = [r for r in t["runs"] if r not in good][0]
                t["error"] = bad.get("error") or (
                    "pgbench exit %s" % bad["rc"] if bad["rc"] else
                    "no transaction finished within the run (its connections took longer)")
        tg = s["targets"]
        get = lambda name, key: tg.get(name, {}).get(key)
        s["ratios"] = {
            "cryoproxy_over_pgbouncer_tps": ratio(get("cryoproxy", "tps"), get("pgbouncer", "tps")),
            "cryoproxy_over_direct_tps": ratio(get("cryoproxy", "tps"), get("direct", "tps")),
            "pgbouncer_over_direct_tps": ratio(get("pgbouncer", "tps"), get("direct", "tps")),
            "cryoproxy_over_pgbouncer_p99": ratio(get("cryoproxy", "p99_ms"), get("pgbouncer", "p99_ms")),
        }
        # Targets run interleaved within a repetition, so each repetition gives a paired ratio;
        # their spread shows how much of a difference is noise.
        for key, a, b in (("cryoproxy_over_pgbouncer_tps", "cryoproxy", "pgbouncer"),
                          ("cryoproxy_over_direct_tps", "cryoproxy", "direct")):
            paired = paired_ratios(tg.get(a, {}).get("runs", []), tg.get(b, {}).get("runs", []))
            if len(paired) > 1:
                s["ratios"][key + "_range"] = [min(paired), max(paired)]
        direct_lat = get("direct", "latency_ms")
        # With many clients latency is mostly queueing (and direct runs 32 backends on the same
        # cores), so "added latency" is only meaningful for one client.
        for name in ("pgbouncer", "cryoproxy") if s["clients"] == 1 else ():
            lat = get(name, "latency_ms")
            if lat is not None and direct_lat is not None:
                s["ratios"][name + "_added_latency_us"] = (lat - direct_lat) * 1000
    return scenarios


def parse_prom(path):
    """{(name, frozenset(labels)): value} for every sample in a Prometheus text scrape."""
    samples = {}
    if not os.path.exists(path):
        return samples
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in open(path):
        if line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = frozenset(label_re.findall(m.group(3) or ""))
        try:
            samples[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return samples


def histogram_delta(before, after, name, match):
    """Bucket deltas summed over the series whose labels include `match`."""
    buckets, total, count = {}, 0.0, 0.0
    for (metric, labels), value in after.items():
        d = dict(labels)
        if any(d.get(k) != v for k, v in match.items()):
            continue
        old = before.get((metric, labels), 0.0)
        if metric == name + "_bucket":
            le = float("inf") if d["le"] in ("+Inf", "Inf") else float(d["le"])
            buckets[le] = buckets.get(le, 0.0) + value - old
        elif metric == name + "_sum":
            total += value - old
        elif metric == name + "_count":
            count += value - old
    return sorted(buckets.items()), total, count


def quantile(q, buckets):
    """(value, bucket lower bound, bucket upper bound) for quantile q.

    The value is interpolated linearly inside the bucket holding the rank, as Prometheus'
    histogram_quantile does; only the bucket itself is certain.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None, None, None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, cum in buckets:
        if cum >= rank and cum > below:
            if math.isinf(le):
                return lower, lower, le  # beyond the last finite bound: report that bound
            return lower + (le - lower) * (rank - below) / (cum - below), lower, le
        lower, below = le, cum
    return lower, lower, float("inf")


def acquisition(folder, meta):
    results = []
    for run in meta.get("acquire_runs", []):
        before = parse_prom(os.path.join(folder, "acquire", run["name"] + ".before.prom"))
        after = parse_prom(os.path.join(folder, "acquire", run["name"] + ".after.prom"))
        buckets, total, count = histogram_delta(before, after, "cryoproxy_acquire_seconds",
                                                {"database": run["database"]})
        within_1ms = next((cum for le, cum in buckets if le == 0.001), None)
        p50, p50_lo, p50_hi = quantile(0.5, buckets)
        p99, p99_lo, p99_hi = quantile(0.99, buckets)
        results.append(dict(run, acquisitions=int(count),
                            mean_seconds=total / count if count else None,
                            p50_seconds=p50, p50_bucket=[p50_lo, p50_hi],
                            p99_seconds=p99, p99_bucket=[p99_lo, p99_hi],
                            share_within_1ms=within_1ms / count if count and within_1ms is not None
                            else None,
                            buckets={("+Inf" if math.isinf(le) else repr(le)): cum
                                     for le, cum in buckets}))
    return results


# ---- formatting -------------------------------------------------------------------------------

def f_num(v, digits=0):
    return "—" if v is None else f"{v:,.{digits}f}"


def f_ratio(v, spread=None):
    if v is None:
        return "—"
    return f"{v:.2f}×" + (f" ({spread[0]:.2f}–{spread[1]:.2f})" if spread else "")


def f_us(seconds):
    if seconds is None:
        return "—"
    if seconds >= 0.1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def f_quantile(value, bucket):
    """'< 100 µs' inside the first bucket, '> 10 s' past the last, else 'value (lo–hi)'."""
    lo, hi = bucket
    if value is None:
        return "—"
    if lo == 0:
        return "< " + f_us(hi)
    if math.isinf(hi):
        return "> " + f_us(lo)
    return f"{f_us(value)} ({f_us(lo)}–{f_us(hi)})"


def cell(s, target, key, digits):
    t = s["targets"].get(target)
    if t is None:
        return "n/a"
    if t.get("unsupported"):
        return "unsupported"
    if not t["ok"] and t.get(key) is None:
        return "FAIL"
    text = f_num(t.get(key), digits)
    return text + ("*" if not t["ok"] else "")


def lat_cell(s, target):
    """'p50 / p99' (ms) of one target, marked as cell() marks."""
    t = s["targets"].get(target)
    if t is None:
        return "n/a"
    if t.get("unsupported"):
        return "unsupported"
    if t.get("p50_ms") is None or t.get("p99_ms") is None:
        return "FAIL" if not t["ok"] else "—"
    return f"{t['p50_ms']:.2f} / {t['p99_ms']:.2f}" + ("*" if not t["ok"] else "")


def failed_lines(group):
    """'- FAILED: ...' for each target of a group of scenarios with a failed repetition."""
    failed = [(s["label"], t, v.get("error")) for s in group.values()
              for t, v in s["targets"].items() if not v.get("ok") and not v.get("unsupported")]
    return [f"- FAILED: {label} via {t}: {err}" for label, t, err in failed] + ([""] if failed else [])


def proxies_table(s, with_spread):
    """A scenario run through PgBouncer and CryoProxy only: one row per proxy, then Cryo/PgB."""
    out = ["| target | tps | p50 ms | p99 ms | " + ("p99/p50 | " if with_spread else "") + "CPU µs/tx |",
           "|---|" + "---:|" * (5 if with_spread else 4)]
    for target, name in (("pgbouncer", "PgBouncer"), ("cryoproxy", "CryoProxy")):
        t = s["targets"].get(target, {})
        out.append("| " + " | ".join(
            [name, cell(s, target, "tps", 0), cell(s, target, "p50_ms", 2), cell(s, target, "p99_ms", 2)]
            + ([f_num(ratio(t.get("p99_ms"), t.get("p50_ms")), 2)] if with_spread else [])
            + [cell(s, target, "proxy_cpu_us_per_tx", 0)]) + " |")
    r = s["ratios"]
    out.append("")
    out.append("CryoProxy/PgBouncer TPS: " + f_ratio(r.get("cryoproxy_over_pgbouncer_tps"),
                                                     r.get("cryoproxy_over_pgbouncer_tps_range")))
    out.append("")
    return out


def cache_section(folder, cache):
    """Ratios and the hit ratio (from the caching proxy's scrapes) of each cache scenario."""
    for key, s in cache.items():
        tg = s["targets"]
        s["cache_over_direct"] = ratio(tg.get("cache", {}).get("tps"), tg.get("direct", {}).get("tps"))
        s["cache_over_off"] = ratio(tg.get("cache", {}).get("tps"), tg.get("cryoproxy", {}).get("tps"))
        for name, other in (("cache_over_direct", "direct"), ("cache_over_off", "cryoproxy")):
            paired = paired_ratios(tg.get("cache", {}).get("runs", []), tg.get(other, {}).get("runs", []))
            if len(paired) > 1:
                s[name + "_range"] = [min(paired), max(paired)]
        before = parse_prom(os.path.join(folder, "cache", key + ".before.prom"))
        after = parse_prom(os.path.join(folder, "cache", key + ".after.prom"))
        counts = {}
        for result in ("hit", "miss"):
            k = ("cryoproxy_cache_requests_total", frozenset({("result", result)}))
            counts[result] = after.get(k, 0.0) - before.get(k, 0.0)
        total = counts["hit"] + counts["miss"]
        s["hits"], s["misses"] = counts["hit"], counts["miss"]
        s["hit_ratio"] = counts["hit"] / total if total else None
    return cache


def markdown(meta, scenarios, scale, acq, targets, jwt, cache=None, many=None, tls=None, targets_17=None):
    p = meta["params"]
    sampled = f"{p.get('lat_sampling', 0.1) * 100:g} %"
    out = []
    out.append(f"## CryoProxy benchmark — {meta['started']}")
    out.append("")
    out.append(f"- machine: {meta['machine']}")
    out.append(f"- versions: {meta['versions']}")
    out.append(f"- load average at the start: {meta.get('load_before', '?')}")
    cpu = meta.get("cpu")
    if cpu:
        out.append(f"- CPU during the run ({cpu['wall_seconds']:.0f} s): "
                   f"{cpu['cpu_seconds_benchmark']:.0f} s used by the benchmark's processes, "
                   f"{cpu['cpu_seconds_other']:.0f} s by other processes "
                   f"({cpu['other_share'] * 100:.0f} % of the machine), steal "
                   f"{cpu['steal_share'] * 100:.0f} %")
    out.append(f"- each pgbench run {p['duration']} s after {p['warmup']} s warm-up (and one "
               f"{p.get('first_warmup', '?')} s warm-up per target at the start), median of "
               f"{p['reps']} repetitions (targets interleaved per repetition), scale {p['scale']}, "
               f"pool size {p['pool_size']} (PgBouncer and CryoProxy, transaction mode)")
    out.append(f"- CryoProxy JVM: `{meta['java_opts']}`")
    for note in meta.get("notes", []):
        out.append(f"- note: {note}")
    out.append("")
    if scenarios:
        out.append("### pgbench: TPS, latency (average, p50/p99), ratios")
        out.append("")
        out.append("| scenario | direct tps | PgBouncer tps | CryoProxy tps | Cryo/PgB | Cryo/direct "
                   "| direct ms | PgB ms | Cryo ms | direct p50/p99 ms | PgB p50/p99 ms | Cryo p50/p99 ms "
                   "| PgB added µs | Cryo added µs | PgB CPU µs/tx | Cryo CPU µs/tx |")
        out.append("|---|" + "---:|" * 15)
        for s in scenarios.values():
            r = s["ratios"]
            out.append("| " + " | ".join([
                s["label"],
                cell(s, "direct", "tps", 0), cell(s, "pgbouncer", "tps", 0),
                cell(s, "cryoproxy", "tps", 0),
                f_ratio(r.get("cryoproxy_over_pgbouncer_tps"),
                        r.get("cryoproxy_over_pgbouncer_tps_range")),
                f_ratio(r.get("cryoproxy_over_direct_tps"), r.get("cryoproxy_over_direct_tps_range")),
                cell(s, "direct", "latency_ms", 3), cell(s, "pgbouncer", "latency_ms", 3),
                cell(s, "cryoproxy", "latency_ms", 3),
                lat_cell(s, "direct"), lat_cell(s, "pgbouncer"), lat_cell(s, "cryoproxy"),
                f_num(r.get("pgbouncer_added_latency_us")),
                f_num(r.get("cryoproxy_added_latency_us")),
                cell(s, "pgbouncer", "proxy_cpu_us_per_tx", 0),
                cell(s, "cryoproxy", "proxy_cpu_us_per_tx", 0),
            ]) + " |")
        out.append("")
        out.append("Added µs (1 client only) = average latency minus direct PostgreSQL's. p50/p99 ms: "
                   f"pgbench logged a random {sampled} of the transactions (`-l --sampling-rate`); "
                   "each run's quantiles of those, then the median over the repetitions, of p50 and "
                   "of p99 apart. CPU µs/tx = the proxy "
                   "process's user+system CPU during the run divided by transactions (10 ms tick "
                   "resolution). `*` = some repetitions failed; FAIL = all did. Ratios are of medians; "
                   "in brackets the lowest and highest ratio within one repetition (the targets "
                   "run interleaved, so each repetition is a paired comparison).")
        out.append("")
        out.extend(failed_lines(scenarios))
    if scale:
        out.append(f"### Connection scale: {scale.get('idle_target')} idle clients through CryoProxy "
                   f"(pool {scale.get('pool_size')}) while {scale.get('active_clients')} pgbench "
                   f"clients run -S")
        out.append("")
        mib = lambda kb: "—" if kb is None else f"{kb / 1024:,.1f} MiB"
        out.append("| measure | value |")
        out.append("|---|---:|")
        st = scale.get("idle_status") or {}
        out.append(f"| idle clients logged in / failed | {st.get('connected', '—')} / "
                   f"{st.get('failed', '—')} (in {st.get('login_seconds', '—')} s) |")
        out.append(f"| idle clients dropped during the run | {scale.get('idle_final', {}).get('dropped', '—')} |")
        out.append(f"| CryoProxy RSS before (after GC) | {mib(scale.get('rss_before_kb'))} |")
        out.append(f"| CryoProxy RSS with the crowd (after GC) | {mib(scale.get('rss_with_kb'))} |")
        out.append(f"| CryoProxy RSS peak (VmHWM) | {mib(scale.get('hwm_kb'))} |")
        per_conn = scale.get("rss_per_conn_bytes")
        out.append(f"| RSS per idle connection | {f_num(per_conn / 1024 if per_conn is not None else None, 1)} KiB |")
        hper = scale.get("heap_per_conn_bytes")
        out.append(f"| Java heap used per idle connection (after GC) | {f_num(hper / 1024 if hper is not None else None, 1)} KiB |")
        if per_conn is not None and hper is not None and "AlwaysPreTouch" in meta["java_opts"]:
            out.append(f"| memory per idle connection, heap + off-heap | "
                       f"{(per_conn + hper) / 1024:,.1f} KiB |")
        b, w = scale.get("baseline", {}), scale.get("crowd", {})
        out.append(f"| active latency without / with crowd | {f_num(b.get('latency_ms'), 3)} ms / "
                   f"{f_num(w.get('latency_ms'), 3)} ms ({scale.get('latency_change_pct', 0):+.1f} %) |"
                   if b.get("latency_ms") and w.get("latency_ms") else
                   "| active latency without / with crowd | — |")
        out.append(f"| active TPS without / with crowd | {f_num(b.get('tps'))} / {f_num(w.get('tps'))} |")
        out.append(f"| CryoProxy CPU µs/tx without / with crowd | {f_num(b.get('proxy_cpu_us_per_tx'))} / "
                   f"{f_num(w.get('proxy_cpu_us_per_tx'))} |")
        share = scale.get("idle_client_cpu_share")
        if share is not None:
            out.append(f"| idle client process's own CPU during the crowd runs | {share * 100:.1f} % of a core |")
        out.append("")
        out.append("RSS from /proc/PID/status after a full GC (`jcmd PID GC.run`); heap from "
                   "`jvm_memory_used_bytes{area=\"heap\"}`. With `-XX:+AlwaysPreTouch` the whole "
                   "heap is resident from the start, so RSS growth is off-heap memory only (Netty "
                   "direct buffers, native allocations) and heap growth is counted apart; kernel "
                   "socket buffers are in neither. The idle clients log in, run one `SELECT 1`, then one every "
                   f"{scale.get('idle_interval_seconds', '?')} s on average. Without = median of "
                   "the runs before the crowd came and after it left.")
        out.append("")
    if acq:
        out.append("### Acquisition: `cryoproxy_acquire_seconds` deltas")
        out.append("")
        out.append("| run | clients | pool | acquisitions | mean | p50 | p99 | ≤ 1 ms |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for a in acq:
            share = a.get("share_within_1ms")
            out.append(f"| {a['label']} | {a['clients']} | {a['pool']} | {a['acquisitions']:,} | "
                       f"{f_us(a['mean_seconds'])} | {f_quantile(a['p50_seconds'], a['p50_bucket'])} | "
                       f"{f_quantile(a['p99_seconds'], a['p99_bucket'])} | "
                       f"{'—' if share is None else f'{share * 100:.1f} %'} |")
        out.append("")
        out.append("Quantiles come from bucket deltas (bounds 100 µs, 250 µs, 500 µs, 1 ms, "
                   "2.5 ms, ...): the bucket holding the quantile is in brackets, the value is "
                   "interpolated inside it as Prometheus' histogram_quantile does; \"< 100 µs\" "
                   "means the quantile is in the first bucket. Mean = _sum / _count.")
        out.append("")
    if jwt:
        out.append("### JWT login cost (issue #14): -S -M simple through CryoProxy as service_read")
        out.append("")
        out.append("| scenario | password tps | JWT tps | JWT/password | password ms | JWT ms "
                   "| CPU µs/tx password | CPU µs/tx JWT | within 10 % |")
        out.append("|---|" + "---:|" * 8)
        for s in jwt.values():
            r = s["jwt_over_password"]
            met = {True: "yes", False: "**no**", None: "—"}[s["met"]]
            out.append("| " + " | ".join([
                s["label"], cell(s, "password", "tps", 0), cell(s, "jwt", "tps", 0),
                f_ratio(r, s.get("jwt_over_password_range")),
                cell(s, "password", "latency_ms", 3), cell(s, "jwt", "latency_ms", 3),
                cell(s, "password", "proxy_cpu_us_per_tx", 0),
                cell(s, "jwt", "proxy_cpu_us_per_tx", 0), met]) + " |")
        out.append("")
        out.append("Both logins run as `service_read` in the same pool (`--pool-size`). The password "
                   "login is trust; the JWT login presents an ES256 token as the password of "
                   "`authenticator`, verified at login (then cached), and its signed claims are "
                   "set on the server connection at every checkout where another token's are (the "
                   "pool prefers connections that already have them). One "
                   "token: one pgbench process, the claims stay. Subjects: as many pgbench "
                   "processes, each with its own token (and as many for the password login). "
                   "Within 10 % = JWT/password ≥ 0.90 (ratio of medians; in brackets the paired "
                   "ratio of each repetition).")
        out.append("")
    if cache:
        out.append("### Result cache (issue #15): custom pgbench scripts, -M simple")
        out.append("")
        out.append("| scenario | direct tps | cache off tps | cache on tps | on/direct | on/off "
                   "| hit ratio | CPU µs/tx off | CPU µs/tx on |")
        out.append("|---|" + "---:|" * 8)
        for s in cache.values():
            hr = s.get("hit_ratio")
            out.append("| " + " | ".join([
                s["label"], cell(s, "direct", "tps", 0), cell(s, "cryoproxy", "tps", 0),
                cell(s, "cache", "tps", 0),
                f_ratio(s.get("cache_over_direct"), s.get("cache_over_direct_range")),
                f_ratio(s.get("cache_over_off"), s.get("cache_over_off_range")),
                "—" if hr is None else f"{hr * 100:.1f} %",
                cell(s, "cryoproxy", "proxy_cpu_us_per_tx", 0),
                cell(s, "cache", "proxy_cpu_us_per_tx", 0)]) + " |")
        out.append("")
        out.append("Cache off: the benchmark's CryoProxy. Cache on: a second CryoProxy, the same but "
                   "for `cache.enabled` with a rule for `public.pgbench_accounts` (300 s) and the "
                   "V4 invalidation trigger on it. Targets (issue #15): hot reads on/direct ≥ 2 and "
                   "on/off ≥ 2 with a hit ratio ≥ 95 %; all misses on/off ≥ 0.95. Hit ratio from "
                   "the caching proxy's `cryoproxy_cache_requests_total` over the measured runs.")
        out.append("")
    for s in (many or {}).values():
        out.append(f"### Many active clients (issue #17): {s['label']}, pool {p['pool_size']}")
        out.append("")
        out.extend(proxies_table(s, True))
        out.append(f"{s['clients']:,} pgbench clients share {p['pool_size']} server connections "
                   "(the `bench` database of both proxies), so most of a transaction's latency is "
                   "waiting for one; p99/p50 (of the medians) shows how evenly that wait is shared. "
                   f"p50/p99 from a random {sampled} of the transactions, median over the "
                   "repetitions; in brackets the lowest and highest paired TPS ratio. Direct "
                   "PostgreSQL is not a target: its `max_connections` is far lower. Issue #17's "
                   "target: CryoProxy's p99/p50 ≤ 1.2.")
        out.append("")
        out.extend(failed_lines({0: s}))
    for s in (tls or {}).values():
        out.append(f"### TLS (issue #17): {s['label']}")
        out.append("")
        out.extend(proxies_table(s, False))
        out.append("Both proxies offer TLS to a client that asks (PgBouncer `client_tls_sslmode = "
                   "allow`, CryoProxy `tls.client.mode: allow`) with the same self-signed EC P-256 "
                   "certificate; these runs connect with `sslmode=require`, the server leg stays "
                   "plain. Every other run of this report connects with `PGSSLMODE=disable`. "
                   f"p50/p99 as above ({sampled} of the transactions). Issue #17's target: "
                   "Cryo/PgB ≥ 1.25.")
        out.append("")
        out.extend(failed_lines({0: s}))
    out.extend(targets_table("Issue #6 targets", targets, True))
    out.extend(targets_table("Issue #17 targets", targets_17, False))
    return "\n".join(out)


def targets_table(title, rows, numbered):
    """A targets table (nothing without rows): target, measured, met, numbered or not."""
    if not rows:
        return []
    out = [f"### {title}", "", ("| # " if numbered else "") + "| target | measured | met |",
           ("|---" if numbered else "") + "|---|---|---|"]
    for t in rows:
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        out.append((f"| {t['n']} " if numbered else "") + f"| {t['target']} | {t['measured']} | {met} |")
    out.append("")
    return out


def evaluate_targets(meta, scenarios, scale, acq):
    c = meta["params"]["clients"]
    res = []

    def r(key, name):
        return scenarios.get(key, {}).get("ratios", {}).get(name)

    def add(n, target, value, met, text=None):
        res.append({"n": n, "target": target, "value": value,
                    "met": None if value is None else met,
                    "measured": "—" if value is None else (text or f"{value:.2f}×")})

    def add_ratio(n, target, key, name, bound):
        v = r(key, name)
        add(n, target, v, v is not None and v >= bound,
            None if v is None else f_ratio(v, r(key, name + "_range")))

    add_ratio(1, f"-S -M simple -c {c}: CryoProxy ≥ 1.0× PgBouncer (aim 1.2×)",
              f"select_simple_c{c}", "cryoproxy_over_pgbouncer_tps", 1.0)
    add_ratio(2, f"-S -M extended -c {c}: ≥ 1.0× PgBouncer",
              f"select_extended_c{c}", "cryoproxy_over_pgbouncer_tps", 1.0)
    add_ratio(3, f"-S -M prepared -c {c}: ≥ 0.8× direct",
              f"select_prepared_c{c}", "cryoproxy_over_direct_tps", 0.8)
    a_c = r("select_simple_c1", "cryoproxy_added_latency_us")
    a_p = r("select_simple_c1", "pgbouncer_added_latency_us")
    add(4, "1 client -S simple: added latency ≤ PgBouncer's",
        None if a_c is None or a_p is None else a_c, a_c is not None and a_p is not None and a_c <= a_p,
        None if a_c is None or a_p is None else f"{a_c:.0f} µs vs {a_p:.0f} µs")
    add_ratio(5, "-C -c 8: ≥ 1.0× PgBouncer", "connect_c8", "cryoproxy_over_pgbouncer_tps", 1.0)
    if scale and scale.get("hwm_kb") is not None and scale.get("latency_change_pct") is not None:
        rss = max(scale.get("hwm_kb") or 0, scale.get("rss_with_kb") or 0) / 1024
        pct = scale["latency_change_pct"]
        add(6, f"{scale['idle_target']} idle clients: RSS ≤ 1 GiB, active latency within 10 %",
            rss, rss <= 1024 and pct <= 10 and (scale.get("idle_status") or {}).get("failed", 1) == 0,
            f"peak RSS {rss:,.0f} MiB, latency {pct:+.1f} %")
    else:
        add(6, "10,000 idle clients: RSS ≤ 1 GiB, latency within 10 %", None, False)
    below = next((a for a in acq if a["name"] == "below"), None)
    v = below and below.get("p99_seconds")
    # met only when the whole bucket holding p99 lies below 1 ms
    add(7, "acquisition p99 < 1 ms below saturation", v,
        v is not None and below["p99_bucket"][1] <= 0.001,
        None if v is None else "p99 " + f_quantile(v, below["p99_bucket"]))
    return res


def evaluate_targets_17(meta, scenarios, scale, many, tls):
    """Issue #17's targets, in the order of the issue; a row without its data shows — and met —."""
    p = meta["params"]
    c, m = p["clients"], p.get("many_clients", 2000)
    groups = {**scenarios, **many, **tls}
    res = []

    def r(key, name):
        return groups.get(key, {}).get("ratios", {}).get(name)

    def target_value(key, target, name):
        return groups.get(key, {}).get("targets", {}).get(target, {}).get(name)

    def add(target, value, met, text=None):
        res.append({"target": target, "value": value,
                    "met": None if value is None else met,
                    "measured": "—" if value is None else (text or f"{value:.2f}×")})

    def add_ratio(target, key, name, bound):
        v = r(key, name)
        add(target, v, v is not None and v >= bound,
            None if v is None else f_ratio(v, r(key, name + "_range")))

    add_ratio(f"-S -M simple -c {c}: Cryo/PgB ≥ 1.25",
              f"select_simple_c{c}", "cryoproxy_over_pgbouncer_tps", 1.25)
    add_ratio(f"-S -M extended -c {c}: Cryo/PgB ≥ 1.15",
              f"select_extended_c{c}", "cryoproxy_over_pgbouncer_tps", 1.15)
    add_ratio(f"-S -M prepared -c {c}: Cryo/direct ≥ 0.85",
              f"select_prepared_c{c}", "cryoproxy_over_direct_tps", 0.85)
    a_c = r("select_simple_c1", "cryoproxy_added_latency_us")
    a_p = r("select_simple_c1", "pgbouncer_added_latency_us")
    # no ratio when PgBouncer added nothing measurable (noise can make it zero or negative)
    v = a_c / a_p if a_c is not None and a_p is not None and a_p > 0 else None
    add("-S -c 1 added latency: Cryo added / PgB added ≤ 0.8", v, v is not None and v <= 0.8,
        None if v is None else f"{a_c:.0f} µs vs {a_p:.0f} µs ({v:.2f}×)")
    add_ratio("-S -C -c 8: Cryo/PgB ≥ 1.1", "connect_c8", "cryoproxy_over_pgbouncer_tps", 1.1)
    add_ratio(f"TPC-B -c {c}: Cryo/PgB ≥ 1.1", f"tpcb_c{c}", "cryoproxy_over_pgbouncer_tps", 1.1)
    key = f"select_simple_c{c}"
    v = r(key, "cryoproxy_over_pgbouncer_p99")
    add(f"p99 -S -c {c}: Cryo p99 / PgB p99 ≤ 1.0", v, v is not None and v <= 1.0,
        None if v is None else f"{v:.2f}× ({target_value(key, 'cryoproxy', 'p99_ms'):.2f} ms vs "
                               f"{target_value(key, 'pgbouncer', 'p99_ms'):.2f} ms)")
    if scale and scale.get("hwm_kb") is not None and scale.get("latency_change_pct") is not None:
        # the same peak RSS as issue #6's row 6
        rss = max(scale.get("hwm_kb") or 0, scale.get("rss_with_kb") or 0) / 1024
        pct = scale["latency_change_pct"]
        add(f"{scale['idle_target']:,} idle clients + {scale.get('active_clients', '?')} active: "
            "peak RSS ≤ 512 MiB, active latency within 10 %",
            rss, rss <= 512 and pct <= 10 and (scale.get("idle_status") or {}).get("failed", 1) == 0,
            f"peak RSS {rss:,.0f} MiB, latency {pct:+.1f} %")
    else:
        add(f"{p['idle_clients']:,} idle clients + {p.get('scale_active', c)} active: "
            "peak RSS ≤ 512 MiB, active latency within 10 %", None, False)
    key = f"many_c{m}"
    spread = {t: ratio(target_value(key, t, "p99_ms"), target_value(key, t, "p50_ms"))
              for t in ("cryoproxy", "pgbouncer")}
    v = spread["cryoproxy"]
    add(f"{m:,} active clients, pool {p['pool_size']}: Cryo p99/p50 ≤ 1.2", v, v is not None and v <= 1.2,
        None if v is None else
        f"{v:.2f} (p50 {target_value(key, 'cryoproxy', 'p50_ms'):.2f} ms, p99 "
        f"{target_value(key, 'cryoproxy', 'p99_ms'):.2f} ms); PgBouncer {f_num(spread['pgbouncer'], 2)}")
    add_ratio(f"TLS client leg -S -c {c}: Cryo/PgB ≥ 1.25",
              f"tls_c{c}", "cryoproxy_over_pgbouncer_tps", 1.25)
    return res


def main():
    if sys.argv[1] == "merge":
        sys.exit(merge(sys.argv[2], sys.argv[3:]))
    if sys.argv[1] == "latency":
        print(json.dumps(latency(sys.argv[2]), separators=(",", ":")))
        return
    folder, json_path = sys.argv[1], sys.argv[2]
    meta = json.load(open(os.path.join(folder, "meta.json")))
    runs = load_runs(folder, meta.get("clk_tck", 100))
    scenarios = summarise(runs)
    for key, targets in meta.get("unsupported", {}).items():
        for target, why in targets.items():
            if key in scenarios:
                scenarios[key]["targets"][target] = {"unsupported": True, "reason": why, "ok": True}
    # the scale and acquisition runs are reported in their own sections
    scale_runs = {k: scenarios.pop(k) for k in list(scenarios) if k.startswith(("scale_", "acquire_"))}
    jwt = {k: scenarios.pop(k) for k in list(scenarios) if k.startswith("jwt_")}
    cache = cache_section(folder, {k: scenarios.pop(k) for k in list(scenarios)
                                   if k.startswith("cache_")})
    # issue #17's parts through the two proxies only: their own tables
    many = {k: scenarios.pop(k) for k in list(scenarios) if k.startswith("many_")}
    tls = {k: scenarios.pop(k) for k in list(scenarios) if k.startswith("tls_")}
    for s in jwt.values():
        tg = s["targets"]
        s["jwt_over_password"] = ratio(tg.get("jwt", {}).get("tps"),
                                       tg.get("password", {}).get("tps"))
        paired = paired_ratios(tg.get("jwt", {}).get("runs", []),
                               tg.get("password", {}).get("runs", []))
        if len(paired) > 1:
            s["jwt_over_password_range"] = [min(paired), max(paired)]
        v = s["jwt_over_password"]
        s["met"] = None if v is None else v >= 0.9
    scale = None
    scale_path = os.path.join(folder, "scale.json")
    if os.path.exists(scale_path):
        scale = json.load(open(scale_path))
        for phase in ("baseline", "crowd"):
            t = scale_runs.get("scale_" + phase, {}).get("targets", {}).get("cryoproxy", {})
            scale[phase] = {k: t.get(k) for k in ("tps", "latency_ms", "proxy_cpu_us_per_tx",
                                                  "ok", "error")}
        b, w = scale["baseline"].get("latency_ms"), scale["crowd"].get("latency_ms")
        scale["latency_change_pct"] = (w / b - 1) * 100 if b and w else None
        if scale.get("crowd_runs_ms"):
            scale["idle_client_cpu_share"] = (scale["idle_client_cpu_ticks"] / meta.get("clk_tck", 100)
                                              / (scale["crowd_runs_ms"] / 1000))
    acq = acquisition(folder, meta)
    for a in acq:
        t = scale_runs.get("acquire_" + a["name"], {}).get("targets", {}).get("cryoproxy", {})
        a["pgbench"] = {k: t.get(k) for k in ("tps", "latency_ms", "ok", "error")}
    # issue #6's targets need its parts; a jwt-only run has none of them
    targets = evaluate_targets(meta, scenarios, scale, acq) if scenarios or scale or acq else []
    targets_17 = (evaluate_targets_17(meta, scenarios, scale, many, tls)
                  if scenarios or scale or many or tls else [])
    report = {"meta": meta, "scenarios": scenarios, "connection_scale": scale,
              "acquisition": acq, "targets": targets, "jwt": jwt, "cache": cache,
              "many": many, "tls": tls, "targets_17": targets_17}
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    print(markdown(meta, scenarios, scale, acq, targets, jwt, cache, many, tls, targets_17))


if __name__ == "__main__":
    main()
