// SPDX-License-Identifier: MIT
#include "packet_builder.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>

namespace tt_test {

namespace {

void put16(std::vector<std::uint8_t>& v, std::uint16_t x) {
    v.push_back(x >> 8);
    v.push_back(x & 0xff);
}

void put32(std::vector<std::uint8_t>& v, std::uint32_t x) {
    put16(v, x >> 16);
    put16(v, x & 0xffff);
}

void parse_addr(int af, const std::string& s, std::uint8_t* out) {
    if (inet_pton(af, s.c_str(), out) != 1) throw std::invalid_argument("bad address " + s);
}

}  // namespace

PacketBuilder& PacketBuilder::vlan(std::uint16_t tpid, std::uint16_t vid) {
    tags_.emplace_back(tpid, vid);
    return *this;
}

PacketBuilder& PacketBuilder::ethertype(std::uint16_t type) {
    ethertype_ = type;
    return *this;
}

PacketBuilder& PacketBuilder::ipv4(const std::string& src, const std::string& dst) {
    l3_ = L3::v4;
    parse_addr(AF_INET, src, src_);
    parse_addr(AF_INET, dst, dst_);
    return *this;
}

PacketBuilder& PacketBuilder::ipv6(const std::string& src, const std::string& dst) {
    l3_ = L3::v6;
    parse_addr(AF_INET6, src, src_);
    parse_addr(AF_INET6, dst, dst_);
    return *this;
}

PacketBuilder& PacketBuilder::ip_options(unsigned words) {
    ip_opt_words_ = words;
    return *this;
}

PacketBuilder& PacketBuilder::ihl(std::uint8_t raw) {
    ihl_ = raw;
    return *this;
}

PacketBuilder& PacketBuilder::tot_len(std::uint16_t len) {
    tot_len_ = len;
    return *this;
}

PacketBuilder& PacketBuilder::frag(std::uint16_t offset8, bool more) {
    frag_off8_ = offset8;
    more_frags_ = more;
    return *this;
}

PacketBuilder& PacketBuilder::protocol(std::uint8_t proto) {
    proto_ = proto;
    return *this;
}

PacketBuilder& PacketBuilder::ext(std::uint8_t type, std::size_t len) {
    exts_.push_back({type, len, 0, false});
    return *this;
}

PacketBuilder& PacketBuilder::ext_fragment(std::uint16_t offset8, bool more) {
    exts_.push_back({kFragment, 8, offset8, more});
    return *this;
}

PacketBuilder& PacketBuilder::payload_len(std::uint16_t len) {
    payload_len_ = len;
    return *this;
}

PacketBuilder& PacketBuilder::arp() {
    l3_ = L3::arp;
    return *this;
}

PacketBuilder& PacketBuilder::tcp(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq,
                                  std::uint32_t ack, std::uint8_t flags) {
    l4_ = L4::tcp;
    sport_ = sport;
    dport_ = dport;
    seq_ = seq;
    ack_ = ack;
    flags_ = flags;
    return *this;
}

PacketBuilder& PacketBuilder::tcp_options(unsigned words) {
    tcp_opt_words_ = words;
    return *this;
}

PacketBuilder& PacketBuilder::window(std::uint16_t raw) {
    window_ = raw;
    return *this;
}

PacketBuilder& PacketBuilder::tcp_option_bytes(std::vector<std::uint8_t> bytes) {
    while (bytes.size() % 4) bytes.push_back(0x01);
    tcp_opt_words_ = static_cast<unsigned>(bytes.size() / 4);
    tcp_opt_bytes_ = std::move(bytes);
    return *this;
}

std::vector<std::uint8_t> ts_option(std::uint32_t tsval, std::uint32_t tsecr) {
    std::vector<std::uint8_t> v{0x01, 0x01, 8, 10};
    put32(v, tsval);
    put32(v, tsecr);
    return v;
}

std::vector<std::uint8_t> syn_options(std::uint32_t tsval, std::uint32_t tsecr) {
    std::vector<std::uint8_t> v{2, 4, 0x05, 0xb4, 4, 2, 8, 10};
    put32(v, tsval);
    put32(v, tsecr);
    v.insert(v.end(), {0x01, 3, 3, 7});
    return v;
}

PacketBuilder& PacketBuilder::doff(std::uint8_t raw) {
    doff_ = raw;
    return *this;
}

PacketBuilder& PacketBuilder::udp(std::uint16_t sport, std::uint16_t dport) {
    l4_ = L4::udp;
    sport_ = sport;
    dport_ = dport;
    return *this;
}

PacketBuilder& PacketBuilder::icmp() {
    l4_ = L4::icmp;
    return *this;
}

PacketBuilder& PacketBuilder::payload(std::size_t n, std::uint8_t fill) {
    payload_ = n;
    fill_ = fill;
    return *this;
}

PacketBuilder& PacketBuilder::truncate(std::size_t n) {
    truncate_ = n;
    return *this;
}

Packet PacketBuilder::build() const {
    Packet p;
    auto& f = p.data;

    // L4 first: its length feeds the IP length fields.
    std::vector<std::uint8_t> l4;
    std::uint8_t l4_proto = 6;
    switch (l4_) {
        case L4::tcp: {
            put16(l4, sport_);
            put16(l4, dport_);
            put32(l4, seq_);
            put32(l4, ack_);
            l4.push_back((doff_ ? *doff_ : 5 + tcp_opt_words_) << 4);
            l4.push_back(flags_);
            put16(l4, window_);
            put16(l4, 0);  // checksum
            put16(l4, 0);  // urgent pointer
            if (!tcp_opt_bytes_.empty())
                l4.insert(l4.end(), tcp_opt_bytes_.begin(), tcp_opt_bytes_.end());
            else
                l4.insert(l4.end(), tcp_opt_words_ * 4, 0x01);  // NOP options
            break;
        }
        case L4::udp:
            l4_proto = 17;
            put16(l4, sport_);
            put16(l4, dport_);
            put16(l4, 8 + payload_);
            put16(l4, 0);
            break;
        case L4::icmp:
            l4_proto = l3_ == L3::v6 ? 58 : 1;
            l4 = {8, 0, 0, 0, 0, 1, 0, 1};  // echo request
            break;
    }
    const std::size_t l4_hdr = l4.size();
    l4.insert(l4.end(), payload_, fill_);
    if (proto_) l4_proto = *proto_;

    // Ethernet: fixed MACs, then the tags.
    f = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
    std::uint16_t type = l3_ == L3::v4 ? 0x0800 : l3_ == L3::v6 ? 0x86dd : 0x0806;
    if (ethertype_) type = *ethertype_;
    for (const auto& [tpid, vid] : tags_) {
        put16(f, tpid);
        put16(f, vid);
    }
    put16(f, type);
    p.l3_off = f.size();

    if (l3_ == L3::v4) {
        const std::size_t ihl = 5 + ip_opt_words_;
        const std::size_t total = ihl * 4 + l4.size();
        f.push_back(0x40 | ((ihl_ ? *ihl_ : ihl) & 0xf));
        f.push_back(0);  // TOS
        put16(f, tot_len_ ? *tot_len_ : total);
        put16(f, 0x1234);  // id
        put16(f, (more_frags_ ? 0x2000 : 0) | (frag_off8_ & 0x1fff));
        f.push_back(64);
        f.push_back(l4_proto);
        put16(f, 0);  // checksum
        f.insert(f.end(), src_, src_ + 4);
        f.insert(f.end(), dst_, dst_ + 4);
        f.insert(f.end(), ip_opt_words_ * 4, 0x01);  // NOP options
        p.l3_len = total;
    } else if (l3_ == L3::v6) {
        std::vector<std::uint8_t> exts;
        for (std::size_t i = 0; i < exts_.size(); ++i) {
            const Ext& e = exts_[i];
            const std::uint8_t next = i + 1 < exts_.size() ? exts_[i + 1].type : l4_proto;
            const std::size_t at = exts.size();
            if (e.type == kFragment) {
                exts.push_back(next);
                exts.push_back(0);
                put16(exts, (e.frag_off8 << 3) | (e.more ? 1 : 0));
                put32(exts, 0xcafe);  // identification
                continue;
            }
            // Options-style header (hdrlen in 8-octet units minus 1); AH counts 4-octet
            // units minus 2. Content after the first two bytes is PadN filler.
            const std::uint8_t hdrlen = e.type == kAh ? e.len / 4 - 2 : e.len / 8 - 1;
            exts.push_back(next);
            exts.push_back(hdrlen);
            exts.resize(at + e.len, 0);
            if (e.type == kAh) continue;
            // Fill with PadN options (at most 255 data bytes each); a lone byte is Pad1.
            for (std::size_t pos = at + 2; pos + 1 < at + e.len;) {
                const std::size_t chunk = std::min<std::size_t>(at + e.len - pos, 257);
                exts[pos] = 1;
                exts[pos + 1] = chunk - 2;
                pos += chunk;
            }
        }
        const std::size_t plen = exts.size() + l4.size();
        f.push_back(0x60);
        f.push_back(0);
        put16(f, 0);  // flow label
        put16(f, payload_len_ ? *payload_len_ : plen);
        f.push_back(exts_.empty() ? l4_proto : exts_[0].type);
        f.push_back(64);
        f.insert(f.end(), src_, src_ + 16);
        f.insert(f.end(), dst_, dst_ + 16);
        f.insert(f.end(), exts.begin(), exts.end());
        p.l3_len = 40 + plen;
    } else if (l3_ == L3::arp) {
        // Ethernet/IPv4 ARP request: htype, ptype, hlen, plen, op, then addresses.
        f.insert(f.end(), {0, 1, 8, 0, 6, 4, 0, 1});
        f.insert(f.end(), 20, 0);
        return p;
    }

    p.l4_off = f.size();
    p.hdr_len = p.l4_off - p.l3_off + l4_hdr;
    p.payload = payload_;
    f.insert(f.end(), l4.begin(), l4.end());
    if (truncate_ && *truncate_ < f.size()) f.resize(*truncate_);
    return p;
}

}  // namespace tt_test
