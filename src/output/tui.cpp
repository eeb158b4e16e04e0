// SPDX-License-Identifier: MIT
// The interactive view: a title line (sort key, filter, PAUSED), the table as
// render_table() writes it (so the view and the plain table never drift
// apart), and a status line for the filter prompt, errors and notes.
#include "output/tui.hpp"

#include <arpa/inet.h>
#include <curses.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "output/table.hpp"
#include "report/report_builder.hpp"

namespace tcptrack {

namespace {

constexpr int kEsc = 27;
constexpr std::size_t kErrLogMax = 64 * 1024;  // stderr kept to write out at the end

const char* sort_name(SortKey k) {
    switch (k) {
        case SortKey::Rate:
            return "rate";
        case SortKey::Bytes:
            return "bytes";
        case SortKey::Packets:
            return "packets";
        case SortKey::Age:
            return "age";
        case SortKey::Rtt:
            return "rtt";
        case SortKey::Retrans:
            return "retrans";
    }
    return "?";
}

SortKey next_sort(SortKey k) {
    switch (k) {
        case SortKey::Rate:
            return SortKey::Bytes;
        case SortKey::Bytes:
            return SortKey::Packets;
        case SortKey::Packets:
            return SortKey::Age;
        case SortKey::Age:
            return SortKey::Rtt;
        case SortKey::Rtt:
            return SortKey::Retrans;
        case SortKey::Retrans:
            return SortKey::Rate;
    }
    return SortKey::Rate;
}

void sort_rows(std::vector<FlowRow>& rows, SortKey key) {
    // ReportBuilder's order (report_builder.hpp: sort_value), so a new key
    // shows at once, before the next report. Stable: equal rows keep the
    // builder's endpoint order.
    std::stable_sort(rows.begin(), rows.end(), [key](const FlowRow& a, const FlowRow& b) {
        const double va = sort_value(key, a), vb = sort_value(key, b);
        if (va != vb) return va > vb;
        return a.fwd_bytes + a.rev_bytes > b.fwd_bytes + b.rev_bytes;
    });
}

// Writes `text` at (y, x), cut at the right edge.
void put(int y, int x, std::string_view text) {
    if (y < 0 || y >= LINES || x >= COLS) return;
    mvaddnstr(y, x, text.data(), static_cast<int>(std::min<std::size_t>(text.size(), COLS - x)));
}

// A full-width line in `attr` (the title and column header bars).
void bar(int y, std::string_view text, attr_t attr) {
    attron(attr);
    std::string line(text.substr(0, static_cast<std::size_t>(std::max(COLS, 0))));
    line.resize(static_cast<std::size_t>(std::max(COLS, 0)), ' ');
    put(y, 0, line);
    attroff(attr);
}

}  // namespace

bool Tui::wanted(const Options& opts) {
    // --count/--once print and exit: the plain table, which stays on the screen.
    return opts.format == Format::Table && !opts.closed_only && !opts.count &&
           isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
}

Tui::Tui(const Options& opts, Controls& controls, const ExportTally& exports)
    : controls_(controls),
      exports_(exports),
      sort_(opts.sort),
      summary_(opts.summary),
      filter_(opts.filter),
      edit_(opts.filter) {}

std::unique_ptr<Tui> Tui::start(const Options& opts, Controls& controls, const ExportTally& exports,
                                std::string& why) {
    const char* term = std::getenv("TERM");
    if (!term || !*term) {
        why = "TERM is not set";
        return nullptr;
    }
    // Only the character type: numbers must keep their '.' in every output.
    std::setlocale(LC_CTYPE, "");
    // newterm, not initscr: an unknown terminal is an error to handle, not an exit.
    SCREEN* screen = newterm(nullptr, stdout, stdin);
    if (!screen) {
        why = fmt::format("cannot use terminal type '{}'", term);
        return nullptr;
    }
    // A terminal that cannot move the cursor (TERM=dumb) cannot redraw in place.
    const char* cup = tigetstr(const_cast<char*>("cup"));
    if (!cup || cup == reinterpret_cast<char*>(-1)) {
        endwin();
        delscreen(screen);
        why = fmt::format("terminal type '{}' cannot move the cursor", term);
        return nullptr;
    }
    cbreak();  // keys at once; Ctrl-C still raises SIGINT (our handler stops the loop)
    noecho();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);  // Esc cancels the prompt without a visible wait
    curs_set(0);
    std::unique_ptr<Tui> t(new Tui(opts, controls, exports));
    t->screen_ = screen;

