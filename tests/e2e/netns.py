# SPDX-License-Identifier: MIT
"""Shared helpers for the tcptrack end-to-end tests (e2e_test.py,
lifecycle_test.py, safety_test.py):

  * Proc: a background process whose stdout/stderr lines are collected.
  * Topology: one client and one server namespace joined by one or more veth
    pairs (pair k: client "<tag>c<k>" 10.77.<k>.1 / fd00:77:<k>::1, server
    "<tag>s<k>" 10.77.<k>.2 / fd00:77:<k>::2).
  * in_netns(): a context manager that moves the calling thread into a named
    network namespace (setns) so the test itself can create sockets on either
    side and drive TCP byte for byte.
  * parse_json_lines(): tcptrack's NDJSON output as rows and summaries.
  * Base: a unittest.TestCase with process/attachment/snapshot helpers.
  * main(): root/tool checks (exit 77 when not root) and unittest runner.
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TRAFFIC = os.path.join(HERE, "traffic.py")
CHURN = os.path.join(HERE, "churn.py")
BINARY = os.path.normpath(os.path.join(HERE, "..", "..", "build", "tcptrack"))

ATTACH_TIMEOUT = 15.0
CMD_TIMEOUT = 20.0
FINAL_STATES = {"CLOSED", "RESET"}

PREFIX = "ttx-%d-" % os.getpid()   # replaced by set_prefix() in each test file
_topo_counter = itertools.count(1)


def set_prefix(p):
    global PREFIX
    PREFIX = p


def binary():
    return BINARY


def run(cmd, timeout=CMD_TIMEOUT, check=True, **kw):
    """subprocess.run with a timeout, text output; raises with stderr on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> exit %d\nstdout: %s\nstderr: %s"
                           % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# ------------------------------------------------------------------ processes


class Proc:
    """A background process whose stdout/stderr lines are collected by threads."""

    def __init__(self, cmd, stdin=False, hold_stdout=False, **kw):
        """hold_stdout: nothing reads stdout until release_stdout() (a reader
        that stalls: the pipe fills and tcptrack blocks writing to it)."""
        self.cmd = cmd
        self.p = subprocess.Popen(
            cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, **kw)
        self.out = []
        self.err = []
        self.cv = threading.Condition()
        self.held = threading.Event()
        if not hold_stdout:
            self.held.set()
        self.threads = [
            threading.Thread(target=self._reader, args=(self.p.stdout, self.out), daemon=True),
            threading.Thread(target=self._reader, args=(self.p.stderr, self.err), daemon=True),
        ]
        for t in self.threads:
            t.start()

    @property
    def pid(self):
        return self.p.pid

    def release_stdout(self):
        self.held.set()

    def _reader(self, stream, sink):
        if sink is self.out:
            self.held.wait()
        for line in stream:
            with self.cv:
                sink.append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def lines(self):
        with self.cv:
            return list(self.out)

    def err_lines(self):
        with self.cv:
            return list(self.err)

    def stderr_text(self):
        with self.cv:
            return "\n".join(self.err)

    def running(self):
        return self.p.poll() is None

    def wait_for(self, pred, timeout, what, stream="out"):
        """Waits until pred(lines of stdout, or stderr) is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        src = self.out if stream == "out" else self.err
        with self.cv:
            while True:
                v = pred(list(src))
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "timed out after %.1fs waiting for %s\ncmd: %s\nstdout (last 20): %s\nstderr: %s"
                        % (timeout, what, " ".join(self.cmd), self.out[-20:], "\n".join(self.err)))
                if self.p.poll() is not None and all(not t.is_alive() for t in self.threads):
                    v = pred(list(src))
                    if v:
                        return v
                    raise AssertionError(
                        "process exited (%s) while waiting for %s\ncmd: %s\nstdout (last 20): %s\nstderr: %s"
                        % (self.p.returncode, what, " ".join(self.cmd), self.out[-20:], "\n".join(self.err)))
                self.cv.wait(min(left, 0.1))

    def wait(self, timeout):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %.0fs\nstdout (last 20): %s\nstderr: %s"
                                 % (" ".join(self.cmd), timeout, self.out[-20:], self.stderr_text()))
        for t in self.threads:
            t.join(5)
        return rc

    def signal(self, sig):
        if self.running():
            self.p.send_signal(sig)

    def kill(self):
        """Cleanup: SIGKILL this very process (by its PID) if it still runs."""
        self.held.set()
        if self.p.poll() is None:
            try:
                self.p.kill()
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for s in (self.p.stdin, self.p.stdout, self.p.stderr):
            if s:
                try:
                    s.close()
                except OSError:
                    pass


# ------------------------------------------------------------------ namespaces

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


@contextlib.contextmanager
def in_netns(name):
    """Runs the body (this thread only) inside network namespace `name`.
    Sockets created inside keep that namespace after the block ends."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/%s" % name, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


