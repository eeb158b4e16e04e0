// SPDX-License-Identifier: MIT
// Readers: the production Collector reads the datapath through each reader
// (map iterator, batched lookups, key by key) on each datapath.
#include <bpf/bpf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

using ReaderTest = BpfTest;
using tcptrack::FlowSample;

TEST_P(ReaderTest, ProductionCollectorReportsLiveThenFinishedFlow) {
    tcptrack::Collector col = collector();  // sole ring consumer in this test
    EXPECT_EQ(col.reader(), reader());
    Conn c(false, {"10.1.0.1", 40000}, {"10.1.0.2", 80});
    establish(c);
    auto live = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].key, c.key);
    EXPECT_TRUE(live[0].has_info);
    EXPECT_FALSE(live[0].finished);
    EXPECT_EQ(live[0].info.state, TT_ESTABLISHED);
    EXPECT_EQ(totals_of(live[0]), c.expect);

    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    col.poll(0);
    auto done = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].finished);
    EXPECT_EQ(done[0].info.state, TT_CLOSED);
    EXPECT_EQ(totals_of(done[0]), c.expect);
    EXPECT_TRUE(col.collect(tcptrack::monotonic_ns()).empty());
}

INSTANTIATE_TEST_SUITE_P(Bpf, ReaderTest, ::testing::ValuesIn(reader_paths()), path_name);

}  // namespace
}  // namespace tt_test
