// SPDX-License-Identifier: MIT
#include "app/outputs.hpp"

#include <cstdio>
#include <string>

#include "output/ipfix.hpp"
#include "output/prometheus.hpp"
#include "output/terminal.hpp"
#include "output/tui.hpp"

namespace tcptrack {

std::vector<std::unique_ptr<Output>> make_exporters(const Options& opts, ExportTally& exports,
                                                    const Health& health) {
    std::vector<std::unique_ptr<Output>> v;
    if (!opts.ipfix.empty()) v.push_back(make_ipfix_output(opts, exports));
    if (!opts.prometheus.empty())
        v.push_back(make_prometheus_output(opts, opts.ifaces, exports, health));
    return v;
}

bool shows_names(const Options& opts) { return opts.format == Format::Table; }

std::unique_ptr<Output> make_terminal_output(const Options& opts, Controls& controls,
                                             const ExportTally& exports) {
    switch (opts.format) {
        case Format::None:
            return nullptr;
        case Format::Json:
            return make_json_output(opts, exports);
        case Format::Csv:
            return make_csv_output();
        case Format::Table:
            break;
    }
    if (Tui::wanted(opts)) {
        std::string why;
        if (auto tui = Tui::start(opts, controls, exports, why))
            return make_view_output(std::move(tui));
        std::fprintf(stderr, "tcptrack: %s: printing the plain table\n", why.c_str());
    }
    return make_table_output(opts, exports);
}

}  // namespace tcptrack