    // Notes written to stderr meanwhile would scribble over the screen: catch
    // them in a pipe, show the last one on the status line, write all out at the end.
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
        t->err_saved_ = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (t->err_saved_ >= 0 && dup2(fds[1], STDERR_FILENO) >= 0) {
            t->err_read_ = fds[0];
        } else {
            close(fds[0]);
            if (t->err_saved_ >= 0) close(t->err_saved_);
            t->err_saved_ = -1;
        }
        close(fds[1]);
    }
    t->draw();
    return t;
}

Tui::~Tui() {
    endwin();
    delscreen(static_cast<SCREEN*>(screen_));
    restore_stderr();
}

void Tui::restore_stderr() {
    if (err_read_ < 0) return;
    read_stderr();
    dup2(err_saved_, STDERR_FILENO);
    close(err_saved_);
    close(err_read_);
    err_read_ = err_saved_ = -1;
    if (!err_partial_.empty()) err_log_ += err_partial_ + '\n';
    // The notes the status line showed one at a time, now where they belong.
    if (!err_log_.empty() && write(STDERR_FILENO, err_log_.data(), err_log_.size()) < 0) {
    }
}

void Tui::read_stderr() {
    if (err_read_ < 0) return;
    char buf[4096];
    bool got = false;
    for (ssize_t n; (n = read(err_read_, buf, sizeof buf)) > 0;) {
        err_partial_.append(buf, static_cast<std::size_t>(n));
        got = true;
    }
    if (!got) return;
    for (std::size_t nl; (nl = err_partial_.find('\n')) != std::string::npos;) {
        std::string line = err_partial_.substr(0, nl);
        err_partial_.erase(0, nl + 1);
        if (err_log_.size() + line.size() < kErrLogMax) err_log_ += line + '\n';
        if (!line.empty()) status_ = std::move(line);
    }
    draw();
}

void Tui::show(Report report) {
    // Moved, never copied: a table report holds every row (200 MB at 1M flows).
    if (paused_ && have_report_) {
        latest_ = std::move(report);
        have_latest_ = true;
    } else {
        shown_ = std::move(report);
        have_report_ = true;
    }
    read_stderr();
    draw();
}

bool Tui::handle_keys() {
    read_stderr();
    for (int ch; !quit_ && (ch = getch()) != ERR;) {
        if (prompt_)
            prompt_key(ch);
        else
            key(ch);
    }
    return !quit_;
}

void Tui::key(int ch) {
    if (ch == KEY_RESIZE) {  // ncurses has already resized its screen to the new size
        draw();
        return;
    }
    if (ch == 'q' || ch == 'Q') {
        quit_ = true;
        return;
    }
    if (help_) {  // any other key closes the help
        help_ = false;
        draw();
        return;
    }
    switch (ch) {
        case 's':
        case 'S':
            sort_ = next_sort(sort_);
            controls_.set_sort(sort_);  // the next report is built in it
            sort_rows(shown_.rows, sort_);
            if (have_latest_) sort_rows(latest_.rows, sort_);
            break;
        case 'p':
        case 'P':
        case ' ':
            paused_ = !paused_;
            if (!paused_ && have_latest_) {  // the newest report, not the one paused on
                shown_ = std::move(latest_);
                have_latest_ = false;
            }
            break;
        case '/':
            prompt_ = true;
            status_.clear();  // edit_: the filter in force, or the text just rejected, to fix
            curs_set(1);
            break;
        case '?':
        case 'h':
            help_ = true;
            break;
        default:
            return;
    }
    draw();
}

