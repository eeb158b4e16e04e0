// SPDX-License-Identifier: MIT
// Fills a *running* tcptrack's maps with synthetic connections: runs its
// tcptrack_in classifier via BPF_PROG_TEST_RUN (repeat = 1) on N SYN packets
// with distinct 4-tuples, so each creates one flows + one flow_states entry.
//
//   fill_flows [--prog-id ID] [--count N] [--base B]
// Without --prog-id the only loaded program named tcptrack_in is used (an
// error if there are several). Prints how many entries the flows map holds.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <string>
#include <unistd.h>
#include <vector>

#include "tcptrack/flow.h"

namespace {

struct Packet {
    ethhdr eth;
    iphdr ip;
    tcphdr tcp;
} __attribute__((packed));

std::uint16_t csum(const void* data, std::size_t len) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return htons(static_cast<std::uint16_t>(~sum));
}

bool prog_info(int fd, bpf_prog_info& info, std::vector<__u32>* map_ids = nullptr) {
    std::memset(&info, 0, sizeof(info));
    __u32 len = sizeof(info);
    if (bpf_prog_get_info_by_fd(fd, &info, &len) != 0) return false;
    if (!map_ids) return true;
    map_ids->resize(info.nr_map_ids);
    const __u32 n = info.nr_map_ids;
    std::memset(&info, 0, sizeof(info));
    info.nr_map_ids = n;
    info.map_ids = reinterpret_cast<__u64>(map_ids->data());
    len = sizeof(info);
    return bpf_prog_get_info_by_fd(fd, &info, &len) == 0;
}

int find_prog_by_name(const char* name) {
    __u32 id = 0;
    int found = -1, count = 0;
    while (bpf_prog_get_next_id(id, &id) == 0) {
        const int fd = bpf_prog_get_fd_by_id(id);
        if (fd < 0) continue;
        bpf_prog_info info;
        if (prog_info(fd, info) && std::strcmp(info.name, name) == 0) {
            ++count;
            if (found >= 0) close(found);
            found = fd;
        } else {
            close(fd);
        }
    }
    if (count > 1) {
        std::fprintf(stderr, "fill_flows: %d programs named %s: pass --prog-id\n", count, name);
        close(found);
        return -1;
    }
    return found;
}

// Entries in the program's map called `name`, or -1.
long count_map(int prog_fd, const char* name) {
    bpf_prog_info info;
    std::vector<__u32> ids;
    if (!prog_info(prog_fd, info, &ids)) return -1;
    for (__u32 id : ids) {
        const int fd = bpf_map_get_fd_by_id(id);
        if (fd < 0) continue;
        bpf_map_info mi{};
        __u32 len = sizeof(mi);
        if (bpf_map_get_info_by_fd(fd, &mi, &len) == 0 && std::strcmp(mi.name, name) == 0) {
            long n = 0;
            tt_flow_key cur{}, next{};
            bool has = false;
            while (bpf_map_get_next_key(fd, has ? &cur : nullptr, &next) == 0) {
                cur = next;
                has = true;
                ++n;
            }
            close(fd);
            return n;
        }
        close(fd);
    }
    return -1;
}

}  // namespace

int main(int argc, char** argv) {
    long prog_id = -1, count = 100000, base = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 < argc && a == "--prog-id") prog_id = std::atol(argv[++i]);
        else if (i + 1 < argc && a == "--count") count = std::atol(argv[++i]);
        else if (i + 1 < argc && a == "--base") base = std::atol(argv[++i]);
        else {
            std::fprintf(stderr, "usage: %s [--prog-id ID] [--count N] [--base B]\n", argv[0]);
            return 2;
        }
    }
    const int fd = prog_id >= 0 ? bpf_prog_get_fd_by_id(static_cast<__u32>(prog_id))
                                : find_prog_by_name("tcptrack_in");
    if (fd < 0) {
        std::fprintf(stderr, "fill_flows: no tcptrack_in program found: %s\n", std::strerror(errno));
        return 1;
    }

    Packet pkt{};
    std::memset(pkt.eth.h_dest, 0x02, ETH_ALEN);
    std::memset(pkt.eth.h_source, 0x04, ETH_ALEN);
    pkt.eth.h_proto = htons(ETH_P_IP);
    pkt.ip.version = 4;
    pkt.ip.ihl = 5;
    pkt.ip.ttl = 64;
    pkt.ip.protocol = IPPROTO_TCP;
    pkt.ip.tot_len = htons(sizeof(iphdr) + sizeof(tcphdr));
    pkt.ip.daddr = htonl(0xC6336401);  // 198.51.100.1 (TEST-NET-2), port 80
    pkt.tcp.dest = htons(80);
    pkt.tcp.doff = 5;
    pkt.tcp.syn = 1;
    pkt.tcp.window = htons(65535);

    const auto t0 = std::chrono::steady_clock::now();
    long ok = 0, failed = 0;
    for (long i = base; i < base + count; ++i) {
        // Distinct tuples: 198.18.0.0/15 sources x 50000 ports.
        pkt.ip.saddr = htonl(0xC6120000u + static_cast<std::uint32_t>(i / 50000));
        pkt.tcp.source = htons(static_cast<std::uint16_t>(10000 + i % 50000));
        pkt.tcp.seq = htonl(static_cast<std::uint32_t>(i * 7919));
        pkt.ip.check = 0;
        pkt.ip.check = csum(&pkt.ip, sizeof(pkt.ip));
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = &pkt, .data_size_in = sizeof(pkt),
                    .repeat = 1);
        if (bpf_prog_test_run_opts(fd, &opts) == 0) ++ok;
        else ++failed;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const long in_map = count_map(fd, "flows");
    std::printf("fill_flows: ran %ld SYNs (%ld failed) in %.2fs (%.0f/s); flows map now holds %ld\n",
                ok, failed, secs, ok / (secs > 0 ? secs : 1), in_map);
    close(fd);
    return failed ? 1 : 0;
}
