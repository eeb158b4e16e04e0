# SPDX-License-Identifier: MIT
"""Every output and exporter at once under full-rate connection churn.

tcptrack runs in the ROOT namespace (--netns) watching the server end of a
veth pair with the NDJSON closed-connection log, the summary, IPFIX to a live
UDP socket of this test and Prometheus on the root's loopback:

  tcptrack --netns NS -i IF --format json --closed --summary
           --ipfix udp://127.0.0.1:P --prometheus 127.0.0.1:P2

while bench/churn (the C++ generator: connect, 64 bytes up, 512 down, the
server closes first) runs flat out for CHURN_SECONDS from 4 threads, and a
scraper fetches /metrics back to back. Then SIGINT. It must exit 0 (a
sanitizer build's report fails the suite through netns.main too), and:

  * every connection the generator completed is in the closed log exactly
    once (per client port: as many CLOSED rows as completed connections, the
    ports wrap), each with exactly the payload sent both ways, and nothing
    else is;
  * the IPFIX datagrams decode (templates, then data sets) and their
    end-of-flow records (flowEndReason 3) are those same connections, one
    each, when the IPFIX sequence numbers show no datagram lost;
  * every scrape answered 200 with the metrics, closed_total never went
    down, and the last one counts every closed row;
  * the summary counts nothing untracked, no close event lost, no export error.

Run by both the normal tree and the sanitizer tree (build-asan).

Usage: churn_all_test.py [--binary PATH] [--churn PATH] [unittest args]
Needs root; exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import argparse
import collections
import os
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import parse_json_lines  # noqa: E402

netns.set_prefix("ttsa-churn-%d-" % os.getpid())

CHURN = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                      "build", "bench", "churn"))
CHURN_SECONDS = 5.0
THREADS = 4
REQUEST, REPLY = 64, 512
SERVER_PORT = 5555
MAX_FLOWS = 262144
DEADLINE = 60.0  # for the closed log to show every connection (a sanitizer build is slower)

# IPFIX information elements (IANA) read back from the data records.
IE_SPORT, IE_END_REASON = 7, 136
END_OF_FLOW = 3


class IpfixSink:
    """A UDP socket on the root's loopback decoding IPFIX (RFC 7011) as it
    arrives: templates from template sets, then data records (fixed-length
    fields, and variable-length ones as section 7 encodes them).
    Keeps (sourceTransportPort, flowEndReason) per record and checks the
    message sequence numbers (data records sent before each message)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.templates = {}        # template id -> [(ie, length)]
        self.records = []          # (sport, end_reason)
        self.messages = 0
        self.lost = 0              # data records missing by the sequence numbers
        self.errors = []           # undecodable messages
        self.next_seq = None
        self.last_rx = time.monotonic()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.last_rx = time.monotonic()
            try:
                self._message(data)
            except (ValueError, struct.error) as e:
                self.errors.append("%s: %s" % (e, data[:64].hex()))

    def _message(self, data):
        version, length, _export, seq, _domain = struct.unpack_from("!HHIII", data, 0)
        if version != 10 or length != len(data):
            raise ValueError("bad header: version %d, length %d of %d" % (version, length, len(data)))
        self.messages += 1
        if self.next_seq is not None and seq != self.next_seq:
            self.lost += (seq - self.next_seq) % (1 << 32)
        off, count = 16, 0
        while off + 4 <= len(data):
            set_id, set_len = struct.unpack_from("!HH", data, off)
            if set_len < 4 or off + set_len > len(data):
                raise ValueError("bad set length %d at %d" % (set_len, off))
            body, end = off + 4, off + set_len
            if set_id == 2:
                self._templates(data, body, end)
            elif set_id >= 256:
                count += self._data(set_id, data, body, end)
            off = end
        self.next_seq = (seq + count) % (1 << 32)

    def _templates(self, data, off, end):
        while off + 4 <= end:
            tid, nfields = struct.unpack_from("!HH", data, off)
            off += 4
            fields = []
            for _ in range(nfields):
                ie, flen = struct.unpack_from("!HH", data, off)
                off += 4
                if ie & 0x8000:  # enterprise-specific: a PEN follows
                    off += 4
                    ie = None
                fields.append((ie, flen))  # flen 0xffff: variable length
            self.templates[tid] = fields

    def _data(self, tid, data, off, end):
        fields = self.templates.get(tid)
        if fields is None:
            raise ValueError("data set %d before its template" % tid)
        # The shortest record: every variable-length field empty (one length byte).
        minlen = sum(1 if flen == 0xffff else flen for _, flen in fields)
        n = 0
        while off + minlen <= end:  # what is left after the last record is padding
            rec = {}
            at = off
            for ie, flen in fields:
                if flen == 0xffff:  # a length byte; 255: a 2-byte length follows
                    flen, at = data[at], at + 1
                    if flen == 255:
                        flen, at = struct.unpack_from("!H", data, at)[0], at + 2
                if at + flen > end:
                    raise ValueError("record of template %d runs past its set" % tid)
                if ie in (IE_SPORT, IE_END_REASON):
                    rec[ie] = int.from_bytes(data[at:at + flen], "big")
                at += flen
            self.records.append((rec.get(IE_SPORT), rec.get(IE_END_REASON)))
            off = at
            n += 1
        return n

    def drain(self, quiet=0.5, timeout=10):
        """Waits until nothing arrived for `quiet` seconds, then stops."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_rx < quiet and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop_flag.set()
        self.thread.join(5)
        self.sock.close()


class Scraper:
    """GETs /metrics back to back until stopped; keeps every
    tcptrack_connections_closed_total sum and any failure."""

    CLOSED = re.compile(r"^tcptrack_connections_closed_total\{[^}]*\} ([0-9.e+]+)$", re.M)

    def __init__(self, port):
        self.url = "http://127.0.0.1:%d/metrics" % port
        self.ok = 0
        self.failures = []
        self.closed = []  # closed_total summed over its series, per scrape
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def scrape(self):
        with urllib.request.urlopen(self.url, timeout=5) as r:
            if r.status != 200:
                raise OSError("HTTP %d" % r.status)
            text = r.read().decode()
        if "tcptrack_connections_opened_total" not in text:
            raise OSError("no tcptrack metrics in: %r" % text[:200])
        return sum(float(v) for v in self.CLOSED.findall(text))

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                self.closed.append(self.scrape())
                self.ok += 1
            except (OSError, ValueError) as e:
                self.failures.append(str(e))
            time.sleep(0.01)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)


class TestChurnAll(netns.Base):
    def setUp(self):
        if not os.access(CHURN, os.X_OK):
            self.skipTest("no churn generator at %s (bench/churn.cpp; TCPTRACK_BENCH=ON)" % CHURN)
        self.topo = netns.Topology(1, tag="ttsa")
        self.addCleanup(self.topo.teardown)
        self.topo.setup()

    def wait_metrics(self, port, proc):
        deadline = time.monotonic() + netns.ATTACH_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2):
                    return
            except OSError as e:
                if not proc.running():
                    self.fail("tcptrack exited (%s) before serving /metrics: %s"
                              % (proc.wait(5), proc.stderr_text()))
                if time.monotonic() > deadline:
                    self.fail("tcptrack's /metrics on port %d not reachable: %s" % (port, e))
            time.sleep(0.05)

    def test_every_output_under_churn(self):
        sink = IpfixSink()
        self.addCleanup(sink.drain, 0, 1)
        prom_port = netns.free_port()
        tt = self.start([netns.binary(), "--netns", self.topo.sns, "-i", self.topo.sif,
                         "--format", "json", "--closed", "--summary", "--interval", "0.5",
                         # Room for a few seconds of connections even when a sanitizer
                         # build's reports lag: none may go untracked here.
                         "--max-flows", str(MAX_FLOWS),
                         "--ipfix", "udp://127.0.0.1:%d" % sink.port,
                         "--prometheus", "127.0.0.1:%d" % prom_port])
        self.wait_attached(tt, "server")
        self.wait_metrics(prom_port, tt)

        server_ip = self.topo.server_ip("ipv4")
        srv = self.start(self.ns_cmd("server", CHURN, "server", "--bind", server_ip,
                                     "--port", str(SERVER_PORT), "--threads", str(THREADS),
                                     "--request", str(REQUEST), "--reply", str(REPLY)))
        srv.wait_for(lambda ls: "listening" in ls, 10, "churn server listening")
        scraper = Scraper(prom_port)
        self.addCleanup(scraper.stop)
        log = tempfile.NamedTemporaryFile(prefix="ttsa-churn-", suffix=".log", delete=False)
        log.close()
        self.addCleanup(os.unlink, log.name)
        cli = self.start(self.ns_cmd("client", CHURN, "client", "--connect", server_ip,
                                     "--port", str(SERVER_PORT), "--threads", str(THREADS),
                                     "--request", str(REQUEST), "--reply", str(REPLY),
                                     "--duration", str(CHURN_SECONDS), "--log", log.name))
        self.assertEqual(cli.wait(CHURN_SECONDS + 30), 0, cli.stderr_text())
        summary = dict(kv.split("=", 1) for kv in " ".join(cli.lines()).split() if "=" in kv)
        with open(log.name) as f:
            completed = collections.Counter(int(line.split()[0]) for line in f if line.strip())
        n = sum(completed.values())
        sys.stderr.write("churn: %s\n" % " ".join(cli.lines()))
        self.assertEqual(n, int(summary["connections"]), summary)
        self.assertGreater(n, 1000, summary)
        # The generator's own failures would be rows it does not list.
        self.assertEqual((summary["connect_errors"], summary["incomplete"]), ("0", "0"), summary)

        # Only the lines new since the last look are parsed: wait_for holds the
        # output's lock while this runs, and re-parsing every row each time
        # (100k rows of 1.7 KB) held it long enough to stall tcptrack's stdout.
        got = collections.Counter()
        seen = [0]

        def closed_ports(lines):
            rows, _, _ = parse_json_lines(lines[seen[0]:])
            seen[0] = len(lines)
            got.update(r["sport"] for _, r in rows)
            return all(got[p] >= c for p, c in completed.items()) or None
        tt.wait_for(closed_ports, DEADLINE, "the %d completed connections in the closed log" % n)
        time.sleep(1.2)  # two more reports: anything extra or doubled would show by now
        scraper.stop()
        last_closed = scraper.scrape()
        self.assertEqual(self.stop(tt, timeout=30), 0, "tcptrack: %s" % tt.stderr_text())
        srv.signal(signal.SIGINT)
        srv.wait(10)
        sink.drain()

        rows, summaries, bad = parse_json_lines(tt.lines())
        rows = [r for _, r in rows]
        self.assertEqual(bad, [])
        self.assertTrue(summaries)
        # The closed log: exactly the completed connections, each once, exact payloads.
        got = collections.Counter(r["sport"] for r in rows)
        self.assertEqual(got, completed,
                         "closed log vs generator: missing %s, extra %s"
                         % (dict(list((completed - got).items())[:10]),
                            dict(list((got - completed).items())[:10])))
        wrong = [r for r in rows if (r["state"], r["fwd_payload"], r["rev_payload"], r["dport"],
                                     r["src"], r["dst"])
                 != ("CLOSED", REQUEST, REPLY, SERVER_PORT, self.topo.client_ip("ipv4"), server_ip)]
        self.assertEqual(wrong[:5], [], "%d rows not as sent" % len(wrong))
        last = summaries[-1][1]
        sys.stderr.write("last summary: %s\n" % last)
        self.assertEqual((last["untracked"], last["close_lost"]), (0, 0), last)
        errs = last.get("export_errors", {})
        self.assertIn("ipfix", errs, last)
        self.assertEqual([k for k, v in errs.items() if v], [], last)

        # IPFIX: one end-of-flow record per closed connection.
        sys.stderr.write("ipfix: %d messages, %d records, %d lost by sequence, templates %s\n"
                         % (sink.messages, len(sink.records), sink.lost, sorted(sink.templates)))
        self.assertEqual(sink.errors[:3], [])
        ends = collections.Counter(p for p, why in sink.records if why == END_OF_FLOW)
        self.assertTrue(ends, "no end-of-flow record received")
        self.assertEqual(ends - got, collections.Counter(), "IPFIX end records not in the closed log")
        if sink.lost == 0:
            self.assertEqual(ends, got, "IPFIX end-of-flow records vs the closed log")

        # Prometheus: every scrape answered, the counter only grew, and it counts every row.
        sys.stderr.write("prometheus: %d scrapes, closed_total %s at the end\n"
                         % (scraper.ok, last_closed))
        self.assertEqual(scraper.failures[:3], [])
        self.assertGreater(scraper.ok, 20)
        self.assertEqual(scraper.closed, sorted(scraper.closed), "closed_total went down")
        self.assertEqual(last_closed, len(rows))


def main():
    global CHURN
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--churn", default=CHURN)
    args, rest = ap.parse_known_args()
    CHURN = os.path.abspath(args.churn)
    sys.argv = [sys.argv[0]] + rest
    return netns.main("churn_all_test", sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(main())
