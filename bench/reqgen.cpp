// SPDX-License-Identifier: MIT
// Request-style load: N open connections taking turns sending small messages
// with TCP_NODELAY, to a server that only reads (so the reverse direction is
// pure ACKs). Single-threaded on both sides; everything is bounded in time.
//
//   reqgen server --bind ADDR --port P
//       Accepts any number of connections and reads and discards everything
//       (epoll). Prints "listening" once bound, and on SIGINT/SIGTERM
//       "accepted=N bytes=B".
//   reqgen client --connect ADDR[,ADDR...] --port P [--connections N] [--size S]
//                 [--duration SECONDS] [--rate R] [--control]
//       Opens N connections (TCP_NODELAY; with several addresses, connection
//       i to the (i mod count)th), prints "ready connections=N", then for
//       SECONDS round-robins one S-byte send() over them (MSG_DONTWAIT: a full
//       send buffer skips that connection's turn and counts it as `blocked`):
//       as fast as it can or, with --rate, R sends per second in all (paced
//       on the clock: each connection sends every N/R s). Then it prints "done
//       writes=W bytes=B blocked=K seconds=T rate=W/s". With --control it
//       waits for a line on stdin before sending and for end of stdin before
//       closing the connections, so a caller can take measurements around the
//       sending phase only (setup and teardown segments outside it). Exits on
//       its own after SECONDS + 120 s at most.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sockaddr.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
    std::string mode, addr = "127.0.0.1";
    int port = 7002;
    long connections = 2;
    std::size_t size = 100;
    double duration = 3;
    double rate = 0;  // sends per second over all connections; 0 = as fast as possible
    bool control = false;
};

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int server(const Args& a) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;  // no SA_RESTART: epoll_wait returns EINTR
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    socklen_t len = 0;
    const sockaddr_storage ss = make_addr("reqgen", a.addr, a.port, len);
    const int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    const int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, reinterpret_cast<const sockaddr*>(&ss), len) != 0 || listen(lfd, 4096) != 0) {
        std::fprintf(stderr, "reqgen server: %s\n", std::strerror(errno));
        return 1;
    }
    const int ep = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    std::printf("listening\n");
    std::fflush(stdout);
    std::vector<epoll_event> evs(1024);
    std::vector<char> buf(1 << 16);
    long accepted = 0;
    unsigned long long bytes = 0;
    while (!g_stop) {
        const int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 200);
        for (int i = 0; i < n; ++i) {
            const int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    const int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
                    if (c < 0) break;
                    ++accepted;
                    epoll_event cev{};
                    cev.events = EPOLLIN;
                    cev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            for (;;) {
                const ssize_t r = read(fd, buf.data(), buf.size());
                if (r > 0) {
                    bytes += static_cast<unsigned long long>(r);
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
                    close(fd);
                }
                break;
            }
        }
    }
    std::printf("accepted=%ld bytes=%llu\n", accepted, bytes);
    return 0;
}

// Waits up to timeout_ms for a line (or EOF) on stdin. Returns false on timeout.
bool wait_stdin(int timeout_ms, bool want_eof) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    char c;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd p{0, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
        const ssize_t r = read(0, &c, 1);
        if (r <= 0) return true;  // EOF (or error): treated as the signal
        if (!want_eof && c == '\n') return true;
    }
}

int client(const Args& a) {
    std::signal(SIGPIPE, SIG_IGN);
    // --connect A,B,...: connection i goes to address i mod count.
    std::vector<std::pair<sockaddr_storage, socklen_t>> dsts;
    for (std::size_t from = 0;;) {
        const std::size_t comma = a.addr.find(',', from);
        socklen_t len = 0;
        const auto ss = make_addr("reqgen", a.addr.substr(from, comma - from), a.port, len);
        dsts.emplace_back(ss, len);
        if (comma == std::string::npos) break;
        from = comma + 1;
    }
    std::vector<int> fds;
    fds.reserve(static_cast<std::size_t>(a.connections));
    const timeval tmo{5, 0};
    for (long i = 0; i < a.connections; ++i) {
        const auto& [ss, len] = dsts[static_cast<std::size_t>(i) % dsts.size()];
        const int fd = socket(ss.ss_family, SOCK_STREAM, 0);
        const int one = 1;
        if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo)) != 0 ||
            connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
            std::fprintf(stderr, "reqgen client: connection %ld: %s\n", i, std::strerror(errno));
            return 1;
        }
        fds.push_back(fd);
    }
    std::printf("ready connections=%zu\n", fds.size());
    std::fflush(stdout);
    if (a.control && !wait_stdin(120000, false)) {
        std::fprintf(stderr, "reqgen client: no go within 120 s\n");
        return 1;
    }

    std::vector<char> msg(a.size, 'q');
    unsigned long long writes = 0, bytes = 0, blocked = 0;
    const auto t0 = Clock::now();
    const auto deadline =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.duration));
    // Returns false on a send error.
    auto send_one = [&](int fd) {
        const ssize_t w = send(fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            ++writes;
            bytes += static_cast<unsigned long long>(w);
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ++blocked;
        } else if (w < 0 && errno != EINTR) {
            std::fprintf(stderr, "reqgen client: send: %s\n", std::strerror(errno));
            return false;
        }
        return true;
    };
    bool over = false;
    if (a.rate > 0) {
        // Paced: send number k is due at t0 + k / rate; sleep until the next one is.
        unsigned long long k = 0;
        for (;;) {
            const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
            const auto due = static_cast<unsigned long long>(elapsed * a.rate) + 1;
            for (; k < due; ++k)
                if (!send_one(fds[k % fds.size()])) return 1;
            const auto next = t0 + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(k / a.rate));
            if (next >= deadline) break;
            std::this_thread::sleep_until(next);
        }
        std::this_thread::sleep_until(deadline);
        over = true;
    }
    while (!over) {
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (!send_one(fds[i])) return 1;
            if ((i & 63) == 63 && Clock::now() >= deadline) {
                over = true;
                break;
            }
        }
        if (Clock::now() >= deadline) over = true;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("done writes=%llu bytes=%llu blocked=%llu seconds=%.3f rate=%.0f\n", writes, bytes,
                blocked, secs, writes / secs);
    std::fflush(stdout);
    if (a.control) wait_stdin(120000, true);
    for (int fd : fds) close(fd);
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
    for (int i = 2; i < argc; ++i) {
        const std::string k = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "reqgen: %s needs a value\n", k.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (k == "--bind" || k == "--connect")
            a.addr = next();
        else if (k == "--port")
            a.port = std::atoi(next());
        else if (k == "--connections")
            a.connections = std::atol(next());
        else if (k == "--size")
            a.size = static_cast<std::size_t>(std::atol(next()));
        else if (k == "--duration")
            a.duration = std::atof(next());
        else if (k == "--rate")
            a.rate = std::atof(next());
        else if (k == "--control")
            a.control = true;
        else {
            std::fprintf(stderr, "reqgen: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (a.connections < 1 || a.size < 1) {
        std::fprintf(stderr, "reqgen: --connections and --size must be >= 1\n");
        return 2;
    }
    if (a.mode == "server") return server(a);
    if (a.mode == "client") return client(a);
    std::fprintf(stderr, "reqgen: mode must be server or client\n");
    return 2;
}
