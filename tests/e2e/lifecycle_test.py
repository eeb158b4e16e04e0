# SPDX-License-Identifier: MIT
"""End-to-end lifecycle tests: every connection is reported, closed ones
exactly once.

  * churn: >= 1000 short connections in < 2 s (IPv4 and IPv6; the IPv4 run
    narrows the client's port range so ports are reused many times), each
    matched by client port and order of occurrence to exactly one CLOSED row
    with exact payloads;
  * a connection established before tcptrack starts (mid-stream);
  * an idle connection reported, then dropped after --idle-timeout (evicted),
    next to an active one that stays; the evicted one comes back as a new
    mid-stream flow when it talks again;
  * --changed: rows only for connections that moved (or closed) since the
    last report, while a second instance without it lists every connection;
  * --max-flows smaller than the number of live connections;
  * --closed (table) lifetime log;
  * the same client port used by two consecutive connections;
  * RST close.

Usage: lifecycle_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import json
import os
import re
import signal
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import FINAL_STATES, is_int, parse_json_lines, run  # noqa: E402

netns.set_prefix("ttlc-%d-" % os.getpid())

CHURN_COUNT = 1200
CHURN_MAX_SECONDS = 2.0


def report_index(rows):
    """Maps each row's `time` (one per report) to the report's ordinal."""
    order = {}
    for _, r in rows:
        order.setdefault(r["time"], len(order))
    return order


def reports(lines):
    """JSON output with --summary as reports: [(first line, rows, summary)], one per
    summary line (a report's rows precede its summary)."""
    out, rows, first = [], [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        obj = json.loads(line)
        if obj.get("type") == "summary":
            out.append((first, rows, obj))
            rows, first = [], i + 1
        else:
            rows.append(obj)
    return out


class LifecycleBase(netns.Base):
    def run_churn(self, family, port, count, *extra, timeout=60):
        cmd = self.ns_cmd("client", sys.executable, netns.CHURN, "client",
                          "--host", self.topo.server_ip(family), "--port", str(port),
                          "--count", str(count)) + list(extra)
        p = run(cmd, timeout=timeout, check=False)
        self.assertEqual(p.returncode, 0, "churn client failed: %s %s" % (p.stdout[-2000:], p.stderr))
        res = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual(len(res["conns"]), count, res["errors"])
        for c in res["conns"]:
            self.assertEqual(c["received"], c["expected"], c)
        return res

    def final_rows_then(self, proc, count, extra_reports, timeout, what):
        """Waits until `count` final rows were printed and `extra_reports` summaries followed."""
        def pred(lines):
            rows, summaries, _ = parse_json_lines(lines)
            finals = [i for i, r in rows if r.get("state") in FINAL_STATES]
            if len(finals) < count:
                return False
            return len([i for i, _ in summaries if i > finals[count - 1]]) >= extra_reports
        return proc.wait_for(pred, timeout, what)

    def _session(self):
        track = self.start_tcptrack("server", "--format", "json", "--summary", "--interval", "0.3")
        self.wait_attached(track, "server")
        return track

    def _finish(self, track, finals_expected):
        try:
            self.final_rows_then(track, finals_expected, 2, 10, "%d final rows" % finals_expected)
        finally:
            rc = self.stop(track)
        self.assertEqual(rc, 0, track.stderr_text())
        rows, summaries, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        for _, s in summaries:
            self.assertEqual((s["untracked"], s["evicted"], s["close_dropped"]), (0, 0, 0), s)
        return rows


class TestChurn(LifecycleBase):
    def _churn(self, family, reuse_ports):
        if reuse_ports:
            # 300 ports (150 usable: connect() picks even ports first) for 1200
            # connections: every client port is reused ~8 times, TIME_WAIT
            # sockets are recycled after 1 ms.
            for k, v in (("net.ipv4.ip_local_port_range", "40000 40299"),
                         ("net.ipv4.tcp_tw_reuse", "1"),
                         ("net.ipv4.tcp_tw_reuse_delay", "1")):
                run(self.ns_cmd("client", "sysctl", "-q", "-w", "%s=%s" % (k, v)))
        server, port = self.start_server(family, netns.CHURN)
        track = self.start_tcptrack("server", "--format", "json", "--interval", "1", "--summary")
        self.wait_attached(track, "server")
        extra = ["--procs", "2", "--threads", "8", "--seed", "11" if family == "ipv4" else "29"]
        if reuse_ports:
            extra.append("--retry-addrnotavail")
        res = self.run_churn(family, port, CHURN_COUNT, *extra)
        conns = res["conns"]
        print("\n  churn %s: %d connections in %.3f s (%.0f/s), %d distinct client ports"
              % (family, len(conns), res["elapsed"], len(conns) / res["elapsed"],
                 len({c["client_port"] for c in conns})), file=sys.stderr)
        self.assertGreaterEqual(len(conns), 1000)
        self.assertLess(res["elapsed"], CHURN_MAX_SECONDS,
                        "churn too slow to be a churn test: %d connections in %.3f s"
                        % (len(conns), res["elapsed"]))
        try:
            self.final_rows_then(track, len(conns), 2, 15, "%d final rows + 2 reports" % len(conns))
        finally:
            rc = self.stop(track)
        self.assertEqual(rc, 0, "tcptrack exit status; stderr: %s" % track.stderr_text())
        self.assertEqual(track.stderr_text(), "", "tcptrack stderr")
        rows, summaries, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [], "stdout lines that are not JSON objects")
        self._check_churn(family, port, conns, rows, summaries)

    def _check_churn(self, family, port, conns, rows, summaries):
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)
        rep = report_index(rows)
        by_port = defaultdict(list)          # client port -> connections in start order
        for c in sorted(conns, key=lambda c: c["t_start"]):
            by_port[c["client_port"]].append(c)
        mine = defaultdict(list)              # client port -> rows (output order)
        strangers = []
        for i, r in rows:
            if (r["src"], r["dst"], r["dport"], r["family"]) == (src, dst, port, family) \
                    and r["sport"] in by_port:
                mine[r["sport"]].append((i, r))
            else:
                strangers.append(r)
        self.assertEqual(strangers, [], "rows for connections the client did not make "
                                        "(or wrongly oriented)")
        finals_total = sum(1 for _, r in rows if r["state"] in FINAL_STATES)
        self.assertEqual(finals_total, len(conns),
                         "final rows (%d) != connections made (%d)" % (finals_total, len(conns)))
        problems = []
        for cport, expected in by_port.items():
            rs = mine.get(cport, [])
            finals = [(i, r) for i, r in rs if r["state"] in FINAL_STATES]
            if len(finals) != len(expected):
                problems.append("port %d: %d connections, %d final rows: %s"
                                % (cport, len(expected), len(finals),
                                   [(r["state"], r["fwd_payload"], r["rev_payload"]) for _, r in rs]))
                continue
            # Match occurrences in order: the final rows of report k are the next
            # |k| connections on that port (rows inside one report are sorted by
            # bytes, not by time, so compare each report's rows as a multiset).
            by_rep = defaultdict(list)
            for _, r in finals:
                by_rep[rep[r["time"]]].append(r)
            k = 0
            for ri in sorted(by_rep):
                got = sorted((r["state"], r["fwd_payload"], r["rev_payload"]) for r in by_rep[ri])
                exp = sorted(("CLOSED", c["sent"], c["expected"])
                             for c in expected[k:k + len(by_rep[ri])])
                if got != exp:
                    problems.append("port %d, occurrences %d..%d: got %s, expected %s"
                                    % (cport, k, k + len(got) - 1, got, exp))
                k += len(by_rep[ri])
            for _, r in finals:
                if not (is_int(r["duration_ns"]) and r["duration_ns"] > 0):
                    problems.append("port %d: duration_ns %r" % (cport, r["duration_ns"]))
                if not (is_int(r["rtt_ns"]) and r["rtt_ns"] > 0):
                    problems.append("port %d: rtt_ns %r" % (cport, r["rtt_ns"]))
            # Once its last connection was reported final, the port never shows again;
            # a non-final row is always followed by a final one.
            last_final_rep = rep[finals[-1][1]["time"]]
            after = [r for _, r in rs if rep[r["time"]] > last_final_rep]
            if after:
                problems.append("port %d reported after its last CLOSED row: %s" % (cport, after))
        self.assertEqual(problems[:20], [], "%d problems" % len(problems))
        self.assertTrue(summaries)
        for _, s in summaries:
            self.assertEqual((s["untracked"], s["evicted"], s["close_dropped"]), (0, 0, 0),
                             "losses in summary: %s" % s)
        last = summaries[-1][1]
        self.assertEqual((last["connections"], last["tracked"]), (0, 0), last)

    def test_churn_ipv4_port_reuse(self):
        self._churn("ipv4", reuse_ports=True)

    def test_churn_ipv6(self):
        self._churn("ipv6", reuse_ports=False)


