// SPDX-License-Identifier: MIT
// The run loop: attach, then every interval collect, render and print.
#include "tcptrack/app.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tcptrack/flow.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack.skel.h"
#include "tcptrack/attach.hpp"
#include "tcptrack/check.hpp"
#include "tcptrack/collector.hpp"
#include "tcptrack/error.hpp"
#include "tcptrack/features.hpp"
#include "tcptrack/filter.hpp"
#include "tcptrack/interfaces.hpp"
#include "tcptrack/netns.hpp"
#include "tcptrack/output.hpp"
#include "tcptrack/pressure.hpp"
#include "tcptrack/privileges.hpp"
#include "tcptrack/process.hpp"
#include "tcptrack/render.hpp"
#include "tcptrack/report_builder.hpp"
#include "tcptrack/resolver.hpp"
#include "tcptrack/skeleton.hpp"

namespace tcptrack {

namespace {

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

// SA_RESTART: a stop landing while a report is blocked on a full stdout pipe
// must not cut that report (the write resumes, then the final report follows).
// The waits that must end early are poll() and epoll_wait(), which a handled
// signal interrupts even so (signal(7)). A second Ctrl-C during cleanup only
// sets the flag again, so detaching always completes.
void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // a closed pipe shows up as EPIPE on write
}

void check_privileges() {
    const Privileges p = current_privileges();
    if (!p.enough()) throw Error(p.refusal());
}

std::vector<Interface> resolve_interfaces(const Options& opts) {
    std::vector<std::string> names = opts.ifaces;
    if (names.empty()) {
        auto def = default_route_interface();
        if (!def) throw Error("no default route: name an interface with -i IFACE");
        names.push_back(*def);
    }
    std::vector<Interface> out;
    for (const auto& n : names) {
        Interface i = lookup_interface(n);
        const bool dup = std::any_of(out.begin(), out.end(),
                                     [&](const Interface& o) { return o.ifindex == i.ifindex; });
        if (!dup) out.push_back(i);
    }
    return out;
}

LoadConfig load_config(const Options& opts, const Features& features) {
    LoadConfig c = preferred_load_config(features, opts.max_flows, use_tcx(features, opts.attach));
    c.hash_key = opts.test_hash_key;  // set only in test mode (options.cpp); else random
    return c;
}

struct Watched {
    Interface iface;
    std::unique_ptr<Attachment> attachment;
};

class Session {
public:
    Session(const Options& opts, std::vector<Interface> ifaces, const Features& features,
            std::vector<std::unique_ptr<Output>> exporters)
        : opts_(opts),
          outputs_(std::move(exporters)),
          skel_(load_config(opts, features)),
          collector_(skel_),
          filter_(compile_filter(opts.filter)) {
        // Before attaching: no segment outside the filter is ever counted.
        skel_.set_filter(filter_);
        start_process_lookup();
        const bool tcx = skel_.config().tcx;
        for (auto& i : ifaces) {
            std::vector<std::string> notes;
            auto att = attach_interface(i.name, i.ifindex, skel_.programs(i.has_l2), tcx,
                                        opts.attach == AttachMode::Auto, notes);
            for (const auto& n : notes) std::fprintf(stderr, "tcptrack: %s\n", n.c_str());
            names_[i.ifindex] = i.name;
            watched_.push_back(Watched{i, std::move(att)});
        }
    }

    void set_resolver(Resolver* r) { resolver_ = r; }

    int loop() {
        if (auto out = make_terminal_output(
                opts_, [this](const std::string& expr) { return apply_filter(expr); }))
            outputs_.insert(outputs_.begin(), std::move(out));
        // The full-screen view reads keys between short waits, so they act within 50 ms.
        const bool interactive = std::any_of(outputs_.begin(), outputs_.end(),
                                             [](const auto& o) { return o->interactive(); });
        const int wait_ms = interactive ? 50 : 200;
        const std::uint64_t interval_ns = static_cast<std::uint64_t>(opts_.interval_s * 1e9);
        std::uint64_t start = monotonic_ns(), last = start;
        std::uint64_t reports = 0;
        bool quit = false;
        for (;;) {
            const std::uint64_t deadline = start + (reports + 1) * interval_ns;
            for (std::uint64_t now = monotonic_ns(); now < deadline && !g_stop && !quit;
                 now = monotonic_ns()) {
                const std::uint64_t left_ms = (deadline - now + 999999) / 1000000;
                collector_.poll(static_cast<int>(std::min<std::uint64_t>(left_ms, wait_ms)));
                for (auto& o : outputs_) quit = quit || !o->interact();  // 'q'
            }
            // A stop ends the interval early with a final report of it, so a
            // connection that closed since the last report is still printed.
            const bool stopping = g_stop || quit;
            if (!stopping) check_interfaces();
            const std::uint64_t now = monotonic_ns();
            for (const auto& o : outputs_)
                if (auto key = o->sort()) sort_ = *key;
            const Report report = build_report(now, now - last);
            last = now;
            ++reports;
            const ReportFrame frame = frame_of(report, now);
            if (stopping || (opts_.count && reports >= *opts_.count)) {
                for (auto& o : outputs_) o->finish(&frame);  // every output's last report
                return 0;
            }
            bool stop = false;
            for (auto& o : outputs_) stop = !o->write(frame) || stop;
            if (stop) return 0;  // stdout closed (| head): a quiet stop
        }
    }

