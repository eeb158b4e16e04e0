# SPDX-License-Identifier: MIT
"""End-to-end test for --ipfix, read back through a real collector.

tcptrack runs in the ROOT namespace (--netns) watching the server end of a
veth pair and exports to Debian nfdump's `nfcapd` on the root's loopback,
started BEFORE tcptrack (so it has every template: nfcapd decodes only records
whose template it received). The test makes known IPv4 and IPv6 connections
(exact payloads, FIN and RST closes), stops tcptrack, SIGTERMs nfcapd (which
flushes its file) and reads the file with `nfdump -o json`: per connection,
the collector's forward/reverse octets and packets equal tcptrack's own final
JSON row (fwd_bytes/fwd_packets/rev_bytes/rev_packets) and the payload (an
enterprise element nfdump does not know, so checked by tcptrack's JSON) equals
what the sockets sent. A long-lived connection crossing
--ipfix-active-timeout 1 gives several records whose sums equal its totals.
With nothing listening on the collector's port tcptrack still reports exact
counts, exits 0 and its summary counts the export errors.

Usage: ipfix_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise, or without nfcapd/nfdump.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import FINAL_STATES, parse_json_lines  # noqa: E402

netns.set_prefix("tt-ipfix-%d-" % os.getpid())

NFCAPD = shutil.which("nfcapd") or "/usr/bin/nfcapd"
NFDUMP = shutil.which("nfdump") or "/usr/bin/nfdump"
DEADLINE = 30.0


def canon(family, addr):
    return socket.inet_ntop(netns.family_const(family), socket.inet_pton(netns.family_const(family), addr))


class IpfixBase(netns.Base):
    def setUp(self):
        self.topo = netns.Topology(1, tag="ix")
        self.addCleanup(self.topo.teardown)
        self.topo.setup()

    def start_nfcapd(self):
        """nfcapd on the root's loopback; returns (proc, dir, port) once it listens."""
        tmp = tempfile.mkdtemp(prefix="tt-ipfix-")
        self.addCleanup(shutil.rmtree, tmp, True)
        port = netns.free_port(socket.SOCK_DGRAM)
        proc = self.start([NFCAPD, "-w", tmp, "-b", "127.0.0.1", "-p", str(port)])
        self.addCleanup(proc.kill)
        deadline = time.monotonic() + 10
        while True:  # listening: its UDP socket shows up
            out = subprocess.run(["ss", "-Hlun", "sport = :%d" % port], capture_output=True,
                                 text=True, timeout=10).stdout
            if out.strip():
                return proc, tmp, port
            if not proc.running() or time.monotonic() > deadline:
                self.fail("nfcapd did not start listening on 127.0.0.1:%d: %s"
                          % (port, proc.stderr_text()))
            time.sleep(0.05)

    def collector_flows(self, proc, tmp):
        """SIGTERM nfcapd (it flushes its file) and read every record back."""
        proc.signal(signal.SIGTERM)
        rc = proc.wait(15)
        self.assertEqual(rc, 0, "nfcapd: %s" % proc.stderr_text())
        files = sorted(f for f in glob.glob(os.path.join(tmp, "**", "nfcapd.*"), recursive=True)
                       if not f.endswith(".current") and "nfcapd.current" not in f)
        self.assertTrue(files, "nfcapd wrote no file in %s: %s" % (tmp, os.listdir(tmp)))
        recs, csv = [], []
        for f in files:  # nfcapd rotates on 5-minute boundaries: a run can span two files
            out = subprocess.run([NFDUMP, "-r", f, "-o", "json"], capture_output=True, text=True,
                                 timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            # A file without records prints "[", "No matching flows", "]": not JSON.
            text = "\n".join(l for l in out.stdout.splitlines() if l.strip() != "No matching flows")
            if text.strip():
                recs += json.loads(text)
            csv.append(subprocess.run([NFDUMP, "-r", f, "-o", "csv"], capture_output=True,
                                      text=True, timeout=30).stdout)
        self.csv = "".join(csv)
        return recs

    def start_tcptrack_root(self, *args):
        cmd = [netns.binary(), "--netns", self.topo.sns, "-i", self.topo.sif] + list(args)
        return self.start(cmd)

    def final_rows(self, proc):
        rows, summaries, bad = parse_json_lines(proc.lines())
        self.assertEqual(bad, [])
        return [r for _, r in rows], [s for _, s in summaries]

    def wait_closed(self, proc, want):
        """Until tcptrack's JSON shows CLOSED/RESET rows for the client ports in `want`."""
        def done(lines):
            rows, _, _ = parse_json_lines(lines)
            got = {r["sport"] for _, r in rows if r.get("state") in FINAL_STATES}
            return want <= got or None
        proc.wait_for(done, DEADLINE, "final rows for client ports %s" % sorted(want))

    def stop_tcptrack(self, proc):
        proc.signal(signal.SIGINT)
        rc = proc.wait(15)
        self.assertEqual(rc, 0, "tcptrack: %s" % proc.stderr_text())


def key_of(family, src, sport, dst, dport):
    return (canon(family, src), int(sport), canon(family, dst), int(dport))


def collector_key(r):
    fam = "ipv4" if "src4_addr" in r else "ipv6"
    src = r.get("src4_addr") or r.get("src6_addr")
    dst = r.get("dst4_addr") or r.get("dst6_addr")
    return key_of(fam, src, r["src_port"], dst, r["dst_port"])


class TestIpfix(IpfixBase):
    def test_counts_equal_tcptrack_and_sockets(self):
        nf, tmp, port = self.start_nfcapd()
        tt = self.start_tcptrack_root("--format", "json", "--interval", "0.2", "--summary",
                                      "--ipfix", "udp://127.0.0.1:%d" % port)
        self.wait_attached(tt, "server")
        plan = {"ipv4": [(1000, 20000, "fin"), (77, 0, "fin"), (0, 5000, "fin"), (3000, 300, "rst")],
                "ipv6": [(4096, 65536, "fin"), (1, 1, "fin")]}
        conns = []
        for family, items in plan.items():
            l, sport = self.listen(family)
            for n, m, how in items:
                p = self.pair(family, l, sport)
                if n:
                    p.c2s(n)
                if m:
                    p.s2c(m)
                p.close_rst() if how == "rst" else p.close_clean()
                conns.append((family, p, sport, how))
        self.wait_closed(tt, {c[1].cport for c in conns})
        self.stop_tcptrack(tt)
        rows, summaries = self.final_rows(tt)
        recs = self.collector_flows(nf, tmp)
        sys.stderr.write("nfdump -o csv (first lines):\n%s\nnfdump -o json (first record): %s\n"
                         % ("\n".join(self.csv.splitlines()[:3]), json.dumps(recs[0]) if recs else None))
        by_key = {}
        for r in recs:
            by_key.setdefault(collector_key(r), []).append(r)
        for family, p, sport, how in conns:
            k = key_of(family, self.topo.client_ip(family), p.cport, self.topo.server_ip(family), sport)
            final = [r for r in rows if r["sport"] == p.cport and r["state"] in FINAL_STATES]
            self.assertEqual(len(final), 1, (k, final))
            row = final[0]
            # tcptrack's own payload is what the sockets sent.
            self.assertEqual((row["fwd_payload"], row["rev_payload"]), (p.sent_c, p.sent_s), row)
            got = by_key.get(k)
            self.assertTrue(got, "no collector record for %s; collector has %s" % (k, list(by_key)))
            sums = [sum(int(r[f]) for r in got) for f in ("in_bytes", "in_packets", "out_bytes", "out_packets")]
            self.assertEqual(sums, [row["fwd_bytes"], row["fwd_packets"], row["rev_bytes"], row["rev_packets"]],
                             "collector vs tcptrack for %s: %s / %s" % (k, got, row))
            self.assertEqual(int(got[-1]["proto"]), 6)
            # tcpControlBits as the lifecycle saw them: SYN, ACK, and FIN or RST.
            flags = got[-1]["tcp_flags"]
            self.assertIn("S", flags, got[-1])
            self.assertIn("A", flags, got[-1])
            self.assertIn("R" if how == "rst" else "F", flags, got[-1])
        self.assertEqual(summaries[-1].get("export_errors", {}).get("ipfix", 0), 0, summaries[-1])

    def test_active_timeout_records_sum_to_totals(self):
        nf, tmp, port = self.start_nfcapd()
        tt = self.start_tcptrack_root("--format", "json", "--interval", "0.3", "--ipfix",
                                      "udp://127.0.0.1:%d" % port, "--ipfix-active-timeout", "1")
        self.wait_attached(tt, "server")
        l, sport = self.listen("ipv4")
        p = self.pair("ipv4", l, sport)
        deadline = time.monotonic() + 4.5
        i = 0
        while time.monotonic() < deadline:  # alive for 4.5 s, traffic in between
            p.c2s(1000 + i)
            p.s2c(3000 + i)
            i += 1
            time.sleep(0.25)
        p.close_clean()
        self.wait_closed(tt, {p.cport})
        self.stop_tcptrack(tt)
        rows, _ = self.final_rows(tt)
        row = [r for r in rows if r["sport"] == p.cport and r["state"] in FINAL_STATES][0]
        self.assertEqual((row["fwd_payload"], row["rev_payload"]), (p.sent_c, p.sent_s))
        recs = self.collector_flows(nf, tmp)
        k = key_of("ipv4", self.topo.client_ip("ipv4"), p.cport, self.topo.server_ip("ipv4"), sport)
        got = [r for r in recs if collector_key(r) == k]
        self.assertGreaterEqual(len(got), 3, got)  # periodic ones (>= 1 s apart over 4.5 s) + the close
        sums = [sum(int(r[f]) for r in got) for f in ("in_bytes", "in_packets", "out_bytes", "out_packets")]
        self.assertEqual(sums, [row["fwd_bytes"], row["fwd_packets"], row["rev_bytes"], row["rev_packets"]],
                         (got, row))

    def test_collector_down(self):
        port = netns.free_port(socket.SOCK_DGRAM)  # nothing listens there
        tt = self.start_tcptrack_root("--format", "json", "--interval", "0.2", "--summary",
                                      "--ipfix", "udp://127.0.0.1:%d" % port)
        self.wait_attached(tt, "server")
        l, sport = self.listen("ipv4")
        pairs = []
        for n in (500, 1500, 2500):
            p = self.pair("ipv4", l, sport)
            p.c2s(n)
            p.s2c(2 * n)
            p.close_clean()
            pairs.append(p)
            time.sleep(0.3)  # each close in its own report: several sends
        self.wait_closed(tt, {p.cport for p in pairs})
        time.sleep(0.5)
        self.stop_tcptrack(tt)
        rows, summaries = self.final_rows(tt)
        for p in pairs:
            row = [r for r in rows if r["sport"] == p.cport and r["state"] in FINAL_STATES][0]
            self.assertEqual((row["fwd_payload"], row["rev_payload"]), (p.sent_c, p.sent_s))
        errs = summaries[-1].get("export_errors")
        sys.stderr.write("collector down: last summary export_errors = %s\n" % errs)
        self.assertIsNotNone(errs, summaries[-1])
        self.assertGreater(errs.get("ipfix", 0), 0, summaries[-1])

    def test_headless(self):
        nf, tmp, port = self.start_nfcapd()
        tt = self.start_tcptrack_root("--format", "none", "--interval", "0.2",
                                      "--ipfix", "udp://127.0.0.1:%d" % port)
        self.wait_attached(tt, "server")
        l, sport = self.listen("ipv6")
        p = self.pair("ipv6", l, sport)
        p.c2s(12345)
        p.close_clean()
        time.sleep(1.0)
        self.stop_tcptrack(tt)
        self.assertEqual(tt.lines(), [])
        recs = self.collector_flows(nf, tmp)
        k = key_of("ipv6", self.topo.client_ip("ipv6"), p.cport, self.topo.server_ip("ipv6"), sport)
        got = [r for r in recs if collector_key(r) == k]
        self.assertTrue(got, recs)
        self.assertGreater(sum(int(r["in_bytes"]) for r in got), 12345)


def main():
    if os.geteuid() == 0:
        for tool in (NFCAPD, NFDUMP):
            if not os.access(tool, os.X_OK):
                print("SKIP: ipfix_test needs %s (Debian package nfdump; scripts/setup.sh)" % tool)
                return 77
    return netns.main("ipfix_test", sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(main())
