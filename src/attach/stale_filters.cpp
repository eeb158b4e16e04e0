// SPDX-License-Identifier: MIT
#include "attach/stale_filters.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <fstream>
#include <optional>
#include <string_view>

#include "attach/instance_lock.hpp"
#include "attach/tc_filter.hpp"
#include "attach/tc_netlink.hpp"
#include "sys/fd.hpp"

namespace tcptrack {

namespace {

// Does any process hold the program open? nullopt when some process's fds are
// unreadable (then nobody can tell); `unreadable` names the first such pid.
std::optional<bool> prog_held(std::uint32_t id, std::string& unreadable) {
    const std::string needle = fmt::format("prog_id:\t{}\n", id);
    // In a child pid namespace, processes outside it are invisible.
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("NSpid:", 0) == 0 &&
            line.find_first_of(" \t", line.find_first_not_of(" \t", 6)) != std::string::npos) {
            unreadable = "the processes outside this pid namespace";
            return std::nullopt;
        }
    }
    DIR* proc = opendir("/proc");
    if (!proc) {
        unreadable = "/proc";
        return std::nullopt;
    }
    bool held = false;
    while (dirent* p = readdir(proc)) {
        if (!std::isdigit(static_cast<unsigned char>(p->d_name[0]))) continue;
        const std::string dir = fmt::format("/proc/{}/fdinfo", p->d_name);
        DIR* fds = opendir(dir.c_str());
        if (!fds) {
            if (errno != ENOENT && unreadable.empty()) unreadable = dir;
            continue;
        }
        while (dirent* f = readdir(fds)) {
            if (f->d_name[0] == '.') continue;
            Fd fd(open((dir + "/" + f->d_name).c_str(), O_RDONLY | O_CLOEXEC));
            char buf[1024];
            const ssize_t n = fd ? read(fd.get(), buf, sizeof(buf) - 1) : -1;
            if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).find(needle) !=
                             std::string_view::npos)
                held = true;
        }
        closedir(fds);
        if (held) break;
    }
    closedir(proc);
    if (held) return true;
    if (!unreadable.empty()) return std::nullopt;
    return false;
}

// Claimed filters whose owner is gone: their lock file can be taken. Only the
// filters still running the programs the lock file names are removed.
void remove_dead_claims(const std::string& ifname, int ifindex, std::vector<std::string>& notes) {
    reap_dead_claims(ifindex, [&](const DeadClaim& c) {
        for (int i = 0; i < 2; ++i) {
            if (detach_if(ifindex, kDirections[i], c.handle, c.prog_ids[i]))
                notes.push_back(fmt::format(
                    "removed stale tcptrack tc {} filter (handle {:#x}, prog id {}, "
                    "pid {} is gone) "
                    "from {}",
                    direction_name(kDirections[i]), c.handle, c.prog_ids[i], c.pid, ifname));
        }
    });
}

// tcptrack-looking filters at our priority without a lock file: left by a
// version before lock files. Removed only with proof: libbpf's name
// "tcptrack_*:[<id>]" for the filter's own program id, and no process holding it.
void remove_unclaimed(const std::string& ifname, int ifindex, std::vector<std::string>& notes) {
    for (auto point : kDirections) {
        for (const TcFilter& f : list_filters(ifindex, point)) {
            const bool our_handle = f.handle == kTcLegacyHandle || is_instance_handle(f.handle);
            if (f.prio != kTcPriority || f.kind != "bpf" || !our_handle || !f.prog_id) continue;
            if (f.handle != kTcLegacyHandle && claim_file_exists(ifindex, f.handle))
                continue;  // claimed: its lock file decides
            const std::string suffix = fmt::format(":[{}]", f.prog_id);
            const bool named =
                f.name.rfind("tcptrack_", 0) == 0 && f.name.size() > suffix.size() &&
                f.name.compare(f.name.size() - suffix.size(), suffix.size(), suffix) == 0;
            if (!named) continue;  // not provably tcptrack's: somebody else's
            const std::string what =
                fmt::format("tc {} filter (handle {:#x}, prog id {}) on {}", direction_name(point),
                            f.handle, f.prog_id, ifname);
            std::string unreadable;
            const std::optional<bool> held = prog_held(f.prog_id, unreadable);
            if (held == false && detach_if(ifindex, point, f.handle, f.prog_id)) {
                notes.push_back(
                    fmt::format("removed stale tcptrack {}: an older tcptrack's, no "
                                "process holds it",
                                what));
            } else if (held == true) {
                notes.push_back(
                    fmt::format("left {} in place: a running older tcptrack owns it", what));
            } else if (!held) {
                notes.push_back(fmt::format(
                    "left {} in place: it looks like an older tcptrack's, but whether its owner "
                    "still runs cannot be told ({} is unreadable); remove it with `tc filter del "
                    "dev {} {} pref {} handle {:#x} bpf` once no older tcptrack runs",
                    what, unreadable, ifname, direction_name(point), kTcPriority, f.handle));
            }
        }
    }
}

}  // namespace

void settle_interface(IfaceLock& lk, const std::string& ifname, int ifindex, bool leaving,
                      std::vector<std::string>& notes) {
    remove_dead_claims(ifname, ifindex, notes);
    remove_unclaimed(ifname, ifindex, notes);
    if (!lk.held() || !lk.clsact_ours()) return;
    if (!has_clsact(ifindex)) {  // deleted by someone: whatever is created later is not ours
        lk.set_clsact_ours(false);
        return;
    }
    if (!leaving) return;
    if (list_filters(ifindex, BPF_TC_INGRESS).empty() &&
        list_filters(ifindex, BPF_TC_EGRESS).empty()) {
        if (destroy_clsact(ifindex)) lk.set_clsact_ours(false);
        return;
    }
    // Filters remain. While a tcptrack instance lives it will decide when it
    // leaves; with none left they are foreign filters, and the qdisc is theirs now.
    if (!any_live_claim(ifindex)) lk.set_clsact_ours(false);
}

std::vector<std::string> remove_stale_tc_filters(const std::string& ifname, int ifindex) {
    std::vector<std::string> notes;
    IfaceLock lk(ifindex, ifname);
    const bool had_qdisc = lk.clsact_ours() && has_clsact(ifindex);
    settle_interface(lk, ifname, ifindex, true, notes);
    if (had_qdisc && !has_clsact(ifindex))
        notes.push_back(
            fmt::format("removed the clsact qdisc a killed tcptrack had added to {}", ifname));
    return notes;
}

}  // namespace tcptrack
