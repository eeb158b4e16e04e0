// SPDX-License-Identifier: MIT
// Decisions drawn from probe results: attach mode, the floor verdict,
// $TCPTRACK_DISABLE, and the libbpf log diagnosis.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "datapath/features.hpp"
#include "datapath/load_log.hpp"
#include "sys/error.hpp"

using namespace tcptrack;

namespace {

Features all_available() {
    Features f;
    f.release = "6.18.44-test";
    f.version = parse_kernel_release(f.release);
    for (auto& p : f.probes) p = Probe{true, ""};
    return f;
}

}  // namespace

TEST(KernelRelease, Parses) {
    EXPECT_EQ(parse_kernel_release("6.18.44-fc-v657"), (KernelVersion{6, 18, 44}));
    EXPECT_EQ(parse_kernel_release("5.10.0-32-cloud-amd64"), (KernelVersion{5, 10, 0}));
    EXPECT_EQ(parse_kernel_release("6.1"), (KernelVersion{6, 1, 0}));
    EXPECT_EQ(parse_kernel_release("garbage"), (KernelVersion{0, 0, 0}));
    EXPECT_LT(parse_kernel_release("5.4.0"), kKernelFloor);
    EXPECT_GE(parse_kernel_release("5.10.200"), kKernelFloor);
}

TEST(Features, PreferredPathsWhenEverythingIsThere) {
    const Features f = all_available();
    EXPECT_TRUE(use_tcx(f, AttachMode::Auto));
    EXPECT_TRUE(use_tcx(f, AttachMode::Tcx));
    EXPECT_FALSE(use_tcx(f, AttachMode::Tc));
    EXPECT_EQ(f.blocker(), "");
    EXPECT_TRUE(fallback_notes(f).empty());
}

// TCX is the one optional feature: without it the datapath is the same, only
// the attach mode changes.
TEST(Features, WithoutTcxLegacyTcIsTheOnlyFallback) {
    Features f = all_available();
    f[FeatureId::Tcx] = Probe{false, "the kernel has no TCX"};
    EXPECT_FALSE(use_tcx(f, AttachMode::Auto));
    EXPECT_FALSE(use_tcx(f, AttachMode::Tc));
    EXPECT_EQ(f.blocker(), "");  // optional: still runs

    const auto notes = fallback_notes(f);
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_EQ(notes[0],
              "TCX links (Linux 6.6, libbpf 1.3) unavailable (the kernel has no TCX): "
              "attaches with legacy tc (clsact qdisc + filters)");
}

TEST(Features, ForcedTcxWithoutTcxNamesWhy) {
    Features f = all_available();
    f[FeatureId::Tcx] = Probe{false, "this build's libbpf is older than 1.3"};
    try {
        use_tcx(f, AttachMode::Tcx);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(),
                     "--attach tcx: TCX unavailable: this build's libbpf is older than 1.3 "
                     "(use --attach tc or auto)");
    }
}

TEST(Features, MissingMandatoryPieceIsOneLineNamingKernelAndWhat) {
    Features f = all_available();
    f.release = "5.4.0-150-generic";
    f[FeatureId::RingBuf] = Probe{false, "ringbuf map: not supported by this kernel"};
    EXPECT_EQ(f.blocker(),
              "kernel 5.4.0-150-generic lacks BPF ring buffer maps (Linux 5.8) (ringbuf map: not "
              "supported by this kernel): tcptrack needs Linux 5.10 or newer with BTF");
    f[FeatureId::Btf] = Probe{false, "/sys/kernel/btf/vmlinux: No such file or directory"};
    EXPECT_NE(f.blocker().find("lacks kernel BTF"), std::string::npos) << f.blocker();
    EXPECT_EQ(f.blocker().find('\n'), std::string::npos);
}

// The store is read through mmap: a kernel without mmapable arrays is refused
// (no slower reader to fall back to), and no fallback note pretends otherwise.
TEST(Features, KernelWithoutMmapableArraysIsRefused) {
    Features f = all_available();
    f.release = "5.4.0-150-generic";
    f[FeatureId::Mmap] = Probe{false, "cannot create an mmapable array: Invalid argument"};
    EXPECT_EQ(f.blocker(),
              "kernel 5.4.0-150-generic lacks mmapable BPF arrays (BPF_F_MMAPABLE, Linux 5.5) "
              "(cannot create an mmapable array: Invalid argument): tcptrack needs Linux 5.10 or "
              "newer with BTF");
    EXPECT_TRUE(fallback_notes(f).empty());
}

TEST(Features, EveryMandatoryPieceBlocksAloneAndIsNamed) {
    for (const auto& spec : feature_specs()) {
        Features f = all_available();
        f[spec.id] = Probe{false, "probe said no"};
        const std::string b = f.blocker();
        SCOPED_TRACE(spec.name);
        if (spec.mandatory) {
            EXPECT_NE(b.find(std::string("lacks ") + spec.what + " (probe said no)"),
                      std::string::npos)
                << b;
            EXPECT_EQ(b.find('\n'), std::string::npos);
        } else {
            EXPECT_EQ(b, "");
        }
    }
}

