# SPDX-License-Identifier: MIT
"""End-to-end test of pod and container attribution (pod_uid, container_id, netns).

"Pods" made on this machine: cgroup v2 directories laid out as kubelet and
the runtimes lay them out, under a parent of our own (ttpod-PID) in the v2
hierarchy (/sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup on a v2
one):

  * pod A, systemd driver: kubepods.slice/kubepods-burstable.slice/
    kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<64hex>.scope
  * pod B, cgroupfs driver: kubepods/burstable/pod<uid>/<64hex>

A client (python3, in pod A) in one network namespace connects to a server
(python3, in pod B) in another, over a veth pair. The processes are moved
into their cgroups from here (the host's mount namespace: `ip netns exec`
remounts /sys without the cgroup tree) before the connection opens. tcptrack
runs in each namespace (where the sockets live: `ip netns exec`, and
`--netns` from the host for the client's) and must name, for the local end:
the pid, the pod UID (dashed), the container id, cgroup (the container id,
its meaning unchanged) and netns (the inode of that namespace, not the host's).

A second case (HostVeths) runs tcptrack in the host's (root) namespace, no
--netns, on the host-side veths of two pod namespaces joined by a bridge, as
a CNI bridge plugin lays them out (tcptrack -i 'veth*' on a node). The
sockets of a pod-to-pod connection (IPv4 and IPv6) live in the pods'
namespaces, which tcptrack finds beyond each veth (its link netns): the rows
on each pod's veth name that pod's process and namespace. A pod's connection
to a host-network process (in a kubelet cgroup too) is named from the host's
namespace, as before. Its namespaces and interfaces are named ttpeer-PID-*
and ttpeerXXXX* (XXXX: the PID in hex).

PodSeries (--prometheus-pods): the same two pods, the client making a few
long connections and ten short ones (gone before a report: named by the
classifiers' cgroup) that send known payloads each way (the oracle); tcptrack
from the host with --netns into the server's namespace serves /metrics here: the server pod's tcptrack_pod_bytes_total equals what
the sockets sent (payload) and what tcptrack's own final rows count (wire),
its opened and closed counts equal the connections, no other pod has series;
an instance without the flag, watching the same traffic, has no pod series.
Its namespaces and cgroups are named ttppod-PID-... (not ttpod-).

Everything made (processes, namespaces, interfaces, cgroup directories) goes
at the end, on failure too. Usage: pods_test.py [--binary PATH] [unittest
args]. Needs root and a cgroup v2 hierarchy; exits 77 otherwise.
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import Proc, parse_json_lines, run  # noqa: E402

PREFIX = "ttpod-%d-" % os.getpid()
netns.set_prefix(PREFIX)
SERIES_PREFIX = "ttppod-%d-" % os.getpid()  # PodSeries' own names
START_TIMEOUT = 120.0  # a loaded 2-CPU machine takes tens of seconds to load and attach


def v2_root():
    """Where the cgroup v2 hierarchy is mounted, or None."""
    for path in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            with open("/proc/self/mountinfo") as f:
                mounted = any(l.split(" - ")[1].split()[0] == "cgroup2"
                              and l.split()[4] == path for l in f if " - " in l)
        except OSError:
            return None
        if mounted:
            return path
    return None


# A peer: a server accepts one connection; a client waits for a line on stdin
# (it is in its cgroup then), connects, and both say who they are and trickle
# data until killed.
PEER = r"""
import json, os, socket, sys, threading, time
role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if role == "server":
    l = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, port))
    l.listen(4)
    print(json.dumps({"ready": True, "pid": os.getpid(), "port": l.getsockname()[1]}), flush=True)
    c, peer = l.accept()
else:
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    sys.stdin.readline()
    c = socket.create_connection((host, port), timeout=20)
    c.settimeout(None)
    print(json.dumps({"connected": True, "sport": c.getsockname()[1]}), flush=True)
def reader():
    while c.recv(65536):
        pass
threading.Thread(target=reader, daemon=True).start()
while True:
    try:
        c.sendall(b"x" * 4096)
    except OSError:
        break
    time.sleep(0.05)
"""


# Short connections: both peers wait for a line on stdin (by then they are in
# their cgroups, so their sockets are born there; the client's line is the
# server's port), then the server accepts and
# answers each request, and the client opens N connections one after another,
# each alive for a few milliseconds, and prints their source ports.
SHORT = r"""
import json, socket, sys, time
role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(json.dumps({"ready": True}), flush=True)
line = sys.stdin.readline()  # the client's is the server's port
if role == "server":
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, port))
    l.listen(64)
    print(json.dumps({"port": l.getsockname()[1]}), flush=True)
    while True:
        c, _ = l.accept()
        got = b""
        while len(got) < 100:
            got += c.recv(100 - len(got))
        c.sendall(b"r" * 1000)
        c.close()
