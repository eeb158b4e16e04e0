// SPDX-License-Identifier: MIT
#include "attach/interface_watch.hpp"

#include <fmt/format.h>

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
    names_[static_cast<std::uint32_t>(iface.ifindex)] = iface.name;
    watched_.push_back(Watched{iface, std::move(att)});
}

void InterfaceWatch::check() {
    for (auto it = watched_.begin(); it != watched_.end();) {
        if (interface_present(it->iface) && still_attached(*it)) {
            ++it;
            continue;
        }
        const std::string name = it->iface.name;
        it = watched_.erase(it);  // detach what is left of it
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
