# SPDX-License-Identifier: MIT
"""Parsing and table helpers for bench/run.sh (stdlib only).

Each subcommand reads files written by run.sh and prints either a few
shell-friendly values or a markdown table on stdout.
"""
import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    if x is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


# ---------------------------------------------------------------- BPF programs

def cmd_tcx_ids(ns, ifname):
    """Program ids attached with TCX to ns/ifname: 'name=id' per line."""
    out = subprocess.run(["ip", "netns", "exec", ns, "bpftool", "net", "show", "dev", ifname, "-j"],
                         check=True, capture_output=True, text=True).stdout
    for entry in json.loads(out):
        for t in entry.get("tc", []):
            if t.get("kind", "").startswith("tcx/"):
                print(f"{t['name']}={t['prog_id']}")


def cmd_progstats(*ids):
    """'run_time_ns run_cnt' of each program id, space separated, in order."""
    vals = []
    for i in ids:
        d = json.loads(subprocess.run(["bpftool", "prog", "show", "id", i, "-j"], check=True,
                                      capture_output=True, text=True).stdout)
        vals += [str(d.get("run_time_ns", 0)), str(d.get("run_cnt", 0))]
    print(" ".join(vals))


def cmd_prog_exists(*ids):
    """Prints the ids (of the given ones) that still exist."""
    alive = []
    for i in ids:
        r = subprocess.run(["bpftool", "prog", "show", "id", i], capture_output=True)
        if r.returncode == 0:
            alive.append(i)
    print(" ".join(alive))


# ---------------------------------------------------------------- iperf3

def load_iperf(path):
    with open(path) as f:
        d = json.load(f)
    if "error" in d:
        raise SystemExit(f"iperf3 error in {path}: {d['error']}")
    return d


def cmd_iperf(path):
    """'recv_gbps sent_bytes recv_bytes retransmits data_local_port'."""
    d = load_iperf(path)
    e = d["end"]
    ports = [c["local_port"] for c in d["start"]["connected"]]
    print(f"{e['sum_received']['bits_per_second'] / 1e9:.3f} {e['sum_sent']['bytes']} "
          f"{e['sum_received']['bytes']} {e['sum_sent'].get('retransmits', 0)} {ports[0]}")


# ---------------------------------------------------------------- section 1

HOOKS = (("ingress", 0), ("egress", 1))


def cmd_s1_table(tsv):
    """Rows: scen rep gbps, (run_time_ns run_cnt) of tt_in tt_eg fl_in fl_eg po_in po_eg
    nh_in nh_eg (tcptrack --no-health) sd_in sd_eg (seed anchor) ln_in ln_eg (one-line
    floor), segs_c segs_s, tcptrack user-space CPU %, app messages/s (request
    scenarios, else empty)."""
    runs = defaultdict(list)
    order = []
    with open(tsv) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 31:
                continue
            scen = p[0]
            if scen not in runs:
                order.append(scen)
            v = [float(x) for x in p[2:30]]
            v.append(float(p[30]) if p[30] else None)
            runs[scen].append(v)
    print("| Scenario | Hook | Runs (skbs) | Wire segs / run | tcptrack ns/run "
          "| no-health ns/run | parse-only ns/run | seed ns/run | line ns/run "
          "| floor ns/run | tcptrack/floor | tcptrack/line | tcptrack/seed | seed/floor "
          "| line/floor | tcptrack/no-health | no-health/floor "
          "| tcptrack/parse-only | parse-only/floor "
          "| tcptrack − floor ns/run | tcptrack − parse-only ns/run | tcptrack ns / wire seg "
          "| Gbit/s | tcptrack user CPU % |")
    print("|---|---|" + "---:|" * 22)
    notes = []
    groups = []
    for scen in order:
        reps = runs[scen]
        # Bimodal runs (the sender coalesced into GSO trains in some runs and not in
        # others): a median across them mixes two regimes, so show each run.
        spr = [v[25] / v[2] for v in reps if v[2]]
        if len(spr) > 1 and max(spr) > 2 * min(spr):
            groups += [(f"{scen}, run {i + 1} of {len(reps)}", [v]) for i, v in enumerate(reps)]
            notes.append(f"{scen}: the runs differ in kind (ingress wire segments per skb "
                         f"{', '.join(fmt(x, 1) for x in spr)}: the sender coalesced its writes "
                         f"into GSO trains in some runs and not in others), so each run "
                         f"has its own rows.")
        else:
            groups.append((scen, reps))
    for scen, reps in groups:
        for hook in ("ingress", "egress", "both"):
            per = []
            for v in reps:
                gbps = v[0]
                prog = [(v[1 + 2 * k], v[2 + 2 * k]) for k in range(12)]  # tt, fl, po, nh, sd, ln
                segs = [v[25], v[26]]  # client OutSegs (arrive on ingress), server OutSegs (egress)
                hs = (0, 1) if hook == "both" else ((0,) if hook == "ingress" else (1,))
                tot = lambda base: (sum(prog[base + h][0] for h in hs),
                                    sum(prog[base + h][1] for h in hs))
                (t_ns, t_cnt), (f_ns, f_cnt), (p_ns, p_cnt) = tot(0), tot(2), tot(4)
                n_ns, n_cnt = tot(6)
                (d_ns, d_cnt), (l_ns, l_cnt) = tot(8), tot(10)
                s = sum(segs[h] for h in hs)
                if 0 in (t_cnt, f_cnt, p_cnt, n_cnt, d_cnt, l_cnt):
                    continue
                tpr, fpr, ppr, npr = t_ns / t_cnt, f_ns / f_cnt, p_ns / p_cnt, n_ns / n_cnt
                dpr, lpr = d_ns / d_cnt, l_ns / l_cnt
                per.append(dict(cnt=t_cnt, segs=s / t_cnt, tt=tpr, fl=fpr, po=ppr, nh=npr,
                                sd=dpr, ln=lpr, r_tl=tpr / lpr, r_ts=tpr / dpr, r_sf=dpr / fpr,
                                r_lf=lpr / fpr,
                                r_tf=tpr / fpr, r_tn=tpr / npr, r_nf=npr / fpr,
                                r_tp=tpr / ppr, r_pf=ppr / fpr,
                                d_tf=tpr - fpr, d_tp=tpr - ppr,
                                per_seg=t_ns / s if s else None, gbps=gbps, cpu=v[27],
                                cnt_mismatch=not (t_cnt == f_cnt == p_cnt == n_cnt == d_cnt
                                                  == l_cnt)))
            if not per:
                print(f"| {scen} | {hook} | 0 |" + " |" * 21)
                continue
            m = lambda k: med([r[k] for r in per])
            mism = " (!)" if any(r["cnt_mismatch"] for r in per) else ""
            print(f"| {scen} | {hook} | {fmt(int(m('cnt')))}{mism} | {fmt(m('segs'), 2)} | "
                  f"{fmt(m('tt'))} | {fmt(m('nh'))} | {fmt(m('po'))} | {fmt(m('sd'))} | "
                  f"{fmt(m('ln'))} | {fmt(m('fl'))} | "
                  f"**{fmt(m('r_tf'), 2)}×** | **{fmt(m('r_tl'), 2)}×** | **{fmt(m('r_ts'), 2)}×** | "
                  f"{fmt(m('r_sf'), 2)}× | {fmt(m('r_lf'), 2)}× | "
                  f"**{fmt(m('r_tn'), 2)}×** | {fmt(m('r_nf'), 2)}× | "
                  f"**{fmt(m('r_tp'), 2)}×** | {fmt(m('r_pf'), 2)}× | {fmt(m('d_tf'))} | "
                  f"{fmt(m('d_tp'))} | {fmt(m('per_seg'), 2)} | {fmt(m('gbps'), 2)} | "
                  f"{fmt(m('cpu'), 0)} |")
    for scen in order:
        reps = runs[scen]
        mps = [v[28] for v in reps if v[28] is not None]
        if mps:
            notes.append(f"{scen}: {fmt(med(mps), 0)} messages/s (median of {len(mps)}), "
                         f"runs of {', '.join(fmt(x, 0) for x in mps)}.")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")
    print()
    print("(!) = the six programs' run counts differ in some run (they share the hooks, "
          "so they should not).")


