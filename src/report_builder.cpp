// SPDX-License-Identifier: MIT
#include "tcptrack/report_builder.hpp"

#include <algorithm>
#include <cstring>

namespace tcptrack {
namespace {

// (src, sport, dst, dport) < ...: FlowRow's address arrays compare like memcmp.
bool ends_less(const Endpoints& a, const Endpoints& b) {
    if (const int c = std::memcmp(a.src, b.src, 16)) return c < 0;
    if (a.sport != b.sport) return a.sport < b.sport;
    if (const int c = std::memcmp(a.dst, b.dst, 16)) return c < 0;
    return a.dport < b.dport;
}

}  // namespace

void ReportBuilder::build(const std::vector<FlowSample>& samples, std::uint64_t now_ns,
                          std::uint64_t elapsed_ns, bool closed_only,
                          const std::vector<std::uint32_t>* only) {
    samples_ = &samples;
    now_ns_ = now_ns;
    stats_ = ReportStats{};
    order_.clear();
    order_.reserve(only ? only->size() : samples.size());
    auto look = [&](std::uint32_t i) {
        const FlowSample& s = samples[i];
        if (s.finished) ++stats_.closed;
        if (s.has_info)
            if (const auto rtt = handshake_rtt(s.info)) stats_.rtt.add(*rtt);
        if (closed_only) {
            const State st = shown_state(s);
            if (st != State::Closed && st != State::Reset) return;
        }
        const Rate r = rate_of(s, now_ns, elapsed_ns);
        order_.push_back(Entry{r.fwd_bps, r.rev_bps, s.bytes[0] + s.bytes[1], i});
    };
    if (only) {
        for (const std::uint32_t i : *only) look(i);
    } else {
        for (std::uint32_t i = 0; i < samples.size(); ++i) look(i);
    }

    // Busiest first, then stable by endpoints, so consecutive reports line up;
    // the sample order settles the rest (same endpoints on two interfaces).
    std::sort(order_.begin(), order_.end(), [&](const Entry& a, const Entry& b) {
        const double ra = a.fwd_bps + a.rev_bps, rb = b.fwd_bps + b.rev_bps;
        if (ra != rb) return ra > rb;
        if (a.bytes != b.bytes) return a.bytes > b.bytes;
        const Endpoints ea = oriented(samples[a.sample]), eb = oriented(samples[b.sample]);
        if (ends_less(ea, eb)) return true;
        if (ends_less(eb, ea)) return false;
        return a.sample < b.sample;
    });
}

void ReportBuilder::row(std::size_t i, FlowRow& out) const {
    static const std::string unknown;
    const Entry& e = order_[i];
    const FlowSample& s = (*samples_)[e.sample];
    const auto name = names_.find(s.key.ifindex);
    fill_row(out, s, name != names_.end() ? name->second : unknown, now_ns_);
    out.fwd_bps = e.fwd_bps;
    out.rev_bps = e.rev_bps;
}

RowSource ReportBuilder::rows() const {
    constexpr std::size_t kAhead = 16;
    return [this, i = std::size_t{0}](FlowRow& scratch) mutable -> const FlowRow* {
        if (i == order_.size()) return nullptr;
        // Display order jumps around the samples: fetch a few rows ahead so
        // rendering does not wait on memory.
        if (i + kAhead < order_.size()) {
            const char* p = reinterpret_cast<const char*>(&(*samples_)[order_[i + kAhead].sample]);
            for (std::size_t off = 0; off < sizeof(FlowSample); off += 64) __builtin_prefetch(p + off);
            __builtin_prefetch(p + sizeof(FlowSample) - 1);
        }
        row(i++, scratch);
        return &scratch;
    };
}

}  // namespace tcptrack
