// SPDX-License-Identifier: MIT
// Traffic generator and checker for the kernel-matrix tier (tests/kernels/run.sh).
// The guest has no python, so this one static binary plays both ends of a real
// TCP connection and then checks tcptrack's NDJSON for it:
//
//   tt_conn serve   ADDR PORT EXPECT_RECV SEND   accept one connection, read until
//                                                EOF, check the count and pattern,
//                                                send SEND bytes, close
//   tt_conn connect ADDR PORT SEND EXPECT_RECV   connect (retrying while the server
//                                                starts), print "sport=N", send,
//                                                half-close, read until EOF, check
//   tt_conn check FILE FAMILY SRC SPORT DST DPORT FWD_PAYLOAD REV_PAYLOAD
//                 [FWD_RETRANS REV_RETRANS]
//                                                tcptrack's rows for that connection:
//                                                exactly one CLOSED row, last, with
//                                                those payloads each way, oriented
//                                                client -> server, handshake seen;
//                                                with the retransmission counts (the
//                                                kernel's TcpRetransSegs deltas of
//                                                each end): fwd_retrans/rev_retrans
//
// Every failure prints one "tt_conn: ..." line naming the numbers and exits 1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

[[noreturn]] void fail(const std::string& msg) {
    std::fprintf(stderr, "tt_conn: %s\n", msg.c_str());
    std::exit(1);
}

std::uint64_t num(const char* s, const char* what) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (errno || end == s || *end) fail(std::string("bad ") + what + ": " + s);
    return v;
}

// Byte i of a stream is a function of its offset, so a reordered, duplicated or
// truncated stream is caught, not just a short one.
unsigned char pattern(std::uint64_t off, unsigned char seed) {
    return static_cast<unsigned char>((off * 131 + seed) & 0xff);
}

struct Addr {
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family = 0;
};

Addr parse_addr(const char* host, std::uint64_t port) {
    Addr a;
    if (port == 0 || port > 65535) fail("bad port");
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<std::uint16_t>(port));
        a.len = sizeof(*v4);
        a.family = AF_INET;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<std::uint16_t>(port));
        a.len = sizeof(*v6);
        a.family = AF_INET6;
    } else {
        fail(std::string("bad address: ") + host);
    }
    return a;
}

void send_all(int fd, std::uint64_t n, unsigned char seed) {
    std::vector<unsigned char> buf(16384);
    std::uint64_t off = 0;
    while (off < n) {
        std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), n - off));
        for (std::size_t i = 0; i < chunk; i++) buf[i] = pattern(off + i, seed);
        ssize_t w = ::send(fd, buf.data(), chunk, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            fail(std::string("send: ") + std::strerror(errno));
        }
        off += static_cast<std::uint64_t>(w);
    }
}

// Reads until EOF (or, without until_eof, until `expect` bytes came); checks
// the byte count and every byte against the pattern.
void recv_expect(int fd, std::uint64_t expect, unsigned char seed, const char* who,
                 bool until_eof) {
    std::vector<unsigned char> buf(16384);
    std::uint64_t off = 0;
    while (until_eof || off < expect) {
        const std::size_t want =
            until_eof ? buf.size() : std::min<std::uint64_t>(buf.size(), expect - off);
        ssize_t r = ::recv(fd, buf.data(), want, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            fail(std::string(who) + ": recv: " + std::strerror(errno));
        }
        if (r == 0) break;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pattern(off + i, seed))
                fail(std::string(who) + ": byte " + std::to_string(off + i) + " corrupt");
        off += static_cast<std::uint64_t>(r);
    }
    if (off != expect)
        fail(std::string(who) + ": received " + std::to_string(off) + " bytes, expected " +
             std::to_string(expect));
}