class Topology:
    """A client and a server namespace joined by `pairs` veth pairs."""

    def __init__(self, pairs=1, tag="tt"):
        n = next(_topo_counter)
        self.cns = "%s%d-c" % (PREFIX, n)
        self.sns = "%s%d-s" % (PREFIX, n)
        self.pairs = pairs
        self.cifs = ["%sc%d" % (tag, k) for k in range(pairs)]
        self.sifs = ["%ss%d" % (tag, k) for k in range(pairs)]
        self.created = []

    @property
    def cif(self):
        return self.cifs[0]

    @property
    def sif(self):
        return self.sifs[0]

    def addr(self, family, side, pair=0):
        idx = 1 if side == "client" else 2
        if family == "ipv4":
            return "10.77.%d.%d" % (pair + 1, idx)
        return "fd00:77:%d::%d" % (pair + 1, idx)

    def client_ip(self, family, pair=0):
        return self.addr(family, "client", pair)

    def server_ip(self, family, pair=0):
        return self.addr(family, "server", pair)

    def setup(self):
        for ns in (self.cns, self.sns):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
        for ns in (self.cns, self.sns):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for k in range(self.pairs):
            cif, sif = self.cifs[k], self.sifs[k]
            run(["ip", "-n", self.cns, "link", "add", cif, "type", "veth",
                 "peer", "name", sif, "netns", self.sns])
            for ns, ifname, side in ((self.cns, cif, "client"), (self.sns, sif, "server")):
                run(["ip", "-n", ns, "addr", "add", self.addr("ipv4", side, k) + "/24", "dev", ifname])
                run(["ip", "-n", ns, "-6", "addr", "add", self.addr("ipv6", side, k) + "/64",
                     "dev", ifname, "nodad"])
                run(["ip", "-n", ns, "link", "set", ifname, "up"])
        for k in range(self.pairs):
            self.wait_carrier(k)

    def wait_carrier(self, k=0, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            ok = all("LOWER_UP" in run(["ip", "-n", ns, "link", "show", "dev", i]).stdout
                     for ns, i in ((self.cns, self.cifs[k]), (self.sns, self.sifs[k])))
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("veth pair %d did not come up" % k)
            time.sleep(0.05)

    def teardown(self):
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT)
        self.created = []

    def ns_of(self, side):
        return self.cns if side == "client" else self.sns

    def if_of(self, side, pair=0):
        return self.cifs[pair] if side == "client" else self.sifs[pair]


# ------------------------------------------------------------------ sockets


def family_const(family):
    return socket.AF_INET if family == "ipv4" else socket.AF_INET6


def recv_exact(sock, n):
    got = 0
    while got < n:
        b = sock.recv(min(65536, n - got))
        if not b:
            raise AssertionError("EOF after %d of %d bytes" % (got, n))
        got += len(b)
    return got


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port nothing listens on now (TCP, or kind=socket.SOCK_DGRAM)."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_to_eof(sock):
    total = 0
    while True:
        b = sock.recv(65536)
        if not b:
            return total
        total += len(b)


