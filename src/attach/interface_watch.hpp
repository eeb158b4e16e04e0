// SPDX-License-Identifier: MIT
// The interfaces a run watches: both hooks attached to each at the start, and
// every interval a check that drops the ones deleted meanwhile and puts back
// what someone else detached from the others (a tc filter, clsact, a TCX
// link), saying so: a report must never show zeros as if no traffic had passed.
// With a pattern or --all-interfaces it also follows rtnetlink (attach/
// link_netlink): an interface that appears and matches is attached as soon as
// poll() sees it, one that goes is released, at most --max-interfaces at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "attach/attach.hpp"
#include "attach/interface_select.hpp"
#include "attach/link_netlink.hpp"
#include "sys/interfaces.hpp"

namespace tcptrack {

class InterfaceWatch {
   public:
    // The classifiers for an interface with (true) or without Ethernet framing.
    using ProgramsFor = std::function<Programs(bool has_l2)>;

    // want_tcx / allow_fallback: as attach_interface().
    InterfaceWatch(ProgramsFor programs, bool want_tcx, bool allow_fallback);

    // -v with a pattern or --all-interfaces: a line per interface attached and released.
    void set_verbose(bool v) { verbose_ = v; }
    // Attaches to `iface` (notes on stderr); throws Error with nothing of it attached.
    void add(const Interface& iface);
    // From now on follow `sel` (a dynamic() one): attaches every interface that
    // matches now, and from poll() on every one that appears. An interface
    // that cannot be attached, or one beyond `max_interfaces`, is a line on
    // stderr (once per interface) and the run goes on. Throws Error when
    // rtnetlink cannot be watched.
    void follow(const InterfaceSelection& sel, std::size_t max_interfaces);
    // Waits up to timeout_ms (returns early on a signal), attaching and
    // releasing interfaces as rtnetlink reports them meanwhile.
    void poll(int timeout_ms);
    // Once per interval: see above. Without follow(), throws Error when the last one is gone.
    void check();
    // The ifindexes of the interfaces gone since the last call (their flows end now).
    std::vector<std::uint32_t> take_gone() { return std::move(gone_); }
    // Interfaces that match but are not watched (--max-interfaces, an attach
    // error): /healthz reports them.
    std::size_t not_watched() const { return refused_.size(); }
    // The names of the interfaces watched now, for a report's header.
    std::vector<std::string> watched() const;
    // Every interface watched so far, by ifindex (close events and final rows
    // of one deleted meanwhile still name it; a reused ifindex: the newer name).
    const InterfaceNames& names() const { return names_; }

   private:
    struct Watched {
        Interface iface;
        std::unique_ptr<Attachment> attachment;
    };
    static bool still_attached(Watched& w);
    void on_link(const LinkEvent& e);
    void resync();
    void release(std::vector<Watched>::iterator it, bool gone);
    std::vector<Watched>::iterator find(int ifindex);

    ProgramsFor programs_;
    bool want_tcx_, allow_fallback_;
    std::vector<Watched> watched_;
    InterfaceNames names_;
    std::vector<std::uint32_t> gone_;
    // follow(): the selection, the rtnetlink subscription, the limit, and the
    // interfaces refused (limit or error) so far, each said once; those
    // refused for the limit are taken when room frees up (retry_refused).
    std::optional<InterfaceSelection> sel_;
    std::unique_ptr<LinkEvents> links_;
    std::size_t max_ = SIZE_MAX;
    bool verbose_ = false;
    std::set<int> refused_, over_limit_;
    bool room_freed_ = false;
    void retry_refused();
};

}  // namespace tcptrack
