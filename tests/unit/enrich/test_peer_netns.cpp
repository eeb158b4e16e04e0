// SPDX-License-Identifier: MIT
// enrich/peer_netns: finding the namespace behind an nsid among candidates,
// with regular files standing in for namespaces and a scripted nsid per inode:
// one question per namespace, scans only for what is missing and rate-limited,
// a bound on a scan, and namespaces let go when unused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "enrich/peer_netns.hpp"

namespace tcptrack {
namespace {

constexpr std::uint64_t kSec = 1'000'000'000;

struct PeerTest : ::testing::Test {
    std::string dir;
    std::vector<std::string> paths;        // the candidates, in order
    std::map<std::uint64_t, int> nsid_of;  // inode -> nsid ("namespaces" without one: absent)
    std::map<std::uint64_t, int> asked;    // inode -> times asked
    std::size_t visited = 0;
    std::uint64_t home = 0;

    void SetUp() override {
        char tmpl[] = "/tmp/tt-peer-unit-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    void TearDown() override {
        for (const auto& [p, ino] : files) unlink(p.c_str());
        rmdir(dir.c_str());
    }
    // A "namespace": a file; its inode gets `nsid` (< 0: none).
    std::uint64_t ns(const std::string& name, int nsid) {
        const std::string p = dir + "/" + name;
        const int fd = open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        EXPECT_GE(fd, 0);
        close(fd);
        struct stat st {};
        stat(p.c_str(), &st);
        files[p] = st.st_ino;
        if (nsid >= 0) nsid_of[st.st_ino] = nsid;
        paths.push_back(p);
        return st.st_ino;
    }
    PeerNamespaces make() {
        return PeerNamespaces(
            [this](const std::function<bool(const char*)>& visit) {
                for (const auto& p : paths) {
                    ++visited;
                    if (!visit(p.c_str())) return;
                }
            },
            [this](int fd) -> std::optional<int> {
                struct stat st {};
                fstat(fd, &st);
                ++asked[st.st_ino];
                const auto it = nsid_of.find(st.st_ino);
                return it == nsid_of.end() ? std::nullopt : std::optional<int>(it->second);
            },
            home);
    }
    std::map<std::string, std::uint64_t> files;
};

TEST_F(PeerTest, FindsEachNsidAskingEachNamespaceOnce) {
    const std::uint64_t a = ns("a", 3), b = ns("b", 5);
    ns("c", -1);
    paths.push_back(paths[0]);  // a again (two processes in one namespace)
    PeerNamespaces peers = make();
    EXPECT_TRUE(peers.want({5, 3, 5}, 10 * kSec));
    EXPECT_EQ(peers.scans(), 1u);
    ASSERT_NE(peers.get(3, 10 * kSec), nullptr);
    ASSERT_NE(peers.get(5, 10 * kSec), nullptr);
    EXPECT_EQ(peers.get(3, 10 * kSec)->inode, a);
    EXPECT_EQ(peers.get(5, 10 * kSec)->inode, b);
    EXPECT_TRUE(peers.get(3, 10 * kSec)->ns);  // held open
    EXPECT_EQ(peers.get(9, 10 * kSec), nullptr);
    EXPECT_EQ(peers.held(), 2u);
    // Found both by b: c and a's second path were never looked at.
    EXPECT_EQ(visited, 2u);
    EXPECT_EQ(asked, (std::map<std::uint64_t, int>{{a, 1}, {b, 1}}));
    // Held: no scan.
    EXPECT_TRUE(peers.want({3, 5}, 10 * kSec));
    EXPECT_EQ(peers.scans(), 1u);
}

TEST_F(PeerTest, ScansForMissingOnesAtMostOncePerSecond) {
    const std::uint64_t a = ns("a", 3);
    const std::uint64_t c = ns("c", -1);
    PeerNamespaces peers = make();
    EXPECT_TRUE(peers.want({3}, 10 * kSec));
    // An nsid nobody has: scanned for, every candidate asked once, but the held
    // one (and the home namespace) not again.
    EXPECT_TRUE(peers.want({4}, 11 * kSec));
    EXPECT_EQ(peers.scans(), 2u);
    EXPECT_EQ(asked, (std::map<std::uint64_t, int>{{a, 1}, {c, 1}}));
    // Again within the second: the scan waits.
    EXPECT_FALSE(peers.want({4}, 11 * kSec + kSec / 2));
    EXPECT_EQ(peers.scans(), 2u);
    // A new namespace appears; the next scan finds it.
    const std::uint64_t d = ns("d", 4);
    EXPECT_TRUE(peers.want({4}, 12 * kSec));
    ASSERT_NE(peers.get(4, 12 * kSec), nullptr);
    EXPECT_EQ(peers.get(4, 12 * kSec)->inode, d);
    EXPECT_EQ(asked, (std::map<std::uint64_t, int>{{a, 1}, {c, 2}, {d, 1}}));
}

TEST_F(PeerTest, TheHomeNamespaceIsNeverAPeer) {
    home = ns("home", 1);  // were it asked, it would answer
    PeerNamespaces peers = make();
    EXPECT_TRUE(peers.want({1}, 10 * kSec));
    EXPECT_EQ(peers.get(1, 10 * kSec), nullptr);
    EXPECT_TRUE(asked.empty());
}

TEST_F(PeerTest, LetsGoOfNamespacesUnusedForAWhile) {
    ns("a", 3);
    ns("b", 5);
    PeerNamespaces peers = make();
    EXPECT_TRUE(peers.want({3, 5}, 10 * kSec));
    ASSERT_EQ(peers.held(), 2u);
    peers.get(5, 15 * kSec);  // 5 used later than 3
    peers.release_idle(10 * kSec + PeerNamespaces::kIdleNs - 1);
    EXPECT_EQ(peers.held(), 2u);
    peers.release_idle(10 * kSec + PeerNamespaces::kIdleNs);
    EXPECT_EQ(peers.held(), 1u);
    EXPECT_EQ(peers.get(3, 21 * kSec), nullptr);
    EXPECT_NE(peers.get(5, 21 * kSec), nullptr);
    // Wanted again: found by the next scan.
    EXPECT_TRUE(peers.want({3}, 21 * kSec));
    EXPECT_NE(peers.get(3, 21 * kSec), nullptr);
}

TEST_F(PeerTest, AScanAsksABoundedNumberOfNamespaces) {
    for (std::size_t i = 0; i <= PeerNamespaces::kMaxNamespaces; ++i) ns(std::to_string(i), -1);
    const std::uint64_t last = ns("last", 8);  // beyond the bound
    PeerNamespaces peers = make();
    EXPECT_TRUE(peers.want({8}, 10 * kSec));
    EXPECT_EQ(peers.get(8, 10 * kSec), nullptr);
    EXPECT_EQ(asked.size(), PeerNamespaces::kMaxNamespaces);
    EXPECT_EQ(asked.count(last), 0u);
}

TEST(PeerNetns, RealCandidatesIncludeThisProcess) {
    // /proc/self's pid is among /proc/*/ns/net.
    const std::string mine = "/proc/" + std::to_string(getpid()) + "/ns/net";
    bool seen = false;
    std::size_t n = 0;
    each_netns_file([&](const char* p) {
        ++n;
        seen = seen || mine == p;
        return true;
    });
    EXPECT_TRUE(seen);
    // A visitor that stops is not called again.
    std::size_t calls = 0;
    each_netns_file([&](const char*) { return ++calls < 2; });
    EXPECT_EQ(calls, std::min<std::size_t>(n, 2));
}

}  // namespace
}  // namespace tcptrack
