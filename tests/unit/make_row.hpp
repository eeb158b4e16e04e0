// SPDX-License-Identifier: MIT
// make_row: a sample's row as a value, for the tests (tcptrack itself fills
// rows in place with fill_row).
#pragma once

#include <cstdint>
#include <string>

#include "report/flow_model.hpp"

namespace tcptrack {

inline FlowRow make_row(const FlowSample& s, const std::string& iface, std::uint64_t now_ns) {
    FlowRow r;
    fill_row(r, s, iface, now_ns);
    return r;
}

}  // namespace tcptrack
