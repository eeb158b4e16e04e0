# SPDX-License-Identifier: MIT
"""End-to-end tests for --netns and -r/--resolve.

tcptrack runs in the ROOT namespace and watches the server end of a veth pair
that exists only inside the server namespace, named each way --netns takes it:
a name (/run/netns/NAME), a pid (of a process sleeping in that namespace) and
a path (/proc/PID/ns/net). Real TCP connections run inside; the final row's
payload must equal what the test's own sockets sent, and the veth must be left
exactly as it was found. -r runs tcptrack in a private mount namespace whose
/etc/hosts (a bind-mounted temp file) names the test addresses, so the names
come from files: the table shows them, JSON stays numeric.

Usage: netns_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import FINAL_STATES, parse_json_lines, run  # noqa: E402

netns.set_prefix("tt-ns-%d-" % os.getpid())

TAG = "ttns"          # veths ttnsc0 (client namespace) / ttnss0 (server namespace)
INTERVAL = "0.3"
COUNT = 20            # reports per --count run: 6 s, ample for a 100 KB exchange
TC_ONLY = dict(os.environ, TCPTRACK_DISABLE="tcx")


def B():
    return netns.binary()


class NetnsBase(netns.Base):
    SIDE = "server"

    def fresh_topology(self):
        self.topo = netns.Topology(1, tag=TAG)
        self.addCleanup(self.topo.teardown)
        self.topo.setup()
        # The watched interface exists only in its namespace: without --netns
        # tcptrack could not find it.
        self.assertNotEqual(subprocess.run(["ip", "link", "show", "dev", self.topo.sif],
                                           capture_output=True).returncode, 0,
                            "%s exists in the root namespace too" % self.topo.sif)

    def tcptrack(self, ns_arg, *args, env=None, prefix=()):
        cmd = list(prefix) + [B(), "--netns", ns_arg, "-i", self.topo.sif] + list(args)
        return self.start(cmd, env=env)

    def sleeper(self, ns):
        """A process sleeping in namespace `ns` (its pid names the namespace)."""
        p = self.start(["ip", "netns", "exec", ns, "sh", "-c", "echo ready; exec sleep 120"])
        p.wait_for(lambda ls: "ready" in ls, 10, "sleeper in %s" % ns)
        # ip -> sh -> sleep, each an exec: one pid, and it is in the namespace now.
        self.assertEqual(os.stat("/proc/%d/ns/net" % p.pid).st_ino,
                         os.stat("/run/netns/%s" % ns).st_ino)
        return p

    def exact_session(self, ns_arg, family, n=100000, m=54321):
        """tcptrack --netns ns_arg --format json --count COUNT from the root
        namespace while one connection sends n bytes up and m down, then
        closes. Checks the final row against the sockets and that the veth is
        left as it was."""
        before = self.snapshot()
        lsock, port = self.listen(family)
        track = self.tcptrack(ns_arg, "--format", "json", "--summary", "--interval", INTERVAL,
                              "--count", str(COUNT), "--no-process")
        self.wait_attached(track, "server")
        p = self.pair(family, lsock, port)
        p.c2s(n)
        p.s2c(m)
        p.close_clean()
        rc = track.wait(COUNT * float(INTERVAL) + 20)
        self.assertEqual(rc, 0, "tcptrack --netns %s: stderr: %s" % (ns_arg, track.stderr_text()))
        self.assertEqual(track.err_lines(), [])
        rows, summaries, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        self.assertEqual(len(summaries), COUNT, "--count %d reports" % COUNT)
        for _, s in summaries:
            self.assertEqual(s["ifaces"], [self.topo.sif], s)
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)
        mine = [r for _, r in rows if (r["src"], r["sport"], r["dst"], r["dport"])
                == (src, p.cport, dst, port)]
        finals = [r for r in mine if r["state"] in FINAL_STATES]
        self.assertEqual(len(finals), 1, "one final row for the connection: %s" % mine)
        last = finals[0]
        self.assertIs(mine[-1], last, "rows after the final one: %s" % mine)
        self.assertEqual(last["state"], "CLOSED", last)
        self.assertEqual(last["iface"], self.topo.sif, "iface stays the bare name")
        self.assertEqual((last["fwd_payload"], last["rev_payload"]), (n, m), last)
        self.assertGreater(last["fwd_bytes"], n, last)
        self.assertGreater(last["rev_bytes"], m, last)
        others = [r for _, r in rows if r["sport"] != p.cport]
        self.assertEqual(others, [], "connections nobody made")
        self.assert_restored(before, "after --netns %s --count" % ns_arg)


class TestForms(NetnsBase):
    def test_name(self):
        self.exact_session(self.topo.sns, "ipv4")

    def test_pid(self):
        sleeper = self.sleeper(self.topo.sns)
        self.exact_session(str(sleeper.pid), "ipv6")

    def test_path(self):
        sleeper = self.sleeper(self.topo.sns)
        self.exact_session("/proc/%d/ns/net" % sleeper.pid, "ipv4", n=70000, m=3)

    def test_table_header_names_the_namespace(self):
        track = self.tcptrack(self.topo.sns, "--count", "1", "--interval", "0.2")
        self.assertEqual(track.wait(20), 0, track.stderr_text())
        header = track.lines()[0]
        self.assertRegex(header, r"^\d\d:\d\d:\d\d  %s@netns %s  0 connections"
                         % (re.escape(self.topo.sif), re.escape(self.topo.sns)))

    def test_default_route_of_the_namespace(self):
        # Without -i: the namespace's default route names the interface.
        run(["ip", "-n", self.topo.sns, "route", "add", "default", "dev", self.topo.sif])
        sleeper = self.sleeper(self.topo.sns)
        p = run([B(), "--netns", str(sleeper.pid), "--once", "--interval", "0.2"], check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("  %s@netns pid %d  " % (self.topo.sif, sleeper.pid), p.stdout)

    # /sys/class/net shows the host's namespace: the device type must come from
    # the watched one (SIOCGIFHWADDR), or a tun inside --netns gets the L2 programs.
    def test_l3_device_gets_the_l3_programs(self):
        tun = TAG + "tun0"
        run(["ip", "-n", self.topo.sns, "tuntap", "add", "dev", tun, "mode", "tun"])
        run(["ip", "-n", self.topo.sns, "link", "set", tun, "up"])
        track = self.start([B(), "--netns", self.topo.sns, "-i", tun, "--format", "json",
                            "--interval", INTERVAL, "--no-process"])
        lines = self.wait_attached(track, "server", iface=tun)
        self.assertEqual(self.stop(track), 0, track.stderr_text())
        self.assertTrue(all("_l3 " in l for l in lines), lines)


class TestErrors(NetnsBase):
    def one_line_exit_1(self, ns_arg, *expect):
        before = self.snapshot()
        p = run([B(), "--netns", ns_arg, "-i", self.topo.sif, "--once"], check=False)
        self.assertEqual(p.returncode, 1, "stdout: %s stderr: %s" % (p.stdout, p.stderr))
        self.assertEqual(p.stdout, "")
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, "one line on stderr: %r" % p.stderr)
        self.assertTrue(lines[0].startswith("tcptrack: "), lines[0])
        for e in expect:
            self.assertIn(e, lines[0])
        self.assertEqual(self.snapshot(), before)

    def test_missing_name(self):
        name = netns.PREFIX + "missing"
        self.one_line_exit_1(name, "'%s'" % name, "tried as a name: /run/netns/%s" % name,
                             "does not exist")

    def test_missing_pid(self):
        self.one_line_exit_1("4194305", "tried as a pid: /proc/4194305/ns/net", "does not exist")

    def test_not_a_namespace(self):
        with tempfile.NamedTemporaryFile(prefix=netns.PREFIX) as f:
            self.one_line_exit_1(f.name, "tried as a path", "is not a network namespace")

    def test_other_namespace_type(self):
        self.one_line_exit_1("/proc/self/ns/uts", "is not a network namespace")

    def test_permission_denied(self):
        # An unprivileged user may not enter another network namespace.
        if shutil.which("setpriv") is None:
            self.skipTest("needs setpriv (util-linux)")
        d = tempfile.mkdtemp(prefix=netns.PREFIX)
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        binary = os.path.join(d, "tcptrack")
        shutil.copy(B(), binary)
        p = run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", binary,
                 "--netns", self.topo.sns, "-i", self.topo.sif, "--once"], check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertEqual(p.stderr.splitlines(), [
            "tcptrack: cannot enter network namespace '%s' (tried as a name: /run/netns/%s): "
            "permission denied (needs root: CAP_SYS_ADMIN)" % (self.topo.sns, self.topo.sns)])


class TestCheckAndCleanup(NetnsBase):
    def test_check_looks_in_the_namespace(self):
        ok = run([B(), "--check", "--netns", self.topo.sns, "-i", self.topo.sif], check=False)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertIn("netns          %s (/run/netns/%s)" % (self.topo.sns, self.topo.sns),
                      ok.stdout)
        self.assertIn("tcptrack can run here", ok.stdout)
        # Without --netns the interface is not there: the check said so before.
        no = run([B(), "--check", "-i", self.topo.sif], check=False)
        self.assertEqual(no.returncode, 1, no.stdout + no.stderr)

    def test_cleanup_removes_a_killed_instance_in_the_namespace(self):
        before = self.snapshot()
        track = self.tcptrack(self.topo.sns, "--format", "json", "--no-process", env=TC_ONLY)
        self.wait_attached(track, "server")
        self.assertIn("clsact", self.qdiscs("server"))
        track.p.send_signal(signal.SIGKILL)
        track.wait(10)
        self.assertNotEqual(self.tcptrack_lines("server"), [], "tc filters gone with the process?")
        # From the root namespace the interface does not exist ...
        no = run([B(), "--cleanup", "-i", self.topo.sif], check=False)
        self.assertEqual(no.returncode, 1, no.stdout + no.stderr)
        # ... with --netns the stale filters and the clsact they came with go.
        p = run([B(), "--cleanup", "--netns", self.topo.sns, "-i", self.topo.sif], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("stale", p.stdout + p.stderr)
        self.assert_restored(before, "after --cleanup --netns")


class TestLocksPerNamespace(NetnsBase):
    """Two legacy-tc instances on same-named interfaces (same ifindex too) in
    two namespaces: each takes the first handle of its own interface and
    removes its own clsact; neither thinks it shares the interface."""

    def test_same_interface_name_in_two_namespaces(self):
        first = self.topo
        self.fresh_topology()
        second = self.topo
        idx = [run(["ip", "-n", t.sns, "-o", "link", "show", "dev", t.sif]).stdout.split(":")[0]
               for t in (first, second)]
        self.assertEqual(idx[0], idx[1], "same ifindex in both namespaces")
        procs = []
        for t in (first, second):
            self.topo = t
            before = self.snapshot()
            p = self.tcptrack(t.sns, "--format", "json", "--interval", INTERVAL, "--no-process",
                              env=TC_ONLY)
            self.wait_attached(p, "server")
            procs.append((t, p, before))
        for t, p, _ in procs:
            self.topo = t
            for hook in ("ingress", "egress"):
                out = run(["ip", "netns", "exec", t.sns, "tc", "filter", "show", "dev", t.sif,
                           hook]).stdout
                self.assertIn("handle 0x7c70001 ", out, "%s %s: %s" % (t.sns, hook, out))
        # Each lock file names its own namespace.
        locks = {}
        for d in ("/run/tcptrack", "/run/lock/tcptrack"):
            if os.path.isdir(d):
                for f in os.listdir(d):
                    if f.endswith("-7c70001.lock"):
                        with open(os.path.join(d, f)) as fh:
                            locks[fh.read().split()[0]] = f
        names = [locks.get(str(p.pid)) for _, p, _ in procs]
        self.assertTrue(all(names), "lock files by pid: %s" % locks)
        self.assertNotEqual(names[0], names[1])
        # Traffic in both, exact in both; then stop them one after the other:
        # each leaves its interface as it found it, the other one keeps counting.
        for t, p, _ in procs:
            self.topo = t
            lsock, port = self.listen("ipv4")
            c = self.pair("ipv4", lsock, port)
            c.c2s(12345)
            c.close_clean()
            p.wait_for(lambda ls, cp=c.cport: any(
                r["sport"] == cp and r["state"] == "CLOSED" and r["fwd_payload"] == 12345
                for _, r in parse_json_lines(ls)[0]), 15, "exact CLOSED row in %s" % t.sns)
        for t, p, before in procs:
            self.topo = t
            self.assertEqual(self.stop(p, signal.SIGINT), 0, p.stderr_text())
            self.assert_restored(before, "%s after SIGINT" % t.sns)


class TestResolve(NetnsBase):
    NAMES = {"10.77.1.1": "tt-ns-client.test", "10.77.1.2": "tt-ns-server.test",
             "fd00:77:1::1": "tt-ns-client6.test", "fd00:77:1::2": "tt-ns-server6.test"}

    def setUp(self):
        super().setUp()
        if shutil.which("unshare") is None:
            self.skipTest("needs unshare (util-linux)")
        fd, self.hosts = tempfile.mkstemp(prefix=netns.PREFIX)
        self.addCleanup(os.unlink, self.hosts)
        with os.fdopen(fd, "w") as f:
            f.write("127.0.0.1 localhost\n")
            for a, n in self.NAMES.items():
                f.write("%s %s\n" % (a, n))

    def under_hosts(self):
        """A private mount namespace whose /etc/hosts is our file (gone with it)."""
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', self.hosts]

    def test_table_shows_names_json_stays_numeric(self):
        track = self.tcptrack(self.topo.sns, "-r", "--interval", INTERVAL, "--no-process",
                              prefix=self.under_hosts())
        self.wait_attached(track, "server")
        pairs = []
        for family in ("ipv4", "ipv6"):
            lsock, port = self.listen(family)
            c = self.pair(family, lsock, port)
            c.c2s(1000)
            pairs.append((family, c, port))
        # The table shows each endpoint by name once the resolver has it.
        for family, c, port in pairs:
            six = "6" if family == "ipv6" else ""
            want = "tt-ns-client%s.test:%d -> tt-ns-server%s.test:%d" % (six, c.cport, six, port)
            track.wait_for(lambda ls, w=want: any(w in l for l in ls), 15, want)
        for _, c, _ in pairs:
            c.close_clean()
        self.assertEqual(self.stop(track, signal.SIGINT), 0, track.stderr_text())
        # The system's /etc/hosts was never touched.
        with open("/etc/hosts") as f:
            self.assertNotIn("tt-ns-client.test", f.read())

        # JSON (and so CSV) stay numeric, with -r too.
        track = self.tcptrack(self.topo.sns, "-r", "--format", "json", "--interval", INTERVAL,
                              "--count", "8", "--no-process", prefix=self.under_hosts())
        self.wait_attached(track, "server")
        lsock, port = self.listen("ipv4")
        c = self.pair("ipv4", lsock, port)
        c.c2s(2000)
        c.close_clean()
        self.assertEqual(track.wait(30), 0, track.stderr_text())
        rows = [r for _, r in parse_json_lines(track.lines())[0]]
        mine = [r for r in rows if r["sport"] == c.cport]
        self.assertTrue(mine, rows)
        self.assertEqual({(r["src"], r["dst"]) for r in mine}, {("10.77.1.1", "10.77.1.2")})
        self.assertNotIn(".test", "\n".join(track.lines()))


def tearDownModule():
    netns.tear_down_module()


if __name__ == "__main__":
    sys.exit(netns.main("e2e_netns", sys.modules[__name__]))
