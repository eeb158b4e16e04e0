// SPDX-License-Identifier: MIT
#include "report/report_builder.hpp"

#include <algorithm>
#include <cstring>

#include "report/radix_order.hpp"

namespace tcptrack {
namespace {

// (src, sport, dst, dport) < ...: FlowRow's address arrays compare like memcmp.
bool ends_less(const Endpoints& a, const Endpoints& b) {
    if (const int c = std::memcmp(a.src.data(), b.src.data(), 16)) return c < 0;
    if (a.sport != b.sport) return a.sport < b.sport;
    if (const int c = std::memcmp(a.dst.data(), b.dst.data(), 16)) return c < 0;
    return a.dport < b.dport;
}

// The figures of a connection, from its sample or its row, for sort_value.
struct SampleFigures {
    const FlowSample& s;
    const Rate& r;
    std::uint64_t now_ns;
    double rate() const { return r.fwd_bps + r.rev_bps; }
    std::uint64_t bytes() const { return s.bytes[0] + s.bytes[1]; }
    std::uint64_t packets() const { return s.packets[0] + s.packets[1]; }
    std::uint64_t age_ns() const {
        return s.has_info && now_ns > s.info.first_ns ? now_ns - s.info.first_ns : 0;
    }
    std::optional<std::uint64_t> rtt() const { return shown_rtt(s); }
    std::uint64_t retrans() const { return total_retrans(s); }
};
struct RowFigures {
    const FlowRow& r;
    double rate() const { return r.fwd_bps + r.rev_bps; }
    std::uint64_t bytes() const { return r.fwd_bytes + r.rev_bytes; }
    std::uint64_t packets() const { return r.fwd_packets + r.rev_packets; }
    std::uint64_t age_ns() const { return r.age_ns; }
    std::optional<std::uint64_t> rtt() const { return shown_rtt(r); }
    std::uint64_t retrans() const { return total_retrans(r); }
};

template <typename F>
double sort_by(SortKey key, const F& f) {
    switch (key) {
        case SortKey::Rate:
            return f.rate();
        case SortKey::Bytes:
            return static_cast<double>(f.bytes());
        case SortKey::Packets:
            return static_cast<double>(f.packets());
        case SortKey::Age:
            return static_cast<double>(f.age_ns());
        case SortKey::Rtt:
            if (const auto rtt = f.rtt()) return static_cast<double>(*rtt);
            return -1.0;
        case SortKey::Retrans:
            return static_cast<double>(f.retrans());
    }
    return 0.0;
}

// Entry::sample's top bit: not IPv4, the endpoints are not packed in the entry.
constexpr std::uint32_t kNotV4 = 0x80000000u;

}  // namespace

double sort_value(SortKey key, const FlowSample& s, const Rate& r, std::uint64_t now_ns) {
    return sort_by(key, SampleFigures{s, r, now_ns});
}

double sort_value(SortKey key, const FlowRow& r) { return sort_by(key, RowFigures{r}); }

void ReportBuilder::build(const std::vector<FlowSample>& samples, std::uint64_t now_ns,
                          std::uint64_t elapsed_ns, bool closed_only,
                          const std::vector<std::uint32_t>* only, SortKey sort, std::size_t top) {
    samples_ = &samples;
    now_ns_ = now_ns;
    stats_ = ReportStats{};
    order_.clear();
    order_.reserve(only ? only->size() : samples.size());
    bool all_v4 = true;
    auto look = [&](std::uint32_t i) {
        const FlowSample& s = samples[i];
        if (s.finished) ++stats_.closed;
        if (s.has_info)
            if (const auto rtt = handshake_rtt(s.info)) stats_.rtt.add(*rtt);
        if (closed_only && !ended(s)) return;
        if (health_totals_)
            for (int d = 0; d < 2; ++d) {
                const WideSide h = wide_side(s, d, now_ns);
                stats_.retrans += h.retrans;
                stats_.retrans_bytes += h.retrans_bytes;
                stats_.lost_segments += h.gaps;
                stats_.dup_acks += h.dup_acks;
                stats_.zero_windows += h.zero_win;
            }
        const Rate r = rate_of(s, now_ns, elapsed_ns);
        // IPv4 endpoints packed in the entry (96 bits, same order as ends_less)
        // so sorting ties never reads two samples: at 1M rows that was most of
        // the build. IPv6 ones compare their samples.
        Entry e{sort_value(sort, s, r, now_ns), s.bytes[0] + s.bytes[1], 0, 0, i};
        if (s.key.family() == TT_FAMILY_INET) {
            const Endpoints ep = oriented(s);
            std::uint32_t src, dst;
            std::memcpy(&src, ep.src.data(), 4);
            std::memcpy(&dst, ep.dst.data(), 4);
            src = __builtin_bswap32(src);
            dst = __builtin_bswap32(dst);
            e.ends_hi = std::uint64_t{src} << 32 | std::uint64_t{ep.sport} << 16 | dst >> 16;
            e.ends_lo = (dst & 0xffff) << 16 | ep.dport;
        } else {
            e.sample |= kNotV4;
            all_v4 = false;
        }
        order_.push_back(e);
    };
    if (only) {
        for (const std::uint32_t i : *only) look(i);
    } else {
        for (std::uint32_t i = 0; i < samples.size(); ++i) look(i);
    }

    // Largest first by the sort key, then by bytes, then stable by endpoints, so
    // consecutive reports line up; the sample order settles the rest (same
    // endpoints on two interfaces).
    elapsed_ns_ = elapsed_ns;
    const auto before = [&](const Entry& a, const Entry& b) {
        if (a.key != b.key) return a.key > b.key;
        if (a.bytes != b.bytes) return a.bytes > b.bytes;
        const std::uint32_t ia = a.sample & ~kNotV4, ib = b.sample & ~kNotV4;
        if (!((a.sample | b.sample) & kNotV4)) {
            if (a.ends_hi != b.ends_hi) return a.ends_hi < b.ends_hi;
            if (a.ends_lo != b.ends_lo) return a.ends_lo < b.ends_lo;
            return ia < ib;
        }
        const Endpoints ea = oriented(samples[ia]), eb = oriented(samples[ib]);
        if (ends_less(ea, eb)) return true;
        if (ends_less(eb, ea)) return false;
        return ia < ib;
    };
    total_ = order_.size();
    if (top > 0 && top < order_.size()) {
        // Only the first rows are printed: no need to order the rest.
        std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(top),
                          order_.end(), before);
        order_.resize(top);
    } else {
        // Largest key, then most bytes, first: both words descending.
        // Then, when every row is IPv4, the packed endpoints and the sample:
        // the whole order, with no comparison left but in the smallest runs.
        const auto word = [](const Entry& e, int w) -> std::uint64_t {
            switch (w) {
                case 0:
                    return ~ordered_bits(e.key);
                case 1:
                    return ~e.bytes;
                case 2:
                    return e.ends_hi;
                default:
                    return std::uint64_t{e.ends_lo} << 32 | e.sample;
            }
        };
        radix_order(order_.data(), order_.data() + order_.size(), all_v4 ? 4 : 2, word, before);
    }
    rows_.resize(order_.size());
    for (std::size_t i = 0; i < rows_.size(); ++i) rows_[i] = order_[i].sample & ~kNotV4;
    std::vector<Entry>().swap(order_);
}

