# SPDX-License-Identifier: MIT
"""End-to-end test for --prometheus, read back through a real Prometheus.

tcptrack runs in the ROOT namespace (--netns) and watches the server end of a
veth pair, serving /metrics on the root's loopback; a real Prometheus server
(Debian's `prometheus`, temp config and storage, scraping every second) scrapes
it. The test makes known IPv4 and IPv6 connections (exact payloads, FIN and
RST closes), then asks Prometheus's HTTP query API for the closed and opened
counts, the payload totals (== what the test's sockets sent), the wire totals
(== the sum of tcptrack's own final JSON rows) and the handshake RTT count.
A headless run (--format none) prints nothing and its exposition passes
`promtool check metrics`.

Usage: prometheus_test.py [--binary PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise, or without prometheus/promtool.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import FINAL_STATES, parse_json_lines  # noqa: E402

netns.set_prefix("tt-prom-%d-" % os.getpid())

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DEADLINE = 60.0  # Prometheus 2.42 answers the first sample ~5 s after it started


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class PrometheusBase(netns.Base):
    def setUp(self):
        self.topo = netns.Topology(1, tag="pm")
        self.addCleanup(self.topo.teardown)
        self.topo.setup()

    def start_tcptrack_root(self, *args):
        """tcptrack in the root namespace watching the server's veth through --netns."""
        cmd = [netns.binary(), "--netns", self.topo.sns, "-i", self.topo.sif] + list(args)
        return self.start(cmd)

    def wait_metrics(self, port, proc):
        """Polls tcptrack's /metrics until it answers; returns the exposition."""
        deadline = time.monotonic() + netns.ATTACH_TIMEOUT
        while True:
            try:
                return http_get("http://127.0.0.1:%d/metrics" % port, timeout=2)
            except OSError as e:
                if not proc.running():
                    self.fail("tcptrack exited (%s) before serving /metrics: %s"
                              % (proc.wait(5), proc.stderr_text()))
                if time.monotonic() > deadline:
                    self.fail("tcptrack's /metrics on port %d not reachable: %s" % (port, e))
            time.sleep(0.1)

    def make_connections(self):
        """Known connections: IPv4 three FIN-closed and one reset, IPv6 two
        FIN-closed. Returns [(family, pair, how)]."""
        done = []
        for family, plan in (("ipv4", [(1000, 20000, "fin"), (77, 0, "fin"), (0, 5000, "fin"),
                                       (3000, 300, "rst")]),
                             ("ipv6", [(4096, 65536, "fin"), (1, 1, "fin")])):
            l, port = self.listen(family)
            for n, m, how in plan:
                p = self.pair(family, l, port)
                if n:
                    p.c2s(n)
                if m:
                    p.s2c(m)
                if how == "rst":
                    p.close_rst()
                else:
                    p.close_clean()
                done.append((family, p, port, how))
        return done


