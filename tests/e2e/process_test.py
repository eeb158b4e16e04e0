# SPDX-License-Identifier: MIT
"""End-to-end test of process attribution (pid, comm, cgroup; the PROCESS column).

Three network namespaces in a row, client -- router -- server, with real TCP
transfers between processes whose pids the test knows and whose comm it sets
(prctl PR_SET_NAME):

  * tcptrack in the client namespace: each connection's owner is its client
    process (the local socket connected);
  * tcptrack in the server namespace: the server process (the accepted
    socket), including an IPv4 client of a dual-stack listener (an
    IPv4-mapped IPv6 socket);
  * tcptrack in the router namespace on its veth to the client: forwarded
    traffic, no socket in the router's namespace, so the client's socket is
    found beyond the veth (its link netns, the client's namespace): the
    client process, with that namespace's netns;
  * the table shows "comm/pid" in a PROCESS column; --no-process gives nulls
    and no column.

All instances run at once (several tcptrack instances may share an interface).
Usage: process_test.py [--binary PATH] [unittest args]. Needs root; exits 77 otherwise.
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import Proc, parse_json_lines, run  # noqa: E402

PREFIX = "tt-proc-%d-" % os.getpid()
netns.set_prefix(PREFIX)
START_TIMEOUT = 120.0  # a loaded 2-CPU machine takes tens of seconds to load and attach

# A peer: names itself (comm), connects or accepts one connection, says who it
# is, then sends 8 KiB every 20 ms and reads whatever comes until killed.
PEER = r"""
import ctypes, json, os, socket, sys, threading, time
role, name, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if ctypes.CDLL(None, use_errno=True).prctl(15, name.encode(), 0, 0, 0) != 0:  # PR_SET_NAME
    sys.exit("prctl failed")
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if role == "server":
    l = socket.socket(fam, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if host == "::":
        l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual stack
    l.bind((host, port))
    l.listen(4)
    print(json.dumps({"ready": True, "pid": os.getpid(), "port": l.getsockname()[1]}), flush=True)
    c, peer = l.accept()
    print(json.dumps({"accepted": list(peer[:2])}), flush=True)
else:
    c = socket.create_connection((host, port), timeout=20)
    c.settimeout(None)
    print(json.dumps({"ready": True, "pid": os.getpid(), "sport": c.getsockname()[1]}), flush=True)
def reader():
    while c.recv(65536):
        pass
threading.Thread(target=reader, daemon=True).start()
while True:
    try:
        c.sendall(b"x" * 8192)
    except OSError:
        break
    time.sleep(0.02)
"""

HEX64 = re.compile(r"^(?:docker-|cri-containerd-|crio-|libpod-|containerd-)([0-9a-fA-F]{64})(?:\.scope)?$")
BARE64 = re.compile(r"^[0-9a-fA-F]{64}$")


def expected_cgroup(pid):
    """What tcptrack should say for a pid: a container id evident in
    /proc/PID/cgroup, else the cgroup v2 path, else None."""
    with open("/proc/%d/cgroup" % pid) as f:
        lines = f.read().splitlines()
    v2 = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        segs = parts[2].split("/")
        for i in reversed(range(len(segs))):
            seg = segs[i]
            if seg.startswith("crio-conmon-"):
                continue
            m = HEX64.match(seg)
            if m:
                return m.group(1).lower()
            # Bare: under a runtime's parent or inside kubepods (enrich/pod.cpp).
            if BARE64.match(seg) and (segs[i - 1] in ("docker", "moby", "default")
                                      or any(s.startswith("kubepods") for s in segs[:i])):
                return seg.lower()
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
    return v2


class Chain:
    """client -- router -- server namespaces; IPv4 and IPv6 routed through the router."""

    def __init__(self):
        self.c, self.r, self.s = PREFIX + "c", PREFIX + "r", PREFIX + "s"
        self.created = []

    def setup(self):
        for ns in (self.c, self.r, self.s):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.c, "link", "add", "ttpc0", "type", "veth", "peer", "name", "ttpr0",
             "netns", self.r])
        run(["ip", "-n", self.s, "link", "add", "ttps0", "type", "veth", "peer", "name", "ttpr1",
             "netns", self.r])
        for ns, dev, v4, v6 in ((self.c, "ttpc0", "10.89.1.1/24", "fd00:89:1::1/64"),
                                (self.r, "ttpr0", "10.89.1.2/24", "fd00:89:1::2/64"),
                                (self.r, "ttpr1", "10.89.2.2/24", "fd00:89:2::2/64"),
                                (self.s, "ttps0", "10.89.2.1/24", "fd00:89:2::1/64")):
            run(["ip", "-n", ns, "addr", "add", v4, "dev", dev])
            run(["ip", "-n", ns, "-6", "addr", "add", v6, "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        for ns, via4, via6 in ((self.c, "10.89.1.2", "fd00:89:1::2"),
                               (self.s, "10.89.2.2", "fd00:89:2::2")):
            run(["ip", "-n", ns, "route", "add", "default", "via", via4])
            run(["ip", "-n", ns, "-6", "route", "add", "default", "via", via6])
        run(["ip", "netns", "exec", self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        run(["ip", "netns", "exec", self.r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        deadline = time.monotonic() + 10
        for ns, dev in ((self.c, "ttpc0"), (self.r, "ttpr0"), (self.r, "ttpr1"), (self.s, "ttps0")):
            while "LOWER_UP" not in run(["ip", "-n", ns, "link", "show", "dev", dev]).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("%s in %s did not come up" % (dev, ns))
                time.sleep(0.05)

    def teardown(self):
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.created = []


class ProcessAttribution(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.chain = Chain()
        self.addCleanup(self.chain.teardown)
        self.chain.setup()

    def start(self, cmd):
        p = Proc(cmd)
        self.addCleanup(p.kill)
        return p

    def peer(self, ns, role, name, host, port=0):
        p = self.start(["ip", "netns", "exec", ns, sys.executable, "-c", PEER, role, name, host,
                        str(port)])
        ready = p.wait_for(lambda ls: next((json.loads(l) for l in ls if '"ready"' in l), None),
                           20, "%s %s ready" % (role, name))
        # ip netns exec execs the command: the pid we started is the peer's.
        self.assertEqual(ready["pid"], p.pid, "the peer runs under the pid we started")
        with open("/proc/%d/comm" % p.pid) as f:
            self.assertEqual(f.read().strip(), name, "comm set by PR_SET_NAME")
        return p, ready

    def tcptrack(self, ns, dev, *args):
        return self.start(["ip", "netns", "exec", ns, netns.binary(), "-i", dev,
                           "--interval", "0.5", *args])

    def wait_attached(self, procs):
        """Until every instance's programs are on its interface (both hooks)."""
        deadline = time.monotonic() + START_TIMEOUT
        for ns, dev, p in procs:
            while True:
                out = run(["ip", "netns", "exec", ns, "bpftool", "net", "show", "dev", dev]).stdout
                mine = [l for l in out.splitlines() if "tcptrack" in l]
                # Several instances on one interface: count the links of each hook.
                if any("ingress" in l for l in mine) and any("egress" in l for l in mine) \
                        and len(mine) >= 2 * sum(1 for n, d, _ in procs if (n, d) == (ns, dev)):
                    break
                if not p.running():
                    self.fail("tcptrack exited (%s) before attaching: %s"
                              % (p.wait(5), p.stderr_text()))
                if time.monotonic() > deadline:
                    self.fail("tcptrack not attached to %s in %s after %.0fs: %s"
                              % (dev, ns, START_TIMEOUT, p.stderr_text()))
                time.sleep(0.2)

    def test_owners_on_each_side(self):
        ch = self.chain
        # One connection already running before tcptrack starts: seen mid-stream,
        # its client side is a guess, so the socket is matched in either order.
        srvm, rm = self.peer(ch.s, "server", "tt-srvm", "10.89.2.1")
        clim, cm = self.peer(ch.c, "client", "tt-clim", "10.89.2.1", rm["port"])
        # Several instances at once (each takes long to start on a busy machine).
        inst = {
            "client": (ch.c, "ttpc0", self.tcptrack(ch.c, "ttpc0", "--format", "json")),
            "server": (ch.s, "ttps0", self.tcptrack(ch.s, "ttps0", "--format", "json")),
            "router": (ch.r, "ttpr0", self.tcptrack(ch.r, "ttpr0", "--format", "json")),
            "off": (ch.c, "ttpc0", self.tcptrack(ch.c, "ttpc0", "--format", "json",
                                                 "--no-process")),
            "table": (ch.c, "ttpc0", self.tcptrack(ch.c, "ttpc0", "--summary")),
            "table_off": (ch.s, "ttps0", self.tcptrack(ch.s, "ttps0", "--no-process")),
        }
        self.wait_attached(list(inst.values()))

        # Connections start once everything watches, so each SYN is seen.
        srv4, r4 = self.peer(ch.s, "server", "tt-srv4", "10.89.2.1")
        srvd, rd = self.peer(ch.s, "server", "tt-srvd", "::")  # dual stack
        srv6, r6 = self.peer(ch.s, "server", "tt-srv6", "fd00:89:2::1")
        cli4, c4 = self.peer(ch.c, "client", "tt-cli4", "10.89.2.1", r4["port"])
        clid, cd = self.peer(ch.c, "client", "tt-clid", "10.89.2.1", rd["port"])
        cli6, c6 = self.peer(ch.c, "client", "tt-cli6", "fd00:89:2::1", r6["port"])
        srvd.wait_for(lambda ls: any('"accepted"' in l and "::ffff:10.89.1.1" in l for l in ls),
                      20, "the dual-stack server's IPv4-mapped peer")
        mid = ("ipv4", "10.89.1.1", cm["sport"], "10.89.2.1", rm["port"], ("tt-clim", clim.pid),
               ("tt-srvm", srvm.pid))
        conns = [  # (family, client addr, sport, server addr, dport, client, server)
            ("ipv4", "10.89.1.1", c4["sport"], "10.89.2.1", r4["port"], ("tt-cli4", cli4.pid),
             ("tt-srv4", srv4.pid)),
            ("ipv4", "10.89.1.1", cd["sport"], "10.89.2.1", rd["port"], ("tt-clid", clid.pid),
             ("tt-srvd", srvd.pid)),
            ("ipv6", "fd00:89:1::1", c6["sport"], "fd00:89:2::1", r6["port"],
             ("tt-cli6", cli6.pid), ("tt-srv6", srv6.pid)),
        ]
        everything = conns + [mid]

        def rows_of(p, conn):
            """Rows of a connection, in either orientation (a mid-stream one's is a guess)."""
            rows, _, _ = parse_json_lines(p.lines())
            fam, src, sport, dst, dport = conn[:5]
            return [r for _, r in rows
                    if (r["family"], r["src"], r["sport"], r["dst"], r["dport"])
                    in ((fam, src, sport, dst, dport), (fam, dst, dport, src, sport))]

        def owned(p, conn):
            return lambda _: all(rows_of(p, c) and rows_of(p, c)[-1]["pid"] is not None
                                 for c in conn)

        # Each JSON instance: a few reports with every connection, owners looked up.
        for key in ("client", "server", "router"):
            inst[key][2].wait_for(owned(inst[key][2], everything), 30,
                                  "owners of all connections from the %s side" % key)
        for key in ("off",):
            inst[key][2].wait_for(lambda _, p=inst[key][2]: all(len(rows_of(p, c)) >= 3
                                                                 for c in everything),
                                  30, "three reports with every connection (%s)" % key)
        inst["table"][2].wait_for(lambda ls: sum(1 for l in ls if "tt-cli6/" in l) >= 2, 30,
                                  "the table's PROCESS column")
        inst["table_off"][2].wait_for(lambda ls: sum(1 for l in ls if "CONNECTION" in l) >= 3, 30,
                                      "three tables without processes")
        for ns, dev, p in inst.values():
            p.signal(2)
        for name, (ns, dev, p) in inst.items():
            self.assertEqual(p.wait(20), 0, "%s instance: %s" % (name, p.stderr_text()))

        # The router's sockets: none of its own; beyond ttpr0, the client's namespace.
        sock_ns = {"client": ch.c, "server": ch.s, "router": ch.c}
        for side, key, idx in (("client", "client", 5), ("server", "server", 6),
                               ("router", "router", 5)):
            for conn in everything:
                comm, pid = conn[idx]
                rows = rows_of(inst[key][2], conn)
                self.assertTrue(rows, "%s side: no rows for %s" % (side, conn[:5]))
                # The lookup is for new connections; retried until found, then cached:
                # once found, every later row has it.
                first = next(i for i, r in enumerate(rows) if r["pid"] is not None)
                # The socket's namespace: the instance's, or the one beyond its veth.
                ns_ino = os.stat("/run/netns/" + sock_ns[key]).st_ino
                for r in rows[first:]:
                    self.assertEqual((r["pid"], r["comm"], r["cgroup"], r["netns"]),
                                     (pid, comm, expected_cgroup(pid), ns_ino),
                                     "%s side, %s: %s" % (side, conn[:5], r))
                self.assertLessEqual(first, 2, "%s side found late: %s" % (side, rows))
                # Orientation is client -> server whichever side owns the socket.
                self.assertEqual(rows[-1]["state"], "ESTABLISHED", rows[-1])
                if conn is not mid:
                    self.assertEqual((rows[-1]["src"], rows[-1]["sport"]), conn[1:3], rows[-1])

        # --no-process: the keys are there, null.
        for key in ("off",):
            for conn in everything:
                rows = rows_of(inst[key][2], conn)
                self.assertTrue(rows, "%s: no rows for %s" % (key, conn[:5]))
                for r in rows:
                    self.assertEqual((r["pid"], r["comm"], r["cgroup"], r["netns"], r["pod_uid"],
                                      r["container_id"]), (None,) * 6, "%s: %s" % (key, r))
                    keys = list(r.keys())
                    at = keys.index("pid")
                    self.assertEqual(keys[at:at + 7], ["pid", "comm", "cgroup", "netns",
                                                       "pod_uid", "container_id", "displaced"])

        # The table: a PROCESS column with comm/pid, the --summary line under each report.
        lines = inst["table"][2].lines()
        headers = [l for l in lines if l.startswith("CONNECTION")]
        self.assertTrue(headers and all(l.split()[-1] == "PROCESS" for l in headers), headers)
        for (fam, src, sport, dst, dport, (comm, pid), _) in conns:
            ep = ("%s:%d" % (src, sport)) if fam == "ipv4" else ("[%s]:%d" % (src, sport))
            mine = [l for l in lines if l.startswith(ep + " -> ")]
            self.assertTrue(mine, "no table row for %s: %s" % (ep, lines[-20:]))
            self.assertEqual(mine[-1].split()[-1], "%s/%d" % (comm, pid), mine[-1])
        summaries = [l for l in lines if l.startswith("summary: connections ")]
        self.assertGreaterEqual(len(summaries), len(headers) - 1, lines[-20:])
        self.assertRegex(summaries[-1], r"^summary: connections 4  store 4/\d+ \(assured 4, "
                         r"unassured 0\)  displaced 0  untracked 0 \(full 0, buckets 0\)  "
                         r"evicted 0  close-drops 0  closed 0  retrans \d+ \(\d+ B\)  lost \d+  "
                         r"dup-acks \d+  zero-windows \d+  rtt min/avg/max \S+/\S+/\S+$")
        # Sizes are labelled in 1024s.
        self.assertTrue(any(re.search(r"\d KiB|\d MiB", l) for l in lines), lines[-10:])
        self.assertFalse(any(re.search(r"\d (KB|MB|GB) ", l) for l in lines), lines[-10:])

        off = inst["table_off"][2].lines()
        self.assertTrue(all("PROCESS" not in l for l in off), off[-10:])
        self.assertTrue(all(l.split()[-1] == "AGE" for l in off if l.startswith("CONNECTION")),
                        off[-10:])


tearDownModule = netns.tear_down_module  # what the prefix set above left

if __name__ == "__main__":
    sys.exit(netns.main("process_test", sys.modules[__name__]))
