// SPDX-License-Identifier: MIT
// /proc parsing: fd link texts and /proc/PID/cgroup.
#include "enrich/procfs.hpp"

#include "enrich/pod.hpp"

#include <charconv>

namespace tcptrack {

std::optional<std::uint64_t> socket_inode(std::string_view link) {
    constexpr std::string_view pre = "socket:[";
    if (link.size() < pre.size() + 2 || link.substr(0, pre.size()) != pre || link.back() != ']')
        return std::nullopt;
    const std::string_view digits = link.substr(pre.size(), link.size() - pre.size() - 1);
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;
    return v;
}

std::optional<std::string> container_id(std::string_view path) { return container_id_of(path); }

std::string cgroup_of(std::string_view text) {
    std::optional<std::string> v2;
    std::optional<std::string> id;
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        // "hierarchy-ID:controller-list:path"; the path may itself hold ':'.
        const std::size_t c1 = line.find(':');
        if (c1 == std::string_view::npos) continue;
        const std::size_t c2 = line.find(':', c1 + 1);
        if (c2 == std::string_view::npos) continue;
        const std::string_view path = line.substr(c2 + 1);
        if (!id) id = container_id(path);
        if (line.substr(0, c2 + 1) == "0::") v2 = std::string(path);
    }
    if (id) return *id;
    return v2.value_or(std::string());
}
}  // namespace tcptrack
