// SPDX-License-Identifier: MIT
// -r/--resolve: reverse DNS names for the table, never on the report's path.
//
// name() answers from a cache at once; an address not in it is queued for a
// small pool of worker threads (getnameinfo with NI_NAMEREQD) and shown as a
// number until its name is known. The cache is bounded (least recently asked
// entries go first) and keeps failures too, for a shorter time, so an address
// without a PTR record is not asked about every report.
//
// Namespace: the workers start when the Resolver is built. run() builds it
// before entering --netns, so lookups go through our own network namespace:
// the host's /etc/resolv.conf often names a resolver on the host's loopback
// (127.0.0.53) that a container's namespace cannot reach.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "report/report.hpp"

namespace tcptrack {

// Blocking lookup of one address: its name, or nothing (no name, or an error).
using ReverseLookup = std::function<std::optional<std::string>(Family, const Address&)>;

// getnameinfo(NI_NAMEREQD): /etc/hosts, DNS, whatever nsswitch.conf says.
std::optional<std::string> system_reverse_lookup(Family family, const Address& addr);

// Keeps a name fit for a terminal: letters, digits, '.', '-', '_' (anything
// else, e.g. an escape sequence in a hostile PTR record, becomes '?'), at most
// 253 characters; nothing for an empty name.
std::optional<std::string> sanitize_hostname(const std::string& name);

class Resolver {
   public:
    using Clock = std::function<std::chrono::steady_clock::time_point()>;
    struct Config {
        std::size_t capacity = 4096;            // cached addresses, names and failures together
        std::size_t max_pending = 256;          // queued lookups; more wait for a later report
        std::size_t threads = 2;                // lookups at once (each may block for seconds)
        std::chrono::seconds ttl{600};          // a name is asked again after this
        std::chrono::seconds negative_ttl{60};  // and a failure after this
        Clock clock;                            // empty: steady_clock::now (tests inject one)
    };

    explicit Resolver(ReverseLookup lookup = system_reverse_lookup);
    Resolver(ReverseLookup lookup, Config config);
    // Returns at once: workers still inside a lookup finish it on their own.
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // The name if known; else nothing, and the address is queued once (an
    // expired name is still returned while it is asked again).
    std::optional<std::string> name(Family family, const Address& addr);

    // Until nothing is queued or being looked up, or the timeout: true if idle.
    bool wait_idle(std::chrono::milliseconds timeout);

    std::size_t cached() const;     // entries in the cache
    std::uint64_t lookups() const;  // lookups finished since start

    struct State;

   private:
    std::shared_ptr<State> state_;  // shared with the workers, which may outlive us
};

}  // namespace tcptrack
