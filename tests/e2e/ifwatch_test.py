# SPDX-License-Identifier: MIT
"""End-to-end tests for interfaces that come and go (-i PATTERN, --all-interfaces).

tcptrack runs in a "node" namespace with -i 'ttpod*' (or --all-interfaces)
and --format json --summary, before any pod exists but one ("ttpodkeep",
there from the start and to the end). The test then creates and deletes
pods in waves: each pod is a namespace joined to the node by a veth pair
(node end "ttpod<K>"), with one real TCP connection from the pod to a
listener in the node namespace carrying a known number of payload bytes
each way. The connection starts as soon as the link is up, without waiting
for tcptrack: its row must have a handshake RTT (counted from its SYN) and
exactly what the sockets sent. Half the connections close cleanly before
their veth is deleted (one CLOSED row); the other half are still open when
it goes (ended by tcptrack: shown once more with their exact counts, then
never again). At the end nothing of tcptrack is left on ttpodkeep (no
program, no clsact), in TCX and in legacy tc mode. Limits: --max-interfaces
(one refusal line per interface, the first refused taken when room frees
up), a missing plain name (exit 1, one line), --all-interfaces with -i (exit 2).

Usage: ifwatch_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import in_netns, parse_json_lines, read_to_eof, recv_exact, run  # noqa: E402

PREFIX = "ttifw-%d-" % os.getpid()
netns.set_prefix(PREFIX)

WAVES, PER_WAVE = 5, 10
INTERVAL = "0.2"
KEEP = "ttpodkeep"
KEEP_NET = 200  # 10.78.200.0/24
TIME_LIMIT = 80.0  # per case; the whole file stays well under ctest's TIMEOUT


def c2s_bytes(k):
    return 3000 + 97 * k


def s2c_bytes(k):
    return 20000 + 131 * k


class IfWatch(netns.Base):
    MODE = None          # --attach
    SELECT = ("-i", "ttpod*")

    def fresh_topology(self):
        self.node = PREFIX + "node"
        self.pods = []
        self.addCleanup(self.cleanup_namespaces)
        run(["ip", "netns", "add", self.node])
        run(["ip", "-n", self.node, "link", "set", "lo", "up"])
        with in_netns(self.node):
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(self.lsock.close)
        self.lsock.bind(("0.0.0.0", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(10)
        self.port = self.lsock.getsockname()[1]

    def cleanup_namespaces(self):
        for ns in self.pods + [self.node]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)

    def add_pod(self, k, ifname):
        """A pod namespace joined to the node by a veth (node end `ifname`), up."""
        pod = "%sp%d" % (PREFIX, k)
        run(["ip", "netns", "add", pod])
        self.pods.append(pod)
        run(["ip", "-n", self.node, "link", "add", ifname, "type", "veth",
             "peer", "name", "eth0", "netns", pod])
        run(["ip", "-n", self.node, "-batch", "-"],
            input="addr add 10.78.%d.1/24 dev %s\nlink set %s up\n" % (k, ifname, ifname))
        run(["ip", "-n", pod, "-batch", "-"],
            input="link set lo up\naddr add 10.78.%d.2/24 dev eth0\nlink set eth0 up\n" % k)
        deadline = time.monotonic() + 10
        while not all("LOWER_UP" in run(["ip", "-n", ns, "link", "show", "dev", i]).stdout
                      for ns, i in ((self.node, ifname), (pod, "eth0"))):
            self.assertLess(time.monotonic(), deadline, "%s did not come up" % ifname)
            time.sleep(0.01)
        return pod

    def connect(self, k, pod):
        """A connection pod -> node carrying c2s_bytes(k) and s2c_bytes(k)."""
        with in_netns(pod):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(("10.78.%d.1" % k, self.port))
        s, _ = self.lsock.accept()
        s.settimeout(10)
        c.sendall(b"c" * c2s_bytes(k))
        recv_exact(s, c2s_bytes(k))
        s.sendall(b"s" * s2c_bytes(k))
        recv_exact(c, s2c_bytes(k))
        self.addCleanup(c.close)
        self.addCleanup(s.close)
        return c, s, c.getsockname()[1]

    @staticmethod
    def close_clean(c, s):
        c.shutdown(socket.SHUT_WR)
        read_to_eof(s)
        s.close()
        read_to_eof(c)
        c.close()

    def reports(self, proc):
        return sum(1 for _ in parse_json_lines(proc.lines())[1])

    def test_pods_come_and_go(self):
        t0 = time.monotonic()
        self.add_pod(KEEP_NET, KEEP)
        args = ["ip", "netns", "exec", self.node, netns.binary(), *self.SELECT, "-v",
                "--format", "json", "--summary", "--interval", INTERVAL]
        if self.MODE:
            args += ["--attach", self.MODE]
        proc = self.start(args)
        # Running (the first report) and attached to the interface there at the start.
        proc.wait_for(lambda ls: any('"summary"' in l for l in ls), 15, "the first report")
        deadline = time.monotonic() + 10
        while len(self.tcptrack_lines_of(KEEP)) < 2:
            self.assertLess(time.monotonic(), deadline,
                            "not attached to %s: %s" % (KEEP, proc.stderr_text()[-2000:]))
            time.sleep(0.05)
        expect = {}   # (sport, k) -> (c2s, s2c, closes cleanly, report count at deletion)
        c, s, sport = self.connect(KEEP_NET, PREFIX + "p%d" % KEEP_NET)
        self.close_clean(c, s)
        expect[(sport, KEEP_NET)] = (c2s_bytes(KEEP_NET), s2c_bytes(KEEP_NET), True, None)
        if self.MODE == "tc":
            self.assertIn("clsact", self.qdiscs_of(KEEP), "tc mode: no clsact on %s" % KEEP)

        for wave in range(WAVES):
            ks = range(wave * PER_WAVE + 1, (wave + 1) * PER_WAVE + 1)
            live = []
            for k in ks:
                pod = self.add_pod(k, "ttpod%d" % k)
                c, s, sport = self.connect(k, pod)  # at once: tcptrack must already be there
                live.append((k, c, s, sport))
            # Every other connection closes cleanly; the rest are open when their veth goes.
            for k, c, s, sport in live:
                if k % 2 == 0:
                    self.close_clean(c, s)
            # A report's header lists the wave's interfaces (and the one that stays).
            names = {KEEP} | {"ttpod%d" % k for k in ks}
            proc.wait_for(lambda ls: any(names <= set(s["ifaces"])
                                         for _, s in parse_json_lines(ls)[1]), 5,
                          "a report listing wave %d's interfaces" % wave)
            for k, c, s, sport in live:
                at = self.reports(proc)  # the report under way when it went
                run(["ip", "-n", self.node, "link", "del", "ttpod%d" % k])
                expect[(sport, k)] = (c2s_bytes(k), s2c_bytes(k), k % 2 == 0, at)
            for k, c, s, sport in live:
                if k % 2:
                    c.close()
                    s.close()
            for k in ks:
                pod = "%sp%d" % (PREFIX, k)
                run(["ip", "netns", "del", pod])
                self.pods.remove(pod)
        self.assertLess(time.monotonic() - t0, TIME_LIMIT, "too slow")

        # Reports until the last ones are shown, then a stop.
        n = self.reports(proc)
        proc.wait_for(lambda ls: sum(1 for _ in parse_json_lines(ls)[1]) >= n + 3, 10,
                      "three more reports")
        self.assertEqual(self.stop(proc), 0, proc.stderr_text()[-3000:])
        self.check_rows(proc, expect)
        err = proc.stderr_text()
        for k in range(1, WAVES * PER_WAVE + 1):
            self.assertIn("tcptrack: attached to ttpod%d (%s)" % (k, self.kind()), err)
            self.assertIn("tcptrack: ttpod%d went away: detached" % k, err)
        self.assertIn("tcptrack: attached to %s (%s)" % (KEEP, self.kind()), err)
        # Nothing of tcptrack is left on the interface that stayed.
        self.assertEqual(self.tcptrack_lines_of(KEEP), [], "programs left on %s" % KEEP)
        self.assertNotIn("clsact", self.qdiscs_of(KEEP), "clsact left on %s" % KEEP)
        for hook in ("ingress", "egress"):
            out = run(["ip", "netns", "exec", self.node, "tc", "filter", "show", "dev", KEEP,
                       hook]).stdout
            self.assertEqual(out.strip(), "", "tc filters left on %s %s" % (KEEP, hook))
        out = run(["ip", "netns", "exec", self.node, "bpftool", "net", "show"]).stdout
        self.assertNotIn("tcptrack", out)
        self.assertLess(time.monotonic() - t0, TIME_LIMIT + 10, "too slow")

    def kind(self):
        return "tc" if self.MODE == "tc" else "tcx"

    def qdiscs_of(self, iface):
        return run(["ip", "netns", "exec", self.node, "tc", "qdisc", "show", "dev", iface]).stdout

    def tcptrack_lines_of(self, iface):
        out = run(["ip", "netns", "exec", self.node, "bpftool", "net", "show", "dev",
                   iface]).stdout
        return [l for l in out.splitlines() if "tcptrack" in l]

    def check_rows(self, proc, expect):
        rows, summaries, bad = parse_json_lines(proc.lines())
        self.assertEqual(bad, [])
        starts = [i for i, _ in summaries]  # a report's rows come before its summary

        def report_of(line):
            return sum(1 for s in starts if s < line)

        by_conn = {}
        for line, r in rows:
            by_conn.setdefault((r["src"], r["sport"], r["dst"], r["dport"]), []).append(
                (report_of(line), r))
        for (sport, k), (c2s, s2c, clean, at) in sorted(expect.items(), key=lambda e: e[0][1]):
            key = ("10.78.%d.2" % k, sport, "10.78.%d.1" % k, self.port)
            seen = by_conn.get(key)
            self.assertTrue(seen, "connection of pod %d never reported" % k)
            rep, last = seen[-1]
            what = "pod %d: %s" % (k, last)
            iface = KEEP if k == KEEP_NET else "ttpod%d" % k
            self.assertEqual(last["iface"], iface, what)
            self.assertEqual((last["fwd_payload"], last["rev_payload"]), (c2s, s2c), what)
            self.assertIsNotNone(last["rtt_ns"], "pod %d: not counted from its SYN" % k)
            finals = [r for _, r in seen if r["state"] in netns.FINAL_STATES]
            if clean:
                self.assertEqual(len(finals), 1, what)
                self.assertEqual(last["state"], "CLOSED", what)
            else:
                # Ended with its interface: its last row at the next report or
                # the one after, never again.
                self.assertEqual(finals, [], what)
                self.assertEqual(last["state"], "ESTABLISHED", what)
                self.assertLessEqual(rep, at + 2, "pod %d shown after its interface went" % k)
        self.assertTrue(all("lo" not in s["ifaces"] for _, s in summaries))
        self.assertEqual(summaries[-1][1]["ifaces"], [KEEP])


class PatternTcx(IfWatch):
    MODE = "tcx"

    def setUp(self):
        netns.require(self, "tcx")
        super().setUp()


class PatternTc(IfWatch):
    MODE = "tc"


class AllInterfaces(IfWatch):
    MODE = None
    SELECT = ("--all-interfaces",)


class Limits(IfWatch):
    """--max-interfaces, a missing name, a pattern matching nothing."""

    test_pods_come_and_go = None  # not this class's case

    def node_cmd(self, *args):
        return ["ip", "netns", "exec", self.node, netns.binary(), *args]

    def test_max_interfaces(self):
        proc = self.start(self.node_cmd("-i", "ttlim*", "-v", "--max-interfaces", "2",
                                        "--format", "json", "--summary", "--interval", "0.2"))
        # A pattern matching nothing at the start: it runs and waits.
        proc.wait_for(lambda ls: any('"summary"' in l for l in ls), 15, "the first report")
        for k in range(1, 5):
            run(["ip", "-n", self.node, "link", "add", "ttlim%d" % k, "type", "veth",
                 "peer", "name", "ttpeer%d" % k])
        refused = "tcptrack: not watching ttlim%d: --max-interfaces 2 reached"
        proc.wait_for(lambda ls: all(any(refused % k in l for l in ls) for k in (3, 4)), 5,
                      "two refusals", stream="err")
        run(["ip", "-n", self.node, "link", "set", "ttlim3", "down"])  # events: no new line
        run(["ip", "-n", self.node, "link", "del", "ttlim1"])
        # Room again: the first one refused is taken.
        proc.wait_for(lambda ls: any("attached to ttlim3" in l for l in ls), 5, "ttlim3 taken",
                      stream="err")
        time.sleep(0.5)
        self.assertEqual(self.stop(proc), 0)
        err = proc.err_lines()
        for k in (3, 4):
            self.assertEqual(sum(refused % k in l for l in err), 1, err)
        self.assertNotIn("attached to ttlim4", proc.stderr_text())
        _, summaries, _ = parse_json_lines(proc.lines())
        self.assertEqual(sorted(summaries[-1][1]["ifaces"]), ["ttlim2", "ttlim3"])
        out = run(["ip", "netns", "exec", self.node, "bpftool", "net", "show"]).stdout
        self.assertNotIn("tcptrack", out)

    def test_missing_name_is_an_error(self):
        p = subprocess.run(self.node_cmd("-i", "ttnone0", "-i", "ttpod*", "--once"),
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(p.stderr, "tcptrack: interface 'ttnone0' does not exist\n")
        p = subprocess.run(self.node_cmd("--all-interfaces", "-i", "ttpod*"),
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)


del IfWatch  # the base runs only through its subclasses


def tearDownModule():
    netns.tear_down_module()


if __name__ == "__main__":
    sys.exit(netns.main("e2e_ifwatch", sys.modules[__name__]))