int serve(char** av) {
    Addr a = parse_addr(av[0], num(av[1], "port"));
    std::uint64_t expect = num(av[2], "expect"), send = num(av[3], "send");
    alarm(60);
    int ls = ::socket(a.family, SOCK_STREAM, 0);
    if (ls < 0) fail(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a.ss), a.len) < 0)
        fail(std::string("bind: ") + std::strerror(errno));
    if (::listen(ls, 1) < 0) fail(std::string("listen: ") + std::strerror(errno));
    int fd = ::accept(ls, nullptr, nullptr);
    if (fd < 0) fail(std::string("accept: ") + std::strerror(errno));
    ::close(ls);
    // The server's FIN goes first, and the client's FIN acknowledges it: the
    // last segment of the connection is then the server's ACK, which the
    // client-side netem of conn_loss never drops. (With the client closing
    // first, a dropped final ACK made the server retransmit its FIN after
    // tcptrack had seen the connection end: a retransmission the kernel
    // counts and a finished flow no longer can.)
    recv_expect(fd, expect, 1, "server", false);
    send_all(fd, send, 2);
    ::close(fd);
    return 0;
}

int connect_(char** av) {
    Addr a = parse_addr(av[0], num(av[1], "port"));
    std::uint64_t send = num(av[2], "send"), expect = num(av[3], "expect");
    alarm(60);
    int fd = -1;
    // The server starts in the background; retry refused connects for up to 20 s.
    for (int i = 0;; i++) {
        fd = ::socket(a.family, SOCK_STREAM, 0);
        if (fd < 0) fail(std::string("socket: ") + std::strerror(errno));
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a.ss), a.len) == 0) break;
        int e = errno;
        ::close(fd);
        if (e != ECONNREFUSED || i >= 200) fail(std::string("connect: ") + std::strerror(e));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
    unsigned sport = local.ss_family == AF_INET
                         ? ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port)
                         : ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
    std::printf("sport=%u\n", sport);
    std::fflush(stdout);
    send_all(fd, send, 1);
    recv_expect(fd, expect, 2, "client", true);  // until the server's FIN
    ::close(fd);
    return 0;
}

// Normalises an address the way inet_ntop prints it, so "fd00:9::1" matches
// however tcptrack spells it.
std::string canon(const std::string& s) {
    unsigned char b[16];
    char out[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, s.c_str(), b) == 1) return inet_ntop(AF_INET, b, out, sizeof(out));
    if (inet_pton(AF_INET6, s.c_str(), b) == 1) return inet_ntop(AF_INET6, b, out, sizeof(out));
    return s;
}