class TestMidstream(LifecycleBase):
    def test_preexisting_connection(self):
        family = "ipv4"
        lsock, port = self.listen(family, port=5201)
        conn = self.pair(family, lsock, port)
        self.assertGreaterEqual(conn.cport, 32768, "client port not ephemeral")
        # Before tcptrack: an exchange both ways, then let delayed ACKs drain.
        conn.c2s(1000)
        conn.s2c(500)
        time.sleep(0.3)
        track = self.start_tcptrack("server", "--format", "json", "--summary", "--interval", "0.3")
        self.wait_attached(track, "server")
        # The server talks first after attach, so only the port heuristic can
        # orient the connection client -> server.
        conn.s2c(777)
        conn.c2s(3000)
        conn.s2c(2000)
        n, m = 3000, 777 + 2000
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)

        def settled(rows, _):
            mine = [r for r in rows if conn.cport in (r["sport"], r["dport"])]
            return mine and mine[-1]["fwd_payload"] + mine[-1]["rev_payload"] >= n + m and mine
        try:
            self.wait_rows(track, settled, 10, "row with all post-attach bytes")
            time.sleep(0.7)  # two more reports
        finally:
            rc = self.stop(track)
        self.assertEqual(rc, 0, track.stderr_text())
        rows, _, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        mine = [r for _, r in rows if conn.cport in (r["sport"], r["dport"])]
        self.assertTrue(mine)
        for r in mine:
            self.assertEqual((r["src"], r["sport"], r["dst"], r["dport"]), (src, conn.cport, dst, port),
                             "orientation (port heuristic: server port %d < 32768): %s" % (port, r))
            self.assertEqual(r["state"], "ESTABLISHED", r)
            self.assertIsNone(r["duration_ns"], r)
            self.assertIsNone(r["rtt_ns"], r)
        last = mine[-1]
        self.assertEqual((last["fwd_payload"], last["rev_payload"]), (n, m),
                         "payload must count only bytes after attach: %s" % last)
        conn.close_clean()


