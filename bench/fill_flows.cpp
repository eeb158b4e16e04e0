// SPDX-License-Identifier: MIT
// Fills a *running* tcptrack's slot store with synthetic connections: runs its
// tcptrack_in classifier via BPF_PROG_TEST_RUN (repeat = 1) on N SYN packets
// with distinct 4-tuples, so each takes one slot.
//
//   fill_flows [--prog-id ID] [--count N] [--base B]
// Without --prog-id the only loaded program named tcptrack_in is used (an
// error if there are several). Prints how many live flows the store holds,
// counted from the store itself (the program's `slots` and `store_lock` maps).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tcptrack/store.h"
#include "frame.hpp"

namespace {

bool prog_info(int fd, bpf_prog_info& info, std::vector<__u32>* map_ids = nullptr) {
    std::memset(&info, 0, sizeof(info));
    __u32 len = sizeof(info);
    if (bpf_prog_get_info_by_fd(fd, &info, &len) != 0) return false;
    if (!map_ids) return true;
    map_ids->resize(info.nr_map_ids);
    const __u32 n = info.nr_map_ids;
    std::memset(&info, 0, sizeof(info));
    info.nr_map_ids = n;
    info.map_ids = reinterpret_cast<__u64>(map_ids->data());
    len = sizeof(info);
    return bpf_prog_get_info_by_fd(fd, &info, &len) == 0;
}

int find_prog_by_name(const char* name) {
    __u32 id = 0;
    int found = -1, count = 0;
    while (bpf_prog_get_next_id(id, &id) == 0) {
        const int fd = bpf_prog_get_fd_by_id(id);
        if (fd < 0) continue;
        bpf_prog_info info;
        if (prog_info(fd, info) && std::strcmp(info.name, name) == 0) {
            ++count;
            if (found >= 0) close(found);
            found = fd;
        } else {
            close(fd);
        }
    }
    if (count > 1) {
        std::fprintf(stderr, "fill_flows: %d programs named %s: pass --prog-id\n", count, name);
        close(found);
        return -1;
    }
    return found;
}

// fd of the program's map called `name` (and its info), or -1.
int prog_map(int prog_fd, const char* name, bpf_map_info& mi) {
    bpf_prog_info info;
    std::vector<__u32> ids;
    if (!prog_info(prog_fd, info, &ids)) return -1;
    for (__u32 id : ids) {
        const int fd = bpf_map_get_fd_by_id(id);
        if (fd < 0) continue;
        std::memset(&mi, 0, sizeof(mi));
        __u32 len = sizeof(mi);
        if (bpf_map_get_info_by_fd(fd, &mi, &len) == 0 && std::strcmp(mi.name, name) == 0)
            return fd;
        close(fd);
    }
    return -1;
}

// Live flows in the store: slots [0, next_fresh) with an odd generation, read
// through mmap like tcptrack's collector. Sets `used` to next_fresh. -1 on error.
long count_live(int prog_fd, long& used) {
    bpf_map_info lock_info, slots_info;
    const int lock_fd = prog_map(prog_fd, "store_lock", lock_info);
    const int slots_fd = prog_map(prog_fd, "slots", slots_info);
    long live = -1;
    used = -1;
    tt_store_lock l{};
    const __u32 zero = 0;
    if (lock_fd >= 0 && slots_fd >= 0 && slots_info.value_size == sizeof(tt_slot) &&
        bpf_map_lookup_elem(lock_fd, &zero, &l) == 0) {
        used = std::min<long>(l.next_fresh, slots_info.max_entries);
        const long page = sysconf(_SC_PAGESIZE);
        const std::size_t len =
            (static_cast<std::size_t>(used) * sizeof(tt_slot) + page - 1) / page * page;
        if (used == 0) {
            live = 0;
        } else if (void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, slots_fd, 0);
                   p != MAP_FAILED) {
            const auto* s = static_cast<const volatile tt_slot*>(p);
            live = 0;
            for (long i = 0; i < used; ++i) live += tt_gen_live(s[i].gen);
            munmap(p, len);
        } else {
            std::fprintf(stderr, "fill_flows: mmap slots: %s\n", std::strerror(errno));
        }
    } else {
        std::fprintf(stderr, "fill_flows: the program has no readable slots/store_lock maps\n");
    }
    if (lock_fd >= 0) close(lock_fd);
    if (slots_fd >= 0) close(slots_fd);
    return live;
}

}  // namespace

int main(int argc, char** argv) {
    long prog_id = -1, count = 100000, base = 0;
    bool no_count = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 < argc && a == "--prog-id")
            prog_id = std::atol(argv[++i]);
        else if (i + 1 < argc && a == "--count")
            count = std::atol(argv[++i]);
        else if (i + 1 < argc && a == "--base")
            base = std::atol(argv[++i]);
        else if (a == "--no-count")  // another program than tcptrack_in (bench/anchors.bpf.c)
            no_count = true;
        else {
            std::fprintf(stderr, "usage: %s [--prog-id ID] [--count N] [--base B] [--no-count]\n",
                         argv[0]);
            return 2;
        }
    }
    const int fd = prog_id >= 0 ? bpf_prog_get_fd_by_id(static_cast<__u32>(prog_id))
                                : find_prog_by_name("tcptrack_in");
    if (fd < 0) {
        std::fprintf(stderr, "fill_flows: no tcptrack_in program found: %s\n",
                     std::strerror(errno));
        return 1;
    }

    ttbench::Frame syn;
    const auto t0 = std::chrono::steady_clock::now();
    long ok = 0, failed = 0;
    for (long i = base; i < base + count; ++i) {
        // Distinct tuples: 198.18.0.0/15 sources x 50000 ports, to 198.51.100.1:80 (TEST-NET-2).
        syn.set(0xC6120000u + static_cast<std::uint32_t>(i / 50000),
                static_cast<std::uint16_t>(10000 + i % 50000), 0xC6336401u, 80,
                static_cast<std::uint32_t>(i * 7919), 0, ttbench::kSyn, 0);
        if (syn.run(fd))
            ++ok;
        else
            ++failed;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (no_count) {
        std::printf("fill_flows: ran %ld SYNs (%ld failed) in %.2fs (%.0f/s)\n", ok, failed, secs,
                    ok / (secs > 0 ? secs : 1));
        close(fd);
        return 0;  // an anchor that is full just stops counting new flows
    }
    long used = -1;
    const long live = count_live(fd, used);
    std::printf(
        "fill_flows: ran %ld SYNs (%ld failed) in %.2fs (%.0f/s); store holds %ld live "
        "flows (%ld slots used)\n",
        ok, failed, secs, ok / (secs > 0 ? secs : 1), live, used);
    close(fd);
    return failed || live < 0 ? 1 : 0;
}
