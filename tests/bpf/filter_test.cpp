// SPDX-License-Identifier: MIT
// The capture filter in the classifiers: matching connections counted exactly,
// others leave no trace in any flow map and are never "untracked"; IPv4 and
// IPv6; src/dst keep whole connections; a live change takes effect at once.
#include <cstdint>
#include <string>
#include <vector>

#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "bpf_fixture.hpp"
#include "datapath/filter.hpp"

namespace tt_test {
namespace {

class FilterTest : public BpfTest {
   protected:
    void set(const std::string& expr) { skel_->set_filter(tcptrack::compile_filter(expr)); }

    // A handshake, data both ways and the client's FIN, through the real
    // programs (client side local: its segments leave through egress).
    void talk(Conn& c) {
        egress(c.c2s(kSyn));
        ingress(c.s2c(kSyn | kAck));
        egress(c.c2s(kAck));
        egress(c.c2s(kAck | kPsh, 300));
        ingress(c.s2c(kAck | kPsh, 1200));
        egress(c.c2s(kAck));
    }
    // Nothing at all in the store, the index or the stats.
    void expect_no_trace(const std::string& why) {
        SCOPED_TRACE(why);
        EXPECT_TRUE(live_slots().empty());
        EXPECT_EQ(next_fresh(), 0u) << "a slot was handed out";
        for (std::uint32_t b = 0; b < skel_->geometry().index_buckets; ++b) {
            const tt_index_bucket bk = bucket(b);
            for (std::uint32_t e : bk.ent) ASSERT_EQ(e, 0u) << "index bucket " << b;
        }
        EXPECT_EQ(stat(TT_STAT_UNTRACKED), 0u);
        EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 0u);
        EXPECT_TRUE(drain_events().empty());
    }
};

TEST_F(FilterTest, MatchingConnectionExactOthersLeaveNoTrace) {
    set("port 80");
    Conn web(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    talk(web);
    expect_single(web.key, web.expect, TT_ESTABLISHED, "port 80 counted");

    clear_maps();
    set("port 80");
    Conn tls(false, {"10.0.0.1", 40001}, {"10.0.0.2", 443});
    talk(tls);
    expect_no_trace("port 443 filtered out");
}

TEST_F(FilterTest, Ipv6NetAndNot) {
    set("net 2001:db8::/32 and not port 22");
    Conn in(true, {"2001:db8::1", 40000}, {"2001:db8:1::2", 443});
    talk(in);
    expect_single(in.key, in.expect, TT_ESTABLISHED, "2001:db8::/32 port 443 counted");

    clear_maps();
    set("net 2001:db8::/32 and not port 22");
    Conn ssh(true, {"2001:db8::1", 40000}, {"2001:db8:1::2", 22});
    talk(ssh);
    Conn out(true, {"2001:db9::1", 40000}, {"2001:db9::2", 443});
    talk(out);
    Conn v4(false, {"32.1.13.184", 40000}, {"10.0.0.2", 443});  // 2001:db8 as IPv4 bytes
    talk(v4);
    expect_no_trace("ssh, another /32 and IPv4 filtered out");
}

// src/dst name the ends of one direction; both directions of a connection get
// the verdict of the one that matches, so a kept connection is counted whole.
TEST_F(FilterTest, SrcDstKeepWholeConnectionsEitherSideLocal) {
    const char* expr = "src net 10.0.0.0/24 and dst port 80";
    set(expr);
    Conn out(false, {"10.0.0.1", 40000}, {"192.0.2.9", 80});
    talk(out);
    expect_single(out.key, out.expect, TT_ESTABLISHED, "10/24 -> :80, client local");

    clear_maps();
    set(expr);
    // The same connection seen from the server: its replies go out first.
    Conn in(false, {"10.0.0.1", 40000}, {"192.0.2.9", 80});
    ingress(in.c2s(kSyn));
    egress(in.s2c(kSyn | kAck));
    ingress(in.c2s(kAck));
    egress(in.s2c(kAck | kPsh, 900));
    ingress(in.c2s(kAck | kPsh, 20));
    expect_single(in.key, in.expect, TT_ESTABLISHED, "10/24 -> :80, server local");

    clear_maps();
    set(expr);
    Conn wrong_way(false, {"192.0.2.9", 40000}, {"10.0.0.1", 80});  // 10/24 is the server
    talk(wrong_way);
    Conn other_port(false, {"10.0.0.1", 40000}, {"192.0.2.9", 81});
    talk(other_port);
    expect_no_trace("port 80 is not on the far side of 10/24");
}

// A full store is spent only on what the user asked for.
TEST_F(FilterTest, FilteredTrafficDoesNotUseTheStore) {
    ASSERT_NO_FATAL_FAILURE(load(2));
    set("host 10.9.9.9");
    for (std::uint16_t i = 0; i < 20; ++i) {
        Conn noise(false, {"10.0.0.1", static_cast<std::uint16_t>(41000 + i)}, {"10.0.0.2", 80});
        talk(noise);
    }
    EXPECT_EQ(next_fresh(), 0u);
    Conn a(false, {"10.0.0.1", 40000}, {"10.9.9.9", 5000});
    Conn b(false, {"10.9.9.9", 40001}, {"10.0.0.3", 6000});
    talk(a);
    talk(b);
    const auto got = flows();
    ASSERT_EQ(got.size(), 2u);
    for (const auto& [key, t] : got) EXPECT_TRUE(t == (key == a.key ? a.expect : b.expect));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 0u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 0u);
}

// '/' in the TUI: the new program is in force for the next segment, and
// removing the filter tracks everything again.
TEST_F(FilterTest, LiveChangeTakesEffectAtOnce) {
    set("port 80");
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    Conn b(false, {"10.0.0.1", 40001}, {"10.0.0.2", 443});
    talk(a);
    talk(b);
    EXPECT_EQ(flows().size(), 1u);
    set("port 443");
    Conn c(false, {"10.0.0.1", 40002}, {"10.0.0.2", 443});
    talk(c);
    const Totals a_before = a.expect;
    egress(a.c2s(kAck | kPsh, 50));  // no longer counted
    a.expect = a_before;
    auto got = flows();
    ASSERT_EQ(got.size(), 2u);
    for (const auto& [key, t] : got) {
        if (key == a.key)
            EXPECT_EQ(t, a_before);
        else
            EXPECT_EQ(key, c.key);
    }
    set("");
    Conn d(false, {"10.0.0.1", 40003}, {"10.0.0.2", 22});
    talk(d);
    EXPECT_EQ(flows().size(), 3u);
}

// A kept connection's verdict is stamped in its slot (tt_slot.fsel: the
// selector's low byte) at its first settled segment, so later segments skip
// the filter; every change of filter has a new selector, so the connection is
// judged again: counted on while the new filter keeps it, not from the first
// segment it leaves it out. Selectors never have a low byte of 0 (a new
// slot's "never judged").
TEST_F(FilterTest, KeptVerdictStampedInTheSlotAndJudgedAgainAtEachChange) {
    const auto sel_byte = [&] {
        return static_cast<std::uint8_t>(
            __atomic_load_n(&(*skel_)->bss->tt_filter_sel, __ATOMIC_ACQUIRE));
    };
    const auto stamp = [&](const tt_flow_key& key) {
        const auto s = live_slot(key);
        return s ? s->s.fsel : std::uint8_t{0};
    };
    set("port 80");
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    talk(a);
    egress(a.c2s(kAck | kPsh, 10));  // settled: counted through this CPU's cache entry
    ASSERT_NE(sel_byte(), 0);
    EXPECT_EQ(stamp(a.key), sel_byte()) << "the verdict was not stamped";

    set("port 80 or port 443");  // still kept: counted, and stamped with the new selector
    const std::uint8_t before = stamp(a.key);
    ASSERT_NE(sel_byte(), before);
    egress(a.c2s(kAck | kPsh, 20));
    EXPECT_EQ(stamp(a.key), sel_byte());
    expect_single(a.key, a.expect, TT_ESTABLISHED, "kept by both filters: every segment counted");

    set("port 443");  // left out: not counted, not stamped
    const Totals kept = a.expect;
    egress(a.c2s(kAck | kPsh, 30));
    a.expect = kept;
    EXPECT_NE(stamp(a.key), sel_byte());
    expect_single(a.key, a.expect, TT_ESTABLISHED, "left out from the change on");

    for (int i = 0; i < 600; ++i) {  // wraps the selector's low byte several times
        set(i % 2 ? "port 80" : "");
        if (i % 2) {
            ASSERT_NE(sel_byte(), 0) << "change " << i;
        }
    }
}

// The longest program the classifiers take runs to its last op.
TEST_F(FilterTest, LongestProgramRunsToTheEnd) {
    std::string expr = "port 1";
    for (int p = 2; p <= 32; ++p) expr += " or port " + std::to_string(p);
    const tt_filter f = tcptrack::compile_filter(expr);
    ASSERT_EQ(f.n, 63u);
    skel_->set_filter(f);
    Conn last(false, {"10.0.0.1", 40000}, {"10.0.0.2", 32});
    Conn past(false, {"10.0.0.1", 40001}, {"10.0.0.2", 33});
    talk(last);
    talk(past);
    const auto got = flows();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].first, last.key);
    EXPECT_EQ(got[0].second, last.expect);
}

