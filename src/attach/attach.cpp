// SPDX-License-Identifier: MIT
#include "attach/attach.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "attach/instance_lock.hpp"
#include "attach/stale_filters.hpp"
#include "attach/tc_filter.hpp"
#include "attach/tc_netlink.hpp"
#include "sys/error.hpp"
#include "sys/privileges.hpp"

namespace tcptrack {

namespace {

// Our own program's id: reading our own fd needs no CAP_SYS_ADMIN.
std::uint32_t prog_id(bpf_program* prog) {
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0)
        throw Error(fmt::format("cannot read program info: {}", errno_hint(errno)));
    return info.id;
}

// What ensure_attached says when someone else removed one or both directions.
std::string reattached_note(const char* kind, const char* noun, const char* removed,
                            const bool missing[2], const std::string& ifname) {
    const bool both = missing[0] && missing[1];
    return fmt::format(
        "tcptrack's {} {} {}{} on {} {} {} by someone else; "
        "re-attached (traffic in between is not counted)",
        kind, both ? "ingress and egress" : direction_name(kDirections[missing[0] ? 0 : 1]), noun,
        both ? "s" : "", ifname, both ? "were" : "was", removed);
}

#if TCPTRACK_HAVE_TCX
// A failed TCX attach, with the errno that decides whether legacy tc may take over.
struct TcxError : Error {
    TcxError(const std::string& what, int err) : Error(what), err(err) {}
    int err;
};

class TcxAttachment final : public Attachment {
   public:
    TcxAttachment(const std::string& ifname, int ifindex, const Programs& progs)
        : ifname_(ifname), ifindex_(ifindex), progs_{progs.ingress, progs.egress} {
        attach(0);
        try {
            attach(1);
        } catch (...) {
            bpf_link__destroy(std::exchange(links_[0], nullptr));
            throw;
        }
    }
    ~TcxAttachment() override {
        for (auto*& l : links_) bpf_link__destroy(std::exchange(l, nullptr));
    }

    std::optional<std::string> ensure_attached() override {
        bool missing[2] = {false, false};
        for (int i = 0; i < 2; ++i) {
            // A detached link (bpftool link detach, or its device gone) reports ifindex 0.
            bpf_link_info info{};
            std::uint32_t len = sizeof(info);
            if (bpf_obj_get_info_by_fd(bpf_link__fd(links_[i]), &info, &len) == 0 &&
                info.tcx.ifindex == static_cast<std::uint32_t>(ifindex_))
                continue;
            bpf_link__destroy(std::exchange(links_[i], nullptr));
            attach(i);
            missing[i] = true;
        }
        if (!missing[0] && !missing[1]) return std::nullopt;
        return reattached_note("TCX", "link", "detached", missing, ifname_);
    }
    const char* kind() const override { return "tcx"; }

   private:
    void attach(int i) {
        links_[i] = bpf_program__attach_tcx(progs_[i], ifindex_, nullptr);
        if (links_[i]) return;
        const int err = errno;
        const bool no_tcx = err == EINVAL || err == EOPNOTSUPP;
        throw TcxError(fmt::format("cannot attach TCX {} program to {}: {}{}",
                                   direction_name(kDirections[i]), ifname_, errno_hint(err),
                                   no_tcx ? " (kernel without TCX? try --attach tc)" : ""),
                       err);
    }

    std::string ifname_;
    int ifindex_;
    bpf_program* progs_[2];
    bpf_link* links_[2] = {nullptr, nullptr};
};
#endif

class TcAttachment final : public Attachment {
   public:
    TcAttachment(const std::string& ifname, int ifindex, const Programs& progs,
                 std::vector<std::string>& notes)
        : ifname_(ifname),
          ifindex_(ifindex),
          progs_{progs.ingress, progs.egress},
          ids_{prog_id(progs.ingress), prog_id(progs.egress)},
          watch_(ifindex) {
        IfaceLock lk(ifindex_, ifname_);
        settle_interface(lk, ifname_, ifindex_, false, notes);
        claim_ = HandleClaim::take(ifname_, ifindex_, ids_);
        try {
            attached_clsact(attach_missing(lk));
        } catch (...) {
            undo(lk);
            throw;
        }
    }
    ~TcAttachment() override {
        IfaceLock lk(ifindex_, ifname_, true);
        undo(lk);
    }

