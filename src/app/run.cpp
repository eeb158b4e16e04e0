// SPDX-License-Identifier: MIT
// tcptrack from parsed options to an exit code: the namespace, the checks
// before loading, --check and --cleanup, then the session (app/session.hpp).
#include "app/run.hpp"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "app/check.hpp"
#include "app/outputs.hpp"
#include "app/session.hpp"
#include "attach/interface_select.hpp"
#include "attach/link_netlink.hpp"
#include "attach/stale_filters.hpp"
#include "datapath/features.hpp"
#include "datapath/skeleton.hpp"
#include "enrich/resolver.hpp"
#include "sys/error.hpp"
#include "sys/interfaces.hpp"
#include "sys/netns.hpp"
#include "sys/privileges.hpp"

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

// The interfaces named with -i (each must exist now); patterns and
// --all-interfaces are followed by the session (attach/interface_watch), and
// for --cleanup (`matching`) the interfaces they match now are added.
std::vector<Interface> resolve_interfaces(const Options& opts, bool matching) {
    const InterfaceSelection sel(opts.ifaces, opts.all_interfaces);
    std::vector<std::string> names = sel.names();
    if (matching && sel.dynamic())
        for (const auto& l : dump_links())
            if (sel.matches(l.name, l.type) &&
                std::find(names.begin(), names.end(), l.name) == names.end())
                names.push_back(l.name);
    if (names.empty() && !sel.dynamic()) {
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

int cleanup(const std::vector<Interface>& ifaces) {
    for (const auto& i : ifaces) {
        auto notes = remove_stale_tc_filters(i.name, i.ifindex);
        if (notes.empty()) std::printf("no stale tcptrack filters on %s\n", i.name.c_str());
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
        ExportTally exports;  // outlives the exporters and the session
        // /healthz: unhealthy when reports stop coming for 3 intervals (10 s at least).
        Health health(std::max<std::uint64_t>(static_cast<std::uint64_t>(opts.interval_s * 3e9),
                                              10'000'000'000ull),
                      monotonic_ns());
        std::vector<std::unique_ptr<Output>> exporters;
        if (!opts.check && !opts.cleanup) exporters = make_exporters(opts, exports, health);
        if (!opts.netns.empty()) enter_netns(opts.netns);
        if (opts.check) return run_check(opts);
        std::vector<Interface> ifaces = resolve_interfaces(opts, opts.cleanup);
        check_privileges();
        if (opts.cleanup) return cleanup(ifaces);
        const Features& features = probe_features();
        if (const std::string why = features.blocker(); !why.empty()) throw Error(why);
        if (opts.verbose)
            for (const auto& note : fallback_notes(features))
                std::fprintf(stderr, "tcptrack: %s\n", note.c_str());
        Session session(opts, ifaces, features, std::move(exporters), exports, health,
                        resolver.get());
        return session.loop(g_stop);
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
