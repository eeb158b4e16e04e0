// SPDX-License-Identifier: MIT
// The string and whole-report forms of the renderers that the tests read
// (tcptrack itself streams rows to its outputs).
#pragma once

#include <string>
#include <string_view>

#include "output/format.hpp"
#include "output/rows.hpp"
#include "output/table.hpp"

namespace tcptrack {

inline RowSource rows_of(const Report& report) {
    return [&rows = report.rows, i = std::size_t{0}](FlowRow&) mutable {
        return i < rows.size() ? &rows[i++] : nullptr;
    };
}
inline bool render_json(const Report& r, const TextSink& sink) {
    return render_json(r.time, rows_of(r), sink);
}
inline std::string render_json(const Report& r) {
    std::string out;
    render_json(r, [&](std::string_view s) { return out.append(s), true; });
    return out;
}
inline std::string render_json_summary(const Report& r) {
    return render_json_summary(r, r.rows.size());
}
inline bool render_csv(const Report& r, bool header, const TextSink& sink) {
    return render_csv(r.time, rows_of(r), header, sink);
}
inline std::string render_csv(const Report& r, bool header) {
    std::string out;
    render_csv(r, header, [&](std::string_view s) { return out.append(s), true; });
    return out;
}

}  // namespace tcptrack
