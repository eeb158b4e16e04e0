// SPDX-License-Identifier: MIT
// Attaches the empty classifier (empty.bpf.c), or with --parse-only the
// parse-only one (parse_only.bpf.c), or with --store-proto shared|delta the
// prototype store of store_proto.bpf.c, or with --anchor seed|line one of issue
// 20's anchors (anchors.bpf.c; --flows N sizes the seed's hash like
// tcptrack's --max-flows), with TCX links to ingress and egress of
// one interface (appended after whatever is attached there), prints the
// program ids, and holds the links until SIGINT/SIGTERM. TCX links die with
// the process, so nothing is left behind.
//
//   floor_attach [--parse-only | --store-proto shared|delta |
//                 --anchor seed|line [--flows N]] IFNAME|IFINDEX
//   -> "ingress_id=N egress_id=M" on stdout once attached
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "anchors.skel.h"
#include "empty.skel.h"
#include "parse_only.skel.h"
#include "store_proto.skel.h"

namespace {

unsigned prog_id(const bpf_program* p) {
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_prog_get_info_by_fd(bpf_program__fd(p), &info, &len) != 0) return 0;
    return info.id;
}

// Attaches a loaded skeleton's two programs, prints their ids, waits for a signal.
int attach_and_hold(int ifindex, const sigset_t& set, bpf_program* pin, bpf_program* peg) {
    bpf_link* in = bpf_program__attach_tcx(pin, ifindex, nullptr);
    if (!in) {
        std::fprintf(stderr, "floor_attach: attach ingress: %s\n", std::strerror(errno));
        return 1;
    }
    bpf_link* eg = bpf_program__attach_tcx(peg, ifindex, nullptr);
    if (!eg) {
        std::fprintf(stderr, "floor_attach: attach egress: %s\n", std::strerror(errno));
        bpf_link__destroy(in);
        return 1;
    }
    std::printf("ingress_id=%u egress_id=%u\n", prog_id(pin), prog_id(peg));
    std::fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);

    bpf_link__destroy(eg);
    bpf_link__destroy(in);
    return 0;
}

// Opens and loads skeleton type S with TCX attach types, then attach_and_hold.
template <typename S, typename Open, typename Load, typename Destroy, typename Progs>
int run(int ifindex, const sigset_t& set, Open open, Load load, Destroy destroy, Progs progs) {
    S* skel = open();
    if (!skel) {
        std::fprintf(stderr, "floor_attach: open: %s\n", std::strerror(errno));
        return 1;
    }
    auto [pin, peg] = progs(skel);
    bpf_program__set_expected_attach_type(pin, BPF_TCX_INGRESS);
    bpf_program__set_expected_attach_type(peg, BPF_TCX_EGRESS);
    int rc = 1;
    if (int err = load(skel))
        std::fprintf(stderr, "floor_attach: load: %s\n", std::strerror(-err));
    else
        rc = attach_and_hold(ifindex, set, pin, peg);
    destroy(skel);
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    // --anchor seed|line [--flows N]
    const bool anchor = argc >= 4 && std::strcmp(argv[1], "--anchor") == 0;
    const std::string kind = anchor ? argv[2] : "";
    const long flows =
        anchor && argc == 6 && std::strcmp(argv[3], "--flows") == 0 ? std::atol(argv[4]) : 0;
    const bool anchor_ok = anchor && (kind == "seed" || kind == "line") && (argc == 4 || flows > 0);
    const bool parse_only = argc == 3 && std::strcmp(argv[1], "--parse-only") == 0;
    const char* proto = argc == 4 && std::strcmp(argv[1], "--store-proto") == 0 ? argv[2] : nullptr;
    const bool proto_ok =
        proto && (std::strcmp(proto, "shared") == 0 || std::strcmp(proto, "delta") == 0);
    if (argc != 2 && !parse_only && !proto_ok && !anchor_ok) {
        std::fprintf(stderr,
                     "usage: %s [--parse-only | --store-proto shared|delta | --anchor seed|line "
                     "[--flows N]] IFNAME|IFINDEX\n",
                     argv[0]);
        return 2;
    }
    const char* ifname = argv[argc - 1];
    int ifindex = static_cast<int>(if_nametoindex(ifname));
    if (ifindex == 0) ifindex = std::atoi(ifname);
    if (ifindex <= 0) {
        std::fprintf(stderr, "floor_attach: no interface %s\n", ifname);
        return 1;
    }

    // Block the stop signals first so none is lost between attach and sigwait.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    if (anchor_ok)
        return run<anchors_bpf>(
            ifindex, set, [] { return anchors_bpf__open(); },
            [flows](anchors_bpf* s) {
                if (flows > 0)
                    bpf_map__set_max_entries(s->maps.seed_flows, static_cast<__u32>(flows));
                return anchors_bpf__load(s);
            },
            [](anchors_bpf* s) { anchors_bpf__destroy(s); },
            [kind](anchors_bpf* s) {
                return kind == "seed" ? std::pair{s->progs.ttbench_sd_in, s->progs.ttbench_sd_eg}
                                      : std::pair{s->progs.ttbench_ln_in, s->progs.ttbench_ln_eg};
            });
    if (proto_ok) {
        const bool delta = std::strcmp(proto, "delta") == 0;
        return run<store_proto_bpf>(
            ifindex, set, [] { return store_proto_bpf__open(); },
            [](store_proto_bpf* s) { return store_proto_bpf__load(s); },
            [](store_proto_bpf* s) { store_proto_bpf__destroy(s); },
            [delta](store_proto_bpf* s) {
                return delta ? std::pair{s->progs.ttproto_dl_in, s->progs.ttproto_dl_eg}
                             : std::pair{s->progs.ttproto_sh_in, s->progs.ttproto_sh_eg};
            });
    }
    if (parse_only)
        return run<parse_only_bpf>(
            ifindex, set, [] { return parse_only_bpf__open(); },
            [](parse_only_bpf* s) { return parse_only_bpf__load(s); },
            [](parse_only_bpf* s) { parse_only_bpf__destroy(s); },
            [](parse_only_bpf* s) {
                return std::pair{s->progs.ttbench_po_in, s->progs.ttbench_po_eg};
            });
    return run<empty_bpf>(
        ifindex, set, [] { return empty_bpf__open(); },
        [](empty_bpf* s) { return empty_bpf__load(s); },
        [](empty_bpf* s) { empty_bpf__destroy(s); },
        [](empty_bpf* s) {
            return std::pair{s->progs.ttbench_fl_in, s->progs.ttbench_fl_eg};
        });
}