void Tui::prompt_key(int ch) {
    switch (ch) {
        case '\n':
        case '\r':
        case KEY_ENTER: {
            prompt_ = false;
            curs_set(0);
            const std::string err = controls_.set_filter(edit_);
            if (err.empty()) {
                filter_ = edit_;
                // The rows on screen it leaves out go at once (the datapath
                // stopped counting them; the next report has them no more).
                const auto left_out = [this](const FlowRow& r) { return !controls_.keeps(r); };
                std::erase_if(shown_.rows, left_out);
                if (have_latest_) std::erase_if(latest_.rows, left_out);
            } else {
                status_ = err;
            }
            break;
        }
        case kEsc:
            prompt_ = false;
            curs_set(0);
            edit_ = filter_;
            break;
        case KEY_BACKSPACE:
        case 127:
        case 8:
            if (!edit_.empty()) edit_.pop_back();
            break;
        case 21:  // Ctrl-U, as in a shell
            edit_.clear();
            break;
        default:
            if (ch >= 32 && ch < 127)
                edit_ += static_cast<char>(ch);
            else if (ch != KEY_RESIZE)
                return;
    }
    draw();
}

void Tui::draw() {
    erase();  // not clear(): only what changed goes to the terminal, no flicker
    std::string title = fmt::format(" tcptrack  sort: {}  filter: {}", sort_name(sort_),
                                    filter_.empty() ? "(none)" : filter_);
    if (paused_) title += "  [PAUSED]";
    const std::string keys = "s sort  p pause  / filter  ? help  q quit ";
    if (static_cast<int>(title.size() + keys.size()) + 2 <= COLS)
        title += std::string(COLS - title.size() - keys.size(), ' ') + keys;
    bar(0, title, A_REVERSE);

    // Title and status lines, the report's two header lines, "... more" and
    // --summary's line.
    const int rows = std::max(LINES - (summary_ ? 6 : 5), 0);
    if (have_report_) {
        std::string text = render_table(shown_, static_cast<std::size_t>(rows));
        if (summary_) text += render_table_summary(shown_, shown_.stats.connections, &exports_);
        int y = 1;
        for (std::size_t pos = 0; pos < text.size() && y < LINES - 1; ++y) {
            const std::size_t nl = std::min(text.find('\n', pos), text.size());
            const std::string_view line(text.data() + pos, nl - pos);
            if (y == 1) {
                attron(A_BOLD);
                put(y, 0, line);
                attroff(A_BOLD);
            } else if (y == 2 && !shown_.rows.empty()) {
                bar(y, line, A_BOLD | A_UNDERLINE);
            } else {
                put(y, 0, line);
            }
            pos = nl + 1;
        }
    } else {
        put(2, 2, "waiting for the first report...");
    }

    if (prompt_) {
        const std::string p = "filter> " + edit_;
        // Keep the end of a long expression (where the cursor is) in view.
        const std::size_t w = static_cast<std::size_t>(std::max(COLS - 1, 1));
        put(LINES - 1, 0, p.size() > w ? p.substr(p.size() - w) : p);
    } else if (!status_.empty()) {
        attron(A_BOLD);
        put(LINES - 1, 0, status_);
        attroff(A_BOLD);
    }
    if (help_) draw_help();
    if (prompt_) move(LINES - 1, std::min<int>(COLS - 1, 8 + static_cast<int>(edit_.size())));
    refresh();
}

void Tui::draw_help() {
    const std::vector<std::string> lines = {
        "tcptrack keys",
        "",
        fmt::format("s      sort by rate, bytes, packets, age, rtt, retrans (now {})",
                    sort_name(sort_)),
        "p      pause / resume the display (counting goes on)",
        "/      edit the filter: Enter applies, Esc cancels",
        "       e.g.  port 443 and not net 10.0.0.0/8",
        "?      this help (any key closes it)",
        "q      quit",
    };
    int w = 0;
    for (const auto& l : lines) w = std::max(w, static_cast<int>(l.size()));
    const int h = static_cast<int>(lines.size()) + 2, bw = std::min(w + 4, COLS);
    const int y0 = std::max((LINES - h) / 2, 0), x0 = std::max((COLS - bw) / 2, 0);
    const int bh = std::min(h, LINES - y0);  // cut at the bottom of a small window
    WINDOW* box_win = derwin(stdscr, bh, bw, y0, x0);
    if (!box_win) return;  // too small to show it
    werase(box_win);
    box(box_win, 0, 0);
    for (int i = 0; i < static_cast<int>(lines.size()) && i + 1 < bh - 1; ++i)
        mvwaddnstr(box_win, i + 1, 2, lines[i].c_str(), std::max(bw - 4, 0));
    delwin(box_win);
}

}  // namespace tcptrack