TEST(DisableList, ParsesKnownOptionalNames) {
    EXPECT_EQ(parse_disable_list("tcx"), (std::set<FeatureId>{FeatureId::Tcx}));
    EXPECT_EQ(parse_disable_list(",tcx,,tcx,"), (std::set<FeatureId>{FeatureId::Tcx}));
    EXPECT_TRUE(parse_disable_list("").empty());
}

TEST(DisableList, RejectsUnknownMandatoryAndRetiredNames) {
    EXPECT_THROW(parse_disable_list("tcx,bogus"), std::invalid_argument);
    // Mandatory: nothing to fall back to.
    for (const char* name : {"btf", "sched_cls", "ringbuf", "mmap"})
        EXPECT_THROW(parse_disable_list(name), std::invalid_argument) << name;
    // The old per-CPU datapath and readers are gone: forcing them is an error, not a no-op.
    for (const char* name : {"percpu_lookup", "iter", "batch"})
        EXPECT_THROW(parse_disable_list(name), std::invalid_argument) << name;
    try {
        parse_disable_list("iter,tcx");
        FAIL() << "expected an error";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(
            e.what(),
            "TCPTRACK_DISABLE: unknown optional feature 'iter' (known: tcx, skb-cgroup-id, "
            "ktime-coarse)");
    }
}

TEST(DisableList, AppliedOnlyOverAvailableFeatures) {
    Features f = all_available();
    f[FeatureId::Tcx] = Probe{false, "the kernel has no TCX"};
    apply_disabled(f, {FeatureId::Tcx});
    EXPECT_EQ(f[FeatureId::Tcx].why, "the kernel has no TCX");  // the kernel's reason stays

    Features g = all_available();
    apply_disabled(g, {FeatureId::Tcx});
    EXPECT_FALSE(g.has(FeatureId::Tcx));
    EXPECT_EQ(g[FeatureId::Tcx].why, "disabled by TCPTRACK_DISABLE");
    EXPECT_FALSE(use_tcx(g, AttachMode::Auto));
    for (FeatureId id : {FeatureId::Btf, FeatureId::SchedCls, FeatureId::RingBuf, FeatureId::Mmap})
        EXPECT_TRUE(g.has(id));
    EXPECT_EQ(g.blocker(), "");
}

TEST(FeatureSpecs, OneEntryPerIdInOrder) {
    ASSERT_EQ(feature_specs().size(), static_cast<std::size_t>(FeatureId::Count));
    for (std::size_t i = 0; i < feature_specs().size(); ++i) {
        const auto& s = feature_specs()[i];
        EXPECT_EQ(static_cast<std::size_t>(s.id), i) << s.name;
        EXPECT_EQ(s.mandatory, std::string(s.fallback).empty()) << s.name;
    }
}

TEST(FeatureSpecs, NamesAndWhichAreMandatory) {
    std::vector<std::pair<std::string, bool>> got;
    for (const auto& s : feature_specs()) got.emplace_back(s.name, s.mandatory);
    const std::vector<std::pair<std::string, bool>> want = {
        {"btf", true},  {"sched_cls", true},      {"ringbuf", true},      {"mmap", true},
        {"tcx", false}, {"skb-cgroup-id", false}, {"ktime-coarse", false}};
    EXPECT_EQ(got, want);
}

TEST(LoadLog, NamesProgramAndVerifierReason) {
    const char* log =
        "libbpf: prog 'tcptrack_in': BPF program load failed: Invalid argument\n"
        "libbpf: prog 'tcptrack_in': -- BEGIN PROG LOAD LOG --\n"
        "0: R1=ctx() R10=fp0\n"
        "; int tcptrack_in(struct __sk_buff *skb)\n"
        "123: (85) call unknown#195\n"
        "unknown func bpf_map_lookup_percpu_elem#195\n"
        "processed 4711 insns (limit 1000000) max_states_per_insn 4 total_states 100\n"
        "-- END PROG LOAD LOG --\n"
        "libbpf: prog 'tcptrack_in': failed to load: -22\n"
        "libbpf: failed to load object 'tcptrack_bpf'\n";
    const LoadFailure f = diagnose_load_log(log);
    EXPECT_EQ(f.program, "tcptrack_in");
    EXPECT_EQ(f.reason, "unknown func bpf_map_lookup_percpu_elem#195");
}

TEST(LoadLog, NothingToSayWithoutALog) {
    const LoadFailure f = diagnose_load_log("libbpf: failed to load object 'x'\n");
    EXPECT_EQ(f.program, "");
    EXPECT_EQ(f.reason, "");
}
