// SPDX-License-Identifier: MIT
// The -r resolver's cache and the table's names hook. No root needed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "enrich/resolver.hpp"
#include "output/format.hpp"
#include "output/table.hpp"
#include "render_forms.hpp"

using namespace tcptrack;
using namespace std::chrono_literals;

namespace {

Address v4(const char* s) {
    Address a{};
    EXPECT_EQ(inet_pton(AF_INET, s, a.data()), 1);
    return a;
}

Address v6(const char* s) {
    Address a{};
    EXPECT_EQ(inet_pton(AF_INET6, s, a.data()), 1);
    return a;
}

// ------------------------------------------------------------------ resolver

// A lookup the test controls: answers from `names` (missing: no name), but only
// once the gate is open; counts calls per address. Shared, so a worker still
// inside it after the Resolver is gone touches nothing freed.
struct FakeDns {
    std::mutex mu;
    std::condition_variable cv;
    bool open = true;
    std::map<std::string, std::string> names;  // numeric address -> name
    std::map<std::string, int> calls;

    static ReverseLookup lookup(const std::shared_ptr<FakeDns>& dns) {
        return [dns](Family f, const Address& a) -> std::optional<std::string> {
            const std::string key = address(f, a);
            std::unique_lock lk(dns->mu);
            ++dns->calls[key];
            // Bounded, so a resolver that waited for its lookups fails the
            // test instead of hanging it.
            if (!dns->cv.wait_for(lk, std::chrono::seconds(10), [&] { return dns->open; }))
                return std::nullopt;
            auto it = dns->names.find(key);
            if (it == dns->names.end()) return std::nullopt;
            return it->second;
        };
    }
    void set_open(bool o) {
        {
            std::lock_guard lk(mu);
            open = o;
        }
        cv.notify_all();
    }
    int calls_for(const std::string& key) {
        std::lock_guard lk(mu);
        return calls[key];
    }
};

// A clock the test moves.
struct FakeClock {
    std::chrono::steady_clock::time_point t{};
    Resolver::Clock fn() {
        return [this] { return t; };
    }
};

TEST(Resolver, AnswersAtOnceAndNamesOnceTheWorkerFinished) {
    auto dns = std::make_shared<FakeDns>();
    dns->names["10.0.0.1"] = "client.test";
    dns->set_open(false);  // the lookup cannot finish until the test says so
    Resolver r(FakeDns::lookup(dns));

    // Not known yet: nothing, without waiting for the (blocked) lookup.
    EXPECT_EQ(r.name(Family::V4, v4("10.0.0.1")), std::nullopt);
    EXPECT_EQ(r.name(Family::V4, v4("10.0.0.1")), std::nullopt);
    EXPECT_FALSE(r.wait_idle(0ms));
    EXPECT_EQ(r.lookups(), 0u);

    dns->set_open(true);
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(r.name(Family::V4, v4("10.0.0.1")), "client.test");
    // Asked three times, looked up once.
    EXPECT_EQ(dns->calls_for("10.0.0.1"), 1);
    EXPECT_EQ(r.lookups(), 1u);
}

TEST(Resolver, FailuresAreCachedForTheirOwnTime) {
    auto dns = std::make_shared<FakeDns>();
    FakeClock clock;
    Resolver::Config cfg;
    cfg.clock = clock.fn();
    cfg.ttl = 600s;
    cfg.negative_ttl = 60s;
    Resolver r(FakeDns::lookup(dns), cfg);

    const Address a = v6("fd00::7");
    EXPECT_EQ(r.name(Family::V6, a), std::nullopt);
    ASSERT_TRUE(r.wait_idle(10s));
    // No name: remembered, not asked again every report.
    for (int i = 0; i < 5; ++i) EXPECT_EQ(r.name(Family::V6, a), std::nullopt);
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(dns->calls_for("fd00::7"), 1);

    // After the negative TTL it is asked again; this time it has a name.
    dns->names["fd00::7"] = "seven.test";
    clock.t += 61s;
    EXPECT_EQ(r.name(Family::V6, a), std::nullopt);
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(dns->calls_for("fd00::7"), 2);
    EXPECT_EQ(r.name(Family::V6, a), "seven.test");

    // A name lives for the longer TTL; once it expires, the old name is shown
    // while it is asked again.
    clock.t += 599s;
    EXPECT_EQ(r.name(Family::V6, a), "seven.test");
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(dns->calls_for("fd00::7"), 2);
    dns->names["fd00::7"] = "renamed.test";
    dns->set_open(false);
    clock.t += 2s;
    EXPECT_EQ(r.name(Family::V6, a), "seven.test");
    dns->set_open(true);
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(dns->calls_for("fd00::7"), 3);
    EXPECT_EQ(r.name(Family::V6, a), "renamed.test");
}

TEST(Resolver, CacheIsBoundedAndDropsTheLeastRecentlyAsked) {
    auto dns = std::make_shared<FakeDns>();
    Resolver::Config cfg;
    cfg.capacity = 4;
    Resolver r(FakeDns::lookup(dns), cfg);
    for (int i = 1; i <= 4; ++i)
        dns->names["10.1.0." + std::to_string(i)] = "h" + std::to_string(i);

    for (int i = 1; i <= 4; ++i) r.name(Family::V4, v4(("10.1.0." + std::to_string(i)).c_str()));
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(r.cached(), 4u);
    EXPECT_EQ(r.name(Family::V4, v4("10.1.0.1")), "h1");  // now the most recent

    // Ten more addresses: the cache never grows past 4 ...
    for (int i = 10; i < 20; ++i) {
        r.name(Family::V4, v4(("10.2.0." + std::to_string(i)).c_str()));
        EXPECT_LE(r.cached(), 4u);
    }
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(r.cached(), 4u);
    // ... and the old entries were dropped: asking again looks them up again.
    EXPECT_EQ(r.name(Family::V4, v4("10.1.0.2")), std::nullopt);
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(dns->calls_for("10.1.0.2"), 2);
    EXPECT_EQ(r.name(Family::V4, v4("10.1.0.2")), "h2");
}

TEST(Resolver, PendingLookupsAreBounded) {
    auto dns = std::make_shared<FakeDns>();
    dns->set_open(false);
    Resolver::Config cfg;
    cfg.threads = 1;
    cfg.max_pending = 3;
    Resolver r(FakeDns::lookup(dns), cfg);
    for (int i = 1; i <= 20; ++i) r.name(Family::V4, v4(("10.3.0." + std::to_string(i)).c_str()));
    // One in the (blocked) worker, at most 3 queued: the rest were not taken.
    EXPECT_LE(r.cached(), 4u);
    dns->set_open(true);
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_LE(r.lookups(), 4u);
    // Those left out are taken on a later report.
    r.name(Family::V4, v4("10.3.0.20"));
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(dns->calls_for("10.3.0.20"), 1);
}

TEST(Resolver, DestructionDoesNotWaitForABlockedLookup) {
    auto dns = std::make_shared<FakeDns>();
    dns->set_open(false);
    {
        Resolver r(FakeDns::lookup(dns));
        r.name(Family::V4, v4("10.4.0.1"));
    }                     // returns with the worker still inside the lookup
    dns->set_open(true);  // the worker finishes on its own, on state it shares
}

TEST(Resolver, NamesAreSanitizedForTheTerminal) {
    EXPECT_EQ(sanitize_hostname("host-1.example_x.org"), "host-1.example_x.org");
    EXPECT_EQ(sanitize_hostname("evil\x1b[2Jname"), "evil??2Jname");
    EXPECT_EQ(sanitize_hostname(""), std::nullopt);
    EXPECT_EQ(sanitize_hostname(std::string(300, 'a'))->size(), 253u);

    auto dns = std::make_shared<FakeDns>();
    dns->names["10.5.0.1"] = "a b\n";
    Resolver r(FakeDns::lookup(dns));
    r.name(Family::V4, v4("10.5.0.1"));
    ASSERT_TRUE(r.wait_idle(10s));
    EXPECT_EQ(r.name(Family::V4, v4("10.5.0.1")), "a?b?");
}

TEST(Resolver, SystemLookupReadsTheHostsDatabase) {
    // localhost is in every /etc/hosts; no network involved.
    const auto name = system_reverse_lookup(Family::V4, v4("127.0.0.1"));
    ASSERT_TRUE(name.has_value());
    EXPECT_NE(name->find("localhost"), std::string::npos) << *name;
}

// ------------------------------------------------------------------ the table's names hook

TEST(Resolver, TableShowsNamesWhereKnownAndNumbersElsewhere) {
    Report rep;
    rep.ifaces = {"eth0@netns ctr1"};
    FlowRow a;
    a.iface = "eth0";
    a.src = v4("10.0.0.1");
    a.dst = v4("10.0.0.2");
    a.sport = 40000;
    a.dport = 443;
    FlowRow b;
    b.iface = "eth0";
    b.family = Family::V6;
    b.src = v6("fd00::1");
    b.dst = v6("fd00::2");
    b.sport = 40001;
    b.dport = 80;
    rep.rows = {a, b};

    const std::string plain = render_table(rep);
    EXPECT_NE(plain.find("10.0.0.1:40000 -> 10.0.0.2:443"), std::string::npos) << plain;
    EXPECT_NE(plain.find("eth0@netns ctr1"), std::string::npos) << plain;

    const NameLookup names = [](Family f, const Address& addr) -> std::optional<std::string> {
        const std::string s = address(f, addr);
        if (s == "10.0.0.1") return "client.test";
        if (s == "fd00::2") return "web.test";
        return std::nullopt;
    };
    const std::string named = render_table(rep, SIZE_MAX, names);
    EXPECT_NE(named.find("client.test:40000 -> 10.0.0.2:443"), std::string::npos) << named;
    EXPECT_NE(named.find("[fd00::1]:40001 -> web.test:80"), std::string::npos) << named;
    // Everything else is the same table.
    EXPECT_EQ(named.substr(0, named.find('\n')), plain.substr(0, plain.find('\n')));
    // The same through the report (what run() sets, so every view of it gets the names).
    Report with_names = rep;
    with_names.names = names;
    EXPECT_EQ(render_table(with_names), named);
    // JSON never uses names.
    const std::string json = render_json(rep);
    EXPECT_EQ(json.find(".test"), std::string::npos) << json;
}

}  // namespace
