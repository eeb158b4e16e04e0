// SPDX-License-Identifier: MIT
// The interactive terminal view (ncurses), like top/iftop: the table of
// render_table() redrawn in place, with keys to quit, sort, pause, filter.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/options.hpp"
#include "output/controls.hpp"
#include "output/export_tally.hpp"
#include "report/report.hpp"

namespace tcptrack {

class Tui {
   public:
    // Whether `opts` on these descriptors call for the interactive view: a
    // table on a terminal (stdin and stdout), running until stopped.
    static bool wanted(const Options& opts);
    // Takes over the terminal; nullptr when ncurses cannot start it (TERM unset
    // or unknown), with the reason in `why`. While it runs, stderr lines go to
    // the status line; they are written to the real stderr again at the end.
    // `controls` (the run) changes the filter and the sort for the '/' and 's' keys.
    static std::unique_ptr<Tui> start(const Options& opts, Controls& controls,
                                      const ExportTally& exports, std::string& why);
    ~Tui();  // gives the terminal back (endwin), whatever ended the view
    Tui(const Tui&) = delete;
    Tui& operator=(const Tui&) = delete;

    // A new report: drawn at once, unless paused (then it is kept for later).
    void show(Report report);
    // Acts on the keys typed so far, without waiting. False: the user quit.
    bool handle_keys();

   private:
    Tui(const Options& opts, Controls& controls, const ExportTally& exports);
    void draw();
    void draw_help();
    void key(int ch);
    void prompt_key(int ch);
    void read_stderr();
    void restore_stderr();

    void* screen_ = nullptr;  // ncurses' SCREEN (kept out of this header)
    Controls& controls_;
    const ExportTally& exports_;  // --summary: the exporters' errors
    SortKey sort_;
    bool summary_;        // --summary: its line under the table
    std::string filter_;  // the expression in force
    bool paused_ = false;
    bool help_ = false;
    bool quit_ = false;
    bool prompt_ = false;       // editing the filter on the bottom line
    std::string edit_;          // the expression being edited
    std::string status_;        // bottom line: last error or note
    Report shown_;              // what is on screen (the one paused on while paused)
    Report latest_;             // while paused: the newest report, shown on resuming
    bool have_report_ = false;  // shown_ holds a report
    bool have_latest_ = false;  // latest_ holds one
    int err_read_ = -1;         // captured stderr (read end), -1: not captured
    int err_saved_ = -1;        // the real stderr, restored at the end
    std::string err_partial_;   // a line not yet ended by '\n'
    std::string err_log_;       // everything captured, written out at the end
};

}  // namespace tcptrack
