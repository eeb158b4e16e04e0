// SPDX-License-Identifier: MIT
#include "datapath/health_reader.hpp"

namespace tcptrack {
namespace {

template <typename T>
T load(const volatile T& v) {
    return v;
}

// zero_win_ms with a current stretch counted up to end_ms (modulo 2^32).
std::uint32_t zw_ms(const SideFigures& s, std::uint32_t end_ms) {
    return s.zero_win_ms + ((s.flags & TT_H_ZW) ? end_ms : 0);
}

// Whether a zero-window total crossed 2^32 from `seen` to `now`: it went down,
// yet moved forward in serial arithmetic. (It may also step back a few ms: a
// stretch that ended just before the read, counted up to the read's now.)
bool zw_wrapped(std::uint32_t seen, std::uint32_t now) {
    return now<seen&& static_cast<std::int32_t>(now - seen)> 0;
}

template <typename T, typename W>
void count_wrap(T before, T after, W& wraps) {
    if (after < before) ++wraps;
}

template <typename W>
std::uint64_t wide(std::uint16_t raw, W wraps) {
    return std::uint64_t{wraps} << 16 | raw;
}
template <typename W>
std::uint64_t wide(std::uint32_t raw, W wraps) {
    return std::uint64_t{wraps} << 32 | raw;
}

// One side's figures, from the kernel's entry (T: volatile while CPUs write it).
template <typename T>
void copy_figures(SideFigures& s, T& v) {
    s.retrans = load(v.retrans);
    s.retrans_bytes = load(v.retrans_bytes);
    s.dup_acks = load(v.dup_acks);
    s.srtt8_us = load(v.srtt8_us);
    s.rtt_min_us = load(v.rtt_min_us);
    s.rtt_max_us = load(v.rtt_max_us);
    s.rtt_last_us = load(v.rtt_last_us);
    s.gaps = load(v.gaps);
    s.fast_retrans = load(v.fast_retrans);
    s.zero_win = load(v.zero_win);
    s.rtt_samples = load(v.rtt_samples);
    s.flags = load(v.flags);
    s.zero_win_ms = load(v.zero_win_ms);
}

}  // namespace

HealthFigures figures_of(const tt_health& h) {
    HealthFigures f;
    for (int d = 0; d < 2; ++d) copy_figures(f.side[d], h.side[d]);
    return f;
}

void copy_health(HealthFigures& out, const volatile tt_health& in) {
    for (int d = 0; d < 2; ++d) {
        const volatile tt_health_side& v = in.side[d];
        SideFigures& s = out.side[d];
        copy_figures(s, v);
        // The datapath changes zero_win_ms and the ZW flag one after the
        // other: take a pair that two reads agree on (a few tries at most).
        for (int tries = 0; tries < 4; ++tries) {
            if (load(v.flags) == s.flags && load(v.zero_win_ms) == s.zero_win_ms) break;
            s.flags = load(v.flags);
            s.zero_win_ms = load(v.zero_win_ms);
        }
    }
}

void start_health(HealthFigures& h, HealthWraps& w, const HealthFigures& first,
                  std::uint32_t end_ms) {
    h = first;
    w = HealthWraps{};
    for (int d = 0; d < 2; ++d) w.zw_ms_seen[d] = zw_ms(h.side[d], end_ms);
}

void take_health(HealthFigures& h, HealthWraps& w, const HealthFigures& next,
                 std::uint32_t end_ms) {
    constexpr std::uint8_t kKnown = TT_H_NXT | TT_H_ACK;  // never cleared while the flow lives
    for (int d = 0; d < 2; ++d)
        if ((h.side[d].flags & kKnown) & ~next.side[d].flags) return;
    for (int d = 0; d < 2; ++d) {
        const SideFigures &a = h.side[d], &b = next.side[d];
        count_wrap(a.retrans, b.retrans, w.retrans[d]);
        count_wrap(a.retrans_bytes, b.retrans_bytes, w.retrans_bytes[d]);
        count_wrap(a.dup_acks, b.dup_acks, w.dup_acks[d]);
        count_wrap(a.gaps, b.gaps, w.gaps[d]);
        count_wrap(a.fast_retrans, b.fast_retrans, w.fast_retrans[d]);
        count_wrap(a.zero_win, b.zero_win, w.zero_win[d]);
        count_wrap(a.rtt_samples, b.rtt_samples, w.rtt_samples[d]);
        const std::uint32_t zw = zw_ms(b, end_ms);
        if (zw_wrapped(w.zw_ms_seen[d], zw)) ++w.zero_win_ms[d];
        if (static_cast<std::int32_t>(zw - w.zw_ms_seen[d]) > 0) w.zw_ms_seen[d] = zw;
    }
    h = next;
}

WideSide widen(const HealthFigures& h, const HealthWraps& w, int side, std::uint32_t end_ms) {
    return widen(h.side[side & 1], w, side, end_ms);
}

WideSide widen(const SideFigures& s, const HealthWraps& w, int side, std::uint32_t end_ms) {
    const int d = side & 1;
    WideSide o;
    o.retrans = wide(s.retrans, w.retrans[d]);
    o.retrans_bytes = wide(s.retrans_bytes, w.retrans_bytes[d]);
    o.dup_acks = wide(s.dup_acks, w.dup_acks[d]);
    o.gaps = wide(s.gaps, w.gaps[d]);
    o.fast_retrans = wide(s.fast_retrans, w.fast_retrans[d]);
    o.zero_win = wide(s.zero_win, w.zero_win[d]);
    o.rtt_samples = wide(s.rtt_samples, w.rtt_samples[d]);
    const std::uint32_t zw = zw_ms(s, end_ms);
    const std::uint32_t zw_wraps = w.zero_win_ms[d] + (zw_wrapped(w.zw_ms_seen[d], zw) ? 1 : 0);
    o.zero_win_ms = std::uint64_t{zw_wraps} << 32 | zw;
    return o;
}

SampleHealth& SampleHealth::operator=(const SampleHealth& o) {
    if (this == &o) return *this;
    rtt_[0] = o.rtt_[0];
    rtt_[1] = o.rtt_[1];
    keep(o.rare_.get());
    return *this;
}

void SampleHealth::keep(const Rare* r) {
    if (!r)
        rare_.reset();
    else if (rare_)
        *rare_ = *r;
    else
        rare_ = std::make_unique<Rare>(*r);
}

SideFigures SampleHealth::side(int side) const {
    const int d = side & 1;
    if (rare_) return rare_->figures.side[d];
    const Rtt& r = rtt_[d];
    SideFigures s;
    s.srtt8_us = r.srtt8_us;
    s.rtt_min_us = r.rtt_min_us;
    s.rtt_max_us = r.rtt_max_us;
    s.rtt_last_us = r.rtt_last_us;
    s.rtt_samples = r.rtt_samples;
    s.flags = r.flags;
    return s;
}

HealthFigures SampleHealth::figures() const { return HealthFigures{{side(0), side(1)}}; }

const HealthWraps& SampleHealth::wraps() const {
    static const HealthWraps kNone{};
    return rare_ ? rare_->wraps : kNone;
}

void SampleHealth::set(const HealthFigures& h, const HealthWraps& w) {
    bool counted = w != HealthWraps{};
    for (int d = 0; d < 2; ++d) {
        const SideFigures& s = h.side[d];
        rtt_[d] =
            Rtt{s.srtt8_us, s.rtt_min_us, s.rtt_max_us, s.rtt_last_us, s.rtt_samples, s.flags};
        counted = counted || s.retrans || s.retrans_bytes || s.dup_acks || s.zero_win_ms ||
                  s.gaps || s.fast_retrans || s.zero_win;
    }
    if (!counted) {  // the healthy many: nothing to copy
        keep(nullptr);
        return;
    }
    const Rare whole{h, w};
    keep(&whole);
}

}  // namespace tcptrack
