# SPDX-License-Identifier: MIT
"""End-to-end tests of the interactive view (ncurses), driven through tmux.

tcptrack runs in a detached tmux session of a fixed size (its own tmux
server, socket and session named tt-tui-*), watching the server end of a veth
pair in its own namespaces while the test drives real TCP connections. Keys
go in with `tmux send-keys`; what the terminal shows comes back with
`tmux capture-pane -p`. Every wait polls the screen against a deadline.

Usage: tui_test.py [--binary PATH] [unittest args]
Needs root and tmux; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import run  # noqa: E402

PREFIX = "tt-tui-%d-" % os.getpid()
netns.set_prefix(PREFIX)

HMS = re.compile(r"^(\d\d:\d\d:\d\d)  ")
WIDTH, HEIGHT = 120, 30
INTERVAL = "2"      # long enough to tell a key's effect from the next report's
SCREEN_TIMEOUT = 15.0


class Tmux:
    """One tmux server (its own socket) with one detached session."""

    def __init__(self, name, width, height, command):
        self.name = name
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]
        run(self.base + ["new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                         command])

    def tmux(self, *args, check=True):
        return run(self.base + list(args), check=check)

    def keys(self, *keys):
        """Keys as tmux names them ("Enter", "Escape") or literal text with -l."""
        self.tmux("send-keys", "-t", self.name, *keys)

    def text(self, s):
        self.tmux("send-keys", "-t", self.name, "-l", s)

    def screen(self):
        out = self.tmux("capture-pane", "-p", "-t", self.name).stdout
        return out[:-1].split("\n") if out.endswith("\n") else out.split("\n")

    def size(self):
        out = self.tmux("display-message", "-p", "-t", self.name,
                        "#{pane_width} #{pane_height}").stdout.split()
        return int(out[0]), int(out[1])

    def resize(self, width, height):
        self.tmux("resize-window", "-t", self.name, "-x", str(width), "-y", str(height))

    def kill(self):
        path = self.tmux("display-message", "-p", "#{socket_path}", check=False).stdout.strip()
        self.tmux("kill-server", check=False)
        # The server does not always remove its socket file: leave nothing behind.
        if path.endswith("/" + self.name):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


class TuiTest(netns.Base):
    SIDE = "server"

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix=PREFIX)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sessions = 0

    # --- helpers ----------------------------------------------------------

    def start_view(self, *args, width=WIDTH, height=HEIGHT, env=None, pipe_to=None):
        """tcptrack on the server side in a new tmux session (stdout into
        `pipe_to` through cat if given). Its pid goes to self.pid_file, its
        stderr to self.err_file, the terminal's settings after it exited to
        self.stty_file, then its exit code to self.rc_file."""
        self.sessions += 1
        name = "%s%d" % (PREFIX, self.sessions)
        f = {k: os.path.join(self.tmp, "%s%d" % (k, self.sessions))
             for k in ("rc", "err", "pid", "stty")}
        self.rc_file, self.err_file, self.pid_file, self.stty_file = (
            f["rc"], f["err"], f["pid"], f["stty"])
        q = {k: shlex.quote(v) for k, v in f.items()}
        # tmux sets TERM in the pane itself: an env override goes on the command line.
        cmd = ["env"] + ["%s=%s" % kv for kv in (env or {}).items()] + self.ns_cmd(
            "server", netns.BINARY, "-i", self.topo.sif, "--interval", INTERVAL, *args)
        cmd = " ".join(shlex.quote(c) for c in cmd)
        # exec: `ip netns exec` execs too, so the pid written is tcptrack's.
        script = ["sh -c %s%s" % (shlex.quote("echo $$ >%s; exec %s 2>%s" % (q["pid"], cmd, q["err"])),
                                  " | cat >%s" % shlex.quote(pipe_to) if pipe_to else ""),
                  "rc=${PIPESTATUS[0]}",
                  "stty -a >%s" % q["stty"],
                  "echo $rc >%s" % q["rc"],
                  "sleep 600"]
        path = os.path.join(self.tmp, "run%d.sh" % self.sessions)
        with open(path, "w") as fh:
            fh.write("\n".join(script) + "\n")
        t = Tmux(name, width, height, "bash %s" % shlex.quote(path))
        self.addCleanup(t.kill)
        return t

    def wait_screen(self, t, pred, what, timeout=SCREEN_TIMEOUT):
        """Polls the pane until pred(lines) is truthy; returns that value."""
        deadline = time.monotonic() + timeout
        while True:
            lines = t.screen()
            got = pred(lines)
            if got:
                return got
            if os.path.exists(self.rc_file) or time.monotonic() > deadline:
                self.fail("%s: not on screen after %.0fs (tcptrack exit: %s)\nscreen:\n%s\nstderr: %s"
                          % (what, timeout, self.exit_code(), "\n".join(lines), self.stderr()))
            time.sleep(0.05)

    def exit_code(self):
        try:
            with open(self.rc_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stderr(self):
        try:
            with open(self.err_file) as f:
                return f.read()
        except OSError:
            return ""

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while self.exit_code() is None:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return self.exit_code()

    def fresh_report(self, t):
        """Waits for the next report to show; returns its HH:MM:SS. The one
        after it is then an interval away."""
        shown = self.report_time(t.screen())
        lines = self.wait_screen(t, lambda ls: ls if self.report_time(ls) not in (None, shown)
                                 else None, "a new report")
        return self.report_time(lines)

    def wait_prompt(self, t, shown, pred, what):
        """Like wait_screen, but the change must come before the next report
        (the one at HH:MM:SS `shown` still on screen): keys and resizes redraw at once."""
        lines = self.wait_screen(t, lambda ls: ls if pred(ls) else None, what,
                                 timeout=0.8 * float(INTERVAL))
        self.assertEqual(self.report_time(lines), shown, "%s waited for a report" % what)
        return lines

    @staticmethod
    def report_time(lines):
        """HH:MM:SS of the report header (the line under the title bar)."""
        m = HMS.match(lines[1]) if len(lines) > 1 else None
        return m.group(1) if m else None

    def row_of(self, lines, pair):
        """Index of the connection's row on screen, or None."""
        conn = "10.77.1.1:%d -> 10.77.1.2:%d" % (pair.cport, pair.port)
        for i, line in enumerate(lines):
            if line.startswith(conn + " "):
                return i
        return None

    def two_connections(self):
        """A: 400 KB in bulk (more bytes); B: 300 small round trips (more packets)."""
        la, pa = self.listen("ipv4")
        lb, pb = self.listen("ipv4")
        a = self.pair("ipv4", la, pa)
        b = self.pair("ipv4", lb, pb)
        a.port, b.port = pa, pb
        a.c2s(400_000)
        for _ in range(300):
            b.c2s(8)
            b.s2c(8)
        return a, b

    # --- tests ------------------------------------------------------------

    def test_keys_resize_and_quit(self):
        before = self.snapshot()
        t = self.start_view()
        self.wait_attached(_Alive(self), "server")
        a, b = self.two_connections()

        # Both rows, the report header with its clock, the title with the sort key.
        lines = self.wait_screen(
            t, lambda ls: ls if self.row_of(ls, a) is not None and self.row_of(ls, b) is not None
            else None, "both connections")
        self.assertIn("sort: rate", lines[0])
        self.assertIsNotNone(self.report_time(lines), lines)
        self.assertIn("2 connections", lines[1])
        self.assertRegex(lines[2], r"^CONNECTION\s+STATE\s+TX\s+TX PKTS")
        # Idle now: rates are 0, ties go to bytes, so A (400 KB) comes first.
        self.wait_screen(t, lambda ls: self.row_of(ls, a) is not None and self.row_of(ls, b)
                         is not None and self.row_of(ls, a) < self.row_of(ls, b),
                         "A above B by rate (tie) then bytes")

        # 'p' pauses: the header says so, and the report clock stops.
        t.keys("p")
        lines = self.wait_screen(t, lambda ls: ls if "[PAUSED]" in ls[0] else None, "PAUSED")
        frozen = self.report_time(lines)
        # Reports keep coming while paused (counting goes on); none is shown.
        deadline = time.monotonic() + 1.5 * float(INTERVAL)
        while time.monotonic() < deadline:
            self.assertEqual(self.report_time(t.screen()), frozen, "a paused view changed")
            time.sleep(0.1)

        # 's' twice while paused: rate -> bytes -> packets, re-sorted at once
        # from the rows on screen; B (more packets) moves above A.
        t.keys("s")
        self.wait_screen(t, lambda ls: "sort: bytes" in ls[0], "sort: bytes")
        t.keys("s")
        lines = self.wait_screen(
            t, lambda ls: ls if "sort: packets" in ls[0] and self.row_of(ls, b) is not None
            and self.row_of(ls, a) is not None and self.row_of(ls, b) < self.row_of(ls, a)
            else None, "sort: packets with B above A")
        self.assertEqual(self.report_time(lines), frozen)
        self.assertIn("[PAUSED]", lines[0])

        # 'p' again: reports show again, built in packet order by tcptrack itself.
        t.keys("p")
        lines = self.wait_screen(
            t, lambda ls: ls if "[PAUSED]" not in ls[0] and self.report_time(ls) != frozen
            else None, "a new report after resuming")
        new_time = self.report_time(lines)
        lines = self.wait_screen(t, lambda ls: ls if self.report_time(ls) not in (frozen, new_time)
                                 else None, "a second report after resuming")
        self.assertLess(self.row_of(lines, b), self.row_of(lines, a), "\n".join(lines))

        # A key acts at once, not at the next report: right after a report
        # shows, 's' changes the header while that report is still on screen.
        shown = self.fresh_report(t)
        t.keys("s")
        self.wait_prompt(t, shown, lambda ls: "sort: age" in ls[0], "sort: age")

        # '?' shows the help over the table; any key closes it.
        shown = self.fresh_report(t)
        t.keys("?")
        lines = self.wait_prompt(t, shown, lambda ls: any("tcptrack keys" in l for l in ls), "help")
        text = "\n".join(lines)
        for k in ("q      quit", "p      pause", "/      edit the filter", "s      sort by"):
            self.assertIn(k, text)
        t.keys("x")
        self.wait_prompt(t, shown, lambda ls: not any("tcptrack keys" in l for l in ls),
                         "help closed")

        # Resize: the title bar spans the new width, rows fit the new height.
        shown = self.fresh_report(t)
        t.resize(100, 6)
        self.assertEqual(t.size(), (100, 6))
        lines = self.wait_prompt(
            t, shown, lambda ls: len(ls[0].rstrip()) == 99 and any("... 1 more" in l for l in ls),
            "layout for 100x6")
        self.assertEqual(len(lines), 6)
        shown_rows = [i for i in (self.row_of(lines, a), self.row_of(lines, b)) if i is not None]
        self.assertEqual(len(shown_rows), 1, "\n".join(lines))
        self.assertTrue(all(len(l) <= 100 for l in lines))
        shown = self.fresh_report(t)
        t.resize(WIDTH, HEIGHT)
        lines = self.wait_prompt(
            t, shown, lambda ls: len(ls[0].rstrip()) == WIDTH - 1 and self.row_of(ls, a) is not None
            and self.row_of(ls, b) is not None, "layout back at %dx%d" % (WIDTH, HEIGHT))
        self.assertEqual(len(lines), HEIGHT)
        last_row = max(self.row_of(lines, a), self.row_of(lines, b))
        # Nothing left over from the small layout below the table.
        self.assertEqual([l for l in lines[last_row + 1:] if l.strip()], [], "\n".join(lines))

        # '/' + a bad expression: an error on the status line, nothing changes.
        t.keys("/")
        self.wait_screen(t, lambda ls: ls[-1].startswith("filter>"), "filter prompt")
        t.keys("C-u")
        t.text("port nonsense")
        t.keys("Enter")
        lines = self.wait_screen(t, lambda ls: ls if "nonsense" in ls[-1] and not
                                 ls[-1].startswith("filter>") else None, "filter error")
        self.assertIn("filter: (none)", lines[0])
        self.assertIsNotNone(self.row_of(lines, a))
        # Esc cancels an edit.
        t.keys("/")
        self.wait_screen(t, lambda ls: ls[-1].startswith("filter>"), "filter prompt")
        t.keys("C-u")
        t.text("port 1")
        t.keys("Escape")
        self.wait_screen(t, lambda ls: not ls[-1].startswith("filter>"), "prompt closed")
        self.assertIn("filter: (none)", t.screen()[0])

        # '/' + "port B": A disappears, B stays, and later traffic on A does not bring it back.
        shown = self.fresh_report(t)
        t.keys("/")
        self.wait_screen(t, lambda ls: ls[-1].startswith("filter>"), "filter prompt")
        t.keys("C-u")
        t.text("port %d" % b.port)
        t.keys("Enter")
        lines = self.wait_prompt(
            t, shown, lambda ls: "filter: port %d" % b.port in ls[0] and self.row_of(ls, a) is None,
            "A filtered out")
        self.assertIsNotNone(self.row_of(lines, b), "\n".join(lines))
        a.c2s(50_000)
        b.c2s(1000)
        shown = self.report_time(lines)
        for _ in range(2):  # two reports after that traffic
            lines = self.wait_screen(t, lambda ls: ls if self.report_time(ls) != shown else None,
                                     "next report")
            shown = self.report_time(lines)
            self.assertIsNone(self.row_of(lines, a), "\n".join(lines))
            self.assertIsNotNone(self.row_of(lines, b), "\n".join(lines))

        # 'q': exits 0 promptly, the terminal is given back, nothing stays attached.
        t.keys("q")
        self.assertEqual(self.wait_exit(5), 0, "tcptrack did not exit 0 after 'q': %s\n%s"
                         % (self.exit_code(), self.stderr()))
        self.assertEqual(self.stderr(), "")
        self.assert_restored(before, "after q")
        self.assertEqual(run(self.ns_cmd("server", "tc", "filter", "show", "dev", self.topo.sif,
                                         "ingress"), check=False).stdout.strip(), "")
        self.assertEqual(run(self.ns_cmd("server", "bpftool", "net", "show", "dev",
                                         self.topo.sif)).stdout.count("tcptrack"), 0)
        self.assert_terminal_restored(t)

    def test_sigterm_restores_terminal(self):
        """SIGTERM while the view runs: exit 0, the terminal as it was, nothing
        attached. (With --summary: its line under the table.)"""
        before = self.snapshot()
        t = self.start_view("--summary")
        self.wait_attached(_Alive(self), "server")
        a, b = self.two_connections()
        lines = self.wait_screen(
            t, lambda ls: ls if self.row_of(ls, a) is not None and self.row_of(ls, b) is not None
            else None, "both connections")
        last_row = max(self.row_of(lines, a), self.row_of(lines, b))
        self.assertRegex(lines[last_row + 1], r"^summary: connections 2  store 2/65536 \(assured 2, unassured 0\) ")
        with open(self.pid_file) as f:
            os.kill(int(f.read()), signal.SIGTERM)
        self.assertEqual(self.wait_exit(10), 0, self.stderr())
        self.assertEqual(self.stderr(), "")
        self.assert_terminal_restored(t)
        self.assert_restored(before, "after SIGTERM")

    def assert_terminal_restored(self, t):
        """endwin() ran: the tty is back in canonical mode with echo, and the
        alternate screen is gone (the shell's screen shows, not the view)."""
        with open(self.stty_file) as f:
            words = f.read().split()
        for mode in ("icanon", "echo"):
            self.assertIn(mode, words, "terminal left in -%s" % mode)
        lines = t.screen()
        self.assertFalse(any("s sort  p pause" in l for l in lines), "\n".join(lines))

    def test_unknown_terminal_falls_back(self):
        """TERM naming no terminfo entry: the plain table, one note on stderr, Ctrl-C exits 0."""
        before = self.snapshot()
        t = self.start_view(env={"TERM": "tt-tui-no-such-terminal"})
        self.wait_attached(_Alive(self), "server")
        a, _ = self.two_connections()
        lines = self.wait_screen(t, lambda ls: ls if any(HMS.match(l) for l in ls)
                                 and self.row_of(ls, a) is not None else None, "plain table")
        self.assertFalse(any("s sort  p pause" in l for l in lines))
        t.keys("C-c")
        self.assertEqual(self.wait_exit(10), 0, self.stderr())
        err = self.stderr().splitlines()
        self.assertEqual(len(err), 1, err)
        self.assertIn("tt-tui-no-such-terminal", err[0])
        self.assertIn("plain table", err[0])
        self.assert_restored(before, "after Ctrl-C")

    def test_piped_output_has_no_escapes(self):
        """stdout a pipe (stdin still the terminal): today's plain table, no escape codes."""
        # --once: one report, as text.
        out = os.path.join(self.tmp, "once")
        self.start_view("--once", pipe_to=out)
        self.assertEqual(self.wait_exit(30), 0, self.stderr())
        with open(out, "rb") as f:
            data = f.read()
        self.assertNotIn(b"\x1b", data)
        self.assertRegex(data.decode(), HMS)
        self.assertEqual(data.decode().count("\n\n"), 0)

        # Running until stopped (where a terminal gets the view): reports
        # appended, separated by a blank line, as before the view existed.
        out = os.path.join(self.tmp, "piped")
        self.start_view(pipe_to=out)
        self.wait_attached(_Alive(self), "server")
        a, b = self.two_connections()

        def reports():
            with open(out, "rb") as f:
                data = f.read()
            return data, data.decode(errors="replace").split("\n\n")

        deadline = time.monotonic() + SCREEN_TIMEOUT
        while True:
            data, rs = reports()
            # Two complete reports after the traffic: the last one is whole.
            if len(rs) >= 3 and self.row_of(rs[-2].splitlines(), a) is not None:
                break
            if time.monotonic() > deadline or self.exit_code() is not None:
                self.fail("no report with the connections in the pipe: %r\n%s"
                          % (data, self.stderr()))
            time.sleep(0.05)
        with open(self.pid_file) as f:
            os.kill(int(f.read()), signal.SIGTERM)
        self.assertEqual(self.wait_exit(10), 0, self.stderr())
        data, rs = reports()
        self.assertNotIn(b"\x1b", data)
        for r in rs:
            self.assertRegex(r, HMS)
        self.assertIsNotNone(self.row_of(rs[-2].splitlines(), b), rs[-2])
        self.assertEqual(self.stderr(), "")


class _Alive:
    """wait_attached() asks the process whether it is still running: the
    process lives in tmux, so ask for its exit code file instead."""

    def __init__(self, test):
        self.test = test
        self.cmd = ["tcptrack (in tmux)"]

    def running(self):
        return self.test.exit_code() is None

    def wait(self, _timeout):
        return self.test.exit_code()

    def lines(self):
        return []

    def stderr_text(self):
        return self.test.stderr()


def tearDownModule():
    netns.tear_down_module()


if __name__ == "__main__":
    if os.geteuid() == 0 and shutil.which("tmux") is None:
        print("SKIP: tui_test needs tmux")
        sys.exit(77)
    sys.exit(netns.main("tui_test", sys.modules[__name__]))
