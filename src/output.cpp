// SPDX-License-Identifier: MIT
// The terminal outputs (full-screen view, table, --closed log, JSON, CSV) and
// the one place that decides which outputs run.
#include "tcptrack/output.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tcptrack/ipfix_output.hpp"
#include "tcptrack/prometheus_output.hpp"
#include "tcptrack/tui.hpp"

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
    explicit TableOutput(const Options& o) : opts_(o), tty_(isatty(STDOUT_FILENO)) {}
    bool write(const ReportFrame& f) override {
        const Report r = with_rows(f);
        bool ok;
        if (opts_.closed_only)  // the lifetime log: only connections that just finished
            ok = put_stdout(render_closed_lines(r));
        else  // redrawn in place on a terminal (like top); reports appended otherwise
            ok = put_stdout(tty_ ? "\x1b[H\x1b[2J" : first_ ? "" : "\n") &&
                 put_stdout(render_table(r, tty_ ? terminal_rows() : SIZE_MAX));
        if (ok && opts_.summary) ok = put_stdout(render_table_summary(r, r.stats.connections));
        first_ = false;
        return flushed(ok);
    }
    const char* name() const override { return "table"; }

private:
    const Options& opts_;
    const bool tty_;
    bool first_ = true;
};

class JsonOutput final : public Output {
public:
    explicit JsonOutput(const Options& o) : summary_(o.summary) {}
    bool write(const ReportFrame& f) override {
        const Report& r = f.report;
        return flushed(render_json(r.time, f.rows(), put_stdout) &&
                       (!summary_ || put_stdout(render_json_summary(r, r.stats.connections))));
    }
    const char* name() const override { return "json"; }

private:
    const bool summary_;
};

class CsvOutput final : public Output {
public:
    bool write(const ReportFrame& f) override {
        const bool ok = render_csv(f.report.time, f.rows(), first_, put_stdout);
        first_ = false;
        return flushed(ok);
    }
    const char* name() const override { return "csv"; }

private:
    bool first_ = true;  // the header row once
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
    std::optional<SortKey> sort() const override { return tui_->sort(); }
    const char* name() const override { return "view"; }

private:
    std::unique_ptr<Tui> tui_;
};

}  // namespace

bool shows_names(const Options& opts) { return opts.format == Format::Table; }

std::unique_ptr<Output> make_terminal_output(
    const Options& opts, std::function<std::string(const std::string&)> apply_filter) {
    switch (opts.format) {
        case Format::None:
            return nullptr;
        case Format::Json:
            return std::make_unique<JsonOutput>(opts);
        case Format::Csv:
            return std::make_unique<CsvOutput>();
        case Format::Table:
            break;
    }
    if (Tui::wanted(opts)) {
        std::string why;
        if (auto tui = Tui::start(opts, std::move(apply_filter), why))
            return std::make_unique<ViewOutput>(std::move(tui));
        std::fprintf(stderr, "tcptrack: %s: printing the plain table\n", why.c_str());
    }
    return std::make_unique<TableOutput>(opts);
}

std::vector<std::unique_ptr<Output>> make_exporters(const Options& opts) {
    std::vector<std::unique_ptr<Output>> v;
    if (!opts.ipfix.empty()) v.push_back(make_ipfix_output(opts));
    if (!opts.prometheus.empty()) v.push_back(make_prometheus_output(opts, opts.ifaces));
    return v;
}

}  // namespace tcptrack