class TestIdleTimeout(LifecycleBase):
    def test_idle_connection_reported_then_dropped_and_counted(self):
        family = "ipv4"
        lsock, port = self.listen(family)
        track = self.start_tcptrack("server", "--format", "json", "--summary", "--interval", "0.3",
                                    "--idle-timeout", "1")
        self.wait_attached(track, "server")
        idle = self.pair(family, lsock, port)
        idle.c2s(1234)
        idle.s2c(4321)
        # Three summaries after the last row of the idle connection: it is gone for good.
        def gone(lines):
            rows, sums, _ = parse_json_lines(lines)
            last_row = max((i for i, r in rows if r["sport"] == idle.cport), default=None)
            return last_row is not None and len([i for i, _ in sums if i > last_row]) >= 3
        track.wait_for(gone, 15, "idle connection dropped")
        rc = self.stop(track)
        self.assertEqual(rc, 0, track.stderr_text())
        rows, sums, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        mine = [(i, r) for i, r in rows if r["sport"] == idle.cport]
        self.assertTrue(mine, "the connection was reported while active")
        # Shown with its exact counters until (and including) the report that drops it.
        self.assertEqual((mine[-1][1]["fwd_payload"], mine[-1][1]["rev_payload"]), (1234, 4321))
        self.assertEqual(mine[-1][1]["state"], "ESTABLISHED")
        first_i = mine[0][0]
        span = [s["time"] for i, s in sums if first_i < i <= mine[-1][0]]
        # Reported for roughly the idle timeout (1 s at 0.3 s reports), not dropped early.
        self.assertGreaterEqual(len(span), 3, span)
        self.assertEqual(sums[-1][1]["evicted"], 1, sums[-1][1])
        self.assertEqual(sums[-1][1]["tracked"], 0, sums[-1][1])
        idle.close_clean()


    def test_idle_one_evicted_beside_an_active_one_and_back_when_it_talks(self):
        family, port = "ipv4", 5601  # a registered port: the server side is obvious mid-stream
        lsock, port = self.listen(family, port=port)
        track = self.start_tcptrack("server", "--format", "json", "--summary", "--interval", "0.3",
                                    "--idle-timeout", "1")
        self.wait_attached(track, "server")
        idle = self.pair(family, lsock, port)
        active = self.pair(family, lsock, port)
        idle.c2s(1234)
        idle.s2c(4321)

        def evicted(lines):
            sums = [s for _, _, s in reports(lines)]
            return sums and sums[-1]["evicted"] >= 1
        # The active one moves every 0.2 s, well inside the 1 s timeout.
        deadline = time.monotonic() + 15
        while not evicted(track.lines()):
            self.assertLess(time.monotonic(), deadline, "idle connection never evicted: %s"
                            % track.lines()[-10:])
            active.c2s(100)
            time.sleep(0.2)
        # Two more reports without the evicted one, the active one still moving.
        n0 = len(reports(track.lines()))
        while len(reports(track.lines())) < n0 + 2:
            self.assertLess(time.monotonic(), deadline, "no reports after the eviction")
            active.c2s(100)
            time.sleep(0.2)
        cut = len(track.lines())

        # The evicted connection talks again: a new flow, caught mid-stream,
        # that counts only what was sent since.
        idle.c2s(777)
        idle.s2c(888)
        active.s2c(5000)
        idle.close_clean()
        active.close_clean()
        self.final_rows_then(track, 2, 2, 15, "final rows of both connections")
        self.assertEqual(self.stop(track), 0, track.stderr_text())
        reps = reports(track.lines())
        rows, sums, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])

        def of(conn, lo=0, hi=float("inf")):
            return [r for i, r in rows if r["sport"] == conn.cport and lo <= i < hi]
        # Before the cut: the idle one with its exact counters, until evicted.
        first_run = of(idle, 0, cut)
        self.assertTrue(first_run)
        self.assertEqual((first_run[-1]["state"], first_run[-1]["fwd_payload"],
                          first_run[-1]["rev_payload"]), ("ESTABLISHED", 1234, 4321), first_run[-1])
        evicted_at = next(k for k, (_, _, s) in enumerate(reps) if s["evicted"] >= 1)
        self.assertEqual(reps[evicted_at][2]["evicted"], 1, reps[evicted_at][2])
        # Shown in the report that evicts it, then in none until it talks again.
        self.assertIn(idle.cport, [r["sport"] for r in reps[evicted_at][1]])
        for first, rs, s in reps[evicted_at + 1:]:
            if first >= cut:
                break
            self.assertNotIn(idle.cport, [r["sport"] for r in rs], "evicted connection shown again")
            self.assertEqual(s["tracked"], 1, s)  # only the active one is in the store
        # The active one is in every report from its first until the cut, never evicted.
        since = next(k for k, (_, rs, _) in enumerate(reps)
                     if active.cport in [r["sport"] for r in rs])
        before_cut = [rs for first, rs, _ in reps[since:] if first < cut]
        self.assertGreater(len(before_cut), evicted_at + 2 - since)
        for rs in before_cut:
            self.assertIn(active.cport, [r["sport"] for r in rs], rs)
        fin_a = [r for r in of(active) if r["state"] in FINAL_STATES]
        self.assertEqual(len(fin_a), 1, of(active)[-3:])
        self.assertEqual((fin_a[0]["state"], fin_a[0]["fwd_payload"], fin_a[0]["rev_payload"]),
                         ("CLOSED", active.sent_c, active.sent_s), fin_a[0])
        self.assertTrue(is_int(fin_a[0]["duration_ns"]), fin_a[0])  # its SYN was seen
        # After the cut: the evicted connection's second life.
        second = of(idle, cut)
        fin_i = [r for r in second if r["state"] in FINAL_STATES]
        self.assertEqual(len(fin_i), 1, second)
        r = fin_i[0]
        self.assertEqual((r["src"], r["sport"], r["dst"], r["dport"]),
                         (self.topo.client_ip(family), idle.cport, self.topo.server_ip(family), port), r)
        self.assertEqual((r["state"], r["fwd_payload"], r["rev_payload"]), ("CLOSED", 777, 888), r)
        self.assertIsNone(r["duration_ns"], r)  # no SYN in its second life
        self.assertIsNone(r["rtt_ns"], r)
        self.assertEqual(sums[-1][1]["evicted"], 1, sums[-1][1])
        self.assertEqual(sums[-1][1]["tracked"], 0, sums[-1][1])
        for _, s in sums:
            self.assertEqual((s["untracked"], s["close_dropped"]), (0, 0), s)


