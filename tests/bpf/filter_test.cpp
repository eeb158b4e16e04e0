// SPDX-License-Identifier: MIT
// The capture filter in the classifiers: matching connections counted exactly,
// others leave no trace in any flow map and are never "untracked"; IPv4 and
// IPv6; src/dst keep whole connections; a live change takes effect at once.
#include <string>
#include <vector>

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

}  // namespace
}  // namespace tt_test
