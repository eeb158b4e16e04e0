// SPDX-License-Identifier: MIT
// Decisions drawn from probe results: datapath, reader, attach mode, the
// floor verdict, $TCPTRACK_DISABLE, and the libbpf log diagnosis.
#include <gtest/gtest.h>

#include <stdexcept>

#include "tcptrack/error.hpp"
#include "tcptrack/features.hpp"
#include "tcptrack/load_log.hpp"

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
    EXPECT_EQ(f.datapath(), Datapath::PerCpu);
    EXPECT_EQ(f.reader(), Reader::Iterator);
    EXPECT_TRUE(use_tcx(f, AttachMode::Auto));
    EXPECT_TRUE(use_tcx(f, AttachMode::Tcx));
    EXPECT_FALSE(use_tcx(f, AttachMode::Tc));
    EXPECT_EQ(f.blocker(), "");
    EXPECT_TRUE(fallback_notes(f).empty());
}

TEST(Features, EachFallbackFollowsItsProbe) {
    Features f = all_available();
    f[FeatureId::PercpuLookup] = Probe{false, "unknown func #195"};
    EXPECT_EQ(f.datapath(), Datapath::Shared);
    f[FeatureId::Iterator] = Probe{false, "Operation not permitted"};
    EXPECT_EQ(f.reader(), Reader::Batch);
    f[FeatureId::Batch] = Probe{false, "Invalid argument"};
    EXPECT_EQ(f.reader(), Reader::Keys);
    f[FeatureId::Tcx] = Probe{false, "the kernel has no TCX"};
    EXPECT_FALSE(use_tcx(f, AttachMode::Auto));
    EXPECT_EQ(f.blocker(), "");  // all optional: still runs

    const auto notes = fallback_notes(f);
    ASSERT_EQ(notes.size(), 4u);
    EXPECT_NE(notes[0].find("bpf_map_lookup_percpu_elem"), std::string::npos) << notes[0];
    EXPECT_NE(notes[0].find("unknown func #195"), std::string::npos) << notes[0];
    EXPECT_NE(notes[0].find("shared counters"), std::string::npos) << notes[0];
    EXPECT_NE(notes[1].find("Operation not permitted"), std::string::npos) << notes[1];
    EXPECT_NE(notes[1].find("batched map lookups"), std::string::npos) << notes[1];
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

TEST(DisableList, ParsesKnownOptionalNames) {
    const auto s = parse_disable_list("iter,tcx,,percpu_lookup,batch");
    EXPECT_EQ(s, (std::set<FeatureId>{FeatureId::Iterator, FeatureId::Tcx,
                                      FeatureId::PercpuLookup, FeatureId::Batch}));
    EXPECT_TRUE(parse_disable_list("").empty());
}

TEST(DisableList, RejectsUnknownAndMandatoryNames) {
    EXPECT_THROW(parse_disable_list("iter,bogus"), std::invalid_argument);
    EXPECT_THROW(parse_disable_list("ringbuf"), std::invalid_argument);  // not optional
    try {
        parse_disable_list("nope");
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "TCPTRACK_DISABLE: unknown optional feature 'nope' (known: "
                               "percpu_lookup, iter, batch, tcx)");
    }
}

TEST(DisableList, AppliedOnlyOverAvailableFeatures) {
    Features f = all_available();
    f[FeatureId::Iterator] = Probe{false, "Operation not permitted"};
    apply_disabled(f, {FeatureId::Iterator, FeatureId::Tcx});
    EXPECT_EQ(f[FeatureId::Iterator].why, "Operation not permitted");  // the kernel's reason stays
    EXPECT_FALSE(f.has(FeatureId::Tcx));
    EXPECT_EQ(f[FeatureId::Tcx].why, "disabled by TCPTRACK_DISABLE");
    EXPECT_TRUE(f.has(FeatureId::PercpuLookup));
}

TEST(FeatureSpecs, OneEntryPerIdInOrder) {
    ASSERT_EQ(feature_specs().size(), static_cast<std::size_t>(FeatureId::Count));
    for (std::size_t i = 0; i < feature_specs().size(); ++i) {
        const auto& s = feature_specs()[i];
        EXPECT_EQ(static_cast<std::size_t>(s.id), i) << s.name;
        EXPECT_EQ(s.mandatory, std::string(s.fallback).empty()) << s.name;
    }
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
