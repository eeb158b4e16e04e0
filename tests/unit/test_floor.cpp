// SPDX-License-Identifier: MIT
// The kernel floor, checked without booting anything: every program in the
// compiled object declares the oldest kernel it must load on, and its helper
// calls, atomic instructions and the object's map types are held to that
// kernel. Helper, map-type and instruction IDs only grow, so "the newest ID a
// release knows" is a sound bound.
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <map>
#include <string>

#include "tcptrack/features.hpp"

namespace {

using tcptrack::KernelVersion;

struct ReleaseLimits {
    KernelVersion version;
    int last_helper;     // enum bpf_func_id: 155 = redirect_peer (5.10), 203 = dynptr_data (5.19)
    int last_map_type;   // enum bpf_map_type: 28 = INODE_STORAGE (5.10)
    bool atomic_fetch;   // BPF_ATOMIC beyond plain add (fetch, xchg, cmpxchg): 5.12
};

constexpr ReleaseLimits kReleases[] = {
    {{5, 10, 0}, 155, 28, false},
    {{5, 19, 0}, 203, 30, true},
};

const ReleaseLimits& limits(KernelVersion v) {
    for (const auto& r : kReleases)
        if (r.version == v) return r;
    ADD_FAILURE() << "no limits recorded for " << v.major << "." << v.minor;
    return kReleases[0];
}

// Each program's floor. The mandatory set (what runs on the 5.10 floor) is the
// shared datapath; the rest are optional, chosen by the probe (features.hpp).
struct ProgramFloor {
    KernelVersion floor;
    bool mandatory;
};
const std::map<std::string, ProgramFloor> kProgramFloor = {
    {"tcptrack_in_s", {tcptrack::kKernelFloor, true}},
    {"tcptrack_eg_s", {tcptrack::kKernelFloor, true}},
    {"tcptrack_in_l3s", {tcptrack::kKernelFloor, true}},
    {"tcptrack_eg_l3s", {tcptrack::kKernelFloor, true}},
    {"tcptrack_in", {{5, 19, 0}, false}},  // bpf_map_lookup_percpu_elem
    {"tcptrack_eg", {{5, 19, 0}, false}},
    {"tcptrack_in_l3", {{5, 19, 0}, false}},
    {"tcptrack_eg_l3", {{5, 19, 0}, false}},
    // Iterators (5.9) are optional: where refused, flows are read in batches.
    {"tcptrack_dump", {tcptrack::kKernelFloor, false}},
};

std::string ver(KernelVersion v) { return std::to_string(v.major) + "." + std::to_string(v.minor); }

struct Object {
    bpf_object* obj = bpf_object__open_file(TCPTRACK_BPF_OBJECT, nullptr);
    ~Object() { bpf_object__close(obj); }
};

TEST(KernelFloor, EveryProgramUsesOnlyWhatItsFloorKernelHas) {
    Object o;
    ASSERT_NE(o.obj, nullptr) << "cannot open " << TCPTRACK_BPF_OBJECT;
    int programs = 0, mandatory = 0;
    bpf_program* prog;
    bpf_object__for_each_program(prog, o.obj) {
        ++programs;
        const std::string name = bpf_program__name(prog);
        const auto floor = kProgramFloor.find(name);
        ASSERT_NE(floor, kProgramFloor.end())
            << "program '" << name << "' has no declared kernel floor: add it to kProgramFloor";
        if (floor->second.mandatory) ++mandatory;
        const KernelVersion at = floor->second.floor;
        const ReleaseLimits& lim = limits(at);
        const bpf_insn* insn = bpf_program__insns(prog);
        const std::size_t n = bpf_program__insn_cnt(prog);
        for (std::size_t i = 0; i < n; ++i) {
            const bpf_insn& in = insn[i];
            if (in.code == (BPF_JMP | BPF_CALL)) {
                // src_reg 0: a helper; BPF_PSEUDO_CALL would be a subprogram.
                EXPECT_EQ(in.src_reg, 0) << name << ": non-inlined call at insn " << i
                                         << " (this test follows helpers only)";
                if (in.src_reg == 0) {
                    EXPECT_LE(in.imm, lim.last_helper)
                        << name << " calls helper #" << in.imm << " at insn " << i
                        << ", newer than Linux " << ver(at) << " (its floor) knows";
                }
            }
            if (BPF_CLASS(in.code) == BPF_STX && BPF_MODE(in.code) == BPF_ATOMIC &&
                !lim.atomic_fetch) {
                EXPECT_EQ(in.imm, BPF_ADD) << name << ": atomic op " << in.imm << " at insn " << i
                                           << " needs Linux 5.12 (only plain atomic add is older)";
            }
        }
    }
    EXPECT_EQ(programs, static_cast<int>(kProgramFloor.size()));
    EXPECT_EQ(mandatory, 4) << "the 5.10 datapath must cover ingress/egress with and without L2";

    // Every map is created whichever variant loads.
    const ReleaseLimits& floor = limits(tcptrack::kKernelFloor);
    bpf_map* map;
    bpf_object__for_each_map(map, o.obj) {
        EXPECT_LE(static_cast<int>(bpf_map__type(map)), floor.last_map_type)
            << "map '" << bpf_map__name(map) << "' has a type Linux "
            << ver(tcptrack::kKernelFloor) << " does not know";
    }
}

// The check itself must catch a violation: the per-CPU variant calls
// bpf_map_lookup_percpu_elem (195), which 5.10 does not have.
TEST(KernelFloor, CatchesAHelperNewerThanTheFloor) {
    Object o;
    ASSERT_NE(o.obj, nullptr);
    bpf_program* p = bpf_object__find_program_by_name(o.obj, "tcptrack_in");
    ASSERT_NE(p, nullptr);
    int newest = 0;
    for (std::size_t i = 0; i < bpf_program__insn_cnt(p); ++i) {
        const bpf_insn& in = bpf_program__insns(p)[i];
        if (in.code == (BPF_JMP | BPF_CALL) && in.src_reg == 0) newest = std::max(newest, in.imm);
    }
    EXPECT_EQ(newest, 195);
    EXPECT_GT(newest, limits(tcptrack::kKernelFloor).last_helper);
}

}  // namespace