class Pair:
    """One TCP connection whose both ends belong to the test process: the
    listening/accepted socket in the server namespace, the connecting one in
    the client namespace. Every byte is sent and received explicitly."""

    def __init__(self, topo, family, lsock, port, bind_port=0, reuse=False, pair=0):
        self.family = family
        with in_netns(topo.cns):
            c = socket.socket(family_const(family), socket.SOCK_STREAM)
        c.settimeout(20)
        if reuse:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if bind_port:
            c.bind((topo.client_ip(family, pair), bind_port))
        c.connect((topo.server_ip(family, pair), port))
        s, peer = lsock.accept()
        s.settimeout(20)
        self.c, self.s = c, s
        self.cport = c.getsockname()[1]
        assert peer[1] == self.cport, (peer, self.cport)
        self.sent_c = 0   # client -> server payload bytes
        self.sent_s = 0   # server -> client payload bytes

    def c2s(self, n):
        self.c.sendall(b"c" * n)
        recv_exact(self.s, n)
        self.sent_c += n

    def s2c(self, n):
        self.s.sendall(b"s" * n)
        recv_exact(self.c, n)
        self.sent_s += n

    @staticmethod
    def _close_from(first, second):
        """`first` sends its FIN, `second` reads to EOF and answers with its own."""
        first.shutdown(socket.SHUT_WR)
        assert read_to_eof(second) == 0
        second.close()
        assert read_to_eof(first) == 0
        first.close()

    def close_clean(self):
        """Client FIN first, then server FIN; both read to EOF."""
        self._close_from(self.c, self.s)

    def close_server_first(self):
        """Server FIN first (TIME_WAIT ends up on the server side)."""
        self._close_from(self.s, self.c)

    @staticmethod
    def _abort(first, second):
        """`first` aborts with SO_LINGER {1, 0}: a RST instead of a FIN."""
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        first.close()
        try:
            second.settimeout(5)
            second.recv(1)
        except OSError:
            pass
        second.close()

    def close_rst(self):
        """Client aborts: a RST from the client."""
        self._abort(self.c, self.s)

    def server_rst(self):
        """Server aborts: a RST from the server."""
        self._abort(self.s, self.c)

    def abandon(self):
        for x in (self.c, self.s):
            try:
                x.close()
            except OSError:
                pass


def listen(topo, family, port=0, pair=0, backlog=128):
    with in_netns(topo.sns):
        l = socket.socket(family_const(family), socket.SOCK_STREAM)
    try:
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((topo.server_ip(family, pair), port))
        l.listen(backlog)
    except OSError:
        l.close()
        raise
    l.settimeout(20)
    return l, l.getsockname()[1]


# ------------------------------------------------------------------ output parsing


