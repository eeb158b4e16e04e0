// SPDX-License-Identifier: MIT
// Which interfaces a run watches: -i names and shell-style patterns
// (fnmatch(3): 'veth*', 'cali*', 'eth[01]'), or --all-interfaces. Pure: the
// watch (attach/interface_watch) asks it about each interface that appears.
#pragma once

#include <string>
#include <vector>

namespace tcptrack {

// Does this -i value hold a pattern character (*, ? or [)?
bool is_interface_pattern(const std::string& text);

class InterfaceSelection {
   public:
    // `entries`: the -i values (names and patterns); `all`: --all-interfaces.
    InterfaceSelection(std::vector<std::string> entries, bool all);

    // Interfaces come and go during the run (a pattern or --all-interfaces):
    // the watch follows rtnetlink. Names only: the set is fixed at the start.
    bool dynamic() const { return dynamic_; }
    // The interface `name` of device type `arphrd` (ARPHRD_*) is to be watched:
    // a name given matches whatever its type; a pattern and --all-interfaces
    // take only watchable_type() devices (sys/interfaces.hpp), never loopback.
    bool matches(const std::string& name, unsigned short arphrd) const;
    // The -i values that are plain names (each must exist at the start).
    std::vector<std::string> names() const;

   private:
    std::vector<std::string> entries_;
    bool all_, dynamic_;
};

}  // namespace tcptrack
