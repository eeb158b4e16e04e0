// SPDX-License-Identifier: MIT
// The filter's tables (tcptrack/filter_vm.h): the same verdict as the postfix
// program's interpreter on every key, sets folded into one atom each, the
// 16-atom limit, and what does not fit them running in the interpreter.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "datapath/filter.hpp"

namespace tcptrack {
namespace {

std::unique_ptr<tt_filter> compiled(const std::string& expr) {
    return std::make_unique<tt_filter>(compile_filter(expr));
}

int atoms(const tt_filter& f) {
    return __builtin_popcount(static_cast<unsigned>(f.side_a | f.side_b));
}

// Keys drawn from the addresses and ports the expressions name, their
// neighbours, and others: both families, either order.
tt_flow_key random_key(std::mt19937& rng) {
    static const char* v4[] = {"10.0.0.1",  "10.0.0.2",   "10.1.2.3",       "10.9.9.9", "192.0.2.7",
                               "192.0.2.9", "172.16.5.4", "172.31.255.255", "8.8.8.8",  "0.0.0.0"};
    static const char* v6[] = {"2001:db8::1", "2001:db8:1::2", "fd00::2",
                               "fe80::1",     "::1",           "2001:db9::1"};
    static const std::uint16_t ports[] = {0,   1,   2,    22,   23,    80,    81, 443,
                                          444, 500, 8000, 8999, 40000, 65535, 31, 32};
    tt_flow_key k{};
    k.family = rng() % 2 ? TT_FAMILY_INET6 : TT_FAMILY_INET;
    const bool six = k.family == TT_FAMILY_INET6;
    inet_pton(six ? AF_INET6 : AF_INET, six ? v6[rng() % std::size(v6)] : v4[rng() % std::size(v4)],
              k.addr_a);
    inet_pton(six ? AF_INET6 : AF_INET, six ? v6[rng() % std::size(v6)] : v4[rng() % std::size(v4)],
              k.addr_b);
    k.port_a =
        htons(rng() % 4 ? ports[rng() % std::size(ports)] : static_cast<std::uint16_t>(rng()));
    k.port_b =
        htons(rng() % 4 ? ports[rng() % std::size(ports)] : static_cast<std::uint16_t>(rng()));
    return k;
}

// The tables and the interpreter agree on 20,000 keys.
void expect_same_as_interpreter(const std::string& expr) {
    SCOPED_TRACE(expr);
    auto f = compiled(expr);
    ASSERT_EQ(f->table, 1u) << "expected the tables to hold it";
    std::mt19937 rng(7);
    for (int i = 0; i < 20000; ++i) {
        const tt_flow_key k = random_key(rng);
        ASSERT_EQ(tt_filter_run_table(f.get(), &k), tt_filter_run_ops(f.get(), &k)) << "key #" << i;
    }
}

TEST(FilterTables, SameVerdictAsTheInterpreter) {
    for (const char* e : {
             "port 443",
             "port 80 or 443",
             "host 10.0.0.1",
             "net 10.0.0.0/8 or net 192.0.2.0/24 or net 2001:db8::/32",
             "port 443 and not net 10.0.0.0/8",
             "src net 10.0.0.0/8 and dst port 443 and not host 10.9.9.9",
             "src host 10.0.0.1 or dst host 192.0.2.7",
             "src port 80 or dst port 443 or port 22",
             "not port 22 and not port 23 and not src net 10.0.0.0/8",
             "portrange 400-500 or portrange 8000-8999 and host 192.0.2.9",
             "(port 80 or host 10.0.0.1) and (port 443 or net fd00::/8)",
             "net 0.0.0.0/0 and not net ::/0 or net ::/0 and port 22",
             "not (src port 80 and dst portrange 1-1000) and (net 10.0.0.0/8 or net "
             "10.1.0.0/16 or host 10.1.2.3)",
             "host 10.0.0.1 and host 10.0.0.2 or src port 443 and dst port 40000",
             "port 0 or port 65535 or portrange 1-2",
         })
        expect_same_as_interpreter(e);
}

// Sets of any size take one atom: OR-ed leaves of one kind on one side.
TEST(FilterTables, SetsFoldIntoOneAtom) {
    std::string ports = "port 1", hosts = "host 10.0.0.1", nets = "net 10.0.0.0/8";
    for (int p = 2; p <= 31; ++p) ports += " or port " + std::to_string(p);
    for (int h = 2; h <= 32; ++h) hosts += " or host 10.0.0." + std::to_string(h);
    for (int n = 11; n <= 25; ++n)
        nets += " or net " + std::to_string(n) + ".0.0.0/" + std::to_string(8 + n % 9) +
                " or net 2001:db8:" + std::to_string(n) + "::/48";
    for (const auto& e : {ports + " or port 443", hosts, nets}) {
        SCOPED_TRACE(e);
        auto f = compiled(e);
        EXPECT_EQ(f->table, 1u);
        EXPECT_EQ(atoms(*f), 1);
    }
    EXPECT_EQ(atoms(*compiled("port 80 or 443 or host 10.0.0.1 or 10.0.0.2")), 2)
        << "ports and addresses: two sets";
    EXPECT_EQ(atoms(*compiled("src port 80 or dst port 80 or port 81")), 3) << "one per side";
    EXPECT_EQ(atoms(*compiled("not port 22 and not port 23 and not port 24")), 1)
        << "not a and not b = not (a or b)";
    EXPECT_EQ(atoms(*compiled("port 80 and port 80")), 1) << "the same test once";
    expect_same_as_interpreter(ports + " or port 443");
    expect_same_as_interpreter(hosts);
    expect_same_as_interpreter(nets);
}

// Up to 16 distinct tests in the tables; past that the interpreter, same verdicts.
TEST(FilterTables, SixteenAtomsThenTheInterpreter) {
    std::string e16 = "port 1";
    for (int p = 2; p <= 16; ++p) e16 += " and port " + std::to_string(p);
    auto f16 = compiled(e16);
    EXPECT_EQ(f16->table, 1u);
    EXPECT_EQ(atoms(*f16), 16);
    auto f17 = compiled(e16 + " and port 17");
    EXPECT_EQ(f17->table, 0u);
    EXPECT_EQ(f17->n, 33u);
    std::mt19937 rng(3);
    for (int i = 0; i < 2000; ++i) {
        const tt_flow_key k = random_key(rng);
        ASSERT_EQ(filter_matches(*f17, k), tt_filter_run_ops(f17.get(), &k) != 0);
    }

    // Sixteen of every kind, mixed, in the tables (src/dst count twice
    // against the 64 ops: 16 leaves and no not at most).
    for (const std::string mixed : {
             "(host 10.0.0.1 or net 192.0.2.0/24) and not (port 22 or net 10.9.0.0/16) and "
             "(host 2001:db8::1 and port 443 or portrange 8000-8999 and not host 10.9.9.9) or "
             "(net 172.16.0.0/12 and port 80) or (host 10.0.0.2 and not port 40000) or "
             "(net fd00::/8 and not net fd00:1::/32) or (port 0 and host 8.8.8.8) or "
             "portrange 1-2",
             "(src host 10.0.0.1 or dst net 192.0.2.0/24) and (dst port 22 or src net "
             "10.9.0.0/16) and (host 2001:db8::1 and port 443 or src portrange 8000-8999 and dst "
             "host 10.9.9.9) or (net 172.16.0.0/12 and dst port 80) or (host 10.0.0.2 and src "
             "port 40000) or (net fd00::/8 and src net fd00:1::/32) or (port 0 and src host "
             "8.8.8.8)",
         }) {
        auto fm = compiled(mixed);
        EXPECT_EQ(atoms(*fm), 16) << mixed;
        expect_same_as_interpreter(mixed);
    }
}

}  // namespace
}  // namespace tcptrack