class TestMaxFlows(LifecycleBase):
    def test_max_flows_smaller_than_live_connections(self):
        family, total, limit = "ipv4", 20, 8
        lsock, port = self.listen(family)
        track = self.start_tcptrack("server", "--format", "json", "--summary", "--interval", "0.3",
                                    "--max-flows", str(limit))
        self.wait_attached(track, "server")
        conns = []
        for k in range(total):
            p = self.pair(family, lsock, port)
            p.c2s(1000 + k)
            p.s2c(500 + k)
            conns.append(p)
        expect = {p.cport: (1000 + k, 500 + k) for k, p in enumerate(conns)}
        # Two full reports after all traffic was sent.
        n_before = len(track.lines())
        track.wait_for(lambda ls: len([l for l in ls[n_before:] if '"summary"' in l]) >= 2, 10,
                       "two reports after the traffic")
        rc = self.stop(track)
        self.assertEqual(rc, 0, "exit status; stderr: %s" % track.stderr_text())
        # One line, the pressure notice, naming the count and the fix (assured
        # connections filled the store: nothing was displaceable).
        self.assertRegex(track.stderr_text(),
                         r"^tcptrack: %d connections untracked in the last \d+ s \(store full: "
                         r"%d of %d slots hold assured connections\); raise --max-flows\n?$"
                         % (total - limit, limit, limit), "stderr")
        lines = track.lines()
        rows, summaries, bad = parse_json_lines(lines)
        self.assertEqual(bad, [])
        last_sum_i, last_sum = summaries[-1]
        prev_sum_i = summaries[-2][0]
        last_rows = [r for i, r in rows if prev_sum_i < i < last_sum_i]
        seen_ever = {r["sport"] for _, r in rows}
        print("\n  max-flows %d, %d live connections: last report %d rows, summary %s; "
              "distinct connections ever reported %d"
              % (limit, total, len(last_rows), {k: last_sum[k] for k in ("connections", "tracked",
                                                                           "untracked", "untracked_segments", "evicted")},
                 len(seen_ever)), file=sys.stderr)
        self.assertEqual(len(last_rows), limit, "rows in the last report: %s" % last_rows)
        self.assertEqual(len(seen_ever), limit, "distinct connections ever reported")
        self.assertEqual(last_sum["untracked"], total - limit,
                         "each refused connection is counted exactly once: %s" % last_sum)
        # SYN, SYN-ACK and one data segment each way would each have started the flow.
        self.assertGreaterEqual(last_sum["untracked_segments"], 4 * (total - limit), last_sum)
        for r in last_rows:
            self.assertIn(r["sport"], expect, "unknown or wrongly oriented row %s" % r)
            self.assertEqual(r["state"], "ESTABLISHED", r)
            self.assertEqual((r["fwd_payload"], r["rev_payload"]), expect[r["sport"]], r)
        for p in conns:
            p.close_clean()