    // Replaces the filter while running (the TUI's '/'): "" on success, else
    // one line saying what is wrong with the expression (the old one stays).
    std::string apply_filter(const std::string& expr) {
        try {
            filter_ = compile_filter(expr);
        } catch (const FilterError& e) {
            return std::string("filter: ") + e.what();
        }
        skel_.set_filter(filter_);
        // Connections left out stop counting at once: end them now rather
        // than show them frozen until the idle timeout. Before the first
        // report there are no samples yet: the next collect() does it.
        if (last_samples_)
            drop_filtered(*last_samples_);
        else
            refilter_ = true;
        return "";
    }

private:
    // Ends the live connections the filter in force leaves out.
    void drop_filtered(const std::vector<FlowSample>& samples) {
        std::vector<SlotRef> out;
        for (std::size_t i = 0; i < collector_.live() && i < samples.size(); ++i)
            if (!samples[i].finished && !filter_matches(filter_, samples[i].key))
                out.push_back(samples[i].ref);
        collector_.forget(out);
    }

    // Process attribution (sock_diag + /proc) in this process's network
    // namespace; without sock_diag the rows just have no owner.
    void start_process_lookup() {
        if (!opts_.process) return;
        try {
            auto system = std::make_shared<SystemOwners>();
            owners_ = std::make_unique<ProcessCache>(
                [system](std::vector<OwnerQuery>& q) { (*system)(q); });
            builder_.set_owner_fill(
                [this](const SlotRef& ref, FlowRow& row) { owners_->fill(ref, row); });
        } catch (const Error& e) {
            std::fprintf(stderr, "tcptrack: %s\n", e.what());
        }
    }

    // Each interval: drops deleted interfaces, and puts back what someone else
    // detached from the others (a tc filter, clsact, a TCX link), saying so:
    // a report must never show zeros as if no traffic had passed.
    void check_interfaces() {
        for (auto it = watched_.begin(); it != watched_.end();) {
            if (interface_present(it->iface) && still_attached(*it)) {
                ++it;
                continue;
            }
            const std::string name = it->iface.name;
            it = watched_.erase(it);  // detach what is left of it
            if (watched_.empty()) throw Error(fmt::format("interface '{}' disappeared", name));
            std::fprintf(stderr, "tcptrack: interface '%s' disappeared; still watching the others\n",
                         name.c_str());
        }
    }

    // False when the interface vanished meanwhile (re-attaching then fails).
    static bool still_attached(Watched& w) {
        try {
            if (auto note = w.attachment->ensure_attached())
                std::fprintf(stderr, "tcptrack: %s\n", note->c_str());
            return true;
        } catch (const Error&) {
            if (!interface_present(w.iface)) return false;
            throw;
        }
    }

    Report build_report(std::uint64_t now, std::uint64_t elapsed) {
        Report r;
        r.time = std::chrono::system_clock::now();
        for (const auto& w : watched_) r.ifaces.push_back(w.iface.name);
        if (!opts_.netns.empty()) r.netns = netns_label(netns_target(opts_.netns));
        if (resolver_)
            r.names = [res = resolver_](Family f, const Address& a) { return res->name(f, a); };

        const std::uint64_t idle_limit = static_cast<std::uint64_t>(opts_.idle_timeout_s * 1e9);
        const auto& samples = collector_.collect(
            now, idle_limit, static_cast<std::uint64_t>(opts_.unassured_timeout_s * 1e9));
        // Owners of the connections new in this report (and of those still pending).
        if (owners_)
            owners_->update(samples, collector_.changed(), collector_.idle(), collector_.live());
        last_samples_ = &samples;
        if (refilter_) {  // a filter set before the first report: shown this once
            refilter_ = false;
            drop_filtered(samples);
        }
        // --closed and --changed rows are all among the changed samples: the
        // report then costs what changed, not what is resident.
        const bool few = opts_.closed_only || opts_.changed_only;
        builder_.build(samples, now, elapsed, opts_.closed_only,
                       few ? &collector_.changed() : nullptr, sort_,
                       opts_.top ? static_cast<std::size_t>(*opts_.top) : 0);
        // Idle connections are shown one last time, then dropped from the store
        // (forget() leaves collect()'s samples alone: the rows still read them).
        evicted_ += collector_.forget(collector_.idle());

        r.stats = builder_.stats();
        r.stats.connections = builder_.total();
        for (const auto& o : outputs_)
            if (auto n = o->errors()) r.stats.export_errors.emplace_back(o->name(), *n);
        r.show_process = opts_.process;
        add_store_stats(r.stats, collector_, evicted_);
        // Connections refused for want of room: a line at most once a minute.
        if (auto line = pressure_.update(r.stats, now))
            std::fprintf(stderr, "tcptrack: %s\n", line->c_str());

        return r;
    }

