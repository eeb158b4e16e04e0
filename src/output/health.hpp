// SPDX-License-Identifier: MIT
// Whether this tcptrack is doing its job, for --prometheus's /healthz: the
// run updates it every interval, the exporter's HTTP threads read it. Healthy
// from the first report on, while reports keep coming (a stuck loop shows as a stale report) and
// every interface that should be watched is (none refused by --max-interfaces or an attach error);
// interfaces someone detached are put back at each check, and a failure to do so ends the run.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

namespace tcptrack {

class Health {
   public:
    // max_age_ns: how old the last report may be (a few intervals); start_ns:
    // when watching began (the age before the first report counts from there).
    Health(std::uint64_t max_age_ns, std::uint64_t start_ns)
        : max_age_ns_(max_age_ns), last_ns_(start_ns) {}

    // After an interval's check and report: `not_watched` interfaces that
    // should be watched are not.
    void update(std::uint64_t now_ns, std::size_t not_watched) {
        const std::lock_guard<std::mutex> g(mu_);
        last_ns_ = now_ns;
        not_watched_ = not_watched;
        reported_ = true;
    }
    // "" when healthy, else what is wrong, one line per reason.
    std::string problems(std::uint64_t now_ns) const {
        const std::lock_guard<std::mutex> g(mu_);
        std::string why;
        // Not ready before the first report: -i patterns and --all-interfaces
        // attach what matches during the first interval.
        if (!reported_) why += "starting: no report yet\n";
        if (now_ns > last_ns_ && now_ns - last_ns_ > max_age_ns_)
            why += "no report for " + std::to_string((now_ns - last_ns_) / 1000000000ull) + " s\n";
        if (not_watched_)
            why += std::to_string(not_watched_) +
                   " matching interface(s) not watched (--max-interfaces or an attach "
                   "error: see stderr)\n";
        return why;
    }

   private:
    mutable std::mutex mu_;
    const std::uint64_t max_age_ns_;
    std::uint64_t last_ns_;
    std::size_t not_watched_ = 0;
    bool reported_ = false;
};

}  // namespace tcptrack
