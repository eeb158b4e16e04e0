# SPDX-License-Identifier: MIT
"""End-to-end safety tests: tcptrack is robust beside anything.

  * signals: SIGHUP (no half report), SIGPIPE (`| head -n 1`), double SIGINT;
  * SIGKILL: what legacy tc leaves behind, --cleanup, stale-filter removal on
    the next start; TCX leaves nothing;
  * coexistence with foreign tc filters before and after tcptrack's (a small
    counting BPF classifier, foreign_counter.bpf.c, built with clang at test
    time: this kernel has neither cls_matchall nor act_gact);
  * interface deletion (single and one of two) and link flaps;
  * bad command lines and missing privileges;
  * memory stays flat over thousands of connections.

Usage: safety_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import FINAL_STATES, in_netns, parse_json_lines, run  # noqa: E402

netns.set_prefix("ttsf-%d-" % os.getpid())

FOREIGN_SRC = os.path.join(netns.HERE, "foreign_counter.bpf.c")
UDP_PORT = 9999
# tcptrack's legacy-tc filters: priority 0xc7c7, one handle per instance in this range.
TC_HANDLE_FIRST = 0x7c70001
TC_HANDLE_LAST = 0x7c7ffff
_foreign_obj = None


def foreign_object():
    """Builds foreign_counter.bpf.c once per run; returns the object path or None."""
    global _foreign_obj
    if _foreign_obj is None:
        clang = shutil.which("clang")
        if not clang:
            return None
        d = tempfile.mkdtemp(prefix="ttsf-bpf-")
        obj = os.path.join(d, "foreign_counter.o")
        arch_inc = "/usr/include/%s-linux-gnu" % os.uname().machine
        cmd = [clang, "-O2", "-g", "-target", "bpf", "-c", FOREIGN_SRC, "-o", obj]
        if os.path.isdir(arch_inc):
            cmd[1:1] = ["-I", arch_inc]
        run(cmd, timeout=60)
        _foreign_obj = obj
    return _foreign_obj


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class Trickle:
    """An established connection with a few bytes flowing both ways every 20 ms."""

    def __init__(self, pair):
        self.pair = pair
        self.stopped = threading.Event()
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            while not self.stopped.wait(0.02):
                self.pair.c2s(100)
                self.pair.s2c(50)
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self):
        self.stopped.set()
        self.t.join(5)
        return self.error


class SafetyBase(netns.Base):
    def trickle(self, family="ipv4"):
        lsock, port = self.listen(family)
        t = Trickle(self.pair(family, lsock, port))
        self.addCleanup(t.stop)
        return t

    # --- foreign filters -----------------------------------------------------

    def need_foreign(self):
        obj = foreign_object()
        if obj is None:
            self.skipTest("clang not found: cannot build the foreign BPF classifier")
        return obj

    def add_clsact(self, iface=None):
        run(self.ns_cmd(self.SIDE, "tc", "qdisc", "add", "dev", iface or self.topo.sif, "clsact"))

    def add_foreign(self, hook, pref, handle, iface=None):
        obj = self.need_foreign()
        run(self.ns_cmd(self.SIDE, "tc", "filter", "add", "dev", iface or self.topo.sif, hook,
                        "pref", str(pref), "handle", hex(handle), "bpf", "da", "obj", obj,
                        "sec", "tc"))

    def tc_filters(self, hook, iface=None):
        """[(pref, handle, prog name, prog id)] of the filters on one hook."""
        out = run(self.ns_cmd(self.SIDE, "tc", "-j", "filter", "show", "dev",
                              iface or self.topo.sif, hook)).stdout
        res = []
        for f in json.loads(out or "[]"):
            opt = f.get("options")
            if not opt:
                continue
            prog = opt.get("prog", {})
            res.append((f["pref"], int(opt["handle"], 16), prog.get("name"), prog.get("id")))
        return sorted(res)

    def foreign_count(self, prog_id):
        info = json.loads(run(["bpftool", "-j", "prog", "show", "id", str(prog_id)]).stdout)
        (map_id,) = info["map_ids"]
        val = json.loads(run(["bpftool", "-j", "map", "lookup", "id", str(map_id),
                              "key", "0", "0", "0", "0"]).stdout)
        v = val.get("value", val.get("formatted", {}).get("value"))
        if isinstance(v, list):   # raw bytes, little endian
            return int.from_bytes(bytes(int(x, 16) for x in v), "little")
        return int(v)

    def udp_echo(self, family, count):
        """`count` datagrams client -> server:9999, each echoed back."""
        fam = netns.family_const(family)
        with in_netns(self.topo.sns):
            srv = socket.socket(fam, socket.SOCK_DGRAM)
        with in_netns(self.topo.cns):
            cli = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            srv.bind((self.topo.server_ip(family), UDP_PORT))
            srv.settimeout(5)
            cli.settimeout(5)
            for i in range(count):
                cli.sendto(b"u%05d" % i, (self.topo.server_ip(family), UDP_PORT))
                data, peer = srv.recvfrom(100)
                srv.sendto(data, peer)
                self.assertEqual(cli.recv(100), data)
        finally:
            srv.close()
            cli.close()

    def exact_tcp(self, family, n, m, pair=0):
        """One fully observed connection with n/m payload bytes; returns the client port."""
        lsock, port = self.listen(family, pair=pair)
        p = self.pair(family, lsock, port, pair=pair)
        p.c2s(n)
        p.s2c(m)
        p.close_clean()
        return p.cport, port

    def wait_final(self, track, cport, timeout=10, iface=None):
        """The final row of the connection from client port cport (on iface,
        when given: two namespaces' clients may draw the same port)."""
        return self.wait_rows(
            track, lambda rows, _: next((r for r in rows if r["sport"] == cport
                                         and (iface is None or r["iface"] == iface)
                                         and r["state"] in FINAL_STATES), None),
            timeout, "final row for client port %d" % cport)


# ====================================================================== signals


class TestSignals(SafetyBase):
    def test_sighup_no_partial_report(self):
        lsock, port = self.listen("ipv4")
        pairs = [self.pair("ipv4", lsock, port) for _ in range(40)]
        for p in pairs:
            p.c2s(10)
        tr = self.trickle()
        rnd = random.Random(7)
        for k in range(6):
            with self.subTest(iteration=k):
                before = self.snapshot()
                track = self.start_tcptrack(self.SIDE, "--format", "json", "--summary",
                                            "--interval", "0.05")
                self.wait_attached(track, self.SIDE)
                track.wait_for(lambda ls: sum('"summary"' in l for l in ls) >= 2, 10, "2 reports")
                time.sleep(rnd.uniform(0, 0.1))
                rc = self.stop(track, signal.SIGHUP)
                self.assertEqual(rc, 0, "SIGHUP exit status; stderr: %s" % track.stderr_text())
                self.assertEqual(track.stderr_text(), "")
                lines = [l for l in track.lines() if l.strip()]
                rows, summaries, bad = parse_json_lines(lines)
                self.assertEqual(bad, [], "partial/non-JSON lines after SIGHUP")
                self.assertEqual(summaries[-1][0], len(lines) - 1,
                                 "output does not end with a complete report (summary last): %s"
                                 % lines[-3:])
                # Every report is complete: 41 rows (40 held + trickle) before each summary.
                prev = -1
                for i, s in summaries:
                    self.assertEqual(i - prev - 1, s["connections"], "rows vs summary: %s" % s)
                    prev = i
                self.assert_restored(before, "SIGHUP")
        self.assertIsNone(tr.stop())

    def _sigpipe(self, mode):
        before = self.snapshot()
        tr = self.trickle()
        cmd = self.ns_cmd(self.SIDE, netns.BINARY, "-i", self.topo.sif, "--attach", mode,
                          "--format", "json", "--interval", "0.2")
        t0 = time.monotonic()
        p1 = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: p1.poll() is None and p1.kill())
        p2 = subprocess.Popen(["head", "-n", "1"], stdin=p1.stdout, stdout=subprocess.PIPE)
        self.addCleanup(lambda: p2.poll() is None and p2.kill())
        p1.stdout.close()
        out, _ = p2.communicate(timeout=20)
        try:
            rc = p1.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.fail("tcptrack --attach %s still running 5 s after `head -n 1` exited" % mode)
        took = time.monotonic() - t0
        err = p1.stderr.read().decode()
        p1.stderr.close()
        print("\n  SIGPIPE --attach %s: head got %r..., tcptrack exit %d after %.2f s"
              % (mode, out[:60], rc, took), file=sys.stderr)
        self.assertEqual(len(out.splitlines()), 1)
        json.loads(out)
        self.assertEqual(rc, 0, "exit status when the reader went away; stderr: %r" % err)
        self.assertEqual(err, "", "stderr when the reader went away")
        self.assert_restored(before, "SIGPIPE --attach %s" % mode)
        self.assertIsNone(tr.stop())

    def test_sigpipe_head_tcx(self):
        self._sigpipe("tcx")

    def test_sigpipe_head_tc(self):
        self._sigpipe("tc")

    def _double_sigint(self, mode):
        tr = self.trickle()
        for k, gap in enumerate((0.001, 0.001, 0.001, 0.0, 0.005, 0.02)):
            with self.subTest(iteration=k, gap=gap):
                before = self.snapshot()
                track = self.start_tcptrack(self.SIDE, "--attach", mode, "--format", "json",
                                            "--interval", "0.1")
                self.wait_attached(track, self.SIDE)
                track.wait_for(lambda ls: len(ls) >= 1, 10, "a report")
                track.signal(signal.SIGINT)
                time.sleep(gap)
                track.signal(signal.SIGINT)
                rc = track.wait(10)
                self.assertEqual(rc, 0, "double SIGINT (gap %.3f s) exit; stderr: %s"
                                 % (gap, track.stderr_text()))
                _, _, bad = parse_json_lines(track.lines())
                self.assertEqual(bad, [])
                self.assert_restored(before, "double SIGINT --attach %s" % mode)
        self.assertIsNone(tr.stop())

    def test_double_sigint_tcx(self):
        self._double_sigint("tcx")

    def test_double_sigint_tc(self):
        self._double_sigint("tc")


