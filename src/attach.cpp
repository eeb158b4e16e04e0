// SPDX-License-Identifier: MIT
#include "tcptrack/attach.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include "tcptrack/error.hpp"

namespace tcptrack {

bool tcx_compiled_in() { return TCPTRACK_HAVE_TCX != 0; }

namespace {

const char* dir_name(bpf_tc_attach_point p) { return p == BPF_TC_INGRESS ? "ingress" : "egress"; }

#if TCPTRACK_HAVE_TCX
class TcxAttachment final : public Attachment {
public:
    TcxAttachment(const std::string& ifname, int ifindex, const Programs& progs) {
        ingress_ = bpf_program__attach_tcx(progs.ingress, ifindex, nullptr);
        if (!ingress_) fail(ifname, "ingress");
        egress_ = bpf_program__attach_tcx(progs.egress, ifindex, nullptr);
        if (!egress_) {
            const int err = errno;
            bpf_link__destroy(ingress_);
            errno = err;
            fail(ifname, "egress");
        }
    }
    ~TcxAttachment() override {
        bpf_link__destroy(egress_);
        bpf_link__destroy(ingress_);
    }
    AttachKind kind() const override { return AttachKind::Tcx; }

    static int last_errno;

private:
    [[noreturn]] static void fail(const std::string& ifname, const char* dir) {
        last_errno = errno;
        const bool no_tcx = last_errno == EINVAL || last_errno == EOPNOTSUPP;
        throw Error(fmt::format("cannot attach TCX {} program to {}: {}{}", dir, ifname,
                                errno_hint(last_errno),
                                no_tcx ? " (kernel without TCX? try --attach tc)" : ""));
    }
    bpf_link* ingress_ = nullptr;
    bpf_link* egress_ = nullptr;
};
int TcxAttachment::last_errno = 0;
#endif

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point) {
    bpf_tc_hook h{};
    h.sz = sizeof(h);
    h.ifindex = ifindex;
    h.attach_point = point;
    return h;
}

bpf_tc_opts our_filter() {
    bpf_tc_opts o{};
    o.sz = sizeof(o);
    o.handle = kTcHandle;
    o.priority = kTcPriority;
    return o;
}

bool is_tcptrack_prog(std::uint32_t prog_id) {
    const int fd = bpf_prog_get_fd_by_id(prog_id);
    if (fd < 0) return false;
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    const bool ours = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
                      std::strncmp(info.name, "tcptrack_", 9) == 0;
    close(fd);
    return ours;
}

class TcAttachment final : public Attachment {
public:
    TcAttachment(const std::string& ifname, int ifindex, const Programs& progs)
        : ifindex_(ifindex) {
        // Both points at once creates the clsact qdisc; EEXIST means it was there.
        bpf_tc_hook hook = make_hook(ifindex, static_cast<bpf_tc_attach_point>(
                                                  BPF_TC_INGRESS | BPF_TC_EGRESS));
        int err = bpf_tc_hook_create(&hook);
        if (err && err != -EEXIST)
            throw Error(fmt::format("cannot create clsact qdisc on {}: {}", ifname,
                                    errno_hint(-err)));
        created_qdisc_ = err == 0;
        try {
            attach(ifname, BPF_TC_INGRESS, progs.ingress, ingress_);
            attach(ifname, BPF_TC_EGRESS, progs.egress, egress_);
        } catch (...) {
            undo();
            throw;
        }
    }
    ~TcAttachment() override { undo(); }
    AttachKind kind() const override { return AttachKind::Tc; }

private:
    void attach(const std::string& ifname, bpf_tc_attach_point point, bpf_program* prog,
                bool& done) {
        bpf_tc_hook hook = make_hook(ifindex_, point);
        bpf_tc_opts opts = our_filter();
        opts.prog_fd = bpf_program__fd(prog);
        const int err = bpf_tc_attach(&hook, &opts);
        if (err)
            throw Error(fmt::format("cannot attach tc {} filter to {}: {}", dir_name(point),
                                    ifname, errno_hint(-err)));
        done = true;
    }

    void undo() {
        // Only our own filters, by handle and priority; never a whole direction.
        for (auto [point, done] : {std::pair{BPF_TC_INGRESS, &ingress_},
                                   std::pair{BPF_TC_EGRESS, &egress_}}) {
            if (!*done) continue;
            bpf_tc_hook hook = make_hook(ifindex_, point);
            bpf_tc_opts opts = our_filter();
            bpf_tc_detach(&hook, &opts);
            *done = false;
        }
        if (created_qdisc_) {
            bpf_tc_hook hook = make_hook(ifindex_, static_cast<bpf_tc_attach_point>(
                                                       BPF_TC_INGRESS | BPF_TC_EGRESS));
            bpf_tc_hook_destroy(&hook);  // removes the clsact qdisc we added
            created_qdisc_ = false;
        }
    }

    int ifindex_;
    bool created_qdisc_ = false;
    bool ingress_ = false;
    bool egress_ = false;
};

}  // namespace

std::vector<std::string> remove_stale_tc_filters(const std::string& ifname, int ifindex) {
    std::vector<std::string> notes;
    for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
        bpf_tc_hook hook = make_hook(ifindex, point);
        bpf_tc_opts opts = our_filter();
        if (bpf_tc_query(&hook, &opts) != 0) continue;  // none at our handle/priority
        if (!is_tcptrack_prog(opts.prog_id)) continue;  // somebody else's: leave it
        bpf_tc_opts del = our_filter();
        if (bpf_tc_detach(&hook, &del) == 0)
            notes.push_back(fmt::format("removed stale tcptrack tc {} filter (prog id {}) from {}",
                                        dir_name(point), opts.prog_id, ifname));
    }
    return notes;
}

std::unique_ptr<Attachment> attach_interface(const std::string& ifname, int ifindex,
                                             const Programs& progs, bool want_tcx,
                                             bool allow_fallback,
                                             std::vector<std::string>& notes) {
#if TCPTRACK_HAVE_TCX
    if (want_tcx) {
        try {
            return std::make_unique<TcxAttachment>(ifname, ifindex, progs);
        } catch (const Error& e) {
            const int err = TcxAttachment::last_errno;
            // Only a kernel without TCX falls back; permissions or a bad device do not.
            if (!allow_fallback || (err != EINVAL && err != EOPNOTSUPP && err != ENOTSUP &&
                                    err != ENOSYS))
                throw;
            notes.push_back(fmt::format("TCX unavailable on {} ({}); using legacy tc", ifname,
                                        std::strerror(err)));
        }
    }
#else
    if (want_tcx && !allow_fallback)
        throw Error("--attach tcx: this build's libbpf is older than 1.3 (no TCX links)");
    (void)want_tcx;
#endif
    for (auto& n : remove_stale_tc_filters(ifname, ifindex)) notes.push_back(n);
    return std::make_unique<TcAttachment>(ifname, ifindex, progs);
}

}  // namespace tcptrack

