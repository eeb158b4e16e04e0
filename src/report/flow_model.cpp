// SPDX-License-Identifier: MIT
#include "report/flow_model.hpp"

#include <arpa/inet.h>
#include <algorithm>
#include <cstring>

namespace tcptrack {

namespace {

std::uint16_t host_port(std::uint16_t be) { return ntohs(be); }

// Port classes that make the server side obvious for a connection seen mid-stream.
bool looks_like_server_port(std::uint16_t port, std::uint16_t other) {
    if (port < 1024 && other >= 1024) return true;    // well-known service
    if (port < 32768 && other >= 32768) return true;  // other side is ephemeral
    return false;
}

}  // namespace

int client_side(const FlowSample& s) {
    if (s.has_info && !(s.info.flags & TT_F_MIDSTREAM)) return s.info.client;
    const std::uint16_t pa = host_port(s.key.port_a()), pb = host_port(s.key.port_b());
    if (looks_like_server_port(pa, pb)) return TT_DIR_BA;  // A serves, so B is the client
    if (looks_like_server_port(pb, pa)) return TT_DIR_AB;
    return s.has_info ? s.info.client : TT_DIR_AB;
}

Endpoints oriented(const FlowSample& s) {
    const int c = client_side(s) == TT_DIR_AB ? 0 : 1;
    const std::uint16_t pa = host_port(s.key.port_a()), pb = host_port(s.key.port_b());
    return {s.key.addr(c), s.key.addr(c ^ 1), c ? pb : pa, c ? pa : pb};
}

std::optional<std::uint64_t> handshake_rtt(const FlowInfo& info) { return info.handshake_rtt(); }

std::optional<std::uint64_t> syn_to_close(const FlowInfo& info, std::uint64_t now_ns) {
    const std::uint64_t syn = info.syn_ns();
    if (!syn) return std::nullopt;
    const std::uint64_t end = info.close_ns ? info.close_ns : now_ns;
    return end > syn ? end - syn : 0;
}

State shown_state(const FlowSample& s) {
    if (!s.has_info) return State::Established;
    const unsigned st = s.info.state < TT_STATE_COUNT ? s.info.state : unsigned{TT_ESTABLISHED};
    // Both FINs seen but the last ACK still due: CLOSED is shown once, when final.
    if (st == TT_CLOSED && !s.finished) return State::Closing;
    return static_cast<State>(st);
}

namespace {

// A side's smoothed RTT in ns (srtt8_us is 8 times the RTT in us).
std::uint64_t srtt_ns_of(const SideFigures& h) { return std::uint64_t{h.srtt8_us} * 125; }

}  // namespace

SideHealth side_health(const FlowSample& s, int side, std::uint64_t now_ns) {
    const SideFigures h = s.health.side(side);
    const WideSide w = widen(h, s.health.wraps(), side, health_end_ms(s, now_ns));
    SideHealth o;
    o.retrans = w.retrans;
    o.retrans_bytes = w.retrans_bytes;
    o.lost_segments = w.gaps;
    o.dup_acks = w.dup_acks;
    o.fast_retrans = w.fast_retrans;
    o.zero_windows = w.zero_win;
    o.zero_window_ns = w.zero_win_ms * 1000000;
    o.zero_window_now = h.flags & TT_H_ZW;
    o.egress = h.flags & TT_H_EGRESS;
    o.rtt_samples = w.rtt_samples;
    if (o.rtt_samples) {
        o.rtt_min_ns = std::uint64_t{h.rtt_min_us} * 1000;
        o.srtt_ns = srtt_ns_of(h);
        o.rtt_max_ns = std::uint64_t{h.rtt_max_us} * 1000;
        o.rtt_last_ns = std::uint64_t{h.rtt_last_us} * 1000;
    }
    return o;
}

std::optional<std::uint64_t> live_rtt(const SideHealth& a, const SideHealth& b) {
    const bool with[2] = {a.rtt_samples > 0, b.rtt_samples > 0};
    const bool e0 = with[0] && a.egress, e1 = with[1] && b.egress;
    if (e0 != e1) return e0 ? a.srtt_ns : b.srtt_ns;
    if (with[0] && with[1]) return std::max(a.srtt_ns, b.srtt_ns);
    if (with[0]) return a.srtt_ns;
    if (with[1]) return b.srtt_ns;
    return std::nullopt;
}

std::optional<std::uint64_t> live_rtt(const FlowSample& s) {
    // The same rule on the sides a row would show (their zero-window time,
    // which depends on now, plays no part).
    return live_rtt(side_health(s, 0, 0), side_health(s, 1, 0));
}

std::optional<std::uint64_t> shown_rtt(const FlowSample& s) {
    if (auto rtt = live_rtt(s)) return rtt;
    return s.has_info ? handshake_rtt(s.info) : std::nullopt;
}

std::uint64_t total_retrans(const FlowSample& s) {
    return wide_side(s, 0, 0).retrans + wide_side(s, 1, 0).retrans;  // now: only for zero windows
}

void fill_row(FlowRow& r, const FlowSample& s, const std::string& iface, std::uint64_t now_ns) {
    const int fwd = client_side(s), rev = fwd ^ 1;
    const Endpoints e = oriented(s);

    r.iface = iface;
    r.family = s.key.family() == TT_FAMILY_INET ? Family::V4 : Family::V6;
    r.src = e.src;
    r.dst = e.dst;
    r.sport = e.sport;
    r.dport = e.dport;
    r.state = shown_state(s);
    r.fwd_bytes = s.bytes[fwd];
    r.fwd_packets = s.packets[fwd];
    r.fwd_payload = s.payload[fwd];
    r.rev_bytes = s.bytes[rev];
    r.rev_packets = s.packets[rev];
    r.rev_payload = s.payload[rev];
    r.fwd_bps = r.rev_bps = 0;
    r.duration_ns.reset();
    r.rtt_ns.reset();
    r.age_ns = 0;
    r.displaced = displaced(s);
    r.ending = ending_of(s);
    r.fwd_health = side_health(s, fwd, now_ns);
    r.rev_health = side_health(s, rev, now_ns);
    r.srtt_ns = live_rtt(r);
    if (s.has_info) {
        r.duration_ns = syn_to_close(s.info, now_ns);
        r.rtt_ns = handshake_rtt(s.info);
        r.age_ns = now_ns > s.info.first_ns ? now_ns - s.info.first_ns : 0;
    }
}

Rate rate_of(const FlowSample& s, std::uint64_t now_ns, std::uint64_t elapsed_ns) {
    Rate r;
    r.idle_ns = now_ns > s.last_active_ns ? now_ns - s.last_active_ns : 0;
    if (!elapsed_ns || s.last_active_ns != now_ns) return r;
    const double secs = static_cast<double>(elapsed_ns) / 1e9;
    auto rate = [&](int d) {
        const std::uint64_t b = s.bytes[d], p = s.prev_bytes(d);
        return b > p ? static_cast<double>(b - p) * 8.0 / secs : 0.0;
    };
    const int c = client_side(s);
    r.fwd_bps = rate(c);
    r.rev_bps = rate(c ^ 1);
    return r;
}

tt_flow_key key_of(const FlowRow& r) {
    tt_flow_key k{};
    std::memcpy(k.addr_a, r.src.data(), sizeof k.addr_a);
    std::memcpy(k.addr_b, r.dst.data(), sizeof k.addr_b);
    k.port_a = htons(r.sport);
    k.port_b = htons(r.dport);
    k.family = r.family == Family::V6 ? TT_FAMILY_INET6 : TT_FAMILY_INET;
    tt_key_normalise(&k);
    return k;
}

Ending ending_of(const FlowSample& s) {
    if (!s.has_info) return {};
    const int client = client_side(s);
    if (const int side = TT_END_RST_SIDE(s.info.end); side >= 0)
        return {EndKind::Rst, side == client};
    if (const int side = TT_END_FIN_SIDE(s.info.end); side >= 0)
        return {EndKind::Fin, side == client};
    return {};
}

}  // namespace tcptrack