def parse_json_lines(lines):
    """Returns (rows, summaries, bad_lines) from NDJSON output; rows and summaries
    are (line index, object)."""
    rows, summaries, bad = [], [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(obj, dict):
            bad.append(line)
        elif obj.get("type") == "summary":
            summaries.append((i, obj))
        else:
            rows.append((i, obj))
    return rows, summaries, bad


# ------------------------------------------------------------------ base class


class Base(unittest.TestCase):
    maxDiff = None
    PAIRS = 1
    SIDE = "server"   # the side snapshot() and assert_restored() look at

    def setUp(self):
        self.fresh_topology()

    def fresh_topology(self):
        """New namespaces for self.topo (torn down at cleanup): one failing cycle,
        which may leave filters behind when its process is killed, cannot taint
        the next one."""
        self.topo = Topology(self.PAIRS)
        self.addCleanup(self.topo.teardown)
        self.topo.setup()

    def start(self, cmd, stdin=False, **kw):
        p = Proc(cmd, stdin=stdin, **kw)
        self.addCleanup(p.kill)
        return p

    def ns_cmd(self, side, *args):
        return ["ip", "netns", "exec", self.topo.ns_of(side)] + list(args)

    def start_server(self, family, script=TRAFFIC, *args):
        """Starts `script` (traffic.py or churn.py) in server mode on the server side;
        returns (process, port) once it printed its ready line."""
        name = os.path.splitext(os.path.basename(script))[0]
        p = self.start(self.ns_cmd("server", sys.executable, script, "server",
                                   "--bind", self.topo.server_ip(family), *args))
        ready = p.wait_for(lambda ls: next((json.loads(l) for l in ls if '"ready"' in l), None),
                           10, "%s server ready" % name)
        return p, ready["port"]

    def start_tcptrack(self, side, *args, ifaces=None):
        ifs = ifaces if ifaces is not None else [self.topo.if_of(side)]
        cmd = self.ns_cmd(side, BINARY)
        for i in ifs:
            cmd += ["-i", i]
        return self.start(cmd + list(args))

    def listen(self, family, port=0, pair=0, backlog=128):
        l, port = listen(self.topo, family, port, pair, backlog)
        self.addCleanup(l.close)
        return l, port

    def pair(self, family, lsock, port, **kw):
        p = Pair(self.topo, family, lsock, port, **kw)
        self.addCleanup(p.abandon)
        return p

    def tcptrack_lines(self, side, iface=None):
        iface = iface or self.topo.if_of(side)
        out = run(self.ns_cmd(side, "bpftool", "net", "show", "dev", iface)).stdout
        return [l for l in out.splitlines() if "tcptrack" in l]

    def wait_attached(self, proc, side, timeout=ATTACH_TIMEOUT, iface=None):
        """Polls bpftool until a tcptrack program is attached; returns its lines.
        Waits for both an ingress and an egress program (up to 2 s after the first
        one shows up) so no traffic is sent while only one direction is watched."""
        deadline = time.monotonic() + timeout
        first = None
        while True:
            lines = self.tcptrack_lines(side, iface)
            if lines:
                both = any("ingress" in l for l in lines) and any("egress" in l for l in lines)
                first = first or time.monotonic()
                if both or time.monotonic() - first > 2:
                    return lines
            if not proc.running():
                rc = proc.wait(5)
                self.fail("tcptrack exited (%s) before attaching\ncmd: %s\nstdout: %s\nstderr: %s"
                          % (rc, " ".join(proc.cmd), proc.lines()[-20:], proc.stderr_text()))
            if time.monotonic() > deadline:
                self.fail("tcptrack not attached to %s after %.0fs (bpftool net show shows no "
                          "tcptrack program)\nstderr: %s"
                          % (iface or self.topo.if_of(side), timeout, proc.stderr_text()))
            time.sleep(0.05)

    def stop(self, proc, sig=signal.SIGINT, timeout=10):
        proc.signal(sig)
        return proc.wait(timeout)

    def qdiscs(self, side, iface=None):
        iface = iface or self.topo.if_of(side)
        return run(self.ns_cmd(side, "tc", "qdisc", "show", "dev", iface)).stdout

    def filters(self, side, iface=None):
        iface = iface or self.topo.if_of(side)
        out = []
        for hook in ("ingress", "egress"):
            p = run(self.ns_cmd(side, "tc", "filter", "show", "dev", iface, hook), check=False)
            out.append("%s: rc=%d %s" % (hook, p.returncode, p.stdout))
        return "\n".join(out)

    def snapshot(self, iface=None):
        """What is attached to SIDE's interface: qdiscs, tc filters, tcptrack programs."""
        return {"qdisc": self.qdiscs(self.SIDE, iface), "filters": self.filters(self.SIDE, iface),
                "tcptrack": self.tcptrack_lines(self.SIDE, iface)}

    def assert_restored(self, before, label, iface=None):
        """After tcptrack exited, SIDE's interface is back to the snapshot `before`."""
        # bpf_link release is synchronous on last close, but allow a moment.
        deadline = time.monotonic() + 2
        while True:
            after = self.snapshot(iface)
            if after == before or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(after["tcptrack"], [], "%s: tcptrack programs still attached" % label)
        self.assertEqual(after["qdisc"], before["qdisc"], "%s: qdiscs changed" % label)
        self.assertEqual(after["filters"], before["filters"], "%s: tc filters changed" % label)

    def wait_rows(self, proc, pred, timeout, what):
        """Waits until pred(rows, summaries) is truthy on the JSON output."""
        def p(lines):
            rows, summaries, _ = parse_json_lines(lines)
            return pred([r for _, r in rows], summaries)
        return proc.wait_for(p, timeout, what)


# ------------------------------------------------------------------ main


def leftover_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         timeout=CMD_TIMEOUT).stdout
    return [l.split()[0] for l in out.splitlines() if l.startswith(PREFIX)]