class TestPrometheus(PrometheusBase):
    def start_prometheus(self, target_port):
        tmp = tempfile.mkdtemp(prefix="tt-prom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: tcptrack\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % target_port)
        port = netns.free_port()
        proc = self.start([PROMETHEUS, "--config.file=" + cfg,
                           "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                           "--web.listen-address=127.0.0.1:%d" % port])
        # Killed (by its own PID) before its temp dir is removed: cleanups run in reverse.
        self.addCleanup(proc.kill)
        return proc, port

    def query(self, prom_port, expr):
        """One instant query; returns {labels-json: value} (empty when no data yet)."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            prom_port, urllib.parse.urlencode({"query": expr}))
        body = json.loads(http_get(url))
        self.assertEqual(body.get("status"), "success", body)
        return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
                for r in body["data"]["result"]}, body

    def wait_value(self, prom, prom_port, expr, want):
        """Polls Prometheus until the single result of `expr` equals want."""
        deadline = time.monotonic() + DEADLINE
        last = None
        while True:
            try:
                vals, body = self.query(prom_port, expr)
                last = body
                if len(vals) == 1 and list(vals.values())[0] == want:
                    return body
            except OSError as e:
                last = e
            if not prom.running():
                self.fail("prometheus exited (%s): %s" % (prom.wait(5), prom.stderr_text()[-2000:]))
            if time.monotonic() > deadline:
                self.fail("%s: wanted %r, Prometheus last answered %s" % (expr, want, last))
            time.sleep(0.5)

    def test_counts_through_prometheus(self):
        port = netns.free_port()
        track = self.start_tcptrack_root("--format", "json", "--interval", "1",
                                         "--prometheus", "127.0.0.1:%d" % port)
        self.wait_attached(track, "server")
        self.wait_metrics(port, track)
        prom, prom_port = self.start_prometheus(port)

        conns = self.make_connections()
        # tcptrack's own final rows: one per connection.
        keys = {(p.family, p.cport) for _, p, _, _ in conns}

        def finals(lines):
            rows, _, _ = parse_json_lines(lines)
            got = {(r["family"], r["sport"]): r for _, r in rows
                   if r["state"] in FINAL_STATES and (r["family"], r["sport"]) in keys}
            return got if len(got) == len(keys) else None
        final = track.wait_for(finals, 20, "final rows for all %d connections" % len(keys))

        fin = sum(1 for c in conns if c[3] == "fin")
        rst = len(conns) - fin
        c2s_payload = sum(p.sent_c for _, p, _, _ in conns)
        s2c_payload = sum(p.sent_s for _, p, _, _ in conns)
        for _, p, _, how in conns:
            r = final[(p.family, p.cport)]
            self.assertEqual(r["state"], "RESET" if how == "rst" else "CLOSED", r)
            if how == "fin":
                self.assertEqual((r["fwd_payload"], r["rev_payload"]), (p.sent_c, p.sent_s), r)
        c2s_wire = sum(r["fwd_bytes"] for r in final.values())
        s2c_wire = sum(r["rev_bytes"] for r in final.values())
        c2s_pk = sum(r["fwd_packets"] for r in final.values())
        # A reset connection's payload stops where the RST cut it: take tcptrack's
        # rows for it, the test's own counts for the others.
        c2s_payload_rows = sum(r["fwd_payload"] for r in final.values())
        s2c_payload_rows = sum(r["rev_payload"] for r in final.values())
        self.assertEqual((c2s_payload_rows, s2c_payload_rows), (c2s_payload, s2c_payload),
                         "tcptrack's rows vs what the sockets sent")

        sel = 'interface="%s",job="tcptrack"' % self.topo.sif
        checks = [
            ('tcptrack_connections_closed_total{%s,reason="fin"}' % sel, fin),
            ('tcptrack_connections_closed_total{%s,reason="rst"}' % sel, rst),
            ('tcptrack_connections_closed_total{%s,reason="idle"}' % sel, 0),
            ('tcptrack_connections_opened_total{%s}' % sel, len(conns)),
            ('tcptrack_bytes_total{%s,direction="client_to_server",kind="payload"}' % sel, c2s_payload),
            ('tcptrack_bytes_total{%s,direction="server_to_client",kind="payload"}' % sel, s2c_payload),
            ('tcptrack_bytes_total{%s,direction="client_to_server",kind="wire"}' % sel, c2s_wire),
            ('tcptrack_bytes_total{%s,direction="server_to_client",kind="wire"}' % sel, s2c_wire),
            ('tcptrack_packets_total{%s,direction="client_to_server"}' % sel, c2s_pk),
            ('tcptrack_handshake_rtt_seconds_count{%s}' % sel, len(conns)),
            ('sum(tcptrack_connections{%s})' % sel, 0),
            ('tcptrack_untracked_connections_total{%s}' % sel, 0),
            ('tcptrack_export_errors_total{%s,exporter="ipfix"}' % sel, 0),
        ]
        for expr, want in checks:
            body = self.wait_value(prom, prom_port, expr, want)
            print("prometheus: %s -> %s" % (expr, json.dumps(body["data"]["result"])), flush=True)

        rc = self.stop(track, signal.SIGINT)
        self.assertEqual(rc, 0, "tcptrack exit status; stderr: %s" % track.stderr_text())

    def test_not_ready_before_the_first_report(self):
        """/healthz is 503 "starting" until the first report (patterns attach
        during the first interval), though /metrics already answers."""
        port = netns.free_port()
        track = self.start_tcptrack_root("--format", "none", "--interval", "30",
                                         "--prometheus", "127.0.0.1:%d" % port)
        self.wait_metrics(port, track)
        with self.assertRaises(urllib.error.HTTPError) as cm:
            http_get("http://127.0.0.1:%d/healthz" % port)
        self.assertEqual(cm.exception.code, 503)
        self.assertEqual(cm.exception.read().decode(), "starting: no report yet\n")
        rc = self.stop(track, signal.SIGINT)
        self.assertEqual(rc, 0, "tcptrack exit status; stderr: %s" % track.stderr_text())

    def test_headless_promtool(self):
        port = netns.free_port()
        track = self.start_tcptrack_root("--format", "none", "--interval", "1",
                                         "--prometheus", "127.0.0.1:%d" % port)
        self.wait_attached(track, "server")
        self.wait_metrics(port, track)
        conns = self.make_connections()
        want = len(conns)
        deadline = time.monotonic() + 20
        while True:
            text = http_get("http://127.0.0.1:%d/metrics" % port)
            line = next((l for l in text.splitlines()
                         if l.startswith("tcptrack_connections_opened_total{")), "")
            if line.endswith(" %d" % want):
                break
            if time.monotonic() > deadline:
                self.fail("opened_total never reached %d: %r\n%s" % (want, line, text))
            time.sleep(0.2)
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, "promtool check metrics:\n%s%s\n%s"
                         % (p.stdout, p.stderr, text))
        # /healthz: 200 "ok" while it reports and watches all it should.
        self.assertEqual(http_get("http://127.0.0.1:%d/healthz" % port), "ok\n")
        # Another instance cannot take the same port: one line, exit 1.
        other = self.start_tcptrack_root("--format", "none", "--prometheus", "127.0.0.1:%d" % port)
        rc = other.wait(20)
        self.assertEqual(rc, 1, other.stderr_text())
        self.assertEqual(other.err_lines(),
                         ["tcptrack: cannot serve Prometheus metrics on 127.0.0.1:%d: address in use"
                          % port])
        # The HTTP server stops at once (civetweb alone polls 2 s between looks
        # at its stop flag), from tcptrack's namespace though --netns moved it.
        t0 = time.monotonic()
        rc = self.stop(track, signal.SIGINT)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "tcptrack exit status; stderr: %s" % track.stderr_text())
        self.assertLess(took, 1.5, "tcptrack took %.2f s to exit after SIGINT" % took)
        self.assertEqual(track.lines(), [], "--format none printed something")


def tearDownModule():
    netns.tear_down_module()


def main():
    if os.geteuid() == 0:
        for tool in (PROMETHEUS, PROMTOOL):
            if not os.access(tool, os.X_OK):
                print("SKIP: prometheus_test needs %s (Debian packages prometheus; scripts/setup.sh)"
                      % tool)
                return 77
    rc = netns.main("prometheus_test", sys.modules[__name__])
    return rc


if __name__ == "__main__":
    sys.exit(main())
