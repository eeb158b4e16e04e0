// SPDX-License-Identifier: MIT
// Connection churn load generator: many short TCP connections, as fast as possible.
//
//   churn server --bind ADDR --port P [--request Q] [--reply R] [--threads T]
//       Accepts; reads Q bytes; writes R bytes; closes (the server closes first).
//       Runs until SIGINT/SIGTERM, then prints "accepted=N".
//   churn client --connect ADDR --port P [--request Q] [--reply R] [--threads T]
//                [--duration SECONDS] [--connections N] [--log FILE]
//       Each thread: connect, send Q bytes, read until EOF, close; repeat until
//       the deadline (or N connections per thread: --connections 1 --request
//       2147483648 --reply 0 is one exact bulk transfer with a FIN close). A connection counts as
//       completed when exactly Q bytes were sent and exactly R received. --log writes "sport sent
//       received" per completed connection. Prints a summary line of key=value pairs.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sockaddr.hpp"

namespace {

struct Args {
    std::string mode, addr = "127.0.0.1", log;
    int port = 5555, threads = 4;
    std::size_t request = 64, reply = 512;
    double duration = 5;
    long connections = 0;  // per client thread; 0 = until the deadline
};

// Writes n bytes of `fill` from a 64 KiB pattern buffer (n may be gigabytes).
bool write_all(int fd, char fill, std::size_t n) {
    static thread_local std::vector<char> chunk;
    if (chunk.size() != 65536 || chunk[0] != fill) chunk.assign(65536, fill);
    while (n) {
        const ssize_t w = send(fd, chunk.data(), std::min(n, chunk.size()), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

int server(const Args& a) {
    socklen_t len = 0;
    const sockaddr_storage ss = make_addr("churn", a.addr, a.port, len);
    const int lfd = socket(ss.ss_family, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, reinterpret_cast<const sockaddr*>(&ss), len) != 0 ||
        listen(lfd, 4096) != 0) {
        std::fprintf(stderr, "churn server: %s\n", std::strerror(errno));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // inherited by the workers

    std::atomic<unsigned long> accepted{0}, served{0};
    for (int t = 0; t < a.threads; ++t) {
        std::thread([&] {
            std::vector<char> buf(65536);
            for (;;) {
                const int fd = accept(lfd, nullptr, nullptr);
                if (fd < 0) continue;
                ++accepted;
                std::size_t got = 0;
                while (got < a.request) {
                    const ssize_t r =
                        recv(fd, buf.data(), std::min(buf.size(), a.request - got), 0);
                    if (r < 0 && errno == EINTR) continue;
                    if (r <= 0) break;
                    got += static_cast<std::size_t>(r);
                }
                if (got == a.request && write_all(fd, 'r', a.reply)) ++served;
                close(fd);
            }
        }).detach();
    }
    std::printf("listening\n");
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    std::printf("accepted=%lu served=%lu\n", accepted.load(), served.load());
    std::fflush(stdout);
    _exit(0);  // workers block in accept()
}

struct Done {
    std::uint16_t sport;
    std::uint64_t sent, received;
};

int client(const Args& a) {
    socklen_t len = 0;
    const sockaddr_storage ss = make_addr("churn", a.addr, a.port, len);
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(a.duration));
    std::vector<std::vector<Done>> done(a.threads);
    std::vector<unsigned long> errors(a.threads, 0), short_io(a.threads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < a.threads; ++t) {
        threads.emplace_back([&, t] {
            std::vector<char> buf(65536);
            long made = 0;
            while (std::chrono::steady_clock::now() < deadline &&
                   (a.connections == 0 || made++ < a.connections)) {
                const int fd = socket(ss.ss_family, SOCK_STREAM, 0);
                if (fd < 0) {
                    ++errors[t];
                    continue;
                }
                if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
                    ++errors[t];
                    close(fd);
                    continue;
                }
                sockaddr_storage local{};
                socklen_t llen = sizeof(local);
                getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen);
                const std::uint16_t sport =
                    ntohs(local.ss_family == AF_INET
                              ? reinterpret_cast<sockaddr_in*>(&local)->sin_port
                              : reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
                const bool sent = write_all(fd, 'q', a.request);
                std::size_t got = 0;
                for (;;) {
                    const ssize_t r = recv(fd, buf.data(), buf.size(), 0);
                    if (r < 0 && errno == EINTR) continue;
                    if (r <= 0) break;
                    got += static_cast<std::size_t>(r);
                }
                close(fd);
                if (sent && got == a.reply)
                    done[t].push_back(Done{sport, a.request, got});
                else
                    ++short_io[t];
            }
        });
    }
    for (auto& th : threads) th.join();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    unsigned long n = 0, err = 0, shrt = 0;
    unsigned long long bytes_sent = 0, bytes_recv = 0;
    FILE* log = a.log.empty() ? nullptr : std::fopen(a.log.c_str(), "w");
    for (int t = 0; t < a.threads; ++t) {
        n += done[t].size();
        err += errors[t];
        shrt += short_io[t];
        for (const auto& d : done[t]) {
            bytes_sent += d.sent;
            bytes_recv += d.received;
            if (log)
                std::fprintf(log, "%u %llu %llu\n", d.sport,
                             static_cast<unsigned long long>(d.sent),
                             static_cast<unsigned long long>(d.received));
        }
    }
    if (log) std::fclose(log);
    std::printf(
        "connections=%lu seconds=%.2f rate=%.0f bytes_sent=%llu bytes_received=%llu "
        "connect_errors=%lu incomplete=%lu\n",
        n, secs, n / secs, bytes_sent, bytes_recv, err, shrt);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s server|client [options]\n", argv[0]);
        return 2;
    }
    a.mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--bind" || k == "--connect")
            a.addr = v;
        else if (k == "--port")
            a.port = std::atoi(v.c_str());
        else if (k == "--threads")
            a.threads = std::max(1, std::atoi(v.c_str()));
        else if (k == "--request")
            a.request = std::strtoul(v.c_str(), nullptr, 10);
        else if (k == "--reply")
            a.reply = std::strtoul(v.c_str(), nullptr, 10);
        else if (k == "--duration")
            a.duration = std::atof(v.c_str());
        else if (k == "--log")
            a.log = v;
        else if (k == "--connections")
            a.connections = std::atol(v.c_str());
        else {
            std::fprintf(stderr, "churn: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (a.mode == "server") return server(a);
    if (a.mode == "client") return client(a);
    std::fprintf(stderr, "churn: mode must be server or client\n");
    return 2;
}
