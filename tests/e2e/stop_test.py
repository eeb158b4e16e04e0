# SPDX-License-Identifier: MIT
"""End-to-end tests of what tcptrack prints and leaves when it stops (issue 16).

  * final report: with --interval 10, a connection opened and closed after the
    first report and before SIGINT/SIGTERM is printed exactly once, CLOSED,
    with the exact payload the sockets moved, by --closed, --format json
    (with and without --closed), --format csv and the table; json, csv and the
    table also print the live connections once more;
  * a flow log across a restart (`--format json --closed`, as the packaged
    tcptrack-flowlog@.service runs it): connection churn runs while A is
    stopped by SIGTERM and B started. Every connection that ended before A's
    stop is in A's log exactly once with exact payloads, every one that began
    after B attached is in B's, and long connections open across the restart
    are logged by B with exactly what was sent after B attached;
  * legacy tc: the last instance out removes the clsact it created, also after
    someone deleted its filters (or the qdisc) and it re-attached; a clsact
    that was there before, or that someone else re-created meanwhile, stays.

The connections are watched on the client side: the client's kernel sends the
last ACK of a close (through the watched egress hook) before the client's
read of the peer's FIN returns, so "the client saw it end" means tcptrack
could see it end.

Usage: stop_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import csv
import fcntl
import glob
import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import FINAL_STATES, in_netns, parse_json_lines, run  # noqa: E402

netns.set_prefix("ttst-%d-" % os.getpid())

LONG = "10"  # --interval: the next regular report is far off when we stop
HEADER = re.compile(r"^\d\d:\d\d:\d\d  ")  # a table report's first line
PRIO = 0xC7C7  # tcptrack's legacy tc filter priority


def ends(row, cport, port):
    return {row.get("sport"), row.get("dport")} == {cport, port}


def payloads(row, cport):
    """(client->server, server->client) payload of a row, whatever its orientation."""
    if row["sport"] == cport:
        return row["fwd_payload"], row["rev_payload"]
    return row["rev_payload"], row["fwd_payload"]


class StopBase(netns.Base):
    SIDE = "client"

    def fresh_topology(self):
        self.topo = netns.Topology(self.PAIRS, tag="ttst")
        self.addCleanup(self.topo.teardown)
        self.topo.setup()

    def start_on_client(self, *args):
        return self.start_tcptrack("client", *args)

    def wait_gone(self, procs, timeout=10):
        for p in procs:
            rc = p.wait(timeout)
            self.assertEqual(rc, 0, "exit status of %s; stderr: %s"
                             % (" ".join(p.cmd), p.stderr_text()))


# ====================================================================== final report


class TestFinalReport(StopBase):
    FORMATS = {
        "closed": ["--closed"],
        "json-closed": ["--format", "json", "--closed"],
        "json": ["--format", "json"],
        "csv": ["--format", "csv"],
        "table": [],
    }
    N, M = 30011, 17003     # the connection made between the first report and the stop
    L1, L2 = 4001, 2999     # the long connection's payload, open across the stop

    def _first_report(self, fmt, cport):
        """Predicate: the output holds the first report (the warm-up connection's row)."""
        if fmt.startswith("json"):
            return lambda ls: any(ends(r, cport, self.port) for _, r in parse_json_lines(ls)[0])
        if fmt == "csv":
            return lambda ls: any(",%d," % cport in l for l in ls)
        return lambda ls: any(":%d " % cport in l for l in ls)

    def test_final_report_at_sigint_and_sigterm(self):
        lsock, self.port = self.listen("ipv4")
        runs = {}
        for sig in ("SIGINT", "SIGTERM"):
            for fmt, args in self.FORMATS.items():
                runs[(sig, fmt)] = self.start_on_client("--interval", LONG, *args)
        for p in runs.values():
            self.wait_attached_all(p, len(runs))
        # Warm-up: closed before the first report, so the first report shows
        # in every format; the long connection stays open across the stop.
        warm = self.pair("ipv4", lsock, self.port)
        warm.c2s(100)
        warm.close_clean()
        long_conn = self.pair("ipv4", lsock, self.port)
        long_conn.c2s(self.L1)
        long_conn.s2c(self.L2)
        for (sig, fmt), p in runs.items():
            p.wait_for(self._first_report(fmt, warm.cport), 20, "%s's first report" % fmt)
        # After every first report, long before the second (10 s later):
        conn = self.pair("ipv4", lsock, self.port)
        conn.c2s(self.N)
        conn.s2c(self.M)
        conn.close_clean()
        for (sig, fmt), p in runs.items():
            p.signal(getattr(signal, sig))
        self.wait_gone(runs.values())
        long_conn.close_clean()
        for (sig, fmt), p in runs.items():
            with self.subTest(signal=sig, format=fmt):
                getattr(self, "_check_" + fmt.replace("-", "_"))(p.lines(), warm, conn, long_conn)

    def wait_attached_all(self, proc, n):
        """Every one of the n instances is attached (both hooks): then no
        connection is half seen."""
        deadline = time.monotonic() + netns.ATTACH_TIMEOUT * 4  # n programs to verify
        while True:
            lines = self.tcptrack_lines("client")
            if (sum("ingress" in l for l in lines) >= n and
                    sum("egress" in l for l in lines) >= n):
                return
            if not proc.running() or time.monotonic() > deadline:
                self.fail("not all %d tcptrack instances attached: %s\nstderr: %s"
                          % (n, lines, proc.stderr_text()))
            time.sleep(0.05)

    def _json_rows(self, lines):
        rows, _, bad = parse_json_lines(lines)
        self.assertEqual(bad, [], "non-JSON lines")
        return [r for _, r in rows]

    def _check_rows(self, rows, warm, conn, long_conn, closed_only):
        """rows: dicts with the JSON keys, in output order."""
        times = sorted({r["time"] for r in rows})
        self.assertEqual(len(times), 2, "expected the first and the final report: %s" % times)
        final = times[-1]
        mine = [r for r in rows if ends(r, conn.cport, self.port)]
        self.assertEqual(len(mine), 1, "the connection closed before the stop, once: %s" % mine)
        r = mine[0]
        self.assertEqual(r["time"], final, "in the final report: %s" % r)
        self.assertEqual(r["state"], "CLOSED", r)
        self.assertEqual((r["sport"], r["dport"]), (conn.cport, self.port), r)
        self.assertEqual((r["fwd_payload"], r["rev_payload"]), (self.N, self.M), r)
        warm_rows = [x for x in rows if ends(x, warm.cport, self.port)]
        self.assertEqual([(x["time"], x["state"]) for x in warm_rows], [(times[0], "CLOSED")])
        live = [x for x in rows if ends(x, long_conn.cport, self.port)]
        if closed_only:
            self.assertEqual(live, [], "--closed: only closed connections")
            self.assertEqual(len(rows), 2, rows)
        else:
            self.assertEqual([(x["time"], x["state"]) for x in live],
                             [(times[0], "ESTABLISHED"), (final, "ESTABLISHED")], live)
            self.assertEqual((live[-1]["fwd_payload"], live[-1]["rev_payload"]),
                             (self.L1, self.L2), live[-1])
            self.assertEqual(len(rows), 4, rows)

    def _check_json(self, lines, warm, conn, long_conn):
        self._check_rows(self._json_rows(lines), warm, conn, long_conn, False)

    def _check_json_closed(self, lines, warm, conn, long_conn):
        self._check_rows(self._json_rows(lines), warm, conn, long_conn, True)

    def _check_csv(self, lines, warm, conn, long_conn):
        rows = list(csv.DictReader(lines))
        for r in rows:
            for k in ("sport", "dport", "fwd_payload", "rev_payload"):
                r[k] = int(r[k])
        self.assertEqual(sum(1 for l in lines if l.startswith("time,")), 1, "one header row")
        self._check_rows(rows, warm, conn, long_conn, False)

    def _endpoints(self, c):
        return "%s:%d -> %s:%d" % (self.topo.client_ip("ipv4"), c.cport,
                                   self.topo.server_ip("ipv4"), self.port)

    def _check_closed(self, lines, warm, conn, long_conn):
        lines = [l for l in lines if l.strip()]
        self.assertEqual(len(lines), 2, "warm-up and final connection: %s" % lines)
        self.assertTrue(lines[0].startswith(self._endpoints(warm) + "  "), lines)
        self.assertTrue(lines[1].startswith(self._endpoints(conn) + "  "), lines)
        self.assertTrue(lines[1].endswith("  CLOSED"), lines)

    def _check_table(self, lines, warm, conn, long_conn):
        reports, cur = [], None
        for l in lines:
            if HEADER.match(l):
                cur = []
                reports.append(cur)
            elif cur is not None and l.strip():
                cur.append(l)
        self.assertEqual(len(reports), 2, "the first and the final report:\n%s" % "\n".join(lines))
        final = [l for l in reports[1] if l.startswith(self._endpoints(conn) + " ")]
        self.assertEqual(len(final), 1, reports[1])
        self.assertIn(" CLOSED ", final[0])
        self.assertEqual(sum(l.startswith(self._endpoints(conn) + " ") for l in reports[0]), 0)
        live = [l for l in reports[1] if l.startswith(self._endpoints(long_conn) + " ")]
        self.assertEqual(len(live), 1, reports[1])
        self.assertIn(" ESTABLISHED ", live[0])


# ====================================================================== restart


class Pump:
    """Runs churn.py's batches back to back (a line on its stdin starts the
    next one), up to `limit` batches started: some are kept for later."""

    def __init__(self, proc, limit):
        self.proc, self.limit, self.stopped = proc, limit, False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def batches(self):
        """Batches finished."""
        return sum('"batch"' in l for l in self.proc.lines())

    def allow(self, limit):
        with self.proc.cv:
            self.limit = limit
            self.proc.cv.notify_all()

    def _run(self):
        fed = 0  # batch k + 1 starts on the k-th line
        while True:
            with self.proc.cv:
                self.proc.cv.wait_for(lambda: self.stopped or not self.proc.running() or (
                    self.batches() > fed and fed + 1 < self.limit), 0.5)
                if self.stopped or not self.proc.running():
                    return
                go = self.batches() > fed and fed + 1 < self.limit
            if go:
                try:
                    self.proc.p.stdin.write("\n")
                    self.proc.p.stdin.flush()
                except (BrokenPipeError, ValueError):
                    return
                fed += 1

    def stop(self):
        with self.proc.cv:
            self.stopped = True
            self.proc.cv.notify_all()
        self.t.join(5)
        try:
            self.proc.p.stdin.close()
        except BrokenPipeError:
            pass


class TestBlockedWriter(StopBase):
    """A stop while a report is blocked writing to a full stdout pipe (a
    reader that stalls: `| less` paused, a busy log shipper): that report
    completes once the reader resumes, the final report follows, exit 0."""
    CONNS = 40
    SENT = 1237

    def blocked_in_write(self, pid):
        """The kernel says tcptrack's main thread sleeps in a pipe write."""
        try:
            with open("/proc/%d/wchan" % pid) as f:
                if f.read().strip() == "pipe_write":
                    return True
            with open("/proc/%d/syscall" % pid) as f:
                return f.read().split(" ", 1)[0] == "1"  # x86-64 write(2)
        except OSError:
            return False

    def test_stop_while_blocked_on_stdout(self):
        lsock, port = self.listen("ipv4")
        conns = []
        for _ in range(self.CONNS):
            c = self.pair("ipv4", lsock, port)
            c.c2s(self.SENT)
            conns.append(c)
        cmd = self.ns_cmd("client", netns.BINARY, "-i", self.topo.cif,
                          "--format", "json", "--interval", "0.1")
        p = self.start(cmd, hold_stdout=True)
        self.wait_attached(p, "client")
        for c in conns:  # seen now, after the attach: counted from here
            c.s2c(self.SENT)
        deadline = time.monotonic() + 30
        while not self.blocked_in_write(p.pid):
            self.assertTrue(p.running(), p.stderr_text())
            self.assertLess(time.monotonic(), deadline, "tcptrack never blocked on stdout")
            time.sleep(0.05)
        p.signal(signal.SIGINT)
        p.release_stdout()
        self.wait_gone([p])
        self.assertEqual(p.err_lines(), [], "nothing on stderr")
        rows, _, bad = parse_json_lines(p.lines())
        self.assertEqual(bad, [], "every line whole")
        final = max(r["time"] for _, r in rows)
        last = [r for _, r in rows if r["time"] == final]
        cports = {c.cport for c in conns}
        mine = [r for r in last if {r["sport"], r["dport"]} & cports]
        self.assertEqual(len(mine), self.CONNS, "the final report has every connection")
        for r in mine:
            cport = r["sport"] if r["sport"] in cports else r["dport"]
            self.assertEqual(payloads(r, cport)[1], self.SENT, r)


class TestRestart(StopBase):
    FLOWLOG = ["--format", "json", "--closed"]  # packaging/.../tcptrack-flowlog@.service
    COUNT, BATCHES = 6000, 60
    Y1, Y2 = 7001, 5003  # sent on each long connection once B is attached

    def wait_batches(self, pump, n, what):
        self.churn.wait_for(lambda ls: pump.batches() >= n, 60, what)

    def test_flow_log_across_a_restart(self):
        server, port = self.start_server("ipv4", netns.CHURN)
        lsock, lport = self.listen("ipv4")
        a = self.start_on_client("--interval", LONG, *self.FLOWLOG)
        self.wait_attached(a, "client")
        longs = [self.pair("ipv4", lsock, lport) for _ in range(3)]
        for k, c in enumerate(longs):
            c.c2s(1000 + k)
            c.s2c(2000 + k)
        self.churn = self.start(self.ns_cmd(
            "client", sys.executable, netns.CHURN, "client", "--host", self.topo.server_ip("ipv4"),
            "--port", str(port), "--count", str(self.COUNT), "--batches", str(self.BATCHES),
            "--batch-pause", "-1", "--procs", "2", "--threads", "4"), stdin=True)
        # Back to back through A's stop and B's start, keeping 10 batches for B.
        pump = Pump(self.churn, self.BATCHES - 10)
        self.addCleanup(pump.stop)
        self.wait_batches(pump, 5, "5 churn batches under A")
        t_stop = time.monotonic()  # everything the client saw end before this is A's
        at_stop = pump.batches()
        a.signal(signal.SIGTERM)
        self.wait_gone([a])
        at_a_exit = pump.batches()
        b = self.start_on_client("--interval", LONG, *self.FLOWLOG)
        self.wait_attached(b, "client")
        t_ready = time.monotonic()  # everything begun after this is B's
        at_b_ready = pump.batches()
        pump.allow(self.BATCHES)
        self.wait_batches(pump, at_b_ready + 5, "5 churn batches under B")
        for c in longs:  # mid-stream for B: it sees exactly this much
            c.c2s(self.Y1)
            c.s2c(self.Y2)
            c.close_clean()
        self.assertEqual(self.churn.wait(60), 0, self.churn.stderr_text())
        pump.stop()
        b.signal(signal.SIGTERM)
        self.wait_gone([b])
        res = json.loads(self.churn.lines()[-1])
        conns = res["conns"]
        print("\n  churn: %d connections, %d batches before A's stop, %d by A's exit, "
              "%d by B's attach" % (len(conns), at_stop, at_a_exit, at_b_ready), file=sys.stderr)
        self.assertEqual(len(conns), self.COUNT)
        self.assertEqual(len({c["client_port"] for c in conns}), len(conns), "client ports reused")

        log_a, log_b = (self._log(p) for p in (a, b))
        in_a = in_b = gap = 0
        for c in conns:
            cp = c["client_port"]
            ra = [r for r in log_a if ends(r, cp, port)]
            rb = [r for r in log_b if ends(r, cp, port)]
            if c["t_end"] < t_stop:
                in_a += 1
                self.assertEqual(rb, [], "ended before A's stop, logged by B: %s" % c)
                self._exact(ra, cp, c["sent"], c["received"], "A", c)
            elif c["t_start"] > t_ready:
                in_b += 1
                self.assertEqual(ra, [], "begun after B attached, logged by A: %s" % c)
                self._exact(rb, cp, c["sent"], c["received"], "B", c)
            else:  # around the gap: at most once, never more than was sent
                gap += 1
                self.assertLessEqual(len(ra) + len(rb), 1, (c, ra, rb))
                for r in ra + rb:
                    fwd, rev = payloads(r, cp)
                    self.assertLessEqual(fwd, c["sent"], (c, r))
                    self.assertLessEqual(rev, c["received"], (c, r))
        print("  exact in A's log: %d, in B's: %d, around the gap: %d" % (in_a, in_b, gap),
              file=sys.stderr)
        self.assertGreater(in_a, 0)
        self.assertGreater(in_b, 0)
        for c in longs:
            self.assertEqual([r for r in log_a if ends(r, c.cport, lport)], [],
                             "open at A's stop: not in A's --closed log")
            rb = [r for r in log_b if ends(r, c.cport, lport)]
            self.assertEqual(len(rb), 1, "long connection %d in B's log: %s" % (c.cport, rb))
            self.assertEqual(rb[0]["state"], "CLOSED", rb[0])
            self.assertEqual(payloads(rb[0], c.cport), (self.Y1, self.Y2),
                             "what was sent after B attached: %s" % rb[0])
        known = {c["client_port"] for c in conns} | {c.cport for c in longs}
        for r in log_a + log_b:
            self.assertTrue(r["sport"] in known or r["dport"] in known, "unknown row %s" % r)

    def _log(self, proc):
        rows, summaries, bad = parse_json_lines(proc.lines())
        self.assertEqual((bad, summaries), ([], []), "only JSON rows")
        for _, r in rows:
            self.assertIn(r["state"], FINAL_STATES, r)
        return [r for _, r in rows]

    def _exact(self, rows, cport, sent, received, who, conn):
        self.assertEqual(len(rows), 1, "in %s's log exactly once: %s %s" % (who, conn, rows))
        r = rows[0]
        self.assertEqual(r["state"], "CLOSED", r)
        self.assertEqual((r["sport"], r["fwd_payload"], r["rev_payload"]),
                         (cport, sent, received), "%s's row for %s" % (who, conn))


# ====================================================================== clsact


class TestClsact(StopBase):
    """Legacy tc (--attach tc): what is left on the interface after a re-attach."""

    def _run_and_remove(self, remove, note):
        """Runs tcptrack --attach tc, removes its attachment with `remove` (a
        list of tc commands run while holding tcptrack's interface lock), waits
        for the re-attach note, stops it."""
        p = self.start_on_client("--attach", "tc", "--format", "json", "--interval", "0.2")
        self.wait_attached(p, "client")
        with self.iface_lock():
            for cmd in remove:
                run(self.ns_cmd("client", "tc", *cmd))
        p.wait_for(lambda ls: any(note in l for l in ls), 10, "'%s' on stderr" % note,
                   stream="err")
        self.assertEqual(len(self.tcptrack_lines("client")), 2, "re-attached both hooks")
        self.assertEqual(self.stop(p, signal.SIGINT), 0, p.stderr_text())

    def iface_lock(self):
        """tcptrack's per-interface lock (instance_lock.hpp): while the test
        holds it, tcptrack may notice what changed but cannot act on it, so a
        delete-and-re-create is one change to it."""
        with in_netns(self.topo.cns):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), "little")  # SO_NETNS_COOKIE
        s.close()
        ifindex = int(run(self.ns_cmd("client", "cat", "/sys/class/net/%s/ifindex"
                                      % self.topo.cif)).stdout)
        (path,) = [f for d in ("/run/tcptrack", "/run/lock/tcptrack")
                   for f in glob.glob("%s/ns%d-%d.iface" % (d, cookie, ifindex))]
        return _Flock(path)

    def filter_del(self):
        return [["filter", "del", "dev", self.topo.cif, hook, "pref", str(PRIO)]
                for hook in ("ingress", "egress")]

    def test_created_clsact_removed_after_filters_deleted(self):
        before = self.snapshot()
        self.assertNotIn("clsact", before["qdisc"])
        self._run_and_remove(self.filter_del(), "ingress and egress filters on %s were deleted"
                             % self.topo.cif)
        self.assert_restored(before, "after our filters were deleted")

    def test_created_clsact_removed_after_qdisc_deleted(self):
        before = self.snapshot()
        self._run_and_remove([["qdisc", "del", "dev", self.topo.cif, "clsact"]],
                             "clsact qdisc on %s was deleted" % self.topo.cif)
        self.assert_restored(before, "after the clsact was deleted")

    def test_existing_clsact_stays(self):
        run(self.ns_cmd("client", "tc", "qdisc", "add", "dev", self.topo.cif, "clsact"))
        before = self.snapshot()
        self._run_and_remove(self.filter_del(), "ingress and egress filters on %s were deleted"
                             % self.topo.cif)
        self.assert_restored(before, "clsact there before tcptrack")

    def test_clsact_recreated_by_someone_else_stays(self):
        before = self.snapshot()
        self._run_and_remove([["qdisc", "del", "dev", self.topo.cif, "clsact"],
                              ["qdisc", "add", "dev", self.topo.cif, "clsact"]],
                             "re-attached")
        after = self.snapshot()
        self.assertEqual(after["tcptrack"], [])
        self.assertIn("clsact", after["qdisc"], "someone else's clsact was removed")
        self.assertNotIn("clsact", before["qdisc"])


class _Flock:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def tearDownModule():
    netns.tear_down_module()


if __name__ == "__main__":
    sys.exit(netns.main("stop_test", sys.modules[__name__]))
