// SPDX-License-Identifier: MIT
// The terminal outputs: full-screen view, table, --closed log, JSON, CSV.
#include "output/terminal.hpp"
#include "report/flow_model.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "output/rows.hpp"
#include "output/table.hpp"
#include "output/tui.hpp"

namespace tcptrack {
namespace {

// Appends to stdout; false (with errno set) on a write error.
bool put_stdout(std::string_view text) {
    return std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
}

// Flushes what was written, or reports why not; a closed pipe (e.g. `| head`) is a quiet stop.
bool flushed(bool ok) {
    if (ok && std::fflush(stdout) == 0) return true;
    if (errno != EPIPE)
        std::fprintf(stderr, "tcptrack: cannot write output: %s\n", std::strerror(errno));
    return false;
}

// Connection rows that fit the terminal under the header lines, like top.
std::size_t terminal_rows() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row < 6) return SIZE_MAX;
    return ws.ws_row - 4;  // report header, column header, "... more" line, cursor line
}

// The report with its rows: the table is sized to its widest cells.
Report with_rows(const ReportFrame& f) {
    Report r = f.report;
    const RowSource rows = f.rows();
    FlowRow scratch;
    while (const FlowRow* row = rows(scratch)) r.rows.push_back(*row);
    return r;
}

class TableOutput final : public Output {
   public:
    TableOutput(const Options& o, const ExportTally& exports)
        : opts_(o), exports_(exports), tty_(isatty(STDOUT_FILENO)) {}
    bool write(const ReportFrame& f) override {
        const Report r = with_rows(f);
        bool ok;
        if (opts_.closed_only)  // the lifetime log: only connections that just finished
            ok = put_stdout(render_closed_lines(r));
        else  // redrawn in place on a terminal (like top); reports appended otherwise
            ok = put_stdout(tty_     ? "\x1b[H\x1b[2J"
                            : first_ ? ""
                                     : "\n") &&
                 put_stdout(render_table(r, tty_ ? terminal_rows() : SIZE_MAX));
        if (ok && opts_.summary)
            ok = put_stdout(render_table_summary(r, r.stats.connections, &exports_));
        first_ = false;
        return flushed(ok);
    }
    const char* name() const override { return "table"; }

   private:
    const Options& opts_;
    const ExportTally& exports_;
    const bool tty_;
    bool first_ = true;
};

class JsonOutput final : public Output {
   public:
    JsonOutput(const Options& o, const ExportTally& exports)
        : summary_(o.summary), exports_(exports) {}
    bool write(const ReportFrame& f) override {
        const Report& r = f.report;
        return flushed(
            (f.table ? render_json(r.time, f.table(), put_stdout, render_opts_)
                     : render_json(r.time, f.rows(), put_stdout)) &&
            (!summary_ || put_stdout(render_json_summary(r, r.stats.connections, &exports_))));
    }
    const char* name() const override { return "json"; }

   private:
    const bool summary_;
    const ExportTally& exports_;
    const RenderOptions render_opts_{render_threads()};
};

class CsvOutput final : public Output {
   public:
    bool write(const ReportFrame& f) override {
        const bool ok = f.table
                            ? render_csv(f.report.time, f.table(), first_, put_stdout, render_opts_)
                            : render_csv(f.report.time, f.rows(), first_, put_stdout);
        first_ = false;
        return flushed(ok);
    }
    const char* name() const override { return "csv"; }

   private:
    bool first_ = true;  // the header row once
    const RenderOptions render_opts_{render_threads()};
};

class ViewOutput final : public Output {
   public:
    explicit ViewOutput(std::unique_ptr<Tui> tui) : tui_(std::move(tui)) {}
    bool write(const ReportFrame& f) override {
        tui_->show(with_rows(f));
        return true;
    }
    // Leaving the screen: a last frame would be wiped at once.
    void finish(const ReportFrame*) override {}
    bool interact() override { return tui_->handle_keys(); }
    bool interactive() const override { return true; }
    const char* name() const override { return "view"; }

   private:
    std::unique_ptr<Tui> tui_;
};

}  // namespace

std::unique_ptr<Output> make_table_output(const Options& opts, const ExportTally& exports) {
    return std::make_unique<TableOutput>(opts, exports);
}
std::unique_ptr<Output> make_json_output(const Options& opts, const ExportTally& exports) {
    return std::make_unique<JsonOutput>(opts, exports);
}
std::unique_ptr<Output> make_csv_output() { return std::make_unique<CsvOutput>(); }
std::unique_ptr<Output> make_view_output(std::unique_ptr<Tui> tui) {
    return std::make_unique<ViewOutput>(std::move(tui));
}

}  // namespace tcptrack