# ====================================================================== SIGKILL


class TestSigkill(SafetyBase):
    def _kill_tc(self, foreign):
        """Starts --attach tc, SIGKILLs it; returns (filters before, filters after the kill)."""
        if foreign:
            self.add_clsact()
            for hook in ("ingress", "egress"):
                self.add_foreign(hook, 100, 0x64)
                self.add_foreign(hook, 0xc7c7, 0x65)   # shares tcptrack's priority
                self.add_foreign(hook, 200, TC_HANDLE_FIRST)  # shares tcptrack's first handle
                # At tcptrack's priority and first handle, without a lock file:
                # tcptrack takes the next handle and never touches this one.
                self.add_foreign(hook, 0xc7c7, TC_HANDLE_FIRST)
        before = {h: self.tc_filters(h) for h in ("ingress", "egress")}
        track = self.start_tcptrack(self.SIDE, "--attach", "tc", "--format", "json",
                                    "--interval", "0.2")
        self.wait_attached(track, self.SIDE)
        track.p.kill()
        self.assertEqual(track.wait(10), -signal.SIGKILL)
        time.sleep(0.2)
        after = {h: self.tc_filters(h) for h in ("ingress", "egress")}
        self.assertIn("clsact", self.qdiscs(self.SIDE), "clsact gone after SIGKILL")
        for h in ("ingress", "egress"):
            mine = [f for f in after[h] if f not in before[h]]
            self.assertEqual(len(mine), 1, "%s after SIGKILL: %s" % (h, after[h]))
            self.assertEqual(mine[0][0], 0xc7c7, mine)
            self.assertTrue(TC_HANDLE_FIRST <= mine[0][1] <= TC_HANDLE_LAST, mine)
            if foreign:
                self.assertNotEqual(mine[0][1], TC_HANDLE_FIRST, "took a foreign filter's handle")
            self.assertTrue(mine[0][2].startswith("tcptrack_"), mine)
            self.assertTrue(set(before[h]) <= set(after[h]), "foreign filters changed by the run")
        return before, after

    def test_sigkill_tc_leaves_filters_cleanup_removes_only_them(self):
        for foreign in (False, True):
            with self.subTest(foreign_filters=foreign):
                self.fresh_topology()
                before, after = self._kill_tc(foreign)
                p = run(self.ns_cmd(self.SIDE, netns.BINARY, "--cleanup", "-i", self.topo.sif),
                        check=False)
                print("\n  --cleanup (foreign=%s): exit %d stdout=%r stderr=%r"
                      % (foreign, p.returncode, p.stdout, p.stderr), file=sys.stderr)
                self.assertEqual(p.returncode, 0, p.stderr)
                said = p.stdout + p.stderr
                for h in ("ingress", "egress"):
                    (mine,) = [f for f in after[h] if f not in before[h]]
                    self.assertRegex(said, r"removed.*%s.*%d|removed.*%d.*%s" % (h, mine[3], mine[3], h),
                                     "--cleanup must say what it removed")
                    self.assertEqual(self.tc_filters(h), before[h],
                                     "%s filters after --cleanup (foreign ones must stay)" % h)
                self.assertEqual(self.tcptrack_lines(self.SIDE), [])
                # The clsact the killed run created goes too; a pre-existing one stays.
                self.assertEqual("clsact" in self.qdiscs(self.SIDE), foreign)
                if not foreign:
                    self.assertIn("removed the clsact qdisc", said)
                # Idempotent.
                p2 = run(self.ns_cmd(self.SIDE, netns.BINARY, "--cleanup", "-i", self.topo.sif),
                         check=False)
                self.assertEqual(p2.returncode, 0, p2.stderr)
                self.assertNotIn("removed stale", p2.stdout + p2.stderr)
                for h in ("ingress", "egress"):
                    self.assertEqual(self.tc_filters(h), before[h])

    def test_sigkill_tc_next_start_removes_stale(self):
        before, after = self._kill_tc(foreign=True)
        tr = self.trickle()
        track = self.start_tcptrack(self.SIDE, "--attach", "tc", "--once", "--format", "json",
                                    "--interval", "0.5")
        rc = track.wait(20)
        err = track.err_lines()
        print("\n  fresh run after SIGKILL: exit %d stderr=%r" % (rc, err), file=sys.stderr)
        self.assertEqual(rc, 0, track.stderr_text())
        stale = [l for l in err if "removed stale" in l]
        self.assertEqual(len(stale), 2, "expected one 'removed stale' line per hook: %r" % err)
        for l in err:
            self.assertTrue(l.startswith("tcptrack:"), l)
        rows, _, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        self.assertTrue(any(r["sport"] == tr.pair.cport for _, r in rows),
                        "the fresh run did not report the live connection: %s" % track.lines())
        for h in ("ingress", "egress"):
            self.assertEqual(self.tc_filters(h), before[h], "%s filters after the fresh run" % h)
        self.assertEqual(self.tcptrack_lines(self.SIDE), [])
        self.assertIsNone(tr.stop())

    def test_sigkill_tcx_leaves_nothing(self):
        before = self.snapshot()
        track = self.start_tcptrack(self.SIDE, "--attach", "tcx", "--format", "json",
                                    "--interval", "0.2")
        attached = self.wait_attached(track, self.SIDE)
        self.assertTrue(all("tcx/" in l for l in attached), attached)
        track.p.kill()
        self.assertEqual(track.wait(10), -signal.SIGKILL)
        self.assert_restored(before, "SIGKILL --attach tcx")


