// SPDX-License-Identifier: MIT
#include "enrich/resolver.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <tuple>

namespace tcptrack {

namespace {

using TimePoint = std::chrono::steady_clock::time_point;

struct Key {
    Family family;
    Address addr;
    bool operator<(const Key& o) const {
        return std::tie(family, addr) < std::tie(o.family, o.addr);
    }
};

struct Entry {
    std::optional<std::string> name;  // nothing: not known (yet, or no name)
    bool pending = true;              // queued or being looked up
    TimePoint expires{};              // when not pending: ask again after this
    std::list<Key>::iterator lru;
};

}  // namespace

struct Resolver::State {
    ReverseLookup lookup;
    Config cfg;
    mutable std::mutex mu;
    std::condition_variable work_cv;  // a key was queued, or stop
    std::condition_variable idle_cv;  // the queue drained and no lookup runs
    std::map<Key, Entry> cache;
    std::list<Key> lru;  // front: asked most recently
    std::deque<Key> queue;
    std::size_t running = 0;
    std::uint64_t done = 0;
    bool stop = false;

    TimePoint now() const { return cfg.clock ? cfg.clock() : std::chrono::steady_clock::now(); }
    bool idle() const { return queue.empty() && running == 0; }
};

namespace {

void worker(std::shared_ptr<Resolver::State> s) {
    std::unique_lock lk(s->mu);
    for (;;) {
        s->work_cv.wait(lk, [&] { return s->stop || !s->queue.empty(); });
        if (s->stop) return;
        const Key k = s->queue.front();
        s->queue.pop_front();
        ++s->running;
        lk.unlock();
        std::optional<std::string> name;
        try {
            if (auto n = s->lookup(k.family, k.addr)) name = sanitize_hostname(*n);
        } catch (...) {
            // A failed lookup is a missing name, never a dead worker.
        }
        lk.lock();
        --s->running;
        ++s->done;
        // Evicted meanwhile: the answer is dropped, the bound holds.
        if (auto it = s->cache.find(k); it != s->cache.end()) {
            Entry& e = it->second;
            e.pending = false;
            e.expires = s->now() + (name ? s->cfg.ttl : s->cfg.negative_ttl);
            e.name = std::move(name);
        }
        if (s->idle()) s->idle_cv.notify_all();
    }
}

}  // namespace

std::optional<std::string> system_reverse_lookup(Family family, const Address& addr) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (family == Family::V4) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        std::memcpy(&sin->sin_addr, addr.data(), 4);
        len = sizeof(*sin);
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        std::memcpy(&sin6->sin6_addr, addr.data(), 16);
        len = sizeof(*sin6);
    }
    char host[NI_MAXHOST];
    if (getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, nullptr, 0,
                    NI_NAMEREQD) != 0)
        return std::nullopt;
    return std::string(host);
}

std::optional<std::string> sanitize_hostname(const std::string& name) {
    if (name.empty()) return std::nullopt;
    std::string out = name.substr(0, 253);
    for (char& c : out) {
        const unsigned char u = static_cast<unsigned char>(c);
        const bool ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
                        (u >= '0' && u <= '9') || u == '.' || u == '-' || u == '_';
        if (!ok) c = '?';
    }
    return out;
}

Resolver::Resolver(ReverseLookup lookup) : Resolver(std::move(lookup), Config{}) {}

Resolver::Resolver(ReverseLookup lookup, Config config) : state_(std::make_shared<State>()) {
    state_->lookup = std::move(lookup);
    state_->cfg = std::move(config);
    state_->cfg.capacity = std::max<std::size_t>(state_->cfg.capacity, 1);
    // Workers take no signals: SIGINT must reach the main thread, whose wait it interrupts.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (std::size_t i = 0; i < std::max<std::size_t>(state_->cfg.threads, 1); ++i)
        std::thread(worker, state_).detach();  // never joined: a lookup may block for seconds
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

Resolver::~Resolver() {
    {
        std::lock_guard lk(state_->mu);
        state_->stop = true;
        state_->queue.clear();
    }
    state_->work_cv.notify_all();
}

std::optional<std::string> Resolver::name(Family family, const Address& addr) {
    State& s = *state_;
    const Key k{family, addr};
    std::lock_guard lk(s.mu);
    auto it = s.cache.find(k);
    if (it == s.cache.end()) {
        if (s.queue.size() >= s.cfg.max_pending) return std::nullopt;  // asked again next report
        s.lru.push_front(k);
        Entry e;
        e.lru = s.lru.begin();
        s.cache.emplace(k, std::move(e));
        s.queue.push_back(k);
        s.work_cv.notify_one();
        while (s.cache.size() > s.cfg.capacity) {
            s.cache.erase(s.lru.back());
            s.lru.pop_back();
        }
        return std::nullopt;
    }
    Entry& e = it->second;
    s.lru.splice(s.lru.begin(), s.lru, e.lru);
    if (!e.pending && s.now() >= e.expires && s.queue.size() < s.cfg.max_pending) {
        e.pending = true;  // the old answer stays on screen meanwhile
        s.queue.push_back(k);
        s.work_cv.notify_one();
    }
    return e.name;
}

bool Resolver::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lk(state_->mu);
    return state_->idle_cv.wait_for(lk, timeout, [&] { return state_->idle(); });
}

std::size_t Resolver::cached() const {
    std::lock_guard lk(state_->mu);
    return state_->cache.size();
}

std::uint64_t Resolver::lookups() const {
    std::lock_guard lk(state_->mu);
    return state_->done;
}

}  // namespace tcptrack
