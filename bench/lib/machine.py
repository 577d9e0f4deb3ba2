#!/usr/bin/env python3
"""How much of the machine's CPU went to processes that are not the benchmark's own.

The load average cannot say: 32 pgbench clients and their backends put it far above the core
count by themselves. Instead, from /proc:

  machine.py snapshot ROOT_PID FILE     record CPU counters now
  machine.py share FILE_BEFORE FILE_AFTER   print JSON: CPU seconds of the whole machine, of
                                        ROOT_PID's process tree, of everything else, and steal

The tree's CPU is utime+stime+cutime+cstime of ROOT_PID and every live descendant: children
that already exited are in their parent's cutime/cstime once reaped (bash reaps pgbench,
the postmaster reaps backends), live ones (pooled backends, the proxies) are read directly.
"Other" is busy (user+nice+system) minus the tree, so rather a lower bound: softirq time that
the kernel charges to the tree's processes is in their stime but not in the busy sum.
"""

import json
import os
import sys


def process_times(pid):
    """(ppid, utime+stime+cutime+cstime in ticks) or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is the state (field 3 in proc(5)); utime is field 14
    return int(fields[1]), sum(int(fields[i]) for i in (11, 12, 13, 14))


def tree_ticks(root):
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            t = process_times(int(name))
            if t:
                procs[int(name)] = t
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += procs[pid][1]
        todo.extend(children.get(pid, []))
    return total


def snapshot(root, path):
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user
    # irq and softirq time left out: loopback traffic is the benchmark's, yet charged to no process
    busy = sum(cpu[i] for i in (0, 1, 2))
    data = {"busy": busy, "steal": cpu[7], "total": sum(cpu[:8]), "tree": tree_ticks(root)}
    with open(path, "w") as f:
        json.dump(data, f)


def share(before_path, after_path):
    hz = os.sysconf("SC_CLK_TCK")
    a, b = json.load(open(before_path)), json.load(open(after_path))
    d = {k: (b[k] - a[k]) / hz for k in a}
    cores = os.cpu_count()
    wall = d["total"] / cores
    other = max(0.0, d["busy"] - d["tree"])
    print(json.dumps({
        "wall_seconds": round(wall, 1),
        "cpu_seconds_available": round(d["total"], 1),
        "cpu_seconds_benchmark": round(d["tree"], 1),
        "cpu_seconds_other": round(other, 1),
        "other_share": round(other / d["total"], 3) if d["total"] else None,
        "steal_share": round(d["steal"] / d["total"], 3) if d["total"] else None,
    }))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "snapshot":
        snapshot(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "share":
        share(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
