// SPDX-License-Identifier: MIT
// Handcrafted Ethernet frames for feeding the classifiers through
// BPF_PROG_TEST_RUN. Every field the parser looks at can be set, including
// wrong values; checksums are left zero (the classifier never reads them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tt_test {

// TCP flag bits (byte 13 of the header).
constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

// IPv6 extension header types.
constexpr std::uint8_t kHopByHop = 0, kRouting = 43, kFragment = 44, kAh = 51, kDestOpts = 60;

// A built frame plus the layout facts the tests compute expectations from.
struct Packet {
    std::vector<std::uint8_t> data;
    std::size_t l3_off = 0;     // start of the IP header
    std::size_t l4_off = 0;     // start of the L4 header
    std::uint32_t l3_len = 0;   // IP total length as built (IPv6: 40 + payload length)
    std::uint32_t hdr_len = 0;  // IP header + extension headers + L4 header
    std::uint32_t payload = 0;  // L4 payload bytes
};

// The timestamps option as Linux lays it out after the SYN (NOP, NOP, TS) and
// as it lays it out on a SYN (MSS, SACK permitted, TS, NOP, window scale),
// which the datapath finds by walking the options.
std::vector<std::uint8_t> ts_option(std::uint32_t tsval, std::uint32_t tsecr);
std::vector<std::uint8_t> syn_options(std::uint32_t tsval, std::uint32_t tsecr);

class PacketBuilder {
   public:
    // L2. Tags are pushed outermost first.
    PacketBuilder& vlan(std::uint16_t tpid, std::uint16_t vid);
    PacketBuilder& ethertype(std::uint16_t type);  // overrides the one implied by L3

    // L3.
    PacketBuilder& ipv4(const std::string& src, const std::string& dst);
    PacketBuilder& ipv6(const std::string& src, const std::string& dst);
    PacketBuilder& ip_options(unsigned words);  // IPv4: IHL = 5 + words (NOPs)
    PacketBuilder& ihl(std::uint8_t raw);       // IPv4: raw IHL nibble, layout unchanged
    PacketBuilder& tot_len(std::uint16_t len);  // IPv4: total length override
    PacketBuilder& frag(std::uint16_t offset8, bool more);  // IPv4: offset in 8-byte units
    PacketBuilder& protocol(std::uint8_t proto);            // IPv4 protocol / last IPv6 next header
    PacketBuilder& ext(std::uint8_t type, std::size_t len = 8);  // IPv6 option-style header
    PacketBuilder& ext_fragment(std::uint16_t offset8, bool more);
    PacketBuilder& payload_len(std::uint16_t len);  // IPv6: payload length override
    PacketBuilder& arp();                           // ARP request body instead of IP

    // L4.
    PacketBuilder& tcp(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq,
                       std::uint32_t ack, std::uint8_t flags);
    PacketBuilder& tcp_options(unsigned words);  // data offset = 5 + words (NOPs)
    PacketBuilder& doff(std::uint8_t raw);       // raw data offset nibble, layout unchanged
    PacketBuilder& window(std::uint16_t raw);    // raw window field (default 65535)
    // Raw option bytes after the fixed header (padded with NOPs to whole
    // words); replaces tcp_options(). ts_option() gives common layouts.
    PacketBuilder& tcp_option_bytes(std::vector<std::uint8_t> bytes);
    PacketBuilder& udp(std::uint16_t sport, std::uint16_t dport);
    PacketBuilder& icmp();
    PacketBuilder& payload(std::size_t n, std::uint8_t fill = 0xab);

    // Cut the finished frame to n bytes (lengths in the headers stay as built).
    PacketBuilder& truncate(std::size_t n);

    Packet build() const;

   private:
    enum class L3 { none, v4, v6, arp };
    enum class L4 { tcp, udp, icmp };
    struct Ext {
        std::uint8_t type;
        std::size_t len;
        std::uint16_t frag_off8;
        bool more;
    };

    std::vector<std::pair<std::uint16_t, std::uint16_t>> tags_;
    std::optional<std::uint16_t> ethertype_;
    L3 l3_ = L3::none;
    std::uint8_t src_[16]{}, dst_[16]{};
    unsigned ip_opt_words_ = 0;
    std::optional<std::uint8_t> ihl_, doff_, proto_;
    std::optional<std::uint16_t> tot_len_, payload_len_;
    std::uint16_t frag_off8_ = 0;
    bool more_frags_ = false;
    std::vector<Ext> exts_;
    L4 l4_ = L4::tcp;
    std::uint16_t sport_ = 0, dport_ = 0;
    std::uint32_t seq_ = 0, ack_ = 0;
    std::uint8_t flags_ = 0;
    unsigned tcp_opt_words_ = 0;
    std::uint16_t window_ = 65535;
    std::vector<std::uint8_t> tcp_opt_bytes_;
    std::size_t payload_ = 0;
    std::uint8_t fill_ = 0xab;
    std::optional<std::size_t> truncate_;
};

}  // namespace tt_test
