// SPDX-License-Identifier: MIT
// Attaches the empty classifier (empty.bpf.c) with TCX links to ingress and
// egress of one interface, prints the program ids, and holds the links until
// SIGINT/SIGTERM. TCX links die with the process, so nothing is left behind.
//
//   floor_attach IFNAME|IFINDEX
//   -> "ingress_id=N egress_id=M" on stdout once attached
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <net/if.h>

#include "empty.skel.h"

namespace {

unsigned prog_id(const bpf_program* p) {
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_prog_get_info_by_fd(bpf_program__fd(p), &info, &len) != 0) return 0;
    return info.id;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s IFNAME|IFINDEX\n", argv[0]);
        return 2;
    }
    int ifindex = static_cast<int>(if_nametoindex(argv[1]));
    if (ifindex == 0) ifindex = std::atoi(argv[1]);
    if (ifindex <= 0) {
        std::fprintf(stderr, "floor_attach: no interface %s\n", argv[1]);
        return 1;
    }

    // Block the stop signals first so none is lost between attach and sigwait.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    empty_bpf* skel = empty_bpf__open();
    if (!skel) {
        std::fprintf(stderr, "floor_attach: open: %s\n", std::strerror(errno));
        return 1;
    }
    bpf_program__set_expected_attach_type(skel->progs.ttbench_fl_in, BPF_TCX_INGRESS);
    bpf_program__set_expected_attach_type(skel->progs.ttbench_fl_eg, BPF_TCX_EGRESS);
    if (int err = empty_bpf__load(skel)) {
        std::fprintf(stderr, "floor_attach: load: %s\n", std::strerror(-err));
        empty_bpf__destroy(skel);
        return 1;
    }
    bpf_link* in = bpf_program__attach_tcx(skel->progs.ttbench_fl_in, ifindex, nullptr);
    if (!in) {
        std::fprintf(stderr, "floor_attach: attach ingress: %s\n", std::strerror(errno));
        empty_bpf__destroy(skel);
        return 1;
    }
    bpf_link* eg = bpf_program__attach_tcx(skel->progs.ttbench_fl_eg, ifindex, nullptr);
    if (!eg) {
        std::fprintf(stderr, "floor_attach: attach egress: %s\n", std::strerror(errno));
        bpf_link__destroy(in);
        empty_bpf__destroy(skel);
        return 1;
    }
    std::printf("ingress_id=%u egress_id=%u\n", prog_id(skel->progs.ttbench_fl_in),
                prog_id(skel->progs.ttbench_fl_eg));
    std::fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);

    bpf_link__destroy(eg);
    bpf_link__destroy(in);
    empty_bpf__destroy(skel);
    return 0;
}
