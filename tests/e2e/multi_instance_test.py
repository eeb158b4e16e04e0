# SPDX-License-Identifier: MIT
"""End-to-end tests: any number of tcptrack instances share an interface, in
either attach mode, each counting exactly; the last to leave restores it.

  * two (and three) --attach tc instances started and stopped in every order,
    each reporting exactly what the applications sent; with and without a
    pre-existing clsact qdisc; clsact kept when a foreign filter joined it;
  * tc + tcx mixed, in both start orders;
  * someone else removes our attachment (tc filter del, tc qdisc del clsact,
    bpftool link detach): the instance says so within two intervals and
    counts exactly again;
  * a SIGKILLed instance's filters are removed by the next start or by
    --cleanup, a live instance's never;
  * without root: a setcap'd copy (cap_bpf,cap_net_admin,cap_perfmon) run as
    an unprivileged uid can --check, attach with TCX and tc, and --cleanup.

Usage: multi_instance_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
import safety_test  # noqa: E402  (SafetyBase: foreign filters, exact connections)
from netns import parse_json_lines, run  # noqa: E402

netns.set_prefix("ttmi-%d-" % os.getpid())

PRIO = 0xc7c7
HANDLE_FIRST = safety_test.TC_HANDLE_FIRST
HANDLE_LAST = safety_test.TC_HANDLE_LAST
HOOKS = ("ingress", "egress")
NOBODY = 65534


class MultiBase(safety_test.SafetyBase):
    INTERVAL = "0.2"

    def need_tcx(self):
        if hasattr(netns, "require"):
            netns.require(self, "tcx")

    def start_mode(self, mode, *extra, cmd_prefix=()):
        cmd = self.ns_cmd(self.SIDE, *cmd_prefix, netns.BINARY, "-i", self.topo.sif,
                          "--attach", mode, "--format", "json", "--interval", self.INTERVAL,
                          *extra)
        return self.start(cmd)

    def ours(self, hook):
        """tcptrack's tc filters on one hook: {handle: prog id}."""
        return {f[1]: f[3] for f in self.tc_filters(hook)
                if f[0] == PRIO and HANDLE_FIRST <= f[1] <= HANDLE_LAST}

    def counts(self):
        """(tc, tcx) tcptrack programs attached, when both hooks agree; else None."""
        lines = self.tcptrack_lines(self.SIDE)
        n = {k: sum(k in l for l in lines)
             for k in ("clsact/ingress", "clsact/egress", "tcx/ingress", "tcx/egress")}
        if n["clsact/ingress"] != n["clsact/egress"] or n["tcx/ingress"] != n["tcx/egress"]:
            return None
        return n["clsact/ingress"], n["tcx/ingress"]

    def wait_counts(self, tc, tcx, procs=(), timeout=netns.ATTACH_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            got = self.counts()
            if got == (tc, tcx):
                return
            for p in procs:
                if not p.running():
                    self.fail("tcptrack exited (%s) while waiting for %d tc + %d tcx programs\n"
                              "stderr: %s" % (p.wait(5), tc, tcx, p.stderr_text()))
            if time.monotonic() > deadline:
                self.fail("expected %d tc + %d tcx tcptrack programs, have %s\n%s"
                          % (tc, tcx, got, "\n".join(self.tcptrack_lines(self.SIDE))))
            time.sleep(0.05)

    def new_handle(self, before):
        """The handle an instance added: the one not in `before` (same on both hooks)."""
        now = [self.ours(h) for h in HOOKS]
        added = [set(n) - set(before) for n in now]
        self.assertEqual(added[0], added[1], "ingress and egress handles differ: %s" % now)
        (h,) = added[0]
        return h

    def assert_exact(self, procs, family="ipv4", n=12345, m=6789, label=""):
        """One connection with n/m payload bytes: every instance reports it exactly."""
        cport, port = self.exact_tcp(family, n, m)
        for p in procs:
            row = self.wait_final(p, cport)
            self.assertEqual((row["state"], row["fwd_payload"], row["rev_payload"], row["dport"]),
                             ("CLOSED", n, m, port), "%s: %s" % (label, row))

    def stop_clean(self, proc, label):
        rc = self.stop(proc)
        self.assertEqual(rc, 0, "%s: exit status; stderr: %s" % (label, proc.stderr_text()))
        self.assertEqual(proc.stderr_text(), "", "%s: stderr" % label)
        _, _, bad = parse_json_lines(proc.lines())
        self.assertEqual(bad, [])


# ====================================================================== start/stop orders


class TestTwoTc(MultiBase):
    def _orders(self, stop_order, preexisting_clsact=False, n=2):
        self.fresh_topology()
        if preexisting_clsact:
            self.add_clsact()
        before = self.snapshot()
        procs, handles = [], []
        for k in range(n):
            seen = self.ours("ingress")
            procs.append(self.start_mode("tc"))
            self.wait_counts(k + 1, 0, procs)
            handles.append(self.new_handle(seen))
        self.assertEqual(len(set(handles)), n, "each instance has its own handle: %s" % handles)
        for p in procs:
            self.assertEqual(p.err_lines(), [], "an instance complained at start")
        self.assert_exact(procs, label="all %d running" % n)
        live = list(range(n))
        for k in stop_order[:-1]:
            self.stop_clean(procs[k], "instance %d" % k)
            live.remove(k)
            self.wait_counts(len(live), 0)
            self.assertEqual(sorted(self.ours("ingress")), sorted(handles[i] for i in live))
            self.assertEqual(sorted(self.ours("egress")), sorted(handles[i] for i in live))
            self.assertIn("clsact", self.qdiscs(self.SIDE), "clsact removed while in use")
            self.assert_exact([procs[i] for i in live], family="ipv6", n=4321 + k, m=8765,
                              label="after instance %d stopped" % k)
        self.stop_clean(procs[stop_order[-1]], "last instance")
        self.assert_restored(before, "stop order %s, clsact before: %s"
                             % (stop_order, preexisting_clsact))

    def test_first_started_stops_first(self):
        self._orders([0, 1])

    def test_last_started_stops_first(self):
        self._orders([1, 0])

    def test_preexisting_clsact_is_kept(self):
        for order in ([0, 1], [1, 0]):
            with self.subTest(order=order):
                self._orders(order, preexisting_clsact=True)

    def test_three_instances_middle_stops_first(self):
        self._orders([1, 0, 2], n=3)

    def test_clsact_kept_when_a_foreign_filter_joined(self):
        self.need_foreign()
        a = self.start_mode("tc")
        self.wait_counts(1, 0, [a])
        self.add_foreign("ingress", 100, 0x64)   # someone else uses tcptrack's clsact now
        foreign = self.tc_filters("ingress")
        self.stop_clean(a, "tcptrack beside a foreign filter")
        self.assertIn("clsact", self.qdiscs(self.SIDE), "clsact removed under a foreign filter")
        self.assertEqual([f for f in self.tc_filters("ingress") if f[0] == 100],
                         [f for f in foreign if f[0] == 100])
        self.assertEqual(self.ours("ingress"), {})
        # Taken over: even once the foreign filter is gone, tcptrack leaves the qdisc.
        b = self.start_mode("tc")
        self.wait_counts(1, 0, [b])
        run(self.ns_cmd(self.SIDE, "tc", "filter", "del", "dev", self.topo.sif, "ingress",
                        "pref", "100"))
        self.stop_clean(b, "second tcptrack")
        self.assertIn("clsact", self.qdiscs(self.SIDE))
        self.assertEqual(self.tc_filters("ingress"), [])


class TestMixed(MultiBase):
    def _mixed(self, modes):
        self.fresh_topology()
        before = self.snapshot()
        procs = []
        for k, mode in enumerate(modes):
            procs.append(self.start_mode(mode))
            self.wait_counts(modes[:k + 1].count("tc"), modes[:k + 1].count("tcx"), procs)
        self.assert_exact(procs, label="tc + tcx")
        self.stop_clean(procs[0], "first started (%s)" % modes[0])
        self.wait_counts(modes[1:].count("tc"), modes[1:].count("tcx"))
        if modes[0] == "tc":   # the tc instance created clsact and was the last tc one
            self.assertNotIn("clsact", self.qdiscs(self.SIDE))
        self.assert_exact(procs[1:], family="ipv6", label="after %s stopped" % modes[0])
        self.stop_clean(procs[1], "second (%s)" % modes[1])
        self.assert_restored(before, "mixed %s" % (modes,))

    def test_tc_then_tcx(self):
        self.need_tcx()
        self._mixed(["tc", "tcx"])

    def test_tcx_then_tc(self):
        self.need_tcx()
        self._mixed(["tcx", "tc"])


# ====================================================================== someone else detaches us


class TestSelfCheck(MultiBase):
    INTERVAL = "1"

    def _expect_note(self, procs, what, t0):
        """Each of procs says `what` on stderr within two intervals of t0."""
        limit = 2 * float(self.INTERVAL)
        for p in procs:
            left = max(0.05, t0 + limit - time.monotonic())
            line = p.wait_for(lambda ls: next((l for l in ls if what in l), None), left,
                              "'%s' on stderr within %.0f s" % (what, limit), stream="err")
            took = time.monotonic() - t0
            print("\n  %.2f s after the removal: %r" % (took, line), file=sys.stderr)
            self.assertTrue(line.startswith("tcptrack:"), line)
            self.assertIn(self.topo.sif, line)
            self.assertTrue(p.running())

    def test_tc_filter_del(self):
        before = self.snapshot()
        a = self.start_mode("tc")
        self.wait_counts(1, 0, [a])
        ha = self.new_handle({})
        ids = {h: self.ours(h)[ha] for h in HOOKS}
        b = self.start_mode("tc")
        self.wait_counts(2, 0, [a, b])
        self.assert_exact([a, b], label="before")
        t0 = time.monotonic()
        run(self.ns_cmd(self.SIDE, "tc", "filter", "del", "dev", self.topo.sif, "ingress",
                        "pref", str(PRIO), "handle", hex(ha), "bpf"))
        self._expect_note([a], "ingress filter on %s was deleted" % self.topo.sif, t0)
        self.wait_counts(2, 0, [a, b])
        self.assertEqual({h: self.ours(h).get(ha) for h in HOOKS}, ids,
                         "re-attached its own programs at its own handle")
        self.assert_exact([a, b], family="ipv6", label="after tc filter del")
        self.assertEqual(b.err_lines(), [], "the other instance was not touched")
        self.assertEqual(len(a.err_lines()), 1, a.err_lines())
        self.stop(a)
        self.stop_clean(b, "untouched instance")
        self.assert_restored(before, "after tc filter del")

    def test_tc_qdisc_del(self):
        before = self.snapshot()
        a = self.start_mode("tc")
        b = self.start_mode("tc")
        self.wait_counts(2, 0, [a, b])
        self.assert_exact([a, b], label="before")
        t0 = time.monotonic()
        run(self.ns_cmd(self.SIDE, "tc", "qdisc", "del", "dev", self.topo.sif, "clsact"))
        self._expect_note([a, b], "deleted by someone else", t0)
        self.wait_counts(2, 0, [a, b])
        self.assert_exact([a, b], family="ipv6", label="after tc qdisc del")
        for p in (a, b):
            self.assertEqual(self.stop(p), 0, p.stderr_text())
        # The clsact re-created by tcptrack is tcptrack's: the last one removes it.
        self.assert_restored(before, "after tc qdisc del clsact")

    def test_tcx_link_detach(self):
        self.need_tcx()
        before = self.snapshot()
        x = self.start_mode("tcx")
        t = self.start_mode("tc")
        self.wait_counts(1, 1, [x, t])
        self.assert_exact([x, t], label="before")
        out = json.loads(run(self.ns_cmd(self.SIDE, "bpftool", "-j", "net", "show", "dev",
                                         self.topo.sif)).stdout)
        (link,) = [e["link_id"] for e in out[0]["tc"] if e.get("kind") == "tcx/ingress"]
        t0 = time.monotonic()
        run(["bpftool", "link", "detach", "id", str(link)])
        self._expect_note([x], "TCX ingress link on %s was detached" % self.topo.sif, t0)
        self.wait_counts(1, 1, [x, t])
        self.assert_exact([x, t], family="ipv6", label="after bpftool link detach")
        self.assertEqual(t.err_lines(), [])
        self.assertEqual(self.stop(x), 0, x.stderr_text())
        self.stop_clean(t, "tc instance")
        self.assert_restored(before, "after bpftool link detach")


# ====================================================================== SIGKILL


class TestSigkillBesideLive(MultiBase):
    def _two_then_kill_first(self):
        a = self.start_mode("tc")
        self.wait_counts(1, 0, [a])
        ha = self.new_handle({})
        dead_ids = {h: self.ours(h)[ha] for h in HOOKS}
        b = self.start_mode("tc")
        self.wait_counts(2, 0, [a, b])
        hb = self.new_handle({ha: 0})
        a.p.kill()
        self.assertEqual(a.wait(10), -signal.SIGKILL)
        self.assert_exact([b], label="live instance after the other was SIGKILLed")
        return ha, hb, dead_ids, b

    def test_next_start_removes_only_the_dead(self):
        before = self.snapshot()
        ha, hb, dead_ids, b = self._two_then_kill_first()
        live_ids = {h: self.ours(h)[hb] for h in HOOKS}
        c = self.start_mode("tc")
        self.wait_counts(2, 0, [b, c])
        stale = c.wait_for(lambda ls: [l for l in ls if "removed stale" in l] if
                           len([l for l in ls if "removed stale" in l]) >= 2 else None,
                           10, "two 'removed stale' lines", stream="err")
        print("\n  next start: %r" % c.err_lines(), file=sys.stderr)
        self.assertEqual(len(c.err_lines()), 2, c.err_lines())
        for h in HOOKS:
            self.assertTrue(any(h in l and str(dead_ids[h]) in l for l in stale), stale)
            # The handle itself is free again (the new instance may take it).
            self.assertNotIn(dead_ids[h], self.ours(h).values(), "the dead one's filter survived")
            self.assertEqual(self.ours(h).get(hb), live_ids[h], "the live one's filter changed")
        self.assert_exact([b, c], family="ipv6", label="after the next start")
        self.assertEqual(b.err_lines(), [])
        self.stop_clean(b, "live instance")
        self.assertEqual(self.stop(c), 0)
        self.assert_restored(before, "dead + live + next start")

    def test_cleanup_removes_only_the_dead(self):
        before = self.snapshot()
        ha, hb, dead_ids, b = self._two_then_kill_first()
        p = run(self.ns_cmd(self.SIDE, netns.BINARY, "--cleanup", "-i", self.topo.sif),
                check=False)
        print("\n  --cleanup beside a live instance: %r" % p.stdout, file=sys.stderr)
        self.assertEqual(p.returncode, 0, p.stderr)
        for h in HOOKS:
            self.assertRegex(p.stdout, r"removed stale.*%s.*prog id %d" % (h, dead_ids[h]))
            self.assertEqual(set(self.ours(h)), {hb}, "%s filters after --cleanup" % h)
        self.assertNotIn("clsact qdisc", p.stdout, "clsact removed under a live instance")
        self.assertIn("clsact", self.qdiscs(self.SIDE))
        p2 = run(self.ns_cmd(self.SIDE, netns.BINARY, "--cleanup", "-i", self.topo.sif),
                 check=False)
        self.assertEqual(p2.returncode, 0, p2.stderr)
        self.assertNotIn("removed", p2.stdout + p2.stderr)
        self.assert_exact([b], family="ipv6", label="live instance after --cleanup")
        self.stop_clean(b, "live instance")
        self.assert_restored(before, "dead + live + --cleanup")


# ====================================================================== without root


class TestWithoutRoot(MultiBase):
    CAPS = "cap_bpf,cap_net_admin,cap_perfmon+ep"

    def setUp(self):
        super().setUp()
        for tool in ("setcap", "getcap", "setpriv"):
            if not shutil.which(tool):
                self.skipTest("%s not found (Debian: libcap2-bin, util-linux)" % tool)
        d = tempfile.mkdtemp(prefix="ttmi-bin-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        self.bin = os.path.join(d, "tcptrack")
        shutil.copy2(netns.BINARY, self.bin)
        run(["setcap", self.CAPS, self.bin])
        caps = run(["getcap", self.bin]).stdout
        if "cap_bpf" not in caps:
            self.skipTest("file capabilities did not stick on %s: %r" % (d, caps))
        self.as_nobody = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                          "--clear-groups"]

    def nobody(self, *args, check=False):
        return run(self.ns_cmd(self.SIDE, *self.as_nobody, self.bin, *args), check=check)

    def start_nobody(self, mode):
        cmd = self.ns_cmd(self.SIDE, *self.as_nobody, self.bin, "-i", self.topo.sif,
                          "--attach", mode, "--format", "json", "--interval", self.INTERVAL)
        p = self.start(cmd)
        # It really runs unprivileged, with exactly the file's capabilities.
        deadline = time.monotonic() + 5
        while True:
            try:
                with open("/proc/%d/status" % p.pid) as f:
                    st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
                if st["Uid"].split()[0] == str(NOBODY) and os.path.basename(
                        os.readlink("/proc/%d/exe" % p.pid)) == "tcptrack":
                    break
            except (OSError, KeyError):
                pass
            if time.monotonic() > deadline or not p.running():
                self.fail("no unprivileged tcptrack process: %s" % p.stderr_text())
            time.sleep(0.02)
        eff = int(st["CapEff"].strip(), 16)
        self.assertFalse(eff & (1 << 21), "CAP_SYS_ADMIN in the effective set")
        self.assertEqual(eff, (1 << 12) | (1 << 38) | (1 << 39), "effective caps %x" % eff)
        return p

    def test_check(self):
        help_text = run([netns.BINARY, "--help"], check=False).stdout
        if "--check" not in help_text:
            self.skipTest("this tcptrack has no --check")
        p = self.nobody("--check")
        print("\n  --check as uid %d: exit %d\n%s" % (NOBODY, p.returncode, p.stdout),
              file=sys.stderr)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_attach_each_mode(self):
        for mode in ("tcx", "tc"):
            with self.subTest(mode=mode):
                if mode == "tcx" and hasattr(netns, "has_feature") and \
                        not netns.has_feature("tcx"):
                    continue
                before = self.snapshot()
                t = self.start_nobody(mode)
                self.wait_counts(mode == "tc", mode == "tcx", [t])
                self.assert_exact([t], label="unprivileged --attach %s" % mode)
                self.stop_clean(t, "unprivileged --attach %s" % mode)
                self.assert_restored(before, "unprivileged --attach %s" % mode)

    def test_sigkill_and_cleanup_beside_root(self):
        before = self.snapshot()
        root = self.start_mode("tc")          # a root instance beside the unprivileged ones
        self.wait_counts(1, 0, [root])
        hroot = self.new_handle({})
        t = self.start_nobody("tc")
        self.wait_counts(2, 0, [root, t])
        dead = self.new_handle({hroot: 0})
        ids = {h: self.ours(h)[dead] for h in HOOKS}
        t.p.kill()
        self.assertEqual(t.wait(10), -signal.SIGKILL)
        p = self.nobody("--cleanup", "-i", self.topo.sif)
        print("\n  unprivileged --cleanup: exit %d %r %r" % (p.returncode, p.stdout, p.stderr),
              file=sys.stderr)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        for h in HOOKS:
            self.assertRegex(p.stdout, r"removed stale.*%s.*prog id %d" % (h, ids[h]))
            self.assertEqual(set(self.ours(h)), {hroot})
        self.assert_exact([root], label="root instance after unprivileged --cleanup")
        # And the other way round: a fresh unprivileged start beside the root instance.
        t2 = self.start_nobody("tc")
        self.wait_counts(2, 0, [root, t2])
        self.assert_exact([root, t2], family="ipv6", label="root + unprivileged")
        # Root leaves last: the unprivileged one could not delete root's lock files
        # in the sticky lock directory.
        self.stop_clean(t2, "unprivileged instance")
        self.stop_clean(root, "root instance")
        self.assert_restored(before, "unprivileged SIGKILL + --cleanup")


def tearDownModule():
    safety_test.tearDownModule()


if __name__ == "__main__":
    sys.exit(netns.main("multi_instance_test", sys.modules[__name__]))