# ====================================================================== coexistence


class TestCoexistence(SafetyBase):
    K = 50

    def _run(self, family, mode):
        """One cycle on a fresh topology; mode None = baseline without tcptrack."""
        self.fresh_topology()
        self.add_clsact()
        for hook in ("ingress", "egress"):
            self.add_foreign(hook, 100, 0x64)      # before tcptrack's filter (pref 0xc7c7)
            self.add_foreign(hook, 60000, 0x65)    # after it
        filters0 = {h: self.tc_filters(h) for h in ("ingress", "egress")}
        qdisc0 = self.qdiscs(self.SIDE)
        progs = [(h, f[0], f[3]) for h in ("ingress", "egress") for f in filters0[h]]
        counts0 = {p: self.foreign_count(p[2]) for p in progs}
        track = None
        if mode:
            track = self.start_tcptrack(self.SIDE, "--attach", mode, "--format", "json",
                                        "--interval", "0.2")
            self.wait_attached(track, self.SIDE)
        self.udp_echo(family, self.K)
        cport, port = self.exact_tcp(family, 12345, 6789)
        deltas = {p: self.foreign_count(p[2]) - counts0[p] for p in progs}
        if track:
            row = self.wait_final(track, cport)
            self.assertEqual((row["state"], row["fwd_payload"], row["rev_payload"], row["dport"]),
                             ("CLOSED", 12345, 6789, port), row)
            self.assertEqual(self.stop(track), 0, track.stderr_text())
            self.assertEqual(self.tcptrack_lines(self.SIDE), [])
        for h in ("ingress", "egress"):
            self.assertEqual(self.tc_filters(h), filters0[h], "foreign filters after %s" % mode)
        self.assertEqual(self.qdiscs(self.SIDE), qdisc0, "foreign clsact qdisc changed/removed")
        return {"%s pref %d" % (p[0], p[1]): d for p, d in deltas.items()}

    def _coexist(self, family):
        self.need_foreign()
        base = self._run(family, None)
        res = {"baseline": base}
        for mode in ("tc", "tcx"):
            res[mode] = self._run(family, mode)
        print("\n  foreign filter packet counts (%s, %d UDP echoes): %s" % (family, self.K, res),
              file=sys.stderr)
        for k, v in base.items():
            self.assertEqual(v, self.K, "baseline %s" % k)
        for mode in ("tc", "tcx"):
            self.assertEqual(res[mode], base, "foreign filters saw different traffic with "
                                              "tcptrack --attach %s" % mode)

    def test_foreign_filters_ipv4(self):
        self._coexist("ipv4")

    def test_foreign_filters_ipv6(self):
        self._coexist("ipv6")


