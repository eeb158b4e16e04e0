# SPDX-License-Identifier: MIT
"""End-to-end tests for tcptrack.

Each test builds two network namespaces joined by a veth pair (client side
and server side; netns.Topology gives the addresses), runs tcptrack inside
one of them, drives exact TCP traffic with traffic.py and checks what
tcptrack reports against what the traffic generator actually did.

Usage: e2e_test.py [--binary PATH] [unittest args, e.g. -v or a test name]
Needs root (namespaces, BPF); exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import csv
import io
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import (CMD_TIMEOUT, FINAL_STATES, TRAFFIC, is_int, parse_json_lines,  # noqa: E402
                   run)

netns.set_prefix("tte2e-%d-" % os.getpid())

KEYS = [
    "time", "iface", "family", "src", "sport", "dst", "dport", "state",
    "fwd_bytes", "fwd_packets", "fwd_payload",
    "rev_bytes", "rev_packets", "rev_payload",
    "fwd_bps", "rev_bps", "duration_ns", "rtt_ns", "srtt_ns",
] + [d + k for d in ("fwd_", "rev_") for k in (
    "retrans", "retrans_bytes", "lost_segments", "dup_acks", "fast_retrans", "zero_windows",
    "zero_window_ns", "rtt_samples", "rtt_min_ns", "srtt_ns", "rtt_max_ns", "rtt_last_ns")] + [
    "pid", "comm", "cgroup", "netns", "pod_uid", "container_id", "displaced",
    "end", "end_by",
]
STATES = {"SYN_SENT", "SYN_RECV", "ESTABLISHED", "CLOSING", "CLOSED", "RESET"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
HMS = re.compile(r"^\d\d:\d\d:\d\d")

INTERVAL = "0.5"


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------ output parsing


def conn_rows(rows, src, sport, dst, dport):
    """(oriented, reversed) rows of one connection; each entry (line index, row)."""
    fwd = [(i, r) for i, r in rows
           if r.get("src") == src and r.get("sport") == sport
           and r.get("dst") == dst and r.get("dport") == dport]
    rev = [(i, r) for i, r in rows
           if r.get("src") == dst and r.get("sport") == dport
           and r.get("dst") == src and r.get("dport") == sport]
    return fwd, rev


# ------------------------------------------------------------------ base class


class E2EBase(netns.Base):
    def run_client(self, family, port, conns, concurrency=1):
        cmd = self.ns_cmd("client", sys.executable, TRAFFIC, "client",
                          "--host", self.topo.server_ip(family), "--port", str(port),
                          "--concurrency", str(concurrency))
        for n, m in conns:
            cmd += ["--conn", "%d:%d" % (n, m)]
        p = run(cmd, timeout=60, check=False)
        self.assertEqual(p.returncode, 0, "traffic client failed: %s %s" % (p.stdout, p.stderr))
        res = json.loads(p.stdout)
        self.assertEqual(len(res["conns"]), len(conns), res)
        for r, (n, m) in zip(res["conns"], conns):
            self.assertEqual((r["sent"], r["received"]), (n, m), r)
        return res["conns"]

    # --- JSON sessions -----------------------------------------------------

    @staticmethod
    def _closed_then_reports(sport, extra_reports):
        """Predicate: the connection (either orientation) was reported final and
        at least `extra_reports` summary lines followed."""
        def pred(lines):
            rows, summaries, _ = parse_json_lines(lines)
            closed = [i for i, r in rows
                      if sport in (r.get("sport"), r.get("dport")) and r.get("state") in FINAL_STATES]
            if not closed:
                return False
            return len([i for i, _ in summaries if i > closed[0]]) >= extra_reports
        return pred

    def json_session(self, family, watch_side, conns, concurrency=1, extra_args=()):
        """Runs tcptrack (--format json --summary) on one side while the client runs
        `conns`; stops it with SIGINT once every connection was reported final and
        two more reports followed. Returns (client results, rows, summaries, server port)."""
        server, port = self.start_server(family)
        track = self.start_tcptrack(watch_side, "--format", "json", "--summary",
                                    "--interval", INTERVAL, *extra_args)
        self.wait_attached(track, watch_side)
        results = self.run_client(family, port, conns, concurrency)
        for r in results:
            track.wait_for(self._closed_then_reports(r["client_port"], 2), 15,
                           "a CLOSED row for client port %d followed by 2 reports" % r["client_port"])
        rc = self.stop(track, signal.SIGINT)
        self.assertEqual(rc, 0, "tcptrack exit status after SIGINT; stderr: %s" % track.stderr_text())
        lines = track.lines()
        rows, summaries, bad = parse_json_lines(lines)
        self.assertEqual(bad, [], "stdout lines that are not JSON objects")
        return results, rows, summaries, port

    def check_row_schema(self, row, family, iface):
        self.assertEqual(sorted(row.keys()), sorted(KEYS),
                         "row keys: %s" % row)
        self.assertRegex(row["time"], RFC3339_UTC)
        self.assertEqual(row["iface"], iface)
        self.assertEqual(row["family"], family)
        self.assertIn(row["state"], STATES)
        for k in ("sport", "dport", "fwd_bytes", "fwd_packets", "fwd_payload",
                  "rev_bytes", "rev_packets", "rev_payload"):
            self.assertTrue(is_int(row[k]) and row[k] >= 0, "%s=%r in %s" % (k, row[k], row))
        for k in ("fwd_bps", "rev_bps"):
            self.assertTrue(is_number(row[k]) and row[k] >= 0, "%s=%r in %s" % (k, row[k], row))
        for k in ("duration_ns", "rtt_ns"):
            self.assertTrue(row[k] is None or (is_int(row[k]) and row[k] >= 0),
                            "%s=%r in %s" % (k, row[k], row))
        # Connection health: counters each way; RTT figures null without a sample.
        for d in ("fwd_", "rev_"):
            for k in ("retrans", "retrans_bytes", "lost_segments", "dup_acks", "fast_retrans",
                      "zero_windows", "zero_window_ns", "rtt_samples"):
                self.assertTrue(is_int(row[d + k]) and row[d + k] >= 0,
                                "%s=%r in %s" % (d + k, row[d + k], row))
            for k in ("rtt_min_ns", "srtt_ns", "rtt_max_ns", "rtt_last_ns"):
                v = row[d + k]
                self.assertTrue(v is None if row[d + "rtt_samples"] == 0 else is_int(v),
                                "%s=%r in %s" % (d + k, v, row))
        self.assertTrue(row["srtt_ns"] is None or is_int(row["srtt_ns"]), row)
        # No store pressure here: nothing is displaced.
        self.assertIs(row["displaced"], False, row)

    def check_connection(self, rows, family, iface, result, port, n, m):
        """The full set of assertions on one cleanly closed, fully observed connection."""
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)
        sport = result["client_port"]
        fwd, rev = conn_rows(rows, src, sport, dst, port)
        self.assertEqual(rev, [], "connection reported server->client (wrong orientation): %s"
                         % [r for _, r in rev])
        self.assertTrue(fwd, "no row for %s:%d -> %s:%d; rows seen: %s"
                        % (src, sport, dst, port, [r for _, r in rows][-10:]))
        for _, r in fwd:
            self.check_row_schema(r, family, iface)
        closed = [r for _, r in fwd if r["state"] in FINAL_STATES]
        self.assertEqual(len(closed), 1, "connection must be reported final exactly once: %s"
                         % [r["state"] for _, r in fwd])
        self.assertIs(fwd[-1][1], closed[0],
                      "connection reported again after its CLOSED row: %s" % [r for _, r in fwd])
        last = closed[0]
        self.assertEqual(last["state"], "CLOSED", last)
        self.assertEqual(last["fwd_payload"], n, "fwd_payload (client->server): %s" % last)
        self.assertEqual(last["rev_payload"], m, "rev_payload (server->client): %s" % last)
        self.assertGreater(last["fwd_packets"], 0, last)
        self.assertGreater(last["rev_packets"], 0, last)
        self.assertGreater(last["fwd_bytes"], last["fwd_payload"], "fwd_bytes must include headers: %s" % last)
        self.assertGreater(last["rev_bytes"], last["rev_payload"], "rev_bytes must include headers: %s" % last)
        self.assertTrue(is_int(last["duration_ns"]) and last["duration_ns"] > 0,
                        "duration_ns: %s" % last)
        self.assertLess(last["duration_ns"], 120 * 10**9, "duration_ns implausible: %s" % last)
        self.assertTrue(is_int(last["rtt_ns"]) and last["rtt_ns"] > 0, "rtt_ns: %s" % last)
        self.assertLess(last["rtt_ns"], last["duration_ns"], "rtt_ns > duration_ns: %s" % last)
        # Cumulative counters never go backwards across reports.
        for k in ("fwd_bytes", "fwd_packets", "fwd_payload", "rev_bytes", "rev_packets", "rev_payload"):
            seq = [r[k] for _, r in fwd]
            self.assertEqual(seq, sorted(seq), "%s not cumulative across reports: %s" % (k, seq))
        return last

    def check_summaries(self, summaries):
        self.assertTrue(summaries, "--summary printed no summary records")
        for _, s in summaries:
            for k in ("untracked", "evicted", "close_dropped"):
                self.assertIn(k, s, s)
                self.assertTrue(is_int(s[k]), s)
            self.assertEqual((s["untracked"], s["evicted"], s["close_dropped"]), (0, 0, 0),
                             "losses reported for a handful of connections: %s" % s)
            # Store pressure: the live flows are assured or not, none displaced or refused.
            for k in ("capacity", "assured", "unassured", "displaced", "untracked_full",
                      "untracked_buckets"):
                self.assertTrue(is_int(s.get(k)), s)
            self.assertGreater(s["capacity"], 0, s)
            self.assertEqual(s["assured"] + s["unassured"], s["tracked"], s)
            self.assertEqual((s["displaced"], s["untracked_full"], s["untracked_buckets"]),
                             (0, 0, 0), s)


# ------------------------------------------------------------------ tests


class TestJson(E2EBase):
    N, M = 100000, 54321

    def _one(self, family, side):
        results, rows, summaries, port = self.json_session(family, side, [(self.N, self.M)])
        self.check_connection(rows, family, self.topo.if_of(side), results[0], port, self.N, self.M)
        self.check_summaries(summaries)
        # Nothing else than our connection crossed the link over TCP.
        others = [r for _, r in rows if r["sport"] != results[0]["client_port"]]
        self.assertEqual(others, [], "unexpected connections reported")

    def test_ipv4_server_side(self):
        self._one("ipv4", "server")

    def test_ipv6_server_side(self):
        self._one("ipv6", "server")

    def test_ipv4_client_side(self):
        self._one("ipv4", "client")

    def test_ipv6_client_side(self):
        self._one("ipv6", "client")

    def test_concurrent_connections_exact_counts(self):
        conns = [(20000 + 1111 * i, 3000 + 777 * i) for i in range(12)]
        results, rows, summaries, port = self.json_session("ipv4", "server", conns, concurrency=4)
        self.assertEqual(len({r["client_port"] for r in results}), len(conns))
        for r, (n, m) in zip(results, conns):
            with self.subTest(client_port=r["client_port"], n=n, m=m):
                self.check_connection(rows, "ipv4", self.topo.sif, r, port, n, m)
        self.check_summaries(summaries)

    def test_packet_counts_are_wire_segments(self):
        # 1 MB over a 1500-byte MTU is at least ceil(1e6 / 1460) wire segments whatever
        # GSO/GRO does to skbs, plus the SYN (or SYN-ACK) and the FIN in each direction.
        n, m = 1000000, 500000
        results, rows, _, port = self.json_session("ipv4", "client", [(n, m)])
        last = self.check_connection(rows, "ipv4", self.topo.cif, results[0], port, n, m)
        self.assertGreaterEqual(last["fwd_packets"], -(-n // 1460) + 2, last)
        self.assertGreaterEqual(last["rev_packets"], -(-m // 1460) + 2, last)
        # L3 bytes: every segment carries at least a 20-byte IP and a 20-byte TCP header.
        self.assertGreaterEqual(last["fwd_bytes"], n + 40 * last["fwd_packets"], last)
        self.assertGreaterEqual(last["rev_bytes"], m + 40 * last["rev_packets"], last)

    def test_midstream_connection(self):
        """Connection established before tcptrack starts: SYN not seen."""
        family = "ipv4"
        server, port = self.start_server(family)
        hold = self.start(self.ns_cmd("client", sys.executable, TRAFFIC, "hold",
                                      "--host", self.topo.server_ip(family), "--port", str(port)),
                          stdin=True)
        ev = hold.wait_for(lambda ls: next((json.loads(l) for l in ls if '"connected"' in l), None),
                           10, "hold client connected")
        cport = ev["client_port"]
        track = self.start_tcptrack("server", "--format", "json", "--summary", "--interval", INTERVAL)
        self.wait_attached(track, "server")
        n, m = 30000, 20000
        hold.p.stdin.write("send %d %d\n" % (n, m))
        hold.p.stdin.flush()
        hold.wait_for(lambda ls: any('"done"' in l for l in ls), 20, "hold client done")
        self.assertEqual(hold.wait(10), 0, hold.stderr_text())
        track.wait_for(self._closed_then_reports(cport, 2), 15, "final row of the mid-stream connection")
        self.assertEqual(self.stop(track), 0, track.stderr_text())
        rows, _, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)
        fwd, rev = conn_rows(rows, src, cport, dst, port)
        mine = fwd + rev
        self.assertTrue(mine, "mid-stream connection never reported")
        for _, r in mine:
            self.check_row_schema(r, family, self.topo.sif)
        finals = [r for _, r in mine if r["state"] in FINAL_STATES]
        self.assertEqual(len(finals), 1, [r["state"] for _, r in mine])
        last = finals[0]
        self.assertEqual(last["state"], "CLOSED", last)
        # The client never sent a SYN while tcptrack watched: no duration, no RTT.
        self.assertIsNone(last["duration_ns"], last)
        self.assertIsNone(last["rtt_ns"], last)
        # Orientation cannot come from the SYN; either way the counts must match it.
        if last["src"] == src:
            self.assertEqual((last["fwd_payload"], last["rev_payload"]), (n, m), last)
        else:
            self.assertEqual((last["fwd_payload"], last["rev_payload"]), (m, n), last)


class TestSortTop(E2EBase):
    def test_top_1_by_bytes_counts_both(self):
        """--sort bytes --top 1: at most one row per report, the summary still
        counts every connection, and the bigger connection's final row (the
        largest whenever it is reported) appears exactly once, exact."""
        conns = [(20000, 1000), (400000, 2000)]
        server, port = self.start_server("ipv4")
        track = self.start_tcptrack("server", "--format", "json", "--summary", "--interval",
                                    INTERVAL, "--sort", "bytes", "--top", "1")
        self.wait_attached(track, "server")
        results = self.run_client("ipv4", port, conns, concurrency=2)
        # Only the bigger one's final row is sure to be printed (the smaller is
        # cut whenever the bigger is in the same report).
        track.wait_for(self._closed_then_reports(results[1]["client_port"], 2), 15,
                       "the bigger connection's CLOSED row followed by 2 reports")
        self.assertEqual(self.stop(track, signal.SIGINT), 0, track.stderr_text())
        rows, summaries, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        prev, both = -1, 0
        for si, s in summaries:
            report = [r for i, r in rows if prev < i < si]
            prev = si
            self.assertLessEqual(len(report), 1, "--top 1 printed %d rows: %s" % (len(report), report))
            self.assertGreaterEqual(s["connections"], len(report), s)
            if s["connections"] == 2:
                both += 1
                self.assertEqual(len(report), 1, s)
        self.assertGreater(both, 0, "no report counted both connections: %s" % summaries)
        self.check_connection(rows, "ipv4", self.topo.sif, results[1], port, *conns[1])


class TestTable(E2EBase):
    def test_table_ipv4(self):
        self._table("ipv4", "{}:{}")

    def test_table_ipv6(self):
        self._table("ipv6", "[{}]:{}")

    def _table(self, family, fmt):
        server, port = self.start_server(family)
        track = self.start_tcptrack("server", "--interval", INTERVAL)
        self.wait_attached(track, "server")
        (res,) = self.run_client(family, port, [(40000, 12345)])
        src = fmt.format(self.topo.client_ip(family), res["client_port"])
        dst = fmt.format(self.topo.server_ip(family), port)
        row_re = re.compile(re.escape(src) + r"\s+->\s+" + re.escape(dst))

        def seen_then_two_headers(lines):
            hit = [i for i, l in enumerate(lines) if row_re.search(l)]
            return hit and len([l for l in lines[hit[0]:] if HMS.match(l)]) >= 2

        track.wait_for(seen_then_two_headers, 15, "table row %s -> %s" % (src, dst))
        self.assertEqual(self.stop(track), 0, track.stderr_text())
        lines = track.lines()
        nonblank = [l for l in lines if l.strip()]
        self.assertRegex(nonblank[0], HMS, "first line of the table output: %r" % nonblank[0])
        self.assertTrue(any(row_re.search(l) for l in lines),
                        "no row '%s -> %s' in:\n%s" % (src, dst, "\n".join(lines)))
        rev_re = re.compile(re.escape(dst) + r"\s+->\s+" + re.escape(src))
        self.assertFalse(any(rev_re.search(l) for l in lines), "row printed server->client")

    def test_table_count_2(self):
        track = self.start_tcptrack("server", "--interval", "0.3", "--count", "2")
        rc = track.wait(CMD_TIMEOUT)
        self.assertEqual(rc, 0, track.stderr_text())
        lines = track.lines()
        headers = [l for l in lines if HMS.match(l)]
        self.assertEqual(len(headers), 2, "expected 2 report headers (--count 2):\n%s" % "\n".join(lines))
        self.assertRegex(next(l for l in lines if l.strip()), HMS)


class TestCsv(E2EBase):
    def test_csv(self):
        family, n, m = "ipv4", 70000, 4321
        server, port = self.start_server(family)
        track = self.start_tcptrack("server", "--format", "csv", "--interval", INTERVAL)
        self.wait_attached(track, "server")
        (res,) = self.run_client(family, port, [(n, m)])
        cport = str(res["client_port"])

        def final_then_more(lines):
            recs = list(csv.reader(io.StringIO("\n".join(lines) + "\n")))
            idx = [i for i, r in enumerate(recs) if cport in r and ("CLOSED" in r or "RESET" in r)]
            return bool(idx)

        track.wait_for(final_then_more, 15, "CSV final row for client port %s" % cport)
        # Give it two more reports to show the connection does not come back.
        time.sleep(2 * float(INTERVAL) + 0.3)
        self.assertEqual(self.stop(track), 0, track.stderr_text())
        text = "\n".join(track.lines()) + "\n"
        recs = [r for r in csv.reader(io.StringIO(text)) if r]
        self.assertTrue(recs, "no CSV output")
        self.assertEqual(recs[0], KEYS, "CSV header row")
        self.assertNotIn(KEYS, recs[1:], "header row repeated")
        for r in recs[1:]:
            self.assertEqual(len(r), len(KEYS), "CSV row width: %r" % r)
        rows = [dict(zip(KEYS, r)) for r in recs[1:]]
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)
        mine = [r for r in rows if r["src"] == src and r["sport"] == cport
                and r["dst"] == dst and r["dport"] == str(port)]
        wrong = [r for r in rows if r["dst"] == src and r["dport"] == cport]
        self.assertEqual(wrong, [], "rows oriented server->client")
        self.assertTrue(mine, "no CSV row for the connection:\n%s" % text)
        finals = [r for r in mine if r["state"] in FINAL_STATES]
        self.assertEqual(len(finals), 1, [r["state"] for r in mine])
        self.assertIs(mine[-1], finals[0], "connection reported after its final row")
        last = finals[0]
        self.assertEqual(last["state"], "CLOSED")
        self.assertEqual(last["iface"], self.topo.sif)
        self.assertEqual(last["family"], family)
        self.assertRegex(last["time"], RFC3339_UTC)
        self.assertEqual(int(last["fwd_payload"]), n, last)
        self.assertEqual(int(last["rev_payload"]), m, last)
        self.assertGreater(int(last["fwd_bytes"]), n, last)
        self.assertGreater(int(last["rev_bytes"]), m, last)
        self.assertGreater(int(last["fwd_packets"]), 0, last)
        self.assertGreater(int(last["rev_packets"]), 0, last)
        self.assertGreater(int(last["duration_ns"]), 0, last)
        self.assertGreater(int(last["rtt_ns"]), 0, last)


class TestCleanup(E2EBase):
    """Nothing tcptrack attached outlives it; qdiscs/filters are as they were."""

    SIDE = "server"

    def _check_attach_kind(self, attached, mode, label):
        # auto means TCX exactly where the probe (tcptrack --check) found it.
        if mode == "auto":
            mode = "tcx" if netns.has_feature("tcx") else "tc"
        if mode == "tcx":
            self.assertTrue(all("tcx/" in l for l in attached),
                            "%s: --attach tcx but bpftool shows %s" % (label, attached))
        elif mode == "tc":
            self.assertTrue(all("tcx/" not in l for l in attached),
                            "%s: --attach tc but bpftool shows %s" % (label, attached))
            self.assertIn("clsact", self.qdiscs(self.SIDE), "%s: no clsact while attached" % label)
        # Both directions are watched.
        self.assertTrue(any("ingress" in l for l in attached) and any("egress" in l for l in attached),
                        "%s: expected ingress and egress programs: %s" % (label, attached))

    def _cycle(self, mode, stop, preexisting_clsact=False):
        label = "--attach %s, stop by %s%s" % (mode, stop,
                                                ", pre-existing clsact" if preexisting_clsact else "")
        self.fresh_topology()
        if preexisting_clsact:
            run(self.ns_cmd(self.SIDE, "tc", "qdisc", "add", "dev", self.topo.sif, "clsact"))
            self.assertIn("clsact", self.qdiscs(self.SIDE))
        before = self.snapshot()
        self.assertEqual(before["tcptrack"], [], "%s: already attached before the run" % label)
        args = ["--attach", mode, "--format", "json", "--interval", "0.3"]
        if stop == "count":
            args += ["--count", "6"]
        track = self.start_tcptrack(self.SIDE, *args)
        try:
            attached = self.wait_attached(track, self.SIDE)
            self._check_attach_kind(attached, mode, label)
        finally:
            if stop == "count":
                rc = track.wait(CMD_TIMEOUT)
            else:
                rc = self.stop(track, {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}[stop])
        self.assertEqual(rc, 0, "%s: exit status; stderr: %s" % (label, track.stderr_text()))
        self.assert_restored(before, label)
        if preexisting_clsact:
            self.assertIn("clsact", self.qdiscs(self.SIDE), "%s: pre-existing clsact was removed" % label)

    def _all_stops(self, mode):
        for stop in ("count", "SIGINT", "SIGTERM"):
            with self.subTest(stop=stop):
                self._cycle(mode, stop)

    def test_tcx(self):
        netns.require(self, "tcx")
        self._all_stops("tcx")

    def test_tc(self):
        self._all_stops("tc")

    def test_auto(self):
        self._all_stops("auto")

    def test_tc_keeps_preexisting_clsact(self):
        for stop in ("count", "SIGINT", "SIGTERM"):
            with self.subTest(stop=stop):
                self._cycle("tc", stop, preexisting_clsact=True)


class TestUsage(E2EBase):
    def _run(self, *args):
        cmd = self.ns_cmd("server", netns.BINARY, *args)
        p = run(cmd, timeout=CMD_TIMEOUT, check=False)
        return p

    def test_usage_errors(self):
        iface = self.topo.sif
        cases = [
            ("-i", iface, "--interval", "0"),
            ("-i", iface, "--count", "-1"),
            ("-i", iface, "--format", "xml"),
            ("-i", iface, "--bogus"),
            ("-i", iface, "--attach", "nope"),
            ("-i", iface, "--interval", "abc"),
        ]
        for args in cases:
            with self.subTest(args=" ".join(args)):
                p = self._run(*args)
                err = p.stderr.splitlines()
                self.assertEqual(p.returncode, 2, "exit status; stderr=%r stdout=%r" % (p.stderr, p.stdout))
                self.assertEqual(len(err), 1, "stderr must be one line: %r" % p.stderr)
                self.assertTrue(err[0].startswith("tcptrack:"), "stderr: %r" % p.stderr)
                self.assertEqual(p.stdout, "", "stdout on usage error")
        self.assertEqual(self.tcptrack_lines("server"), [], "usage error left programs attached")

    def test_missing_interface(self):
        before = self.qdiscs("server")
        p = self._run("-i", "doesnotexist0", "--count", "1", "--interval", "0.2")
        err = p.stderr.splitlines()
        self.assertEqual(p.returncode, 1, "exit status; stderr=%r" % p.stderr)
        self.assertEqual(len(err), 1, "stderr must be one line: %r" % p.stderr)
        self.assertIn("doesnotexist0", err[0])
        self.assertEqual(self.qdiscs("server"), before)


class TestCheck(E2EBase):
    """tcptrack --check tells the truth about this kernel and the forced paths."""

    def _run(self, *args, env_extra=None):
        env = dict(os.environ)
        env.update(env_extra or {})
        return run(self.ns_cmd("server", netns.BINARY, *args), timeout=CMD_TIMEOUT, check=False,
                   env=env)

    def _fields(self, out):
        return {l.split(None, 1)[0]: l.split(None, 1)[1] for l in out.splitlines() if l.strip()}

    def test_check_reports_and_agrees_with_the_run(self):
        p = self._run("--check")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        f = self._fields(p.stdout)
        for key in ("kernel", "privileges", "btf", "sched_cls", "ringbuf", "mmap", "tcx", "store",
                    "capacity", "hash", "unassured", "attach", "load", "verdict"):
            self.assertIn(key, f, p.stdout)
        # The store it would make (default --max-flows and --unassured-timeout).
        self.assertTrue(f["capacity"].startswith("65536 flows (--max-flows), 8192 index buckets x 16: "),
                        f["capacity"])
        self.assertEqual(f["hash"], "SipHash-1-3, key from getrandom() at each load")
        self.assertTrue(f["unassured"].startswith("forgotten after 30 s idle"), f["unassured"])
        # The retired per-CPU datapath and its readers are no longer reported.
        for gone in ("percpu_lookup", "iter", "batch", "datapath", "reader"):
            self.assertNotIn(gone, f, p.stdout)
        # Everything the one datapath needs is mandatory and present here.
        for name in ("btf", "sched_cls", "ringbuf", "mmap"):
            self.assertTrue(f[name].startswith("yes "), f[name])
        self.assertEqual(f["store"], "slots read by mmap")
        self.assertEqual(f["kernel"].split()[0], os.uname().release)
        self.assertTrue(f["load"].startswith("ok"), p.stdout)
        self.assertEqual(f["verdict"], "tcptrack can run here")
        # The attach mode it names is the one a real run takes.
        track = self.start_tcptrack("server", "--format", "json", "--interval", "0.3")
        try:
            attached = self.wait_attached(track, "server")
        finally:
            self.stop(track, signal.SIGINT)
        uses_tcx = all("tcx/" in l for l in attached)
        self.assertEqual(uses_tcx, f["attach"] == "tcx", (f["attach"], attached))

    def test_forced_fallbacks_show_and_load(self):
        # TCX is the only optional feature left: without it, legacy tc; the store is the same.
        p = self._run("--check", env_extra={"TCPTRACK_DISABLE": "tcx"})
        self.assertEqual(p.returncode, 0, p.stderr)
        f = self._fields(p.stdout)
        self.assertTrue(f["tcx"].startswith("no "), f["tcx"])
        self.assertIn("TCPTRACK_DISABLE", f["tcx"])
        self.assertIn("-> attaches with legacy tc", f["tcx"])
        for name in ("btf", "sched_cls", "ringbuf", "mmap"):
            self.assertTrue(f[name].startswith("yes "), f[name])
        self.assertEqual(f["store"], "slots read by mmap")
        self.assertTrue(f["attach"].startswith("tc "), f["attach"])
        self.assertTrue(f["load"].startswith("ok"), p.stdout)
        self.assertEqual(f["verdict"], "tcptrack can run here")

    def test_forced_tcx_without_tcx_is_one_line_exit_1(self):
        before = self.qdiscs("server")
        for args in (("--check", "--attach", "tcx"),
                     ("-i", self.topo.sif, "--attach", "tcx", "--once")):
            with self.subTest(args=" ".join(args)):
                p = self._run(*args, env_extra={"TCPTRACK_DISABLE": "tcx"})
                err = p.stderr.splitlines()
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertEqual(len(err), 1, "stderr must be one line: %r" % p.stderr)
                self.assertIn("TCX unavailable", err[0])
        self.assertEqual(self.qdiscs("server"), before)
        self.assertEqual(self.tcptrack_lines("server"), [])

    def test_bad_disable_list_is_a_usage_error(self):
        cases = (("tcx,warp", "warp"),
                 ("iter", "iter"),     # a retired fallback: refused, not silently ignored
                 ("mmap", "mmap"))     # mandatory: nothing to fall back to
        for value, name in cases:
            for args in (("-i", self.topo.sif, "--once"), ("--check",)):
                with self.subTest(disable=value, args=" ".join(args)):
                    p = self._run(*args, env_extra={"TCPTRACK_DISABLE": value})
                    self.assertEqual(p.returncode, 2, p.stderr)
                    self.assertEqual(p.stdout, "")
                    self.assertEqual(p.stderr.splitlines(),
                                     ["tcptrack: TCPTRACK_DISABLE: unknown optional feature '%s' "
                                      "(known: tcx, skb-cgroup-id, ktime-coarse)" % name])
        self.assertEqual(self.tcptrack_lines("server"), [])


def tearDownModule():
    netns.tear_down_module()


if __name__ == "__main__":
    sys.exit(netns.main("e2e_test", sys.modules[__name__]))
