// SPDX-License-Identifier: MIT
// The one interface every output implements: the table, JSON, CSV, the
// closed-connection log, and the exporters (IPFIX, Prometheus). The run loop
// builds each report once and hands the same frame to every output in turn,
// so several can run at once (a table on the terminal while IPFIX goes to a
// collector). Adding an output means adding a file here and one line in the
// factory, app/outputs.cpp.
#pragma once

#include <cstdint>

#include "report/frame.hpp"

namespace tcptrack {

class Output {
   public:
    virtual ~Output() = default;
    // One report. False stops tcptrack quietly (stdout was closed, as by `| head`).
    virtual bool write(const ReportFrame& frame) = 0;
    // The run's last report, instead of write(): at a stop (SIGINT, SIGTERM,
    // SIGHUP, the view's 'q': what happened since the previous report) or as
    // the Nth of --count N. Nothing that closed before a stop goes unreported:
    // by default it is an ordinary report; exporters add their final records
    // (IPFIX: a forced end per live connection) and flush.
    virtual void finish(const ReportFrame* last) {
        if (last) write(*last);
    }
    virtual const char* name() const = 0;
    // An interactive output (the full-screen view) acts on keys here, between
    // short waits; false: the user quit.
    virtual bool interact() { return true; }
    // Whether interact() needs calling often (keys act within 50 ms).
    virtual bool interactive() const { return false; }
};

}  // namespace tcptrack
