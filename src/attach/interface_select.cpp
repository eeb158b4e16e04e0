// SPDX-License-Identifier: MIT
#include "attach/interface_select.hpp"

#include <fnmatch.h>
#include <net/if_arp.h>

#include <algorithm>

#include "sys/interfaces.hpp"

namespace tcptrack {

bool is_interface_pattern(const std::string& text) {
    return text.find_first_of("*?[") != std::string::npos;
}

InterfaceSelection::InterfaceSelection(std::vector<std::string> entries, bool all)
    : entries_(std::move(entries)), all_(all) {
    dynamic_ = all_ || std::any_of(entries_.begin(), entries_.end(), is_interface_pattern);
}

bool InterfaceSelection::matches(const std::string& name, unsigned short arphrd) const {
    const bool typed = watchable_type(arphrd) && arphrd != ARPHRD_LOOPBACK && name != "lo";
    if (all_) return typed;
    for (const auto& e : entries_) {
        if (!is_interface_pattern(e)) {
            if (e == name) return true;
        } else if (typed && fnmatch(e.c_str(), name.c_str(), 0) == 0) {
            return true;
        }
    }
    return false;
}

std::vector<std::string> InterfaceSelection::names() const {
    std::vector<std::string> v;
    for (const auto& e : entries_)
        if (!is_interface_pattern(e)) v.push_back(e);
    return v;
}

}  // namespace tcptrack
