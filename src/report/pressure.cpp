// SPDX-License-Identifier: MIT
#include "report/pressure.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace tcptrack {
namespace {

std::uint64_t grown(std::uint64_t now, std::uint64_t before) {
    return now > before ? now - before : 0;
}

}  // namespace

std::optional<std::string> PressureNotice::update(const ReportStats& st, std::uint64_t now_ns) {
    if (st.untracked < untracked_) {  // counters started again (never expected): from here
        untracked_ = st.untracked, full_ = st.untracked_full, buckets_ = st.untracked_buckets;
    }
    const std::uint64_t n = grown(st.untracked, untracked_);
    if (n == 0) {
        since_ns_ = now_ns;  // nothing new up to here
        return std::nullopt;
    }
    if (last_line_ns_ && grown(now_ns, *last_line_ns_) < period_ns_) return std::nullopt;

    const std::uint64_t full = grown(st.untracked_full, full_);
    const std::uint64_t buckets = grown(st.untracked_buckets, buckets_);
    const std::string store_full =
        fmt::format("store full: {} of {} slots hold assured connections", st.assured, st.capacity);
    const std::string buckets_full =
        "buckets full: both index buckets of their keys held assured connections only";
    std::string why;
    if (full && buckets)
        why = fmt::format("{} {}; {} {}", full, store_full, buckets, buckets_full);
    else if (full)
        why = store_full;
    else if (buckets)
        why = buckets_full + fmt::format(", {} of {} slots in use", st.tracked, st.capacity);
    else
        why = "no room in the store";
    const std::uint64_t secs =
        std::max<std::uint64_t>((grown(now_ns, since_ns_) + 500'000'000) / 1'000'000'000, 1);
    std::string line =
        fmt::format("{} connection{} untracked in the last {} s ({}); raise --max-flows{}", n,
                    n == 1 ? "" : "s", secs, why, full || !buckets ? "" : " (more index buckets)");
    untracked_ = st.untracked;
    full_ = st.untracked_full;
    buckets_ = st.untracked_buckets;
    last_line_ns_ = now_ns;
    since_ns_ = now_ns;
    return line;
}

}  // namespace tcptrack