def tear_down_module():
    left = leftover_namespaces()
    for ns in left:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT)
    if left:
        raise AssertionError("namespaces left behind by the tests: %s" % left)


_features = None


def features():
    """What `tcptrack --check` reports: feature name -> (available, reason).
    Honours $TCPTRACK_DISABLE, so a forced fallback shows as unavailable."""
    global _features
    if _features is None:
        p = subprocess.run([BINARY, "--check"], capture_output=True, text=True,
                           timeout=CMD_TIMEOUT)
        _features = {}
        for line in p.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1] in ("yes", "no"):
                _features[parts[0]] = (parts[1] == "yes", parts[2] if len(parts) > 2 else "")
    return _features


def has_feature(name):
    return features().get(name, (False, ""))[0]


def require(testcase, name):
    """Skips the test, saying why, when this kernel (or $TCPTRACK_DISABLE) lacks a feature."""
    ok, why = features().get(name, (False, "not reported by tcptrack --check"))
    if not ok:
        testcase.skipTest("%s unavailable here: %s" % (name, why))


def sanitizer_logs():
    """Sends the sanitizer reports of every tcptrack this run starts (a build
    with -DTCPTRACK_SANITIZE=ON; other binaries ignore the variables) to files
    in a fresh directory, whatever captured or discarded its stderr (tmux,
    pipes, killed processes): main() fails the suite if any was written.
    Returns the directory."""
    d = tempfile.mkdtemp(prefix="tt-sanitizer-")
    os.chmod(d, 0o1777)  # the unprivileged runs (multi_instance) write here too
    for var, tag in (("ASAN_OPTIONS", "asan"), ("UBSAN_OPTIONS", "ubsan")):
        prev = os.environ.get(var)
        os.environ[var] = (prev + ":" if prev else "") + "log_path=" + os.path.join(d, tag)
    return d


def sanitized():
    """Whether the tcptrack under test is a sanitizer build (links the ASan runtime)."""
    p = subprocess.run(["ldd", BINARY], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    return "libasan" in p.stdout


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "AddressSanitizer:DEADLYSIGNAL", "SUMMARY: ")


def sanitizer_reports(d):
    """The reports written to sanitizer_logs()'s directory, as one text ("" if none);
    a file without an error in it (statistics) is not one."""
    out = []
    for f in sorted(os.listdir(d)):
        with open(os.path.join(d, f), errors="replace") as fh:
            text = fh.read()
        if any(m in text for m in SANITIZER_MARKERS):
            out.append("==== %s\n%s" % (f, text))
    return "\n".join(out)


def main(name, module):
    global BINARY
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--binary", default=BINARY)
    args, rest = ap.parse_known_args()
    BINARY = os.path.abspath(args.binary)

    if os.geteuid() != 0:
        print("SKIP: %s needs root (network namespaces, BPF)" % name)
        return 77
    for tool in ("ip", "tc", "bpftool"):
        if shutil.which(tool) is None:
            print("SKIP: %s needs %s" % (name, tool))
            return 77
    if not os.access(BINARY, os.X_OK):
        print("%s: tcptrack binary not found or not executable: %s (use --binary)" % (name, BINARY),
              file=sys.stderr)
        return 1
    disabled = os.environ.get("TCPTRACK_DISABLE")
    if disabled:
        print("%s: forced fallbacks: TCPTRACK_DISABLE=%s" % (name, disabled), flush=True)
    san_dir = sanitizer_logs()
    prog = unittest.main(module=module, argv=[sys.argv[0]] + rest, exit=False)
    for case, why in prog.result.skipped:
        print("SKIPPED %s: %s" % (case.id(), why))
    reports = sanitizer_reports(san_dir)
    shutil.rmtree(san_dir, ignore_errors=True)
    if reports:
        print("%s: FAILED: sanitizer reports from tcptrack:\n%s" % (name, reports),
              file=sys.stderr, flush=True)
        return 1
    return 0 if prog.result.wasSuccessful() else 1