# ====================================================================== interfaces


class TestInterfaceGone(SafetyBase):
    def _delete(self, mode):
        self.fresh_topology()
        track = self.start_tcptrack(self.SIDE, "--attach", mode, "--format", "json", "--summary",
                                    "--interval", "0.2")
        self.wait_attached(track, self.SIDE)
        track.wait_for(lambda ls: len(ls) >= 1, 10, "a report")
        run(["ip", "-n", self.topo.sns, "link", "del", self.topo.sif])
        rc = track.wait(10)
        err = track.err_lines()
        print("\n  deleted %s under --attach %s: exit %d stderr=%r"
              % (self.topo.sif, mode, rc, err), file=sys.stderr)
        self.assertEqual(rc, 1, "exit status after the watched interface was deleted")
        self.assertEqual(len(err), 1, "exactly one stderr line: %r" % err)
        self.assertTrue(err[0].startswith("tcptrack:"), err)
        self.assertIn(self.topo.sif, err[0])
        _, _, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])

    def test_delete_watched_iface_tcx(self):
        self._delete("tcx")

    def test_delete_watched_iface_tc(self):
        self._delete("tc")


class TestTwoInterfaces(SafetyBase):
    PAIRS = 2

    def _one_of_two(self, mode):
        self.fresh_topology()
        s0, s1 = self.topo.sifs
        before0 = self.snapshot(s0)
        track = self.start_tcptrack(self.SIDE, "--attach", mode, "--format", "json",
                                    "--interval", "0.2", ifaces=[s0, s1])
        self.wait_attached(track, self.SIDE, iface=s0)
        self.wait_attached(track, self.SIDE, iface=s1)
        c1, _ = self.exact_tcp("ipv4", 1000, 2000, pair=1)
        self.wait_final(track, c1, iface=s1)
        run(["ip", "-n", self.topo.sns, "link", "del", s1])
        track.wait_for(lambda ls: any(s1 in l for l in ls), 10, "a stderr line about %s" % s1,
                       stream="err")
        time.sleep(0.5)
        self.assertTrue(track.running(), "tcptrack exited although %s is still watched" % s0)
        cport, port = self.exact_tcp("ipv4", 4321, 8765, pair=0)
        row = self.wait_final(track, cport, iface=s0)
        self.assertEqual((row["iface"], row["state"], row["fwd_payload"], row["rev_payload"]),
                         (s0, "CLOSED", 4321, 8765), row)
        rc = self.stop(track)
        err = track.err_lines()
        print("\n  deleted %s of (%s, %s) under --attach %s: stderr=%r, exit after SIGINT %d"
              % (s1, s0, s1, mode, err, rc), file=sys.stderr)
        self.assertEqual(rc, 0, track.stderr_text())
        self.assertEqual(len(err), 1, "one stderr line about %s: %r" % (s1, err))
        self.assertTrue(err[0].startswith("tcptrack:") and s1 in err[0], err)
        _, _, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        self.assert_restored(before0, "after deleting %s" % s1, iface=s0)

    def test_delete_one_of_two_tcx(self):
        self._one_of_two("tcx")

    def test_delete_one_of_two_tc(self):
        self._one_of_two("tc")