# ---------------------------------------------------------------- section 7 / kernel memory

def possible_cpus():
    n = 0
    for part in open("/sys/devices/system/cpu/possible").read().strip().split(","):
        a, _, b = part.partition("-")
        n += int(b or a) - int(a) + 1
    return n


def cmd_possible_cpus():
    print(possible_cpus())


def proc_map_ids(pid):
    """BPF map ids a process holds fds of (from /proc/PID/fdinfo)."""
    import os
    ids = set()
    d = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(d):
        try:
            for line in open(f"{d}/{fd}"):
                if line.startswith("map_id:"):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    return sorted(ids)


def map_show(i):
    return json.loads(subprocess.run(["bpftool", "map", "show", "id", str(i), "-j"], check=True,
                                     capture_output=True, text=True).stdout)


def cmd_proc_maps(pid, max_flows):
    """One JSON line per map of the process: bpftool's map show plus max_flows."""
    for i in proc_map_ids(pid):
        m = map_show(i)
        m["max_flows"], m["possible_cpus"] = int(max_flows), possible_cpus()
        print(json.dumps(m))


def cmd_proc_maps_memlock(pid):
    """'X MB in N maps' for the process's maps."""
    ms = [map_show(i) for i in proc_map_ids(pid)]
    total = sum(int(m.get("bytes_memlock", 0)) for m in ms)
    print(f"{total / 1e6:,.1f} MB in {len(ms)} maps")


def r8(x):
    return (x + 7) & ~7


PAGE = 4096
NO_PREALLOC = 1            # BPF_F_NO_PREALLOC
MMAPABLE = 1 << 10         # BPF_F_MMAPABLE
HASHTAB_MAP_LOCK_COUNT = 8
RINGBUF_NR_META_PAGES = 3  # the bpf_ringbuf header page + consumer and producer pages


def page_align(x):
    return (x + PAGE - 1) // PAGE * PAGE


def kernel_struct_sizes():
    """Sizes of the kernel structs map_mem_usage counts, from this kernel's BTF."""
    want = {"bpf_array": 312, "bpf_htab": 832, "bucket": 16, "htab_elem": 48,
            "bpf_queue_stack": 312, "bpf_ringbuf_map": 304}
    got = {}
    try:
        out = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"],
                             check=True, capture_output=True, text=True).stdout
        for m in re.finditer(r"STRUCT '(\w+)' size=(\d+)", out):
            if m.group(1) in want and m.group(1) not in got:
                got[m.group(1)] = int(m.group(2))
    except (OSError, subprocess.CalledProcessError):
        pass
    return {k: got.get(k, v) for k, v in want.items()}, set(want) - set(got)


