// SPDX-License-Identifier: MIT
#include "attach/interface_watch.hpp"

#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <cstdio>

#include "sys/error.hpp"

namespace tcptrack {

InterfaceWatch::InterfaceWatch(ProgramsFor programs, bool want_tcx, bool allow_fallback)
    : programs_(std::move(programs)), want_tcx_(want_tcx), allow_fallback_(allow_fallback) {}

void InterfaceWatch::add(const Interface& iface) {
    std::vector<std::string> notes;
    auto att = attach_interface(iface.name, iface.ifindex, programs_(iface.has_l2), want_tcx_,
                                allow_fallback_, notes);
    for (const auto& n : notes) std::fprintf(stderr, "tcptrack: %s\n", n.c_str());
    if (verbose_)
        std::fprintf(stderr, "tcptrack: attached to %s (%s)\n", iface.name.c_str(), att->kind());
    names_[static_cast<std::uint32_t>(iface.ifindex)] = iface.name;
    watched_.push_back(Watched{iface, std::move(att)});
}

void InterfaceWatch::follow(const InterfaceSelection& sel, std::size_t max_interfaces) {
    sel_ = sel;
    max_ = max_interfaces;
    links_ = std::make_unique<LinkEvents>();  // before the dump: nothing falls in between
    resync();
}

std::vector<InterfaceWatch::Watched>::iterator InterfaceWatch::find(int ifindex) {
    return std::find_if(watched_.begin(), watched_.end(),
                        [&](const Watched& w) { return w.iface.ifindex == ifindex; });
}

void InterfaceWatch::on_link(const LinkEvent& e) {
    auto it = find(e.ifindex);
    if (e.gone) {
        refused_.erase(e.ifindex);
        over_limit_.erase(e.ifindex);
        if (it != watched_.end()) release(it, true);
        return;
    }
    const bool wanted = sel_->matches(e.name, e.type);
    if (it != watched_.end()) {
        if (!e.name.empty() && e.name != it->iface.name) {  // renamed
            it->iface.name = e.name;
            names_[static_cast<std::uint32_t>(e.ifindex)] = e.name;
        }
        if (!wanted) release(it, false);
        return;
    }
    if (!wanted || refused_.count(e.ifindex)) return;
    if (watched_.size() >= max_) {
        refused_.insert(e.ifindex);
        over_limit_.insert(e.ifindex);
        std::fprintf(stderr, "tcptrack: not watching %s: --max-interfaces %zu reached\n",
                     e.name.c_str(), max_);
        return;
    }
    Interface iface{e.name, e.ifindex, l2_framed(e.type)};
    try {
        add(iface);
    } catch (const Error& err) {
        refused_.insert(e.ifindex);
        // Gone again before we got to it (a pod that lived a moment): nothing to say.
        if (interface_present(iface))
            std::fprintf(stderr, "tcptrack: not watching %s: %s\n", e.name.c_str(), err.what());
    }
}

// Every interface now: attach what matches, release what is no longer there
// (at the start, and after the socket overflowed and changes were lost).
void InterfaceWatch::resync() {
    const std::vector<LinkEvent> now = dump_links();
    for (auto it = watched_.begin(); it != watched_.end();) {
        const int idx = it->iface.ifindex;
        const bool present = std::any_of(now.begin(), now.end(),
                                         [&](const LinkEvent& e) { return e.ifindex == idx; });
        if (present) {
            ++it;
            continue;
        }
        refused_.erase(idx);
        over_limit_.erase(idx);
        const auto pos = it - watched_.begin();
        release(it, true);
        it = watched_.begin() + pos;
    }
    for (const auto& e : now) on_link(e);
}

void InterfaceWatch::release(std::vector<Watched>::iterator it, bool gone) {
    const std::string name = it->iface.name;
    if (gone) gone_.push_back(static_cast<std::uint32_t>(it->iface.ifindex));
    watched_.erase(it);  // detaches what is left of it
    room_freed_ = true;
    if (verbose_)
        std::fprintf(stderr, "tcptrack: %s %s: detached\n", name.c_str(),
                     gone ? "went away" : "no longer matches");
}

void InterfaceWatch::poll(int timeout_ms) {
    if (!links_) {
        ::poll(nullptr, 0, timeout_ms);  // returns early on a signal: the caller checks its flag
        return;
    }
    pollfd p{links_->fd(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return;
    bool lost = false;
    for (const auto& e : links_->read(lost)) on_link(e);
    if (lost) resync();
    retry_refused();
}

// Interfaces refused for --max-interfaces, taken in ifindex order as room frees up.
void InterfaceWatch::retry_refused() {
    if (!room_freed_ || over_limit_.empty() || watched_.size() >= max_) return;
    room_freed_ = false;
    for (const auto& e : dump_links()) {
        if (watched_.size() >= max_) break;
        if (!over_limit_.count(e.ifindex)) continue;
        over_limit_.erase(e.ifindex);
        refused_.erase(e.ifindex);
        on_link(e);
    }
}

void InterfaceWatch::check() {
    if (links_) poll(0);
    for (auto it = watched_.begin(); it != watched_.end();) {
        if (interface_present(it->iface) && still_attached(*it)) {
            ++it;
            continue;
        }
        const std::string name = it->iface.name;
        gone_.push_back(static_cast<std::uint32_t>(it->iface.ifindex));
        it = watched_.erase(it);  // detach what is left of it
        room_freed_ = true;
        if (links_) {  // following: the next one may come any time
            if (verbose_) std::fprintf(stderr, "tcptrack: %s went away: detached\n", name.c_str());
            continue;
        }
        if (watched_.empty()) throw Error(fmt::format("interface '{}' disappeared", name));
        std::fprintf(stderr, "tcptrack: interface '%s' disappeared; still watching the others\n",
                     name.c_str());
    }
}

// False when the interface vanished meanwhile (re-attaching then fails).
bool InterfaceWatch::still_attached(Watched& w) {
    try {
        if (auto note = w.attachment->ensure_attached())
            std::fprintf(stderr, "tcptrack: %s\n", note->c_str());
        return true;
    } catch (const Error&) {
        if (!interface_present(w.iface)) return false;
        throw;
    }
}

std::vector<std::string> InterfaceWatch::watched() const {
    std::vector<std::string> v;
    for (const auto& w : watched_) v.push_back(w.iface.name);
    return v;
}

}  // namespace tcptrack