class TestLinkFlap(SafetyBase):
    def _flap(self, mode):
        self.fresh_topology()
        before = self.snapshot()
        track = self.start_tcptrack(self.SIDE, "--attach", mode, "--format", "json",
                                    "--interval", "0.2")
        self.wait_attached(track, self.SIDE)
        c0, _ = self.exact_tcp("ipv4", 111, 222)
        self.wait_final(track, c0)
        # Keep the static IPv6 address across the flap (the kernel flushes it by default).
        run(self.ns_cmd(self.SIDE, "sysctl", "-q", "-w",
                        "net.ipv6.conf.%s.keep_addr_on_down=1" % self.topo.sif))
        run(["ip", "-n", self.topo.sns, "link", "set", self.topo.sif, "down"])
        run(["ip", "-n", self.topo.sns, "link", "set", self.topo.sif, "up"])
        self.topo.wait_carrier(0)
        for family, n, m in (("ipv4", 3333, 4444), ("ipv6", 5555, 6666)):
            cport, port = self.exact_tcp(family, n, m)
            row = self.wait_final(track, cport)
            self.assertEqual((row["family"], row["state"], row["fwd_payload"], row["rev_payload"],
                              row["dport"]), (family, "CLOSED", n, m, port), row)
        self.assertTrue(track.running())
        self.assertEqual(self.stop(track), 0, track.stderr_text())
        self.assertEqual(track.stderr_text(), "")
        self.assert_restored(before, "after a link flap (--attach %s)" % mode)

    def test_link_flap_tcx(self):
        self._flap("tcx")

    def test_link_flap_tc(self):
        self._flap("tc")


