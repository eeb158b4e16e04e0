// SPDX-License-Identifier: MIT
// radix_order must give exactly std::sort's order: the display order of a
// report does not depend on which sort produced it.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "report/radix_order.hpp"

namespace tcptrack {
namespace {

// Shaped like the report's entries: a double key (largest first), a count
// (largest first), then a unique id.
struct Item {
    double key;
    std::uint64_t bytes;
    std::uint32_t id;
};

bool before(const Item& a, const Item& b) {
    if (a.key != b.key) return a.key > b.key;
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.id < b.id;
}

std::uint64_t word(const Item& e, int w) { return ~(w == 0 ? ordered_bits(e.key) : e.bytes); }

void expect_sorted_like_std(std::vector<Item> items) {
    std::vector<Item> want = items;
    std::sort(want.begin(), want.end(), before);
    radix_order(items.data(), items.data() + items.size(), 2, word, before);
    ASSERT_EQ(items.size(), want.size());
    for (std::size_t i = 0; i < items.size(); ++i)
        ASSERT_EQ(items[i].id, want[i].id) << "at " << i << " of " << items.size();
}

TEST(RadixOrder, DoublesOrderAsTheirBits) {
    const double v[] = {-std::numeric_limits<double>::infinity(),
                        -1e300,
                        -2.5,
                        -1.0,
                        -1e-300,
                        0.0,
                        1e-300,
                        1.0,
                        2.5,
                        1e300,
                        std::numeric_limits<double>::infinity()};
    for (std::size_t i = 0; i + 1 < std::size(v); ++i)
        EXPECT_LT(ordered_bits(v[i]), ordered_bits(v[i + 1])) << v[i] << " < " << v[i + 1];
    EXPECT_EQ(ordered_bits(-0.0), ordered_bits(0.0));
}

TEST(RadixOrder, SameOrderAsStdSortOnEveryShape) {
    std::mt19937_64 rng(7);
    for (const std::size_t n : {0u, 1u, 2u, 47u, 48u, 49u, 1000u, 100000u}) {
        std::vector<Item> spread, ties, idle, mixed;
        for (std::uint32_t i = 0; i < n; ++i) {
            // Keys over many magnitudes, bytes over 64 bits.
            spread.push_back(
                {std::ldexp(static_cast<double>(rng() % 1000), int(rng() % 60)), rng(), i});
            // Few distinct keys and byte counts: long runs tie on both words.
            ties.push_back({static_cast<double>(rng() % 7) * 1000.5, rng() % 5, i});
            // An idle report: every key 0 (one of them -0.0), bytes decide.
            idle.push_back({i == n / 2 ? -0.0 : 0.0, rng() % 100000, i});
            // --sort rtt: -1 for rows without an RTT, else a positive time.
            mixed.push_back(
                {rng() % 3 ? -1.0 : static_cast<double>(rng() % 100000000), rng() % 3, i});
        }
        expect_sorted_like_std(spread);
        expect_sorted_like_std(ties);
        expect_sorted_like_std(idle);
        expect_sorted_like_std(mixed);
    }
}

}  // namespace
}  // namespace tcptrack