int check(char** av, char** retrans) {
    const std::string file = av[0], family = av[1], src = canon(av[2]), dst = canon(av[4]);
    const std::uint64_t sport = num(av[3], "sport"), dport = num(av[5], "dport");
    const std::uint64_t fwd = num(av[6], "fwd_payload"), rev = num(av[7], "rev_payload");
    std::ifstream in(file);
    if (!in) fail("cannot open " + file);
    std::string line;
    int rows = 0, closed = 0, reset = 0, reversed = 0, after_closed = 0, bad_lines = 0;
    nlohmann::json last_closed;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const std::exception&) {
            bad_lines++;
            continue;
        }
        if (!j.is_object() || j.contains("type")) continue;  // summary records
        if (!j.contains("src") || !j.contains("sport")) continue;
        const std::string s = canon(j.value("src", "")), d = canon(j.value("dst", ""));
        const auto sp = j.value("sport", 0ull), dp = j.value("dport", 0ull);
        if (s == dst && sp == dport && d == src && dp == sport) {
            reversed++;
            continue;
        }
        if (!(s == src && sp == sport && d == dst && dp == dport)) continue;
        rows++;
        if (closed) after_closed++;
        const std::string st = j.value("state", "");
        if (st == "CLOSED") {
            closed++;
            last_closed = j;
        }
        if (st == "RESET") reset++;
        if (j.value("family", "") != family)
            fail("family " + j.value("family", "") + ", expected " + family);
    }
    std::string id = family + " " + src + ":" + std::to_string(sport) + " -> " + dst + ":" +
                     std::to_string(dport);
    if (bad_lines) fail(id + ": " + std::to_string(bad_lines) + " stdout lines are not JSON");
    if (reversed) fail(id + ": " + std::to_string(reversed) + " rows oriented server -> client");
    if (rows == 0) fail(id + ": no rows for this connection");
    if (closed != 1 || reset != 0)
        fail(id + ": " + std::to_string(closed) + " CLOSED and " + std::to_string(reset) +
             " RESET rows, expected exactly 1 CLOSED (" + std::to_string(rows) + " rows)");
    if (after_closed) fail(id + ": " + std::to_string(after_closed) + " rows after the CLOSED row");
    const auto& c = last_closed;
    auto u = [&](const char* k) -> std::uint64_t {
        if (!c.contains(k) || !c[k].is_number_unsigned()) fail(id + ": CLOSED row lacks " + k);
        return c[k].get<std::uint64_t>();
    };
    const std::uint64_t fp = u("fwd_payload"), rp = u("rev_payload");
    const std::uint64_t fb = u("fwd_bytes"), rb = u("rev_bytes");
    const std::uint64_t fk = u("fwd_packets"), rk = u("rev_packets");
    if (fp != fwd || rp != rev)
        fail(id + ": payload fwd " + std::to_string(fp) + " rev " + std::to_string(rp) +
             ", the application sent fwd " + std::to_string(fwd) + " rev " + std::to_string(rev));
    // Each segment carries at least a 20-byte IP and a 20-byte TCP header; SYN, FIN and ACKs
    // make at least 3 segments each way.
    if (fk < 3 || rk < 3 || fb < fp + 40 * fk || rb < rp + 40 * rk)
        fail(id + ": implausible wire counters: fwd " + std::to_string(fb) + " B / " +
             std::to_string(fk) + " pkts, rev " + std::to_string(rb) + " B / " +
             std::to_string(rk) + " pkts");
    if (!c.contains("rtt_ns") || !c["rtt_ns"].is_number_unsigned() || c["rtt_ns"].get<std::uint64_t>() == 0)
        fail(id + ": handshake RTT not measured: " + c.value("rtt_ns", nlohmann::json()).dump());
    if (!c.contains("duration_ns") || !c["duration_ns"].is_number_unsigned())
        fail(id + ": duration not measured");
    if (retrans) {
        const std::uint64_t want_f = num(retrans[0], "fwd_retrans");
        const std::uint64_t want_r = num(retrans[1], "rev_retrans");
        const std::uint64_t got_f = u("fwd_retrans"), got_r = u("rev_retrans");
        if (got_f != want_f || got_r != want_r)
            fail(id + ": retransmitted segments fwd " + std::to_string(got_f) + " rev " +
                 std::to_string(got_r) + ", the kernels' TcpRetransSegs fwd " +
                 std::to_string(want_f) + " rev " + std::to_string(want_r));
        std::printf("%s: retransmitted segments fwd %llu rev %llu == TcpRetransSegs; ", id.c_str(),
                    (unsigned long long)got_f, (unsigned long long)got_r);
    }
    std::printf("%s: CLOSED once, payload fwd %llu rev %llu, %llu/%llu pkts, %llu/%llu B, rtt %llu ns\n",
                id.c_str(), (unsigned long long)fp, (unsigned long long)rp, (unsigned long long)fk,
                (unsigned long long)rk, (unsigned long long)fb, (unsigned long long)rb,
                (unsigned long long)c["rtt_ns"].get<std::uint64_t>());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "serve" && argc == 6) return serve(argv + 2);
    if (cmd == "connect" && argc == 6) return connect_(argv + 2);
    if (cmd == "check" && argc == 10) return check(argv + 2, nullptr);
    if (cmd == "check" && argc == 12) return check(argv + 2, argv + 10);
    std::fprintf(stderr,
                 "usage: tt_conn serve ADDR PORT EXPECT_RECV SEND\n"
                 "       tt_conn connect ADDR PORT SEND EXPECT_RECV\n"
                 "       tt_conn check FILE FAMILY SRC SPORT DST DPORT FWD_PAYLOAD REV_PAYLOAD"
                 " [FWD_RETRANS REV_RETRANS]\n");
    return 2;
}