else:
    port, n, sports, lived = int(line), int(sys.argv[4]), [], []
    for _ in range(n):
        t = time.monotonic()
        c = socket.create_connection((host, port), timeout=20)
        sports.append(c.getsockname()[1])
        c.sendall(b"q" * 100)
        got = b""
        while len(got) < 1000:
            b = c.recv(1000)
            if not b:
                break
            got += b
        time.sleep(0.01)  # a 10 ms connection
        c.close()
        lived.append(time.monotonic() - t)
        time.sleep(0.005)
    print(json.dumps({"sports": sports, "max_life_s": max(lived)}), flush=True)
"""


class PodsBase(unittest.TestCase):
    """Two namespaces joined by a veth pair, and cgroups made for pods."""
    maxDiff = None
    prefix = PREFIX  # of the namespaces and the cgroup parent

    def setUp(self):
        self.root = v2_root()
        self.cgdirs = []  # made, outermost first
        self.addCleanup(self.remove_cgroups)
        self.c, self.s = self.prefix + "c", self.prefix + "s"
        self.made_ns = []
        self.addCleanup(self.remove_namespaces)
        for ns in (self.c, self.s):
            run(["ip", "netns", "add", ns])
            self.made_ns.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.c, "link", "add", "ttpodc0", "type", "veth", "peer", "name",
             "ttpods0", "netns", self.s])
        for ns, dev, addr in ((self.c, "ttpodc0", "10.93.0.1/24"),
                              (self.s, "ttpods0", "10.93.0.2/24")):
            run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        deadline = time.monotonic() + 10
        for ns, dev in ((self.c, "ttpodc0"), (self.s, "ttpods0")):
            while "LOWER_UP" not in run(["ip", "-n", ns, "link", "show", "dev", dev]).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("%s in %s did not come up" % (dev, ns))
                time.sleep(0.05)

    # ------------------------------------------------------------- cleanup

    def remove_namespaces(self):
        for ns in self.made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.made_ns = []

    def remove_cgroups(self):
        """rmdir, innermost first, once their processes are gone (killed by
        the cleanups that ran before this one)."""
        left = []
        for d in reversed(self.cgdirs):
            deadline = time.monotonic() + 10
            while os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:  # EBUSY while an exiting process is still in it
                    if time.monotonic() > deadline:
                        left.append(d)
                        break
                    time.sleep(0.1)
        self.cgdirs = []
        if left:
            raise AssertionError("cgroup directories left behind: %s" % left)

    def mkcgroup(self, rel):
        """Makes ROOT/ttpod-PID/REL, each level recorded for the cleanup."""
        path = self.root
        for part in ["%scg" % self.prefix] + rel.split("/"):
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                os.mkdir(path)
                self.cgdirs.append(path)
        return path

    def start(self, cmd, **kw):
        p = Proc(cmd, **kw)
        self.addCleanup(p.kill)
        return p


class Pods(PodsBase):
    def test_pod_and_container_of_each_end(self):
        uid_a, uid_b = str(uuid.uuid4()), str(uuid.uuid4())
        id_a, id_b = os.urandom(32).hex(), os.urandom(32).hex()
        cg_a = self.mkcgroup("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s"
                             ".slice/cri-containerd-%s.scope" % (uid_a.replace("-", "_"), id_a))
        cg_b = self.mkcgroup("kubepods/burstable/pod%s/%s" % (uid_b, id_b))

        # tcptrack in each namespace, started first so it sees the SYN; and one
        # from here with --netns into the client's (the same answer, the
        # client's namespace in netns).
        dev = {self.c: "ttpodc0", self.s: "ttpods0"}
        args = ["--interval", "0.5", "--format", "json"]
        inst = {(ns, "exec"): self.start(["ip", "netns", "exec", ns, netns.binary(), "-i",
                                          dev[ns], *args])
                for ns in (self.c, self.s)}
        inst[(self.c, "--netns")] = self.start([netns.binary(), "--netns", self.c, "-i",
                                                dev[self.c], *args])
        deadline = time.monotonic() + START_TIMEOUT
        for (ns, how), p in inst.items():
            while True:
                out = run(["ip", "netns", "exec", ns, "bpftool", "net", "show", "dev",
                           dev[ns]]).stdout
                mine = [l for l in out.splitlines() if "tcptrack" in l]
                # Two instances on the client's interface: count the links of each hook.
                if any("ingress" in l for l in mine) and any("egress" in l for l in mine) \
                        and len(mine) >= 2 * sum(1 for n, _ in inst if n == ns):
                    break
                if not p.running() or time.monotonic() > deadline:
                    self.fail("tcptrack not attached to %s in %s: %s"
                              % (dev[ns], ns, p.stderr_text()))
                time.sleep(0.2)

        server = self.start(["ip", "netns", "exec", self.s, sys.executable, "-c", PEER, "server",
                             "10.93.0.2", "0"])
        sready = server.wait_for(lambda ls: next((json.loads(l) for l in ls if '"ready"' in l),
                                                 None), 20, "server ready")
        client = self.start(["ip", "netns", "exec", self.c, sys.executable, "-c", PEER, "client",
                             "10.93.0.2", str(sready["port"])], stdin=True)
        client.wait_for(lambda ls: any('"ready"' in l for l in ls), 20, "client ready")
        # ip netns exec execs the command: the pids we started are the peers'.
        for p, cg in ((server, cg_b), (client, cg_a)):
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write("%d\n" % p.pid)
            with open("/proc/%d/cgroup" % p.pid) as f:
                text = f.read()
            self.assertIn("0::" + cg[len(self.root):] + "\n", text, "the peer's v2 cgroup")
        client.p.stdin.write("go\n")
        client.p.stdin.flush()
        cready = client.wait_for(lambda ls: next((json.loads(l) for l in ls
                                                  if '"connected"' in l), None), 20,
                                 "client connected")
        conn = ("10.93.0.1", cready["sport"], "10.93.0.2", sready["port"])

        def rows(p):
            got, _, _ = parse_json_lines(p.lines())
            return [r for _, r in got if (r["src"], r["sport"], r["dst"], r["dport"]) == conn]

        want = {
            self.c: (client.pid, uid_a, id_a),
            self.s: (server.pid, uid_b, id_b),
        }
        for (ns, how), p in inst.items():
            p.wait_for(lambda _, p=p: any(r["pid"] is not None for r in rows(p)), 30,
                       "the owner of the connection in %s (%s)" % (ns, how))
        for p in inst.values():
            p.signal(2)
        for (ns, how), p in inst.items():
            self.assertEqual(p.wait(20), 0, "%s (%s): %s" % (ns, how, p.stderr_text()))

        for (ns, how), p in inst.items():
            pid, uid, cid = want[ns]
            ino = os.stat("/run/netns/" + ns).st_ino
            got = [r for r in rows(p) if r["pid"] is not None]
            self.assertTrue(got, "%s: no attributed row: %s" % (ns, rows(p)))
            for r in got:
                self.assertEqual((r["pid"], r["pod_uid"], r["container_id"], r["cgroup"],
                                  r["netns"]), (pid, uid, cid, cid, ino),
                                 "%s (%s): %s" % (ns, how, r))
            print("pods_test: %s (%s): pid %d pod_uid %s container_id %s netns %d"
                  % (ns, how, pid, uid, cid[:12], ino), flush=True)


    def test_connections_gone_before_a_report_keep_their_pod(self):
        """10 ms connections, opened and closed between two reports: their
        sockets are gone when user space looks, so only the cgroup the
        classifiers recorded (bpf_skb_cgroup_id on lifecycle segments) can
        name their pod; each end's instance must name its own pod. Forced
        off (TCPTRACK_DISABLE=skb-cgroup-id), the same rows have no owner."""
        n = 20
        uid_a, uid_b = str(uuid.uuid4()), str(uuid.uuid4())
        id_a, id_b = os.urandom(32).hex(), os.urandom(32).hex()
        cg_a = self.mkcgroup("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s"
                             ".slice/cri-containerd-%s.scope" % (uid_a.replace("-", "_"), id_a))
        cg_b = self.mkcgroup("kubepods/besteffort/pod%s/%s" % (uid_b, id_b))
        dev = {self.c: "ttpodc0", self.s: "ttpods0"}
        args = ["--interval", "2", "--format", "json"]
        inst = {(ns, off): self.start([netns.binary(), "--netns", ns, "-i", dev[ns], *args],
                                      env=dict(os.environ, TCPTRACK_DISABLE="skb-cgroup-id")
                                      if off else None)
                for ns in (self.c, self.s) for off in (False, True)}
        deadline = time.monotonic() + START_TIMEOUT
        for ns in (self.c, self.s):
            while True:
                out = run(["ip", "netns", "exec", ns, "bpftool", "net", "show", "dev",
                           dev[ns]]).stdout
                mine = [l for l in out.splitlines() if "tcptrack" in l]
                if len(mine) >= 4:  # two instances, ingress and egress each
                    break
                dead = [p.stderr_text() for (n_, _), p in inst.items() if n_ == ns and not p.running()]
                if dead or time.monotonic() > deadline:
                    self.fail("tcptrack not attached to %s in %s: %s" % (dev[ns], ns, dead))
                time.sleep(0.2)

        server = self.start(["ip", "netns", "exec", self.s, sys.executable, "-c", SHORT, "server",
                             "10.93.0.2", "0"], stdin=True)
        client = self.start(["ip", "netns", "exec", self.c, sys.executable, "-c", SHORT, "client",
                             "10.93.0.2", "0", str(n)], stdin=True)
        for p, cg in ((server, cg_b), (client, cg_a)):
            p.wait_for(lambda ls: any('"ready"' in l for l in ls), 20, "peer ready")
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write("%d\n" % p.pid)
        server.p.stdin.write("go\n")
        server.p.stdin.flush()
        sport = server.wait_for(lambda ls: next((json.loads(l)["port"] for l in ls
                                                 if '"port"' in l), None), 20, "server port")
        client.p.stdin.write("%d\n" % sport)
        client.p.stdin.flush()
        done = client.wait_for(lambda ls: next((json.loads(l) for l in ls if '"sports"' in l),
                                               None), 60, "client done")
        self.assertEqual(len(done["sports"]), n)

        def rows(p):
            got, _, _ = parse_json_lines(p.lines())
            return {r["sport"]: r for _, r in got
                    if r["dport"] == sport and r["sport"] in done["sports"]
                    and r["state"] in netns.FINAL_STATES}

        for (ns, off), p in inst.items():
            p.wait_for(lambda _, p=p: len(rows(p)) == n, 30,
                       "the %d connections ended in %s%s" % (n, ns, " (forced off)" if off else ""))
            p.signal(2)
        for (ns, off), p in inst.items():
            self.assertEqual(p.wait(20), 0, "%s: %s" % (ns, p.stderr_text()))
        want = {self.c: (client.pid, uid_a, id_a), self.s: (None, uid_b, id_b)}
        for (ns, off), p in inst.items():
            got = rows(p)
            pid, uid, cid = want[ns]
            owned = [r for r in got.values() if r["pod_uid"] is not None]
            for r in owned:  # whatever found it: the right pod, never the other end's
                self.assertEqual((r["pod_uid"], r["container_id"], r["cgroup"]), (uid, cid, cid), r)
                self.assertIn(r["pid"], (None, client.pid if ns == self.c else server.pid), r)
            if not off:
                self.assertEqual(len(owned), n, "every connection named: %s" % sorted((r["sport"], r["pod_uid"]) for r in got.values()))
            else:  # only what sock_diag caught alive at a report
                self.assertLessEqual(len(owned), n // 2, sorted((r["sport"], r["pod_uid"], r["pid"]) for r in got.values()))
                for r in owned:
                    self.assertIsNotNone(r["pid"], r)
            print("pods_test: %d connections of at most %.0f ms, %s%s: %d named %s, %d with a pid"
                  % (n, done["max_life_s"] * 1000, ns, " forced off" if off else "", len(owned),
                     uid[:8], sum(1 for r in owned if r["pid"] is not None)), flush=True)


# The root-namespace case's names: namespaces ttpeer-PID-a/b, interfaces in the
# root namespace ttpeerXXXXa/b (host sides of the pods' veths) and ttpeerXXXXbr.
PEER_NS = "ttpeer-%d-" % os.getpid()
PEER_IF = "ttpeer%04x" % (os.getpid() & 0xffff)


def remove_peer_leftovers():
    """Deletes, by name, what the root-namespace case may have left."""
    left = []
    for ns in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if ns.startswith(PEER_NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
            left.append(ns)
    for dev in os.listdir("/sys/class/net"):
        if dev.startswith(PEER_IF):
            subprocess.run(["ip", "link", "del", dev], capture_output=True, timeout=20)
            left.append(dev)
    return left


class HostVeths(unittest.TestCase):
    """tcptrack in the root namespace on pods' host-side veths."""
    maxDiff = None
    NET = "10.97.0."  # pods .1 and .2, the bridge (the host) .254
    NET6 = "fd00:97::"  # pods ::1 and ::2
    # Cgroup directories and processes as Pods makes them (ROOT/ttpod-PID-cg/...).
    mkcgroup, remove_cgroups, start = PodsBase.mkcgroup, PodsBase.remove_cgroups, PodsBase.start
    prefix = PREFIX

    def setUp(self):
        self.root = v2_root()
        self.cgdirs = []  # made, outermost first
        self.addCleanup(self.remove_cgroups)
        self.ns = {"a": PEER_NS + "a", "b": PEER_NS + "b"}
        self.host_if = {"a": PEER_IF + "a", "b": PEER_IF + "b"}
        self.bridge = PEER_IF + "br"
        self.addCleanup(self.remove_topology)
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", self.NET + "254/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for k, addr, addr6 in (("a", self.NET + "1/24", self.NET6 + "1/64"),
                               ("b", self.NET + "2/24", self.NET6 + "2/64")):
            ns, hif = self.ns[k], self.host_if[k]
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # As a CNI plugin does: made here, the pod's end moved into its namespace.
            run(["ip", "link", "add", hif, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", hif, "master", self.bridge])
            run(["ip", "link", "set", hif, "up"])
            run(["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"])
            run(["ip", "-n", ns, "-6", "addr", "add", addr6, "dev", "eth0", "nodad"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        deadline = time.monotonic() + 10
        for ns, dev in [(None, h) for h in self.host_if.values()] + \
                [(n, "eth0") for n in self.ns.values()]:
            while "LOWER_UP" not in run((["ip", "-n", ns] if ns else ["ip"])
                                        + ["link", "show", "dev", dev]).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("%s in %s did not come up" % (dev, ns or "root"))
                time.sleep(0.05)

    def remove_topology(self):
        remove_peer_leftovers()  # by name: whatever got made before a failure

    def move(self, p, cg):
        """Moves process p into cgroup directory cg and checks it is there."""
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write("%d\n" % p.pid)
        with open("/proc/%d/cgroup" % p.pid) as f:
            text = f.read()
        self.assertIn("0::" + cg[len(self.root):] + "\n", text, "the peer's v2 cgroup")

    def wait_attached(self, p, ns, devs):
        """Until p's programs are on both hooks of each device (in namespace ns, or
        the root one for None)."""
        deadline = time.monotonic() + START_TIMEOUT
        for dev in devs:
            while True:
                cmd = ["bpftool", "net", "show", "dev", dev]
                out = run((["ip", "netns", "exec", ns] if ns else []) + cmd).stdout
                mine = [l for l in out.splitlines() if "tcptrack" in l]
                if any("ingress" in l for l in mine) and any("egress" in l for l in mine):
                    break
                if not p.running() or time.monotonic() > deadline:
                    self.fail("tcptrack not attached to %s: %s" % (dev, p.stderr_text()))
                time.sleep(0.2)

    def peer(self, ns, role, host, port=0, **kw):
        """A PEER in namespace ns (None: the root one); its ready line."""
        cmd = (["ip", "netns", "exec", ns] if ns else []) + \
            [sys.executable, "-c", PEER, role, host, str(port)]
        p = self.start(cmd, **kw)
        ready = p.wait_for(lambda ls: next((json.loads(l) for l in ls if '"ready"' in l), None),
                           20, "%s ready" % role)
        self.assertEqual(ready["pid"], p.pid, "the peer runs under the pid we started")
        return p, ready

    @staticmethod
    def connect(client):
        client.p.stdin.write("go\n")
        client.p.stdin.flush()
        return client.wait_for(lambda ls: next((json.loads(l) for l in ls
                                                if '"connected"' in l), None), 20,
                               "client connected")

    def test_sockets_behind_host_side_veths(self):
        uid = {k: str(uuid.uuid4()) for k in ("a", "b", "host")}
        cid = {k: os.urandom(32).hex() for k in ("a", "b", "host")}
        cg = {
            "a": self.mkcgroup("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s"
                               ".slice/cri-containerd-%s.scope"
                               % (uid["a"].replace("-", "_"), cid["a"])),
            "b": self.mkcgroup("kubepods/burstable/pod%s/%s" % (uid["b"], cid["b"])),
            # A hostNetwork pod: a kubelet cgroup, the host's namespace.
            "host": self.mkcgroup("kubepods/besteffort/pod%s/%s" % (uid["host"], cid["host"])),
        }
        # From the root namespace, no --netns: one veth by name, one by pattern.
        tt = self.start([netns.binary(), "-i", self.host_if["a"], "-i", PEER_IF + "[b]",
                         "--interval", "0.5", "--format", "json"])
        self.wait_attached(tt, None, self.host_if.values())

        # Pod a's clients to pod b's servers over the bridge (IPv4, IPv6); pod b's
        # client to the host-network server on the bridge's address.
        srv_b, rb = self.peer(self.ns["b"], "server", self.NET + "2")
        srv_b6, rb6 = self.peer(self.ns["b"], "server", self.NET6 + "2")
        srv_h, rh = self.peer(None, "server", self.NET + "254")
        cli_a, _ = self.peer(self.ns["a"], "client", self.NET + "2", rb["port"], stdin=True)
        cli_a6, _ = self.peer(self.ns["a"], "client", self.NET6 + "2", rb6["port"], stdin=True)
        cli_b, _ = self.peer(self.ns["b"], "client", self.NET + "254", rh["port"], stdin=True)
        for p, k in ((srv_b, "b"), (srv_b6, "b"), (cli_a, "a"), (cli_a6, "a"), (cli_b, "b"),
                     (srv_h, "host")):
            self.move(p, cg[k])
        ca, ca6, cb = self.connect(cli_a), self.connect(cli_a6), self.connect(cli_b)
        a_to_b = (self.NET + "1", ca["sport"], self.NET + "2", rb["port"])
        a_to_b6 = (self.NET6 + "1", ca6["sport"], self.NET6 + "2", rb6["port"])
        b_to_host = (self.NET + "2", cb["sport"], self.NET + "254", rh["port"])

        def ino(path):
            return os.stat(path).st_ino

        def comm(p):
            with open("/proc/%d/comm" % p.pid) as f:
                return f.read().strip()

        def owner(p, k, netns_path):
            return {"pid": p.pid, "comm": comm(p), "pod_uid": uid[k], "container_id": cid[k],
                    "cgroup": cid[k], "netns": ino(netns_path)}

        # What each row on each interface must name: the socket behind that veth
        # (its pod's namespace), or the host's own when it is in the root namespace.
        want = {
            (a_to_b, self.host_if["a"]): owner(cli_a, "a", "/proc/%d/ns/net" % cli_a.pid),
            (a_to_b, self.host_if["b"]): owner(srv_b, "b", "/proc/%d/ns/net" % srv_b.pid),
            (a_to_b6, self.host_if["a"]): owner(cli_a6, "a", "/proc/%d/ns/net" % cli_a6.pid),
            (a_to_b6, self.host_if["b"]): owner(srv_b6, "b", "/proc/%d/ns/net" % srv_b6.pid),
            (b_to_host, self.host_if["b"]): owner(srv_h, "host", "/proc/self/ns/net"),
        }
        # The oracle's namespaces are what the test made.
        self.assertEqual(ino("/proc/%d/ns/net" % cli_a.pid), ino("/run/netns/" + self.ns["a"]))
        self.assertEqual(ino("/proc/%d/ns/net" % srv_b.pid), ino("/run/netns/" + self.ns["b"]))
        self.assertNotEqual(ino("/proc/self/ns/net"), ino("/run/netns/" + self.ns["b"]))

        def rows(conn, dev):
            got, _, _ = parse_json_lines(tt.lines())
            return [r for _, r in got if r["iface"] == dev
                    and (r["src"], r["sport"], r["dst"], r["dport"]) == conn]

        tt.wait_for(lambda _: all(any(r["pid"] is not None for r in rows(c, d)) for c, d in want),
                    30, "the owners of every connection on every veth")
        tt.signal(2)
        self.assertEqual(tt.wait(20), 0, tt.stderr_text())
        for (conn, dev), w in want.items():
            got = rows(conn, dev)
            # Looked up once (while the /proc scan waits, rows have none yet), then kept.
            first = next(i for i, r in enumerate(got) if r["pid"] is not None)
            for r in got[first:]:
                self.assertEqual({k: r[k] for k in w}, w, "%s on %s: %s" % (conn, dev, r))
            print("pods_test: %s %d -> %s %d on %s: %s/%d pod_uid %s netns %d"
                  % (conn + (dev, w["comm"], w["pid"], w["pod_uid"], w["netns"])), flush=True)


# Connections with known payloads: the client sends sizes[i][0] bytes, shuts
# its side, and reads to EOF; the server reads to EOF, sends sizes[i][1] bytes
# and closes. The client opens them all, says so, and sends only on a line on
# stdin (once tcptrack knows the server's owner: a connection's owner is
# looked up while it is open, and on a busy machine the /proc rescan it may
# need comes seconds apart, so all are opened at once).
EXACT = r"""
import json, os, socket, sys
role, host, port, sizes = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
short = json.loads(sys.argv[5])  # then these, one by one, each closed at once
def drain(c):
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            return n
        n += len(b)
if role == "server":
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    sys.stdin.readline()  # in its pod's cgroup now: a socket keeps the one it is born in
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, port))
    l.listen(4)
    print(json.dumps({"port": l.getsockname()[1]}), flush=True)
    conns = [l.accept()[0] for _ in sizes]
    for i, (c, (up, down)) in enumerate(zip(conns, sizes)):
        got = drain(c)
        c.sendall(b"s" * down)
        c.close()
        print(json.dumps({"served": i, "got": got}), flush=True)
    for i, (up, down) in enumerate(short):
        c, _ = l.accept()
        got = drain(c)
        c.sendall(b"s" * down)
        c.close()
        print(json.dumps({"served_short": i, "got": got}), flush=True)
    sys.stdin.readline()  # stays (and stays in its pod) until told
else:
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    sys.stdin.readline()
    conns = [socket.create_connection((host, port), timeout=20) for _ in sizes]
    for i, c in enumerate(conns):
        print(json.dumps({"connected": i, "sport": c.getsockname()[1]}), flush=True)
    sys.stdin.readline()
    for i, (c, (up, down)) in enumerate(zip(conns, sizes)):
        c.sendall(b"c" * up)
        c.shutdown(socket.SHUT_WR)
        got = drain(c)
        c.close()
        print(json.dumps({"done": i, "got": got}), flush=True)
    sports = []
    for up, down in short:
        c = socket.create_connection((host, port), timeout=20)
        sports.append(c.getsockname()[1])
        c.sendall(b"c" * up)
        c.shutdown(socket.SHUT_WR)
        got = drain(c)
        c.close()
        assert got == down, (got, down)
    print(json.dumps({"short": sports}), flush=True)
    sys.stdin.readline()
"""


def scrape(port):
    """{(name, frozenset(labels)): value} of tcptrack's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        if not m or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out, text


class PodSeries(PodsBase):
    prefix = SERIES_PREFIX

    def test_per_pod_counters_match_what_the_sockets_sent(self):
        uid_a, uid_b = str(uuid.uuid4()), str(uuid.uuid4())
        id_a, id_b = os.urandom(32).hex(), os.urandom(32).hex()
        cg_a = self.mkcgroup("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s"
                             ".slice/cri-containerd-%s.scope" % (uid_a.replace("-", "_"), id_a))
        cg_b = self.mkcgroup("kubepods/burstable/pod%s/%s" % (uid_b, id_b))
        # (client -> server, server -> client) payload bytes of each connection.
        sizes = [(12345, 67890), (1, 300000), (250000, 0)]
        # Then short ones, gone before a report sees them open (usually): their
        # pod comes from the cgroup the classifiers recorded.
        short = [(100 + i, 1000 + 7 * i) for i in range(10)]

        # From the host, into the server's namespace: the server's sockets are
        # attributed there, the client's (in the other namespace) are not.
        node = SERIES_PREFIX + "node"
        with_port, without_port = netns.free_port(), netns.free_port()
        base = [netns.binary(), "--netns", self.s, "-i", "ttpods0", "--interval", "0.5",
                "--node-name", node]
        pods = self.start(base + ["--format", "json", "--prometheus",
                                  "127.0.0.1:%d" % with_port, "--prometheus-pods"])
        plain = self.start(base + ["--format", "none", "--prometheus",
                                   "127.0.0.1:%d" % without_port])
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            out = run(["ip", "netns", "exec", self.s, "bpftool", "net", "show", "dev",
                       "ttpods0"]).stdout
            mine = [l for l in out.splitlines() if "tcptrack" in l]
            if sum("ingress" in l for l in mine) >= 2 and sum("egress" in l for l in mine) >= 2:
                break
            for p in (pods, plain):
                if not p.running():
                    self.fail("tcptrack exited: %s" % p.stderr_text())
            if time.monotonic() > deadline:
                self.fail("two tcptracks not attached to ttpods0: %s" % out)
            time.sleep(0.2)

        server = self.start(["ip", "netns", "exec", self.s, sys.executable, "-c", EXACT, "server",
                             "10.93.0.2", "0", json.dumps(sizes), json.dumps(short)], stdin=True)
        server.wait_for(lambda ls: any('"ready"' in l for l in ls), 20, "server ready")
        with open(os.path.join(cg_b, "cgroup.procs"), "w") as f:
            f.write("%d\n" % server.pid)

        def tell(p):
            p.p.stdin.write("go\n")
            p.p.stdin.flush()

        # Its listener (and so the sockets it accepts) born in pod B's cgroup.
        tell(server)
        sready = server.wait_for(lambda ls: next((json.loads(l) for l in ls if '"port"' in l),
                                                 None), 20, "server listening")
        client = self.start(["ip", "netns", "exec", self.c, sys.executable, "-c", EXACT, "client",
                             "10.93.0.2", str(sready["port"]), json.dumps(sizes), json.dumps(short)],
                            stdin=True)
        client.wait_for(lambda ls: any('"ready"' in l for l in ls), 20, "client ready")
        with open(os.path.join(cg_a, "cgroup.procs"), "w") as f:
            f.write("%d\n" % client.pid)

        def rows_of(sport):
            got, _, _ = parse_json_lines(pods.lines())
            return [r for _, r in got if (r["src"], r["sport"], r["dst"], r["dport"])
                    == ("10.93.0.1", sport, "10.93.0.2", sready["port"])]

        tell(client)
        sports = [client.wait_for(lambda ls, i=i: next((json.loads(l)["sport"] for l in ls
                                                        if '"connected": %d,' % i in l), None),
                                  20, "connection %d open" % i) for i in range(len(sizes))]
        # Their server ends attributed to pod B while open (a busy machine
        # rescans /proc up to tens of seconds apart), then the data.
        pods.wait_for(lambda _: all(any(r["pod_uid"] == uid_b for r in rows_of(sp))
                                    for sp in sports), 90, "connections attributed to pod B")
        tell(client)
        for i in range(len(sizes)):
            done = client.wait_for(lambda ls, i=i: next((json.loads(l) for l in ls
                                                         if '"done": %d,' % i in l), None),
                                   30, "connection %d done" % i)
            self.assertEqual(done["got"], sizes[i][1])
        for i in range(len(sizes)):
            served = server.wait_for(lambda ls, i=i: next((json.loads(l) for l in ls
                                                           if '"served": %d,' % i in l), None),
                                     20, "connection %d served" % i)
            self.assertEqual(served["got"], sizes[i][0])
        short_sports = client.wait_for(lambda ls: next((json.loads(l)["short"] for l in ls
                                                        if '"short"' in l), None),
                                       30, "the short connections done")
        every = list(zip(sports, sizes)) + list(zip(short_sports, short))

        # tcptrack's own final rows (wire bytes, the owner) of every connection.
        def finals(_):
            got = {}
            for sp, _ in every:
                ends = [r for r in rows_of(sp) if r["state"] in ("CLOSED", "RESET")]
                if not ends:
                    return None
                got[sp] = ends[-1]
            return got
        final = pods.wait_for(finals, 30, "final rows of the connections")
        for sp, size in every:
            r = final[sp]
            self.assertEqual((r["fwd_payload"], r["rev_payload"]), tuple(size), r)
            self.assertEqual(r["pod_uid"], uid_b, "the server pod's connection: %s" % r)
        print("pods_test: %d short connections, %d named by their cgroup only (no pid)"
              % (len(short), sum(final[sp]["pid"] is None for sp in short_sports)), flush=True)

        up = sum(u for _, (u, _) in every)
        down = sum(d for _, (_, d) in every)
        nl = ("node", node)
        want = {
            ("tcptrack_pod_bytes_total", frozenset({nl, ("pod_uid", uid_b), ("direction", "received"),
                                                    ("kind", "payload")})): up,
            ("tcptrack_pod_bytes_total", frozenset({nl, ("pod_uid", uid_b), ("direction", "sent"),
                                                    ("kind", "payload")})): down,
            ("tcptrack_pod_bytes_total", frozenset({nl, ("pod_uid", uid_b), ("direction", "received"),
                                                    ("kind", "wire")})):
                sum(r["fwd_bytes"] for r in final.values()),
            ("tcptrack_pod_bytes_total", frozenset({nl, ("pod_uid", uid_b), ("direction", "sent"),
                                                    ("kind", "wire")})):
                sum(r["rev_bytes"] for r in final.values()),
            ("tcptrack_pod_connections_opened_total", frozenset({nl, ("pod_uid", uid_b)})):
                len(every),
            ("tcptrack_pod_connections_closed_total", frozenset({nl, ("pod_uid", uid_b)})):
                len(every),
            ("tcptrack_pod_connections_dropped_total", frozenset({nl})): 0,
        }
        deadline = time.monotonic() + 20
        while True:
            got, text = scrape(with_port)
            mine = {k: got.get(k) for k in want}
            if mine == want:
                break
            if time.monotonic() > deadline:
                self.assertEqual(mine, want, text)
            time.sleep(0.25)
        # Pod B only: the server's end is the one shown (the client's SYN came in).
        uids = {dict(k[1]).get("pod_uid") for k in got} - {None}
        self.assertEqual(uids, {uid_b}, text)
        for k, v in sorted(want.items()):
            print("pods_test: %s{%s} %d" % (k[0], ",".join("%s=%s" % x for x in sorted(k[1])
                                                           if x[0] != "node"), v), flush=True)

        # Without the flag: the same traffic, no pod series at all.
        deadline = time.monotonic() + 20
        while True:
            got, text = scrape(without_port)
            key = ("tcptrack_bytes_total", frozenset({nl, ("interface", "ttpods0"),
                                                      ("direction", "client_to_server"),
                                                      ("kind", "payload")}))
            if got.get(key) == up:
                break
            if time.monotonic() > deadline:
                self.fail("the instance without --prometheus-pods never counted %d: %s"
                          % (up, text))
            time.sleep(0.25)
        self.assertNotIn("pod_uid", text)
        self.assertNotIn("tcptrack_pod_", text)

        for p in (pods, plain):
            p.signal(2)
        for p in (pods, plain):
            self.assertEqual(p.wait(20), 0, p.stderr_text())


def tearDownModule():
    """What any prefix left."""
    left = remove_peer_leftovers()
    netns.tear_down_module()
    # PodSeries' namespaces, by name.
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in [l.split()[0] for l in out.splitlines() if l.startswith(SERIES_PREFIX)]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        left.append(ns)
    if left:
        raise AssertionError("left behind by the tests: %s" % left)



if __name__ == "__main__":
    if os.geteuid() == 0 and v2_root() is None:
        print("SKIP: pods_test needs a cgroup v2 hierarchy (/sys/fs/cgroup/unified or /sys/fs/cgroup)")
        sys.exit(77)
    sys.exit(netns.main("pods_test", sys.modules[__name__]))