# ====================================================================== bad input


class TestBadInput(SafetyBase):
    def test_usage_errors(self):
        iface = self.topo.sif
        cases = [
            (("--count", "0"), "0"),
            (("--count", "abc"), "abc"),
            (("--interval", "-1"), "-1"),
            (("--interval", "nan"), "nan"),
            (("--attach", "bogus"), "bogus"),
            (("--max-flows", "0"), "0"),
            (("--frobnicate",), "--frobnicate"),
        ]
        before = self.snapshot()
        for args, bad in cases:
            with self.subTest(args=" ".join(args)):
                p = run(self.ns_cmd(self.SIDE, netns.BINARY, "-i", iface, *args), check=False)
                err = p.stderr.splitlines()
                self.assertEqual(p.returncode, 2, "exit status; stderr=%r" % p.stderr)
                self.assertEqual(len(err), 1, "one stderr line: %r" % p.stderr)
                self.assertTrue(err[0].startswith("tcptrack:"), err)
                self.assertIn("'%s'" % bad if not bad.startswith("--") else bad, err[0])
                if args[0].startswith("--") and len(args) == 2:
                    self.assertIn(args[0], err[0], "the option is named")
                self.assertEqual(p.stdout, "")
                self.assertEqual(self.snapshot(), before, "usage error changed the interface")

    def test_not_root(self):
        setpriv = shutil.which("setpriv")
        if not setpriv:
            self.skipTest("setpriv not found")
        before = self.snapshot()
        p = run(self.ns_cmd(self.SIDE, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                            netns.BINARY, "-i", self.topo.sif, "--once", "--interval", "0.2"),
                check=False)
        err = p.stderr.splitlines()
        print("\n  as nobody: exit %d stderr=%r" % (p.returncode, p.stderr), file=sys.stderr)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(err), 1, "one stderr line: %r" % p.stderr)
        self.assertTrue(err[0].startswith("tcptrack:"), err)
        self.assertIn("CAP_BPF", err[0])
        self.assertIn("CAP_NET_ADMIN", err[0])
        self.assertEqual(p.stdout, "")
        self.assertEqual(self.snapshot(), before)


