// SPDX-License-Identifier: MIT
// One Ethernet + IPv4 + TCP frame for feeding tcptrack's classifiers through
// BPF_PROG_TEST_RUN (fill_flows, report_cost): real packets, so the store is
// filled the way traffic fills it. No IP options, no TCP options; the IP
// checksum is set (the classifier does not read it, a capture tool would).
#pragma once

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ttbench {

constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kPsh = 0x08, kAck = 0x10;
constexpr std::size_t kMaxPayload = 1448;

struct Frame {
    struct Bytes {
        ethhdr eth;
        iphdr ip;
        tcphdr tcp;
        std::uint8_t payload[kMaxPayload];
    } __attribute__((packed)) b{};
    std::size_t len = 0;

    Frame() {
        std::memset(b.eth.h_dest, 0x02, ETH_ALEN);
        std::memset(b.eth.h_source, 0x04, ETH_ALEN);
        b.eth.h_proto = htons(ETH_P_IP);
        b.ip.version = 4;
        b.ip.ihl = 5;
        b.ip.ttl = 64;
        b.ip.protocol = IPPROTO_TCP;
        b.tcp.doff = 5;
        b.tcp.window = htons(65535);
        std::memset(b.payload, 0xab, sizeof(b.payload));
    }

    // Addresses (host order) and ports; flags as in byte 13 of the TCP header.
    Frame& set(std::uint32_t saddr, std::uint16_t sport, std::uint32_t daddr, std::uint16_t dport,
               std::uint32_t seq, std::uint32_t ack, std::uint8_t flags, std::size_t payload) {
        if (payload > kMaxPayload) payload = kMaxPayload;
        b.ip.saddr = htonl(saddr);
        b.ip.daddr = htonl(daddr);
        b.ip.tot_len = htons(static_cast<std::uint16_t>(sizeof(iphdr) + sizeof(tcphdr) + payload));
        b.ip.check = 0;
        b.ip.check = csum(&b.ip, sizeof(b.ip));
        b.tcp.source = htons(sport);
        b.tcp.dest = htons(dport);
        b.tcp.seq = htonl(seq);
        b.tcp.ack_seq = htonl(ack);
        reinterpret_cast<std::uint8_t*>(&b.tcp)[13] = flags;
        len = sizeof(ethhdr) + sizeof(iphdr) + sizeof(tcphdr) + payload;
        return *this;
    }

    // One run of the classifier on this frame; false if the syscall failed.
    // ns (if given) gets the run's own time as the kernel measured it.
    bool run(int prog_fd, std::uint64_t* ns = nullptr) const {
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = &b, .data_size_in = static_cast<__u32>(len),
                    .repeat = 1);
        if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) return false;
        if (ns) *ns += opts.duration;
        return true;
    }

    static std::uint16_t csum(const void* data, std::size_t n) {
        const auto* p = static_cast<const std::uint8_t*>(data);
        std::uint32_t sum = 0;
        for (std::size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
        while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
        return htons(static_cast<std::uint16_t>(~sum));
    }
};

}  // namespace ttbench