    // What every output sees of this report (valid until the next collect()).
    ReportFrame frame_of(const Report& r, std::uint64_t now) const {
        return ReportFrame{r,
                           [this] { return builder_.rows(); },
                           *last_samples_,
                           collector_.live(),
                           collector_.changed(),
                           collector_.idle(),
                           now,
                           [](const void* names, std::uint32_t ifindex) -> const std::string& {
                               static const std::string unknown = "?";
                               const auto& m = *static_cast<const std::map<std::uint32_t, std::string>*>(names);
                               const auto it = m.find(ifindex);
                               return it == m.end() ? unknown : it->second;
                           },
                           &names_};
    }

    const Options& opts_;
    // Exporters first (made before --netns), the terminal output put in front
    // by loop(); destroyed last, after the datapath is detached.
    std::vector<std::unique_ptr<Output>> outputs_;
    Skeleton skel_;
    Collector collector_;
    std::vector<Watched> watched_;  // destroyed before the skeleton: detach, then unload
    std::map<std::uint32_t, std::string> names_;
    ReportBuilder builder_{names_};
    std::uint64_t evicted_ = 0;
    PressureNotice pressure_{monotonic_ns()};  // the store was loaded just before
    Resolver* resolver_ = nullptr;  // -r: names for the table (owned by run())
    std::unique_ptr<ProcessCache> owners_;  // null with --no-process
    SortKey sort_ = opts_.sort;  // --sort, then the view's 's' key
    tt_filter filter_;                                      // the program in force
    const std::vector<FlowSample>* last_samples_ = nullptr;  // the last collect()'s
    bool refilter_ = false;  // drop what the filter leaves out at the next collect()
};

int cleanup(const std::vector<Interface>& ifaces) {
    for (const auto& i : ifaces) {
        auto notes = remove_stale_tc_filters(i.name, i.ifindex);
        if (notes.empty())
            std::printf("no stale tcptrack filters on %s\n", i.name.c_str());
        for (const auto& n : notes) std::printf("%s\n", n.c_str());
    }
    return 0;
}

}  // namespace

int run(const Options& opts) {
    set_libbpf_verbose(opts.verbose);
    install_signal_handlers();
    try {
        // -r: the resolver's workers start before --netns is entered, so names
        // are looked up through our own namespace and its DNS (resolver.hpp).
        std::unique_ptr<Resolver> resolver;
        if (opts.resolve && shows_names(opts) && !opts.check && !opts.cleanup)
            resolver = std::make_unique<Resolver>();
        // Before anything touches interfaces, routes, netlink, BPF links, lock
        // files or sock_diag (--check and --cleanup included); threads started
        // from here on inherit the namespace.
        std::vector<std::unique_ptr<Output>> exporters;
        if (!opts.check && !opts.cleanup) exporters = make_exporters(opts);
        if (!opts.netns.empty()) enter_netns(opts.netns);
        if (opts.check) return run_check(opts);
        std::vector<Interface> ifaces = resolve_interfaces(opts);
        check_privileges();
        if (opts.cleanup) return cleanup(ifaces);
        const Features& features = probe_features();
        if (const std::string why = features.blocker(); !why.empty()) throw Error(why);
        if (opts.verbose)
            for (const auto& note : fallback_notes(features))
                std::fprintf(stderr, "tcptrack: %s\n", note.c_str());
        Session session(opts, std::move(ifaces), features, std::move(exporters));
        session.set_resolver(resolver.get());
        return session.loop();
    } catch (const std::invalid_argument& e) {  // a bad $TCPTRACK_DISABLE
        std::fprintf(stderr, "tcptrack: %s\n", e.what());
        return static_cast<int>(ExitCode::Usage);
    } catch (const Error& e) {
        std::fprintf(stderr, "tcptrack: %s\n", e.what());
        return static_cast<int>(ExitCode::Runtime);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tcptrack: unexpected error: %s\n", e.what());
        return static_cast<int>(ExitCode::Runtime);
    }
}

}  // namespace tcptrack