def mem_model(m, cpus, sz):
    """The kernel's map_mem_usage for this map on `cpus` possible CPUs, or None if not modelled.
    arraymap.c array_map_mem_usage, hashtab.c htab_map_mem_usage (preallocated, not LRU),
    queue_stack_maps.c queue_stack_map_mem_usage, ringbuf.c ringbuf_map_mem_usage."""
    t, k, v, n, fl = m["type"], m["bytes_key"], m["bytes_value"], m["max_entries"], m.get("flags", 0)
    if m["name"] == PER_CPU_ARRAY_NAME:  # a plain array of nr_cpus x entries per CPU
        n = cache_entries_per_cpu(m["max_flows"], cpus) * cpus
    if t == "array":
        if fl & MMAPABLE:
            return page_align(sz["bpf_array"]) + page_align(n * r8(v))
        return sz["bpf_array"] + n * r8(v)
    if t == "percpu_array":
        return sz["bpf_array"] + n * 8 + n * r8(v) * cpus
    if t in ("queue", "stack"):
        return sz["bpf_queue_stack"] + (n + 1) * v
    if t == "ringbuf":
        data_pages = n // PAGE
        return (sz["bpf_ringbuf_map"] + (RINGBUF_NR_META_PAGES + data_pages) * PAGE +
                (RINGBUF_NR_META_PAGES + 2 * data_pages) * 8)
    if t in ("hash", "percpu_hash") and not fl & NO_PREALLOC:
        buckets = 1 << (n - 1).bit_length()
        usage = sz["bpf_htab"] + sz["bucket"] * buckets + 4 * cpus * HASHTAB_MAP_LOCK_COUNT
        elem = sz["htab_elem"] + r8(k) + (8 if t == "percpu_hash" else r8(v))
        if t == "percpu_hash":
            return usage + elem * n + r8(v) * cpus * n
        return usage + elem * (n + cpus) + 8 * cpus  # spare elements + their pointers
    return None


TARGET_B_PER_FLOW = 200
TARGET_AT = 1000000
# The per-CPU counter cache (tcptrack/store.h): sized by CPUs, not by flows.
PER_CPU_ARRAY_NAME = "flow_cache"


