// SPDX-License-Identifier: MIT
// Chooses client source ports whose connections hide a victim connection from
// tcptrack's flow index (tests/e2e/attack_test.py, issue 16), computed with the
// datapath's own code: include/tcptrack/abi.h and store.h (tt_key_normalise,
// tt_index_hash, tt_bucket1/2).
//
//   collide --hash-key HEX32 --buckets B --family 4|6 --client ADDR --server ADDR
//           --server-port P --ifindex I --victim-port V [--port-min LO] [--port-max HI]
//
// The flow key is what bpf/lib/parse.h fills for a segment of the connection
// client:port -> server:P seen on the interface with index I (addresses and
// ports in network order, IPv4 in the first 4 bytes, family 4 or 6, padding
// zero), normalised. B is the index's bucket count (a power of two:
// StoreGeometry::for_flows). The victim's two buckets are b1 and b2; a port
// qualifies when both of its own buckets are among them. Ports are simulated
// into the index in the order printed with the datapath's placement (the
// first bucket while it holds fewer than TT_INDEX_SPARE = 12 entries, else the
// emptier one, the other when the chosen one is full) until b1 and b2 hold
// TT_INDEX_WAYS entries each; a port that would find both full is skipped.
//
// Prints one JSON line: {"victim":{"port","hash","buckets":[b1,b2]},
// "ports":[...],"placed":[bucket of each port],"fills":true|false,
// "needed":N,"scanned":K,"qualifying":Q}. Bad arguments exit 2.
#include <arpa/inet.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tcptrack/abi.h"
#include "tcptrack/store.h"

namespace {

constexpr unsigned kSpare = 12;  // bpf/tcptrack.bpf.c TT_INDEX_SPARE

[[noreturn]] void usage_error(const std::string& msg) {
    std::fprintf(stderr, "collide: %s\n", msg.c_str());
    std::fprintf(stderr,
                 "usage: collide --hash-key HEX32 --buckets B --family 4|6 --client ADDR "
                 "--server ADDR --server-port P --ifindex I --victim-port V "
                 "[--port-min LO] [--port-max HI]\n");
    std::exit(2);
}

std::optional<std::uint64_t> parse_uint(const std::string& s, std::uint64_t max) {
    if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (v > max) return std::nullopt;
    return v;
}

struct Endpoints {
    int family = 0;
    std::uint8_t client[16]{}, server[16]{};
    std::uint16_t sport_n = 0;  // server port, network order
    std::uint32_t ifindex = 0;
};

tt_flow_key key_for(const Endpoints& e, std::uint16_t client_port) {
    tt_flow_key k;
    std::memset(&k, 0, sizeof(k));
    const std::size_t alen = e.family == TT_FAMILY_INET ? 4 : 16;
    std::memcpy(k.addr_a, e.client, alen);
    std::memcpy(k.addr_b, e.server, alen);
    k.port_a = htons(client_port);
    k.port_b = e.sport_n;
    k.ifindex = e.ifindex;
    k.family = static_cast<__u8>(e.family);
    tt_key_normalise(&k);
    return k;
}

}  // namespace