void ReportBuilder::row(std::size_t i, FlowRow& out) const {
    const FlowSample& s = (*samples_)[rows_[i]];
    fill_row(out, s, iface_name(names_, s.key.ifindex()), now_ns_);
    const Rate r = rate_of(s, now_ns_, elapsed_ns_);
    out.fwd_bps = r.fwd_bps;
    out.rev_bps = r.rev_bps;
    // fill_row leaves the enrichers' fields as the scratch row had them.
    out.pid.reset();
    out.comm.clear();
    out.cgroup.clear();
    for (const Enricher* e : enrichers_) e->fill(s.ref, out);
}

namespace {
// Display order jumps around the samples: rows fetch a few ahead so
// rendering does not wait on memory.
constexpr std::size_t kAhead = 16;
}  // namespace

RowTable ReportBuilder::table() const {
    return {rows_.size(), [this](std::size_t i, FlowRow& scratch) -> const FlowRow* {
                if (i + kAhead < rows_.size()) {
                    const char* p = reinterpret_cast<const char*>(&(*samples_)[rows_[i + kAhead]]);
                    // A sample is its own three lines (alignas 64).
                    for (std::size_t off = 0; off < sizeof(FlowSample); off += 64)
                        __builtin_prefetch(p + off);
                }
                row(i, scratch);
                return &scratch;
            }};
}

RowSource ReportBuilder::rows() const {
    return [t = table(), i = std::size_t{0}](FlowRow& scratch) mutable -> const FlowRow* {
        return i < t.size ? t.row(i++, scratch) : nullptr;
    };
}

}  // namespace tcptrack