def cache_entries_per_cpu(max_flows, cpus):
    """The per-CPU cache's entries for --max-flows on `cpus` CPUs: asked of the
    store's own rule (StoreGeometry::for_flows, through report_cost)."""
    tool = os.environ.get("TTBENCH_GEOMETRY_TOOL")
    if not tool:
        raise SystemExit("TTBENCH_GEOMETRY_TOOL (bench/report_cost) is not set")
    out = subprocess.run([tool, "--cache-entries-per-cpu", str(max_flows), str(cpus)],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def cmd_s7_table(path):
    maps = [json.loads(l) for l in open(path) if l.strip()]
    sz, missing = kernel_struct_sizes()
    by_mf = defaultdict(dict)
    for m in maps:
        by_mf[m["max_flows"]][m["name"]] = m
    mfs = sorted(by_mf)
    p0 = maps[0]["possible_cpus"]
    targets = (64, 128)
    hdr = "| Map | Type | Key / value B |"
    al = "|---|---|---:|"
    for mf in mfs:
        hdr += (f" entries @{mf:,} | memlock @{mf:,}, {p0} CPUs | model | "
                + " | ".join(f"@{mf:,}, {t} CPUs" for t in targets) + " |")
        al += "---:|---:|---|" + "---:|" * len(targets)
    print(hdr)
    print(al)
    allnames = sorted({n for mf in mfs for n in by_mf[mf]},
                      key=lambda n: -max(int(by_mf[mf].get(n, {}).get("bytes_memlock", 0))
                                         for mf in mfs))
    tot = {mf: [0] * (1 + len(targets)) for mf in mfs}
    mismatch = []
    for name in allnames:
        any_m = next(by_mf[mf][name] for mf in mfs if name in by_mf[mf])
        row = f"| {name} | {any_m['type']} | {any_m['bytes_key']} / {any_m['bytes_value']} |"
        for mf in mfs:
            m = by_mf[mf].get(name)
            if not m:
                row += " |" * (3 + len(targets))
                continue
            ml = int(m["bytes_memlock"])
            model = mem_model(m, p0, sz)
            if model is None:  # not modelled: assume it does not grow with CPUs
                check, proj = "not modelled", [ml for _ in targets]
            else:
                check = "= measured" if model == ml else f"{model - ml:+,} B"
                if model != ml:
                    mismatch.append(f"{name} @{mf:,}")
                # measured + what the formula adds for more CPUs
                proj = [ml + mem_model(m, t, sz) - model for t in targets]
            tot[mf][0] += ml
            for j, x in enumerate(proj):
                tot[mf][1 + j] += x
            row += (f" {m['max_entries']:,} | {ml:,} | {check} | "
                    + " | ".join(f"{x:,}" for x in proj) + " |")
        print(row)
    row = "| **total** | | |"
    row2 = "| **bytes per max-flow** | | |"
    for mf in mfs:
        row += f" | **{tot[mf][0]:,}** ({tot[mf][0] / 2**20:,.1f} MiB) | | " + " | ".join(
            f"**{x:,}** ({x / 2**20:,.1f} MiB)" for x in tot[mf][1:]) + " |"
        row2 += f" | **{tot[mf][0] / mf:,.1f}** | | " + " | ".join(
            f"**{x / mf:,.1f}**" for x in tot[mf][1:]) + " |"
    print(row)
    print(row2)
    print()
    print(f"Model: struct sizes from this kernel's BTF ({', '.join(f'{k} {v}' for k, v in sz.items())}"
          + (f"; not in BTF, assumed: {', '.join(sorted(missing))}" if missing else "") + "). "
          + ("The formulas give exactly the measured memlock for every map above, so the "
             "projections are the kernel's own arithmetic." if not mismatch else
             f"The formulas do NOT match the measured memlock for: {', '.join(mismatch)} "
             f"(the projection adds only the formula's CPU-dependent difference to the measurement)."))
    print()
    if TARGET_AT in tot:
        cpus = [p0] + list(targets)
        per = [x / TARGET_AT for x in tot[TARGET_AT]]
        cache = by_mf[TARGET_AT].get(PER_CPU_ARRAY_NAME)
        cache_b = [mem_model(cache, c, sz) if cache else 0 for c in cpus]
        flow_part = [x - c / TARGET_AT for x, c in zip(per, cache_b)]
        ok = all(x <= TARGET_B_PER_FLOW for x in flow_part)
        print(f"Target (issue 9): ≤ {TARGET_B_PER_FLOW} B per max-flow in total at --max-flows "
              f"{TARGET_AT:,}, independent of the CPU count, any per-CPU part bounded: "
              + ", ".join(f"{x:,.1f} B on {c} CPUs" for x, c in zip(flow_part, cpus))
              + f" without the per-CPU counter cache (`{PER_CPU_ARRAY_NAME}`, sized from "
              + "--max-flows and the CPU count), which adds "
              + (", ".join(f"{b / c / 2**10:,.0f} KiB per CPU on {c}" for b, c in zip(cache_b, cpus))
                 + " " if cache else "nothing ")
              + "(with it: " + ", ".join(f"{x:,.1f} B on {c} CPUs" for x, c in zip(per, cpus))
              + f") — **{'met' if ok else 'MISSED'}**.")
    for mf in mfs:
        if mf == TARGET_AT:
            continue
        per = [x / mf for x in tot[mf]]
        print(f"At --max-flows {mf:,}: " + ", ".join(
            f"{x:,.1f} B per max-flow on {c} CPUs" for x, c in zip(per, [p0] + list(targets)))
            + " (the fixed-size maps — ring buffer, .rodata/.bss — weigh more per flow).")


# ---------------------------------------------------------------- section 4

# Issue 9 targets: user-space CPU per report (ms), by flows and mode; peak RSS at 1M flows.
S4_CPU_TARGET = {(100000, "idle"): 10, (100000, "changed"): 50,
                 (1000000, "idle"): 100, (1000000, "changed"): 500}
S4_RSS_TARGET_MB = 256


def cmd_s4_table(path):
    rows = [dict(x.split("=", 1) for x in line.split()) for line in open(path) if line.strip()]
    print("| Flows | Report | Rows | CPU ms / report (median) | all | collect / build / render ms "
          "| Target | First report CPU ms | Peak RSS MB | Steady RSS MB | CPU ns / flow "
          "| JSON MB / report | Rows with a rate | Refused |")
    print("|---:|---|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    missed = []
    for kv in rows:
        n = int(kv["flows"])
        mode = "idle" if kv["mode"] == "idle" else "all changed"
        out = "every row" if kv["output"] == "all" else "--changed"
        cpu = float(kv["cpu_ms_median"])
        tgt = S4_CPU_TARGET.get((n, kv["mode"]))
        tcell = "" if tgt is None else f"≤ {tgt} ms: {'met' if cpu <= tgt else '**missed**'}"
        if tgt is not None and cpu > tgt:
            missed.append(f"{n:,} flows, {mode}, {out}: {cpu:,.1f} ms > {tgt} ms")
        rss = float(kv["peak_rss_mb"])
        rcell = f"{rss:,.1f}"
        if n == 1000000:
            rcell += f" ({'met' if rss <= S4_RSS_TARGET_MB else '**missed**'})"
            if rss > S4_RSS_TARGET_MB:
                missed.append(f"peak RSS at {n:,} flows, {mode}, {out}: {rss:,.1f} MB > "
                              f"{S4_RSS_TARGET_MB} MB")
        print(f"| {n:,} | {mode} | {out} | {cpu:,.1f} | {kv['cpu_ms_all']} | "
              f"{float(kv['collect_ms']):.1f} / {float(kv['build_ms']):.1f} / "
              f"{float(kv['render_ms']):.1f} | {tcell} | {float(kv['first_cpu_ms']):,.1f} | "
              f"{rcell} | {float(kv['rss_end_mb']):,.1f} | {int(float(kv['ns_per_flow'])):,} | "
              f"{float(kv['json_mb']):.1f} | {int(kv['rows_moving']):,} | {int(kv['refused']):,} |")
    print()
    print(f"Targets (issue 9): CPU per report ≤ 10 ms idle / ≤ 50 ms all changed at 100k flows, "
          f"≤ 100 / ≤ 500 ms at 1M; peak RSS ≤ {S4_RSS_TARGET_MB} MB at 1M flows. "
          + ("All met." if not missed else "Missed: " + "; ".join(missed) + "."))


def cmd_s4_cpus_table(path):
    rows = [dict(x.split("=", 1) for x in line.split()) for line in open(path) if line.strip()]
    print("| --max-flows | Flows | CPUs | Cache entries | Cache MiB | Entries holding flows "
          "| Collect ms | CPU ms / report | Peak RSS MB | Close µs, mean / median / p90 |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for kv in rows:
        held = "every CPU's (planted)" if kv["full_cache"] == "1" else "this host's CPUs'"
        close = (f"{float(kv['close_mean_us']):.2f} / {float(kv['close_us']):.2f} / "
                 f"{float(kv['close_p90_us']):.2f}"
                 if "close_us" in kv else "")
        print(f"| {int(kv['max_flows']):,} | {int(kv['flows']):,} | {kv['cache_cpus']} | "
              f"{int(kv['cache_entries']):,} | {float(kv['cache_mib']):.1f} | {held} | "
              f"{float(kv['collect_ms']):.2f} | {float(kv['cpu_ms_median']):,.1f} | "
              f"{float(kv['peak_rss_mb']):,.1f} | {close} |")


# ---------------------------------------------------------------- tcptrack JSON

def read_ndjson(path):
    rows, summaries = [], []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the stop signal
            (summaries if o.get("type") == "summary" else rows).append(o)
    return rows, summaries


# ---------------------------------------------------------------- section 3

def read_mibs(path):
    """{'Tcp.OutSegs': n, 'TcpExt.TCPBacklogDrop': n, ...} from /proc/net/{snmp,netstat} dumps."""
    out, hdr = {}, {}
    for line in open(path):
        p = line.split()
        if not p or not p[0].endswith(":"):
            continue
        name = p[0][:-1]
        if name not in hdr:
            hdr[name] = p[1:]
        else:
            for k, v in zip(hdr.pop(name), p[1:]):
                try:
                    out[f"{name}.{k}"] = int(v)
                except ValueError:
                    pass
    return out


def mib_delta(before, after):
    a, b = read_mibs(after), read_mibs(before)
    return {k: a[k] - b.get(k, 0) for k in a}


UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def iftop_bytes(s):
    m = re.fullmatch(r"([0-9.]+)([KMGT]?B)", s)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def iftop_flow(path, client_port):
    """Cumulative (client->server, server->client) bytes iftop shows for the flow."""
    lines = open(path, errors="replace").read().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*\d+\s+(\S+)\s+(=>|<=)\s+(.*)$", line)
        if not m or i + 1 >= len(lines):
            continue
        m2 = re.match(r"\s+(\S+)\s+(=>|<=)\s+(.*)$", lines[i + 1])
        if not m2:
            continue
        # Line 1: host1 => (host1 -> host2); line 2: host2 <= (host2 -> host1).
        # The last column is the cumulative total.
        h1, c1 = m.group(1), m.group(3).split()[-1]
        h2, c2 = m2.group(1), m2.group(3).split()[-1]
        if h2.endswith(f":{client_port}"):
            return iftop_bytes(c2), iftop_bytes(c1), f"{c2} / {c1}"
        if h1.endswith(f":{client_port}"):
            return iftop_bytes(c1), iftop_bytes(c2), f"{c1} / {c2}"
    return None, None, None


def err_cells(reported, expected):
    if reported is None:
        return "n/a", "n/a", "n/a"
    ab = reported - expected
    rel = ab / expected * 100 if expected else 0.0
    return fmt(int(round(reported))), f"{int(round(ab)):+,}", f"{rel:+.4f} %"


def tcptrack_rows(rows, cport, sport):
    return [r for r in rows if r["sport"] == int(cport) and r["dport"] == int(sport)]


def tcptrack14_speeds(path, cport):
    speeds, seen = Counter(), False
    try:
        for line in open(path, errors="replace"):
            if f":{cport} " in line:
                seen = True
                m = re.search(r"(ESTABLISHED|SYN_SENT|CLOSED|RESET|FIN_WAIT\S*|TIME_WAIT)\s+\S+\s+(.*)$",
                              line)
                if m:
                    speeds[m.group(2).strip()] += 1
    except OSError:
        pass
    return seen, speeds


def cmd_s3_table(iperf_json, bulk_log, tt_json, iftop_txt, t14_txt, iperf_port, bulk_port,
                 c0, c1, s0, s1, c2, c3, s2, s3):
    """Two transfers: iperf3 -n (as asked) and bench/churn's exact bulk transfer (FIN close)."""
    rows, _ = read_ndjson(tt_json)
    d = load_iperf(iperf_json)
    e = d["end"]
    mss = d["start"].get("tcp_mss_default") or 1448
    cookie = 37  # iperf3 writes a 37-byte cookie first on every data stream
    ip_cport = d["start"]["connected"][0]["local_port"]
    ip_sent, ip_recv = e["sum_sent"]["bytes"], e["sum_received"]["bytes"]
    secs = e["sum_received"]["seconds"]
    bl = open(bulk_log).read().split()
    transfers = [
        dict(name=f"iperf3 -n {ip_sent:,}", cport=ip_cport, sport=iperf_port,
             c2s=ip_sent + cookie, low=ip_recv + cookie, mib=(c0, c1, s0, s1),
             info=f"{ip_recv * 8 / secs / 1e9:.2f} Gbit/s; the receiving iperf3 read only "
                  f"{ip_recv:,} B: iperf3 3.12 ends the test while data is still unread/unsent "
                  f"and resets the data connection, so the bytes on the wire lie between "
                  f"{ip_recv + cookie:,} and {ip_sent + cookie:,} (+ retransmits)"),
    ]
    if len(bl) == 3:
        transfers.append(dict(name=f"bench/churn bulk {int(bl[1]):,}", cport=int(bl[0]),
                              sport=bulk_port, c2s=int(bl[1]), low=int(bl[1]), mib=(c2, c3, s2, s3),
                              info="one connection, client sends exactly this many bytes, server "
                                   "reads them all, FIN close: an exact reference"))
    print("| Transfer | Tool | Quantity | Reported | Expected | Abs error (B) | Rel error |")
    print("|---|---|---|---:|---:|---:|---:|")
    notes = []
    for t in transfers:
        cli, srv = mib_delta(t["mib"][0], t["mib"][1]), mib_delta(t["mib"][2], t["mib"][3])
        rs = cli.get("Tcp.RetransSegs", 0)
        flow = tcptrack_rows(rows, t["cport"], t["sport"])
        final = flow[-1] if flow else None
        n = t["name"]
        if final:
            r, ab, rel = err_cells(final["fwd_payload"], t["c2s"])
            print(f"| {n} | tcptrack (this; {len(flow)} rows, final {final['state']}) | payload "
                  f"client→server | {r} | {fmt(t['c2s'])} | {ab} | {rel} |")
            if t["low"] != t["c2s"]:
                # An inexact reference: the exact answer lies between what the receiver
                # read and what the sender wrote.
                inside = t["low"] <= final["fwd_payload"] <= t["c2s"]
                print(f"| {n} | tcptrack (this) | payload client→server within [bytes read by "
                      f"the receiver, bytes written by the sender] | {fmt(final['fwd_payload'])} | "
                      f"{fmt(t['low'])} … {fmt(t['c2s'])} | {'inside' if inside else 'OUTSIDE'} | "
                      f"n/a |")
            r, ab, rel = err_cells(final["rev_payload"], 0)
            print(f"| {n} | tcptrack (this) | payload server→client | {r} | 0 | {ab} | n/a |")
            notes.append(f"{n}: tcptrack counted {final['fwd_packets']:,} client→server segments "
                         f"on the wire, {rs:,} of them retransmissions by the sender's count "
                         f"(Tcp.RetransSegs, ≈ {fmt(rs * mss)} B): fwd_bytes/fwd_packets include "
                         f"them, fwd_payload counts each application byte once.")
        else:
            print(f"| {n} | tcptrack (this) | payload client→server | not found | "
                  f"{fmt(t['c2s'])} | n/a | n/a |")
        c2s, s2c, raw = iftop_flow(iftop_txt, t["cport"])
        if c2s is not None:
            num = raw.split(" / ")[0]
            unit = UNITS[re.sub(r"[0-9.]", "", num)]
            decimals = len(num.split(".")[1].rstrip("KMGTB")) if "." in num else 0
            res = 0.5 * unit / 10 ** decimals  # 3 significant digits
            r, ab, rel = err_cells(c2s, t["c2s"])
            print(f"| {n} | iftop 1.0pre4 (shows \"{num}\") | cumulative L3 bytes client→server "
                  f"(IP total length, headers included) vs payload | {r} ±{fmt(int(res))} | "
                  f"{fmt(t['c2s'])} | {ab} | {rel} |")
        else:
            print(f"| {n} | iftop 1.0pre4 | cumulative client→server | flow not in its output | "
                  f"{fmt(t['c2s'])} | n/a | n/a |")
        seen, speeds = tcptrack14_speeds(t14_txt, t["cport"])
        shown = ", ".join(f"\"{s}\"" for s, _ in speeds.most_common(3)) or "-"
        print(f"| {n} | tcptrack 1.4 (Debian; ncurses screen captured with tmux capture-pane) | "
              f"payload client→server | no byte counts: the screen has only Client, Server, State, "
              f"Idle, Speed ({'speed shown: ' + shown if seen else 'connection never on screen'}) "
              f"| {fmt(t['c2s'])} | n/a | n/a |")
        drops = {k.split(".", 1)[1]: v for k, v in srv.items() if v and k in (
            "TcpExt.TCPBacklogDrop", "TcpExt.TCPRcvQDrop", "TcpExt.TCPOFODrop",
            "TcpExt.PruneCalled", "TcpExt.RcvPruned", "TcpExt.OfoPruned",
            "TcpExt.TCPZeroWindowDrop", "TcpExt.TCPDSACKOldSent", "TcpExt.TCPDSACKOfoSent",
            "TcpExt.TCPOFOQueue")}
        notes.append(f"{n}: {t['info']}. Sender RetransSegs {rs:,}; receiver TcpExt deltas: " +
                     (", ".join(f"{k} {v:,}" for k, v in drops.items()) or "none") + ".")
    print()
    for line in notes:
        print(f"- {line}")


# ---------------------------------------------------------------- section 5

def cmd_s5_table(log, tt_json, server_port, request, reply, churn_summary):
    gen = Counter()
    for line in open(log):
        p = line.split()
        if len(p) == 3:
            gen[int(p[0])] += 1
    total = sum(gen.values())
    rows, summaries = read_ndjson(tt_json)
    sport_rows = [r for r in rows if r["dport"] == int(server_port)]
    closed = [r for r in sport_rows if r["state"] in ("CLOSED", "RESET")]
    exact = Counter()
    wrong = []
    for r in closed:
        if r["fwd_payload"] == int(request) and r["rev_payload"] == int(reply):
            exact[r["sport"]] += 1
        else:
            wrong.append(r)
    once = missing = dup = 0
    for port in set(gen) | set(exact):
        g, t = gen[port], exact[port]
        once += min(g, t)
        missing += max(0, g - t)
        dup += max(0, t - g)
    # Rows for the same generation (same port, SYN->close duration and RTT) shown twice.
    same_gen_repeat = sum(c - 1 for c in Counter(
        (r["sport"], r["duration_ns"], r["rtt_ns"]) for r in closed).values() if c > 1)
    states = Counter(r["state"] for r in closed)
    last = summaries[-1] if summaries else {}
    kv = dict(x.split("=", 1) for x in churn_summary.split() if "=" in x)
    print("| Generator connections | Duration s | Conn/s | CLOSED/RESET rows | Accounted exactly "
          "once | Ratio | Missing | Duplicated | Rows with wrong bytes | untracked | "
          "close_dropped |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratio = once / total * 100 if total else 0
    print(f"| {total:,} | {kv.get('seconds', '?')} | {kv.get('rate', '?')} | {len(closed):,} "
          f"({', '.join(f'{k} {v:,}' for k, v in states.items())}) | {once:,} | {ratio:.3f} % | "
          f"{missing:,} | {dup:,} | {len(wrong):,} | {last.get('untracked', 'n/a')} | "
          f"{last.get('close_dropped', 'n/a')} |")
    print()
    ports_reused = sum(1 for c in gen.values() if c > 1)
    print(f"Generator: {kv.get('bytes_sent', '?')} B sent, {kv.get('bytes_received', '?')} B "
          f"received, connect errors {kv.get('connect_errors', '?')}, incomplete "
          f"{kv.get('incomplete', '?')}; {len(gen):,} distinct client ports, {ports_reused:,} "
          f"used more than once (max {max(gen.values()) if gen else 0}×)." +
          (f" Rows repeating a connection already shown (same port, SYN→close duration and RTT): "
           f"{same_gen_repeat:,}." if dup or same_gen_repeat else ""))
    if wrong:
        ex = wrong[0]
        print(f"Example row with unexpected bytes: sport {ex['sport']} state {ex['state']} "
              f"fwd_payload {ex['fwd_payload']} rev_payload {ex['rev_payload']}.")


# ---------------------------------------------------------------- section 8 / footprint

FP_PROJECT_CPUS = 64  # the map memory is also shown for a node with this many CPUs


def proc_status(pid):
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem of /proc/PID/status, in kB."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[k] = int(v.split()[0])
    return out


def proc_cpu_ticks(pid):
    """utime + stime of the whole process (every thread), in clock ticks."""
    stat = open(f"/proc/{pid}/stat").read()
    f = stat[stat.rindex(")") + 2:].split()  # fields from 3 on (the name may hold spaces)
    return int(f[11]) + int(f[12])          # fields 14 and 15


def scrape(url):
    """(seconds, bytes, {metric: sum of its samples}) of one GET of /metrics."""
    import time
    import urllib.request
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
    dt = time.monotonic() - t0
    sums = defaultdict(float)
    for line in body.decode(errors="replace").splitlines():
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$', line)
        if not m:
            continue
        st = re.search(r'state="([A-Z_]+)"', m.group(2) or "")
        for key in [m.group(1)] + ([f"{m.group(1)}|{st.group(1)}"] if st else []):
            sums[key] += float(m.group(3))
    return dt, len(body), sums


def maps_memory(pid, project_cpus, max_flows):
    """(memlock bytes of the process's maps, the same on `project_cpus` CPUs);
    max_flows: its --max-flows (the per-CPU cache is sized from it)."""
    p0 = possible_cpus()
    sz, _ = kernel_struct_sizes()
    total = proj = 0
    for i in proc_map_ids(pid):
        m = map_show(i)
        m["possible_cpus"], m["max_flows"] = p0, max_flows
        ml = int(m.get("bytes_memlock", 0))
        total += ml
        model = mem_model(m, p0, sz)
        proj += ml if model is None else ml + mem_model(m, project_cpus, sz) - model
    return total, proj


def cmd_fp_wait_healthz(url, seconds):
    """Waits until GET url answers 200 (tcptrack reports and watches every matching
    interface); exit 1 after `seconds`."""
    import time
    import urllib.error
    import urllib.request
    end = time.monotonic() + float(seconds)
    last = ""
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            last = e.read().decode(errors="replace").strip()
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise SystemExit(f"{url} not 200 within {seconds} s: {last}")



def cmd_fp_wait_attached(prefix, count, seconds):
    """Waits until `count` interfaces named PREFIX* (in this network namespace) have a
    tcptrack classifier on both hooks; exit 1 after `seconds`. (/healthz is not enough:
    it answers 200 before the first report, when patterns are not attached yet.)"""
    import time
    end = time.monotonic() + float(seconds)
    n = 0
    while time.monotonic() < end:
        out = subprocess.run(["bpftool", "net", "show", "-j"], check=True, capture_output=True,
                             text=True).stdout
        hooks = defaultdict(set)
        for entry in json.loads(out):
            for t in entry.get("tc", []):
                if t.get("devname", "").startswith(prefix) and t.get("name", "").startswith(
                        "tcptrack_"):
                    hooks[t["devname"]].add(t.get("kind", ""))
        n = sum(1 for k in hooks.values() if len(k) >= 2)
        if n >= int(count):
            return
        time.sleep(0.2)
    raise SystemExit(f"{n} of {count} {prefix}* interfaces attached after {seconds} s")


def cmd_fp_measure(pid, url, interval, warmup, window, *meta):
    """tcptrack's footprint over a window: one JSON line. Scrapes `url` once per
    `interval` (as Prometheus would) through the warm-up and the window; CPU is
    utime + stime over the window against the monotonic clock; RSS sampled at
    each scrape. `meta`: key=value pairs copied into the line."""
    import time
    hz = __import__("os").sysconf("SC_CLK_TCK")
    interval, warmup, window = float(interval), float(warmup), float(window)
    start = time.monotonic()
    nxt = start
    while time.monotonic() < start + warmup:     # warm-up: the same scrapes, not counted
        _, _, sums = scrape(url)
        print(f"warm-up {time.monotonic() - start:5.1f} s: tracked "
              f"{int(sums.get('tcptrack_store_flows', 0))}, RSS {proc_status(pid)['VmRSS']} kB",
              file=sys.stderr)
        nxt += interval
        time.sleep(max(0.0, nxt - time.monotonic()))
    c0, t0 = proc_cpu_ticks(pid), time.monotonic()
    rss, scr_s, scr_b, tracked = [], [], [], []
    nxt = t0
    while True:
        dt, nb, sums = scrape(url)
        tracked.append(int(sums.get("tcptrack_store_flows", 0)))
        scr_s.append(dt)
        scr_b.append(nb)
        rss.append(proc_status(pid)["VmRSS"])
        nxt += interval
        if nxt >= t0 + window:
            break
        time.sleep(max(0.0, nxt - time.monotonic()))
    time.sleep(max(0.0, t0 + window - time.monotonic()))
    c1, t1 = proc_cpu_ticks(pid), time.monotonic()
    st = proc_status(pid)
    out = dict(kv.split("=", 1) for kv in meta)
    flows = re.search(r"--max-flows (\d+)", out.get("args", ""))
    kmem, kmem_proj = maps_memory(pid, FP_PROJECT_CPUS, int(flows.group(1)) if flows else 65536)
    cpu_pct = 100.0 * (c1 - c0) / hz / (t1 - t0)
    out.update(cpu_s=(c1 - c0) / hz, wall_s=t1 - t0, cpu_pct=cpu_pct,
               rss_kb_median=med(rss), rss_kb_max=max(rss), hwm_kb=st["VmHWM"],
               anon_kb=st.get("RssAnon"), file_kb=st.get("RssFile"),
               shmem_kb=st.get("RssShmem"), kmem=kmem, kmem_proj=kmem_proj,
               project_cpus=FP_PROJECT_CPUS, cpus=possible_cpus(),
               scrapes=len(scr_s), scrape_ms=1000 * med(scr_s), scrape_kb=med(scr_b) / 1024,
               tracked=tracked[-1], tracked_min=min(tracked),
               established=int(sums.get("tcptrack_connections|ESTABLISHED", 0)),
               untracked=int(sums.get("tcptrack_untracked_connections_total", 0)))
    print(json.dumps(out))



def cmd_fp_table(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    if not rows:
        return
    pc = rows[0]["project_cpus"]
    cpus = rows[0]["cpus"]
    mib = lambda kb: kb / 1024
    print("| Scenario | Connections | Tracked (store) | Interfaces | Traffic | RSS MiB "
          "| Peak RSS MiB | anon MiB | CPU % of one core | millicores "
          f"| Maps MiB ({cpus} CPUs) | Maps MiB ({pc} CPUs) | Peak RSS + maps MiB ({cpus} / {pc} CPUs) "
          "| /metrics KiB, ms |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        hwm = mib(r["hwm_kb"])
        km, kp = r["kmem"] / 2**20, r["kmem_proj"] / 2**20
        print(f"| {r['scenario']} | {int(r['connections']):,} | {r['tracked']:,} "
              f"| {int(r['interfaces']):,} | {r['traffic']} | {mib(r['rss_kb_median']):,.1f} "
              f"| {hwm:,.1f} | {mib(r['anon_kb']):,.1f} | {r['cpu_pct']:.2f} "
              f"| {r['cpu_pct'] * 10:,.1f} | {km:,.1f} | {kp:,.1f} "
              f"| {hwm + km:,.0f} / {hwm + kp:,.0f} | {r['scrape_kb']:,.1f}, {r['scrape_ms']:,.1f} |")
    print()
    for r in rows:
        print(f"- {r['scenario']}: `{r['args']}`; window {r['wall_s']:.1f} s "
              f"({r['cpu_s']:.2f} CPU s, {r['scrapes']} scrapes); RSS {mib(r['rss_kb_median']):,.1f} "
              f"MiB median, {mib(r['rss_kb_max']):,.1f} max in the window; at its end "
              f"anon {mib(r['anon_kb']):,.1f} / file {mib(r['file_kb']):,.1f} / shmem "
              f"{mib(r['shmem_kb']):,.1f} MiB; tracked {r['tracked_min']:,}–{r['tracked']:,} "
              f"in the window, ESTABLISHED {r['established']:,} at its end, "
              f"untracked {r['untracked']:,}; load generator: {r.get('gen', '?')}.")


def main():
    if len(sys.argv) < 2:
        raise SystemExit("usage: bench_util.py COMMAND ARGS...")
    cmd = globals().get("cmd_" + sys.argv[1].replace("-", "_"))
    if not cmd:
        raise SystemExit(f"unknown command {sys.argv[1]}")
    cmd(*sys.argv[2:])


if __name__ == "__main__":
    main()
