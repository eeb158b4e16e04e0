// SPDX-License-Identifier: MIT
// /proc parsing, pure and unit-tested: a socket inode from an fd link, a
// container id or cgroup v2 path from /proc/PID/cgroup.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tcptrack {

// The inode of a /proc/PID/fd link text "socket:[12345]"; empty for anything else.
std::optional<std::uint64_t> socket_inode(std::string_view link);
// A container id evident in a cgroup path (enrich/pod.hpp's container_id_of,
// the one rule for both).
std::optional<std::string> container_id(std::string_view path);
// From /proc/PID/cgroup's text: the container id if one is evident, else the
// cgroup v2 path ("0::/path"); "" when the host has no v2 line and no id.
std::string cgroup_of(std::string_view proc_cgroup);

}  // namespace tcptrack
