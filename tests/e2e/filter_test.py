# SPDX-License-Identifier: MIT
"""End-to-end tests of the filter expression (tcptrack -i IF EXPR).

Real connections through a veth between two namespaces; the test owns both
ends (netns.Pair), so it knows every byte. A filter must keep exactly the
connections it names, counted exactly, and leave no trace of the others: with
--max-flows 1 a filtered-out connection held open beside the kept one would
otherwise take the only slot and make the kept one "untracked".

Usage: filter_test.py [--binary PATH] [unittest args]
Needs root (namespaces, BPF); exits 77 (ctest SKIP_RETURN_CODE) otherwise.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import FINAL_STATES, parse_json_lines, run  # noqa: E402
from e2e_test import E2EBase  # noqa: E402

netns.set_prefix("ttflt-%d-" % os.getpid())

INTERVAL = "0.5"


class TestFilter(E2EBase):
    SIDE = "server"

    def _closed_then_reports(self, port, extra):
        def pred(lines):
            rows, summaries, _ = parse_json_lines(lines)
            closed = [i for i, r in rows
                      if port in (r.get("sport"), r.get("dport")) and r.get("state") in FINAL_STATES]
            return bool(closed) and len([i for i, _ in summaries if i > closed[0]]) >= extra
        return pred

    def _kept_and_dropped(self, family, expr, kept_port, dropped_port):
        """Opens the dropped connection first and keeps it busy while the kept
        one runs start to end; returns (rows, summaries, kept pair, dropped pair)."""
        lk, pk = self.listen(family, kept_port)
        ld, pd = self.listen(family, dropped_port)
        track = self.start_tcptrack(self.SIDE, "--format", "json", "--summary", "--interval",
                                    INTERVAL, "--max-flows", "1", *expr.split())
        self.wait_attached(track, self.SIDE)
        dropped = self.pair(family, ld, pd)
        dropped.c2s(5000)
        dropped.s2c(7000)
        kept = self.pair(family, lk, pk)
        kept.c2s(3000)
        dropped.c2s(1000)
        kept.s2c(40000)
        kept.close_clean()
        track.wait_for(self._closed_then_reports(kept.cport, 2), 15,
                       "the kept connection's CLOSED row and 2 more reports")
        dropped.s2c(2000)
        dropped.close_clean()
        self.assertEqual(self.stop(track, signal.SIGINT), 0, track.stderr_text())
        rows, summaries, bad = parse_json_lines(track.lines())
        self.assertEqual(bad, [])
        return rows, summaries, kept, dropped

    def _check(self, family, rows, summaries, kept, dropped, kept_port):
        src, dst = self.topo.client_ip(family), self.topo.server_ip(family)
        mine = [r for _, r in rows if r["sport"] == kept.cport]
        self.assertTrue(mine, "no row for the kept connection: %s" % [r for _, r in rows])
        for r in mine:
            self.assertEqual((r["src"], r["dst"], r["dport"]), (src, dst, kept_port), r)
        final = [r for r in mine if r["state"] in FINAL_STATES]
        self.assertEqual(len(final), 1, mine)
        self.assertEqual(final[0]["state"], "CLOSED", final[0])
        self.assertEqual((final[0]["fwd_payload"], final[0]["rev_payload"]),
                         (kept.sent_c, kept.sent_s), final[0])
        others = [r for _, r in rows if r["sport"] != kept.cport]
        self.assertEqual(others, [], "rows for filtered-out connections (client port %d)"
                         % dropped.cport)
        self.assertTrue(summaries)
        for _, s in summaries:
            self.assertEqual((s["untracked"], s["untracked_segments"]), (0, 0),
                             "filtered traffic counted as untracked: %s" % s)
            self.assertLessEqual(s["tracked"], 1, s)

    def test_port_keeps_one_connection_ipv4(self):
        rows, summaries, kept, dropped = self._kept_and_dropped(
            "ipv4", "port 8080", 8080, 9090)
        self._check("ipv4", rows, summaries, kept, dropped, 8080)

    def test_src_dst_and_not_ipv6(self):
        c = self.topo.client_ip("ipv6")
        expr = "src net %s/64 and dst port 8443 and not portrange 9000-9999" % c
        rows, summaries, kept, dropped = self._kept_and_dropped("ipv6", expr, 8443, 9443)
        self._check("ipv6", rows, summaries, kept, dropped, 8443)

    def test_bad_expression_exits_2_naming_the_token(self):
        before = self.snapshot()
        iface = self.topo.if_of(self.SIDE)
        cases = [
            (["port", "80", "and"], "tcptrack: filter: ends after 'and': expected host, net, port or portrange"),
            (["prot", "80"], "tcptrack: filter: 'prot': expected host, net, port or portrange"),
            (["net", "10.0.0.0/33"], "tcptrack: filter: '10.0.0.0/33': prefix length longer than the address"),
            (["host", "fd00::1", "or", "(", "port", "1"], "tcptrack: filter: ends after '1': missing ')'"),
        ]
        for args, want in cases:
            p = run(self.ns_cmd(self.SIDE, netns.binary(), "-i", iface, "--once", *args),
                    check=False)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertEqual(p.stdout, "")
            self.assertEqual(p.stderr.splitlines(), [want])
        self.assert_restored(before, "bad filter")


def tearDownModule():
    netns.tear_down_module()


if __name__ == "__main__":
    sys.exit(netns.main("filter_test", sys.modules[__name__]))