CLOSED_LINE = re.compile(
    r"^(?P<src>\S+):(?P<sport>\d+) -> (?P<dst>\S+):(?P<dport>\d+)  (?P<dur>\S+)  "
    r"(?P<fwd>.+) / (?P<rev>.+)  rtt (?P<rtt>\S+)  (?P<state>CLOSED|RESET)$")


class TestClosedMode(LifecycleBase):
    def _closed(self, family, fmt):
        count = 20
        server, port = self.start_server(family, netns.CHURN)
        track = self.start_tcptrack("server", "--closed", "--interval", "0.3")
        self.wait_attached(track, "server")
        res = self.run_churn(family, port, count, "--procs", "1", "--threads", "4")
        try:
            track.wait_for(lambda ls: len([l for l in ls if l.strip()]) >= count, 10,
                           "%d --closed lines" % count)
            time.sleep(0.7)
        finally:
            rc = self.stop(track)
        self.assertEqual(rc, 0, track.stderr_text())
        lines = [l for l in track.lines() if l.strip()]
        self.assertEqual(len(lines), count, "expected exactly %d lines:\n%s" % (count, "\n".join(lines)))
        src = fmt % self.topo.client_ip(family)
        dst = fmt % self.topo.server_ip(family)
        ports = []
        for l in lines:
            m = CLOSED_LINE.match(l)
            self.assertTrue(m, "line does not match the --closed format: %r" % l)
            self.assertEqual((m["src"], m["dst"], int(m["dport"]), m["state"]),
                             (src, dst, port, "CLOSED"), l)
            self.assertNotEqual(m["dur"], "-", l)
            ports.append(int(m["sport"]))
        self.assertEqual(sorted(ports), sorted(c["client_port"] for c in res["conns"]))

    def test_closed_ipv4(self):
        self._closed("ipv4", "%s")

    def test_closed_ipv6(self):
        self._closed("ipv6", "[%s]")