    std::optional<std::string> ensure_attached() override {
        // Read every look, so the socket never fills up between re-attaches.
        clsact_deleted_ = watch_.deleted_since_last() || clsact_deleted_;
        bool missing[2] = {false, false};
        for (int i = 0; i < 2; ++i) {
            const std::uint32_t id = query_filter(ifindex_, kDirections[i], claim_.handle());
            if (id == ids_[i]) continue;
            if (id != 0)  // our handle now runs another program: not ours to delete
                throw Error(
                    fmt::format("tcptrack's tc {} filter on {} (handle {:#x}) was replaced "
                                "by another program (id {})",
                                direction_name(kDirections[i]), ifname_, claim_.handle(), id));
            attached_[i] = false;
            missing[i] = true;
        }
        if (!missing[0] && !missing[1]) return std::nullopt;
        IfaceLock lk(ifindex_, ifname_);
        const bool qdisc_gone = !has_clsact(ifindex_);
        std::vector<std::string> ignored;
        settle_interface(lk, ifname_, ifindex_, false, ignored);  // forgets a deleted clsact
        forget_replaced_clsact(lk);
        attached_clsact(attach_missing(lk));
        if (qdisc_gone)
            return fmt::format(
                "the clsact qdisc on {} was deleted by someone else, and "
                "tcptrack's filters with it; re-attached (traffic in between is "
                "not counted)",
                ifname_);
        return reattached_note("tc", "filter", "deleted", missing, ifname_);
    }
    const char* kind() const override { return "tc"; }

   private:
    bool tcptrack_filters_left() const {
        for (auto point : kDirections)
            for (const TcFilter& f : list_filters(ifindex_, point))
                if (f.prio == kTcPriority && is_instance_handle(f.handle)) return true;
        return false;
    }

    // Someone may have deleted the qdisc and created another, ours or not:
    // another tcptrack's filter on it means that instance judged it (at its
    // own re-attach); else only the watch tells whether it is still the one
    // the lock file says tcptrack created. Call with our filters off it.
    void forget_replaced_clsact(IfaceLock& lk) {
        clsact_deleted_ = watch_.deleted_since_last() || clsact_deleted_;
        if (clsact_deleted_ && !tcptrack_filters_left()) lk.set_clsact_ours(false);
        clsact_deleted_ = false;
    }

    // After attaching: a clsact we created is ours whatever happened to the
    // one before; else a deletion seen meanwhile is judged at the next look.
    void attached_clsact(bool created) {
        const bool deleted = watch_.deleted_since_last();
        clsact_deleted_ = !created && deleted;
    }

    // True when it created the clsact qdisc.
    bool attach_missing(IfaceLock& lk) {
        const int err = create_clsact(ifindex_);
        if (err && err != -EEXIST)
            throw Error(
                fmt::format("cannot create clsact qdisc on {}: {}", ifname_, errno_hint(-err)));
        if (err == 0) lk.set_clsact_ours(true);
        for (int i = 0; i < 2; ++i) {
            if (attached_[i]) continue;
            const int e = attach_filter(ifindex_, kDirections[i], claim_.handle(),
                                        bpf_program__fd(progs_[i]));
            if (e)
                throw Error(fmt::format("cannot attach tc {} filter to {}: {}",
                                        direction_name(kDirections[i]), ifname_, errno_hint(-e)));
            attached_[i] = true;
        }
        return err == 0;
    }

    void undo(IfaceLock& lk) {
        // Only our own filters, by handle, while they run our programs; never a whole direction.
        for (int i = 0; i < 2; ++i) {
            if (attached_[i]) detach_if(ifindex_, kDirections[i], claim_.handle(), ids_[i]);
            attached_[i] = false;
        }
        claim_.release();
        if (!lk.held()) return;
        std::vector<std::string> ignored;
        try {
            if (lk.clsact_ours()) forget_replaced_clsact(lk);
            settle_interface(lk, ifname_, ifindex_, true, ignored);
        } catch (const Error&) {
            // Leaving anyway: at worst a qdisc or a dead instance's filter stays for --cleanup.
        }
    }

    std::string ifname_;
    int ifindex_;
    bpf_program* progs_[2];
    std::uint32_t ids_[2];
    ClsactWatch watch_;            // opened before attaching
    bool clsact_deleted_ = false;  // seen by watch_ since ownership was last judged
    HandleClaim claim_;
    bool attached_[2] = {false, false};
};

}  // namespace

std::unique_ptr<Attachment> attach_interface(const std::string& ifname, int ifindex,
                                             const Programs& progs, bool want_tcx,
                                             bool allow_fallback, std::vector<std::string>& notes) {
#if TCPTRACK_HAVE_TCX
    if (want_tcx) {
        try {
            return std::make_unique<TcxAttachment>(ifname, ifindex, progs);
        } catch (const TcxError& e) {
            // Only a kernel without TCX falls back; permissions or a bad device do not.
            if (!allow_fallback ||
                (e.err != EINVAL && e.err != EOPNOTSUPP && e.err != ENOTSUP && e.err != ENOSYS))
                throw;
            notes.push_back(fmt::format("TCX unavailable on {} ({}); using legacy tc", ifname,
                                        std::strerror(e.err)));
        }
    }
#else
    if (want_tcx && !allow_fallback)
        throw Error("--attach tcx: this build's libbpf is older than 1.3 (no TCX links)");
    (void)want_tcx;
#endif
    return std::make_unique<TcAttachment>(ifname, ifindex, progs, notes);
}

}  // namespace tcptrack