int main(int argc, char** argv) {
    static_assert(sizeof(tt_flow_key) == 44, "tt_flow_key layout");
    std::map<std::string, std::string> opt;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (k.rfind("--", 0) != 0 || i + 1 >= argc) usage_error("bad argument " + k);
        opt[k] = argv[++i];
    }
    for (const char* need : {"--hash-key", "--buckets", "--family", "--client", "--server",
                             "--server-port", "--ifindex", "--victim-port"})
        if (!opt.count(need)) usage_error(std::string("missing ") + need);
    for (const auto& [k, v] : opt)
        if (k != "--hash-key" && k != "--buckets" && k != "--family" && k != "--client" &&
            k != "--server" && k != "--server-port" && k != "--ifindex" && k != "--victim-port" &&
            k != "--port-min" && k != "--port-max")
            usage_error("unknown option " + k);

    const std::string hex = opt["--hash-key"];
    if (hex.size() != 32 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        usage_error("--hash-key must be 32 hex digits");
    std::uint8_t raw[16];
    for (int i = 0; i < 16; ++i) raw[i] = static_cast<std::uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
    tt_hash_key hk;
    std::memcpy(&hk, raw, sizeof(hk));  // k0 = bytes 0..7, k1 = bytes 8..15, little-endian (x86)

    const auto buckets = parse_uint(opt["--buckets"], 1u << 24);
    if (!buckets || *buckets == 0 || (*buckets & (*buckets - 1)))
        usage_error("--buckets must be a power of two");
    const auto mask = static_cast<std::uint32_t>(*buckets - 1);

    Endpoints e;
    if (opt["--family"] == "4") e.family = TT_FAMILY_INET;
    else if (opt["--family"] == "6") e.family = TT_FAMILY_INET6;
    else usage_error("--family must be 4 or 6");
    const int af = e.family == TT_FAMILY_INET ? AF_INET : AF_INET6;
    if (inet_pton(af, opt["--client"].c_str(), e.client) != 1) usage_error("bad --client");
    if (inet_pton(af, opt["--server"].c_str(), e.server) != 1) usage_error("bad --server");
    const auto sport = parse_uint(opt["--server-port"], 65535);
    const auto ifindex = parse_uint(opt["--ifindex"], 0xffffffffu);
    const auto victim = parse_uint(opt["--victim-port"], 65535);
    const auto lo = parse_uint(opt.count("--port-min") ? opt["--port-min"] : "1024", 65535);
    const auto hi = parse_uint(opt.count("--port-max") ? opt["--port-max"] : "65535", 65535);
    if (!sport || !*sport || !ifindex || !victim || !*victim || !lo || !hi || *lo > *hi || !*lo)
        usage_error("bad port, ifindex or port range");
    e.sport_n = htons(static_cast<std::uint16_t>(*sport));
    e.ifindex = static_cast<std::uint32_t>(*ifindex);

    const tt_flow_key vk = key_for(e, static_cast<std::uint16_t>(*victim));
    const std::uint32_t vh = tt_index_hash(&vk, &hk);
    const std::uint32_t b1 = tt_bucket1(vh, mask), b2 = tt_bucket2(vh, mask);
    const std::set<std::uint32_t> targets{b1, b2};
    const unsigned needed = TT_INDEX_WAYS * static_cast<unsigned>(targets.size());

    std::map<std::uint32_t, unsigned> used;
    std::vector<unsigned> ports, placed;
    unsigned scanned = 0, qualifying = 0;
    for (std::uint64_t p = *lo; p <= *hi && ports.size() < needed; ++p) {
        if (p == *victim) continue;
        ++scanned;
        const tt_flow_key k = key_for(e, static_cast<std::uint16_t>(p));
        const std::uint32_t h = tt_index_hash(&k, &hk);
        std::uint32_t first = tt_bucket1(h, mask), second = tt_bucket2(h, mask);
        if (!targets.count(first) || !targets.count(second)) continue;
        ++qualifying;
        if (used[first] >= kSpare && used[second] < used[first]) std::swap(first, second);
        std::uint32_t at;
        if (used[first] < TT_INDEX_WAYS) at = first;
        else if (used[second] < TT_INDEX_WAYS) at = second;
        else continue;  // would be refused: no use to the attack
        ++used[at];
        ports.push_back(static_cast<unsigned>(p));
        placed.push_back(at);
    }
    const bool fills = ports.size() == needed;

    std::printf("{\"victim\":{\"port\":%llu,\"hash\":%u,\"buckets\":[%u,%u]},\"ports\":[",
                static_cast<unsigned long long>(*victim), vh, b1, b2);
    for (std::size_t i = 0; i < ports.size(); ++i) std::printf("%s%u", i ? "," : "", ports[i]);
    std::printf("],\"placed\":[");
    for (std::size_t i = 0; i < placed.size(); ++i) std::printf("%s%u", i ? "," : "", placed[i]);
    std::printf("],\"fills\":%s,\"needed\":%u,\"scanned\":%u,\"qualifying\":%u}\n",
                fills ? "true" : "false", needed, scanned, qualifying);
    return fills ? 0 : 1;
}