class TestChangedMode(LifecycleBase):
    """--changed: a report lists only what is new, moved or closed since the
    last one; a second instance without it, watching the same traffic, lists
    every connection in every report."""

    def _changed(self, family, port):
        lsock, port = self.listen(family, port=port)
        args = ("--format", "json", "--summary", "--interval", "0.3")
        changed = self.start_tcptrack("server", *args, "--changed")
        full = self.start_tcptrack("server", *args)
        # A report means attached: the instances attach before their first one.
        for p in (changed, full):
            p.wait_for(lambda ls: any('"summary"' in l for l in ls), 10, "first report")
        quiet = self.pair(family, lsock, port)
        moving = self.pair(family, lsock, port)
        quiet.c2s(1000)
        quiet.s2c(2000)
        moving.c2s(3000)
        moving.s2c(4000)

        # Both reported, then two reports with no row at all: nothing moves
        # (the handshakes' and data's last ACKs are counted by then).
        def settled(lines):
            reps = reports(lines)
            seen = {r["sport"] for _, rs, _ in reps for r in rs}
            return ({quiet.cport, moving.cport} <= seen and len(reps) >= 2
                    and not reps[-1][1] and not reps[-2][1])
        changed.wait_for(settled, 15, "both connections reported, then two empty reports")
        cut, cut_full = len(changed.lines()), len(full.lines())

        for k in range(3):
            moving.c2s(1000 * (k + 1))
            moving.s2c(500)
            want = (moving.sent_c, moving.sent_s)
            changed.wait_for(lambda ls: any(
                r["sport"] == moving.cport and (r["fwd_payload"], r["rev_payload"]) == want
                for _, rs, _ in reports(ls[cut:]) for r in rs), 10, "moving connection at %s" % (want,))
        # The instance without --changed had reports meanwhile, too.
        full.wait_for(lambda ls: len(reports(ls[cut_full:])) >= 4, 10, "four full reports")
        close_at, close_full = len(changed.lines()), len(full.lines())

        quiet.close_clean()
        moving.close_clean()
        for p in (changed, full):
            self.final_rows_then(p, 2, 2, 15, "final rows of both connections")
        for p in (changed, full):
            self.assertEqual(self.stop(p), 0, p.stderr_text())
            self.assertEqual(p.stderr_text(), "")
        lines, flines = changed.lines(), full.lines()
        _, _, bad = parse_json_lines(lines)
        self.assertEqual(bad, [])
        ours = {quiet.cport, moving.cport}

        # --changed while only `moving` sends: rows for it alone, each with a
        # rate (it is shown because it moved), its payload what the application
        # sent so far; the store still holds both.
        mid = [(first, rs, s) for first, rs, s in reports(lines) if cut <= first and first < close_at]
        self.assertGreaterEqual(len(mid), 3, mid)
        shown = [r for _, rs, _ in mid for r in rs]
        self.assertTrue(shown)
        for r in shown:
            self.assertEqual(r["sport"], moving.cport, "only the moving connection: %s" % r)
            self.assertEqual(r["state"], "ESTABLISHED", r)
            self.assertGreater(r["fwd_bps"] + r["rev_bps"], 0, "shown without moving: %s" % r)
        for _, rs, s in mid:
            self.assertLessEqual(len(rs), 1, rs)
            self.assertEqual(s["connections"], len(rs), s)
            self.assertEqual(s["tracked"], 2, s)
        payloads = [(r["fwd_payload"], r["rev_payload"]) for r in shown]
        self.assertEqual(payloads, sorted(payloads), "payload went backwards: %s" % payloads)
        self.assertEqual(payloads[-1], (moving.sent_c, moving.sent_s))

        # Then the closes: both connections' final rows, exact.
        all_rows = [r for _, rs, _ in reports(lines) for r in rs]
        self.assertEqual({r["sport"] for r in all_rows}, ours, "rows for connections the test did not make")
        late = [r for first, rs, _ in reports(lines) if first >= close_at for r in rs]
        for c, want in ((quiet, (1000, 2000)), (moving, (moving.sent_c, moving.sent_s))):
            finals = [r for r in late if r["sport"] == c.cport and r["state"] in FINAL_STATES]
            self.assertEqual(len(finals), 1, late)
            r = finals[0]
            self.assertEqual((r["src"], r["dst"], r["dport"]),
                             (self.topo.client_ip(family), self.topo.server_ip(family), port), r)
            self.assertEqual((r["state"], r["fwd_payload"], r["rev_payload"]), ("CLOSED",) + want, r)
            self.assertGreater(r["fwd_bytes"], r["fwd_payload"], r)
            self.assertGreater(r["rev_bytes"], r["rev_payload"], r)
            self.assertTrue(is_int(r["duration_ns"]) and r["duration_ns"] > 0, r)
            self.assertTrue(is_int(r["rtt_ns"]) and r["rtt_ns"] > 0, r)
        # The quiet one: reported when new, then not until it closed.
        numbered, _, _ = parse_json_lines(lines)
        qi = [i for i, r in numbered if r["sport"] == quiet.cport]
        self.assertTrue([i for i in qi if i < cut], "quiet connection never reported when new")
        self.assertEqual([i for i in qi if cut <= i < close_at], [], "quiet connection shown while idle")

        # Without --changed every report in the same span lists both, idle or not.
        fmid = [rs for first, rs, _ in reports(flines) if cut_full <= first and first < close_full]
        self.assertGreaterEqual(len(fmid), 3)
        for rs in fmid:
            self.assertEqual(sorted(r["sport"] for r in rs), sorted(ours), rs)
            for r in rs:
                if r["sport"] == quiet.cport:
                    self.assertEqual((r["fwd_payload"], r["rev_payload"], r["fwd_bps"], r["rev_bps"]),
                                     (1000, 2000, 0, 0), r)
        ffinals = [r for _, rs, _ in reports(flines) for r in rs if r["state"] in FINAL_STATES]
        self.assertEqual(sorted((r["sport"], r["fwd_payload"], r["rev_payload"]) for r in ffinals),
                         sorted([(quiet.cport, 1000, 2000),
                                 (moving.cport, moving.sent_c, moving.sent_s)]))

    def test_changed_ipv4(self):
        self._changed("ipv4", 5701)

    def test_changed_ipv6(self):
        self._changed("ipv6", 5702)