using FilterTableTest = FilterTest;

// Sets in the tables: 32 hosts, and nets of several prefix lengths and both
// families, each one atom; the classifiers keep exactly the members.
TEST_F(FilterTableTest, LargeHostAndNetSets) {
    std::string hosts = "host 10.0.1.1";
    for (int h = 2; h <= 32; ++h) hosts += " or host 10.0.1." + std::to_string(h);
    const tt_filter f = tcptrack::compile_filter(hosts);
    ASSERT_EQ(f.table, 1u);
    skel_->set_filter(f);
    Conn first(false, {"10.0.1.1", 40000}, {"192.0.2.1", 80});
    Conn last(false, {"192.0.2.1", 40001}, {"10.0.1.32", 80});
    Conn past(false, {"10.0.1.33", 40002}, {"192.0.2.1", 80});
    talk(first);
    talk(last);
    talk(past);
    EXPECT_EQ(flows().size(), 2u);

    clear_maps();
    const tt_filter nets = tcptrack::compile_filter(
        "net 11.0.0.0/8 or net 172.16.0.0/12 or net 192.168.0.0/16 or net 10.1.2.0/24 or net "
        "2001:db8::/32 or net fd00::/8");
    ASSERT_EQ(nets.table, 1u);
    skel_->set_filter(nets);
    Conn in8(false, {"11.200.0.1", 40000}, {"8.8.8.8", 443});
    Conn in12(false, {"8.8.8.8", 40000}, {"172.31.255.254", 443});
    Conn in24(false, {"10.1.2.200", 40000}, {"8.8.8.8", 443});
    Conn in6(true, {"fd12::1", 40000}, {"2001:db9::1", 443});
    Conn out24(false, {"10.1.3.1", 40000}, {"8.8.8.8", 443});
    Conn out12(false, {"172.32.0.1", 40000}, {"8.8.8.8", 443});
    Conn out6(true, {"2001:db9::1", 40000}, {"fe80::1", 443});
    for (Conn* c : {&in8, &in12, &in24, &in6, &out24, &out12, &out6}) talk(*c);
    const auto got = flows();
    ASSERT_EQ(got.size(), 4u);
    for (const auto& [key, t] : got)
        EXPECT_TRUE(key == in8.key || key == in12.key || key == in24.key || key == in6.key);
}

