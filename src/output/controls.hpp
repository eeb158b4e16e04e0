// SPDX-License-Identifier: MIT
// What an interactive output may change while tcptrack runs (the view's '/'
// and 's' keys). The run (app/session) implements it: the filter is compiled
// and installed once, there; the sort key goes straight to the next report.
#pragma once

#include <string>

#include "config/options.hpp"
#include "report/report.hpp"

namespace tcptrack {

class Controls {
   public:
    virtual ~Controls() = default;
    // Installs a new filter expression in the classifiers: "" on success,
    // else one line saying what is wrong with it (the old one stays).
    virtual std::string set_filter(const std::string& expr) = 0;
    // Whether the filter in force keeps a row's connection (rows already on
    // screen that it leaves out can go at once).
    virtual bool keeps(const FlowRow& row) const = 0;
    // The order of the next report.
    virtual void set_sort(SortKey key) = 0;
};

}  // namespace tcptrack