class TestReuseAndReset(LifecycleBase):
    def _port_reuse(self, family, first_close):
        lsock, port = self.listen(family, port=5301)
        track = self._session()
        a = self.pair(family, lsock, port, reuse=True)
        a.c2s(1111)
        a.s2c(2222)
        getattr(a, first_close)()
        time.sleep(0.05)
        b = self.pair(family, lsock, port, bind_port=a.cport, reuse=True)
        self.assertEqual(b.cport, a.cport)
        b.c2s(3333)
        b.s2c(4444)
        b.close_clean()
        rows = self._finish(track, 2)
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)
        mine = [r for _, r in rows if a.cport in (r["sport"], r["dport"])]
        for r in mine:
            self.assertEqual((r["src"], r["sport"], r["dst"], r["dport"]), (src, a.cport, dst, port), r)
        finals = [r for r in mine if r["state"] in FINAL_STATES]
        want_first = "RESET" if first_close == "close_rst" else "CLOSED"
        got = sorted((r["state"], r["fwd_payload"], r["rev_payload"]) for r in finals)
        exp = sorted([(want_first, 1111, 2222), ("CLOSED", 3333, 4444)])
        self.assertEqual(got, exp, "final rows for the reused port %d: %s" % (a.cport, mine))
        for r in finals:
            self.assertTrue(is_int(r["duration_ns"]) and r["duration_ns"] > 0, r)
            self.assertTrue(is_int(r["rtt_ns"]) and r["rtt_ns"] > 0, r)
        self.assertIn(mine[-1]["state"], FINAL_STATES, "reported after the final rows: %s" % mine)
        others = [r for _, r in rows if a.cport not in (r["sport"], r["dport"])]
        self.assertEqual(others, [], "rows for connections the test did not make")

    def test_port_reuse_after_rst_ipv4(self):
        self._port_reuse("ipv4", "close_rst")

    def test_port_reuse_after_rst_ipv6(self):
        self._port_reuse("ipv6", "close_rst")

    def test_port_reuse_server_time_wait_ipv4(self):
        self._port_reuse("ipv4", "close_server_first")

    def test_port_reuse_server_time_wait_ipv6(self):
        self._port_reuse("ipv6", "close_server_first")

    def _rst(self, family):
        lsock, port = self.listen(family, port=5401)
        track = self._session()
        c = self.pair(family, lsock, port)
        c.c2s(5000)
        c.s2c(7000)
        c.close_rst()
        rows = self._finish(track, 1)
        mine = [r for _, r in rows if c.cport in (r["sport"], r["dport"])]
        finals = [r for r in mine if r["state"] in FINAL_STATES]
        self.assertEqual(len(finals), 1, mine)
        r = finals[0]
        self.assertEqual((r["src"], r["sport"], r["dst"], r["dport"]),
                         (self.topo.client_ip(family), c.cport, self.topo.server_ip(family), port), r)
        self.assertEqual((r["state"], r["fwd_payload"], r["rev_payload"]), ("RESET", 5000, 7000), r)
        self.assertTrue(is_int(r["duration_ns"]) and r["duration_ns"] > 0, r)
        self.assertIs(mine[-1], r, "reported after its RESET row: %s" % mine)

    def test_rst_ipv4(self):
        self._rst("ipv4")

    def test_rst_ipv6(self):
        self._rst("ipv6")


