// SPDX-License-Identifier: MIT
// The interfaces a run watches: both hooks attached to each at the start, and
// every interval a check that drops the ones deleted meanwhile and puts back
// what someone else detached from the others (a tc filter, clsact, a TCX
// link), saying so: a report must never show zeros as if no traffic had passed.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attach/attach.hpp"
#include "sys/interfaces.hpp"

namespace tcptrack {

class InterfaceWatch {
   public:
    // The classifiers for an interface with (true) or without Ethernet framing.
    using ProgramsFor = std::function<Programs(bool has_l2)>;

    // want_tcx / allow_fallback: as attach_interface().
    InterfaceWatch(ProgramsFor programs, bool want_tcx, bool allow_fallback);

    // Attaches to `iface` (notes on stderr); throws Error with nothing of it attached.
    void add(const Interface& iface);
    // Once per interval: see above. Throws Error when the last one is gone.
    void check();
    // The names of the interfaces watched now, for a report's header.
    std::vector<std::string> watched() const;
    // Every interface watched so far, by ifindex (close events of one deleted
    // meanwhile still name it).
    const InterfaceNames& names() const { return names_; }

   private:
    struct Watched {
        Interface iface;
        std::unique_ptr<Attachment> attachment;
    };
    static bool still_attached(Watched& w);

    ProgramsFor programs_;
    bool want_tcx_, allow_fallback_;
    std::vector<Watched> watched_;
    InterfaceNames names_;
};

}  // namespace tcptrack