# ====================================================================== memory


class TestMemory(SafetyBase):
    BATCHES = 6
    PER_BATCH = 1000
    MAX_GROWTH_KB = 5 * 1024

    def test_rss_flat_over_thousands_of_connections(self):
        if netns.sanitized():
            self.skipTest("a sanitizer build's RSS grows with ASan's quarantine of freed memory; "
                          "LeakSanitizer checks for leaks there instead")
        server, port = self.start_server("ipv4", netns.CHURN)
        track = self.start_tcptrack(self.SIDE, "--format", "json", "--summary", "--interval", "0.2")
        self.wait_attached(track, self.SIDE)
        with open("/proc/%d/comm" % track.pid) as f:
            self.assertEqual(f.read().strip(), "tcptrack")
        samples = []
        total = 0
        for b in range(self.BATCHES):
            p = run(self.ns_cmd("client", sys.executable, netns.CHURN, "client",
                                "--host", self.topo.server_ip("ipv4"), "--port", str(port),
                                "--count", str(self.PER_BATCH), "--seed", str(b)),
                    timeout=60, check=False)
            self.assertEqual(p.returncode, 0, p.stderr)
            total += self.PER_BATCH

            def drained(lines, want=total):
                rows, summaries, _ = parse_json_lines(lines)
                finals = [i for i, r in rows if r["state"] in FINAL_STATES]
                return len(finals) >= want and \
                    len([i for i, _ in summaries if i > finals[want - 1]]) >= 2
            track.wait_for(drained, 20, "%d final rows + 2 reports" % total)
            samples.append(rss_kb(track.pid))
        rc = self.stop(track)
        self.assertEqual(rc, 0, track.stderr_text())
        rows, summaries, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        finals = [r for _, r in rows if r["state"] in FINAL_STATES]
        growth = samples[-1] - samples[0]
        print("\n  VmRSS after each batch of %d connections (kB): %s; growth first->last %d kB; "
              "%d final rows" % (self.PER_BATCH, samples, growth, len(finals)), file=sys.stderr)
        self.assertEqual(len(finals), total)
        self.assertEqual(summaries[-1][1]["untracked"], 0)
        self.assertLess(growth, self.MAX_GROWTH_KB, "VmRSS grew by %d kB: %s" % (growth, samples))


def tearDownModule():
    netns.tear_down_module()
    if _foreign_obj:
        shutil.rmtree(os.path.dirname(_foreign_obj), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(netns.main("safety_test", sys.modules[__name__]))