class TestHowItEnded(LifecycleBase):
    """`end` and `end_by` of each final row against what the test's own
    sockets did: who sent the first FIN, who aborted with a RST, before or
    after any data (watched at the server's interface)."""
    CASES = [  # (name, data first?, close method, state, end, end_by)
        ("client FIN first", True, "close_clean", "CLOSED", "fin", "client"),
        ("server FIN first", True, "close_server_first", "CLOSED", "fin", "server"),
        ("client RST after data", True, "close_rst", "RESET", "rst", "client"),
        ("server RST before data", False, "server_rst", "RESET", "rst", "server"),
    ]

    def _ends(self, family):
        lsock, port = self.listen(family, port=5501)
        track = self._session()
        conns = []
        for name, data, how, state, end, by in self.CASES:
            c = self.pair(family, lsock, port)
            if data:
                c.c2s(3001)
                c.s2c(4002)
            getattr(c, how)()
            conns.append((c, name, data, state, end, by))
        rows = self._finish(track, len(conns))
        for c, name, data, state, end, by in conns:
            with self.subTest(case=name):
                finals = [r for _, r in rows
                          if c.cport in (r["sport"], r["dport"]) and r["state"] in FINAL_STATES]
                self.assertEqual(len(finals), 1, finals)
                r = finals[0]
                self.assertEqual((r["state"], r["end"], r["end_by"]), (state, end, by), r)
                want = (3001, 4002) if data else (0, 0)
                self.assertEqual((r["fwd_payload"], r["rev_payload"]), want, r)
        # Live connections have no end yet.
        live = [r for _, r in rows if r["state"] == "ESTABLISHED"]
        self.assertTrue(all(r["end"] is None and r["end_by"] is None for r in live), live)

    def test_how_it_ended_ipv4(self):
        self._ends("ipv4")

    def test_how_it_ended_ipv6(self):
        self._ends("ipv6")


def tearDownModule():
    netns.tear_down_module()


if __name__ == "__main__":
    sys.exit(netns.main("lifecycle_test", sys.modules[__name__]))
