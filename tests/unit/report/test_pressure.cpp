// SPDX-License-Identifier: MIT
// PressureNotice: the once-a-minute stderr line about untracked connections:
// its wording for each reason, its rate limit, and silence when nothing is new.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "report/pressure.hpp"

using namespace tcptrack;

namespace {

constexpr std::uint64_t kSec = 1'000'000'000ull;
constexpr std::uint64_t kStart = 1000 * kSec;  // monotonic time of the load

// Cumulative figures as a report carries them.
ReportStats stats(std::uint64_t full, std::uint64_t buckets, std::uint64_t assured = 65536,
                  std::uint64_t tracked = 65536) {
    ReportStats s;
    s.capacity = 65536;
    s.tracked = tracked;
    s.assured = assured;
    s.unassured = tracked - assured;
    s.untracked_full = full;
    s.untracked_buckets = buckets;
    s.untracked = full + buckets;
    return s;
}

}  // namespace

TEST(Pressure, NothingWhenNothingWentUntracked) {
    PressureNotice p(kStart);
    for (int i = 1; i <= 100; ++i)
        EXPECT_EQ(p.update(stats(0, 0, 10, 12), kStart + i * 2 * kSec), std::nullopt) << i;
}

TEST(Pressure, StoreFullWording) {
    PressureNotice p(kStart);
    EXPECT_EQ(p.update(stats(0, 0), kStart + 2 * kSec), std::nullopt);
    // The first refusals are told at once; the window starts at the last quiet report.
    EXPECT_EQ(p.update(stats(1234, 0), kStart + 4 * kSec),
              "1234 connections untracked in the last 2 s (store full: 65536 of 65536 slots hold "
              "assured connections); raise --max-flows");
}

TEST(Pressure, BucketsWordingAndSingular) {
    PressureNotice p(kStart);
    EXPECT_EQ(p.update(stats(0, 1, 30000, 40000), kStart + 2 * kSec),
              "1 connection untracked in the last 2 s (buckets full: both index buckets of their "
              "keys held assured connections only, 40000 of 65536 slots in use); raise "
              "--max-flows (more index buckets)");
}

TEST(Pressure, BothReasonsCountedApart) {
    PressureNotice p(kStart);
    EXPECT_EQ(p.update(stats(1000, 234), kStart + 60 * kSec),
              "1234 connections untracked in the last 60 s (1000 store full: 65536 of 65536 slots "
              "hold assured connections; 234 buckets full: both index buckets of their keys held "
              "assured connections only); raise --max-flows");
}

TEST(Pressure, NoReasonKnown) {
    PressureNotice p(kStart);
    ReportStats s = stats(0, 0);
    s.untracked = 5;  // refusals without a reason counted (never expected)
    EXPECT_EQ(p.update(s, kStart + 1 * kSec),
              "5 connections untracked in the last 1 s (no room in the store); raise --max-flows");
}

TEST(Pressure, AtMostOnceAMinuteWithWhatWentUntrackedMeanwhile) {
    PressureNotice p(kStart);
    ASSERT_TRUE(p.update(stats(10, 0), kStart + 2 * kSec));
    // More refusals for the next minute: no line, they are kept for the next one.
    for (std::uint64_t t = 4; t < 62; t += 2)
        EXPECT_EQ(p.update(stats(10 + t, 0), kStart + t * kSec), std::nullopt) << t;
    // A minute after the last line: everything since it.
    EXPECT_EQ(p.update(stats(72, 0), kStart + 62 * kSec),
              "62 connections untracked in the last 60 s (store full: 65536 of 65536 slots hold "
              "assured connections); raise --max-flows");
    // Quiet for a while: nothing, however long; then new refusals are told at
    // once, over the time since the last quiet report.
    for (std::uint64_t t = 64; t <= 300; t += 2)
        EXPECT_EQ(p.update(stats(72, 0), kStart + t * kSec), std::nullopt) << t;
    EXPECT_EQ(p.update(stats(75, 0, 65000), kStart + 302 * kSec),
              "3 connections untracked in the last 2 s (store full: 65000 of 65536 slots hold "
              "assured connections); raise --max-flows");
}

TEST(Pressure, NewRefusalsWithinTheMinuteWaitForIt) {
    PressureNotice p(kStart);
    ASSERT_TRUE(p.update(stats(1, 0), kStart + 2 * kSec));
    EXPECT_EQ(p.update(stats(1, 0), kStart + 4 * kSec), std::nullopt);
    EXPECT_EQ(p.update(stats(1, 0), kStart + 30 * kSec), std::nullopt);
    EXPECT_EQ(p.update(stats(1, 7), kStart + 32 * kSec), std::nullopt);  // within the minute
    EXPECT_EQ(p.update(stats(1, 7), kStart + 40 * kSec), std::nullopt);
    // At the minute: told, over the time since the last report with nothing new (30 s).
    const auto line = p.update(stats(1, 9, 60000, 65536), kStart + 62 * kSec);
    EXPECT_EQ(line,
              "9 connections untracked in the last 32 s (buckets full: both index buckets of "
              "their keys held assured connections only, 65536 of 65536 slots in use); raise "
              "--max-flows (more index buckets)");
    EXPECT_EQ(p.update(stats(1, 9), kStart + 200 * kSec), std::nullopt);  // nothing new
}