// Sixteen distinct tests with src/dst in the tables, and seventeen in the
// interpreter: the same connections kept.
TEST_F(FilterTableTest, SixteenTestsInTheTablesSeventeenInTheInterpreter) {
    const std::string e16 =
        "(src host 10.0.0.9 or dst net 192.0.2.0/24) and (dst port 22 or src net 10.9.0.0/16) "
        "or (host 2001:db8::1 and port 8443) or (src portrange 8000-8999 and dst host "
        "10.9.9.9) or (net 172.16.0.0/12 and dst port 80) or (host 10.0.0.7 and src port "
        "40000) or (net fd00::/8 and port 0) or (src net 10.0.0.0/24 and dst port 443)";
    std::string e17 = "port 1";
    for (int p = 2; p <= 17; ++p) e17 += " and port " + std::to_string(p);
    e17 += " or net 192.0.2.0/24 and net 10.9.0.0/16 and port 22";  // within 64 ops: no src/dst
    for (const std::string& e : {e16, e17}) {
        SCOPED_TRACE(e);
        clear_maps();
        const tt_filter f = tcptrack::compile_filter(e);
        ASSERT_EQ(f.table, e == e16 ? 1u : 0u);
        skel_->set_filter(f);
        // Kept by the first pair: dst 192.0.2.0/24 and src 10.9.0.0/16 (and port 22).
        Conn keep(false, {"10.9.1.1", 40000}, {"192.0.2.5", 22});
        Conn drop(false, {"10.9.1.1", 40001}, {"192.0.3.5", 22});
        talk(keep);
        talk(drop);
        const auto got = flows();
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0].first, keep.key);
    }
}

}  // namespace
}  // namespace tt_test
