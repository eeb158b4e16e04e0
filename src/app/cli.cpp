// SPDX-License-Identifier: MIT
// Command-line parsing. CLI11 splits the arguments; values are taken as text
// and validated here so every usage error is one predictable line.
#include "app/cli.hpp"

#include "tcptrack/store.h"
#include "attach/interface_select.hpp"
#include "datapath/filter.hpp"
#include "output/prometheus.hpp"
#include "sys/host_port.hpp"

#include <CLI/CLI.hpp>

#include <unistd.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace tcptrack {
namespace {

// Thrown by the validators below; becomes the one-line usage message.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void bad_value(const std::string& opt, const std::string& value, const char* rule) {
    throw UsageError(opt + ": '" + value + "' " + rule);
}

// Plain decimal (optionally with fraction/exponent): no sign, no whitespace,
// no hex, no nan/inf, and nothing trailing ("2x").
double parse_seconds(const std::string& opt, const std::string& text, double max) {
    static constexpr const char* rule = "must be a number > 0";
    const bool plain = !text.empty() &&
                       (std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.') &&
                       text.find_first_of("xXpP") == std::string::npos;
    if (!plain) bad_value(opt, text, rule);
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    // ERANGE covers both overflow ("1e400") and underflow ("1e-400").
    if (*end != '\0' || errno == ERANGE || !std::isfinite(v) || v <= 0) bad_value(opt, text, rule);
    if (v > max)
        bad_value(opt, text, ("must be at most " + std::to_string(static_cast<long>(max))).c_str());
    return v;
}

// Decimal digits only ("1.5", "-3", "+2", "1e3" rejected), within [min, max].
std::uint64_t parse_integer(const std::string& opt, const std::string& text, std::uint64_t min,
                            std::uint64_t max, const char* rule) {
    std::uint64_t v = 0;
    const char* first = text.data();
    const char* last = first + text.size();
    const bool digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) bad_value(opt, text, rule);
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (ec != std::errc() || ptr != last || v < min || v > max) bad_value(opt, text, rule);
    return v;
}

template <typename E, std::size_t N>
E parse_enum(const std::string& opt, const std::string& text,
             const std::pair<const char*, E> (&choices)[N]) {
    std::string names;
    for (const auto& [name, value] : choices) {
        if (text == name) return value;
        names += names.empty() ? name : std::string(", ") + name;
    }
    bad_value(opt, text, ("must be one of " + names).c_str());
}

// Linux interface names: 1..15 bytes (IFNAMSIZ - 1), no '/', no whitespace.
// A pattern (*, ? or [: fnmatch(3)) may be longer ('[a-z][a-z]*' matches short names).
void check_iface(const std::string& name) {
    const bool pattern = is_interface_pattern(name);
    const bool ok = !name.empty() && name.size() < (pattern ? 64 : 16) &&
                    name.find_first_of("/ \t\n\r\v\f") == std::string::npos;
    if (!ok)
        bad_value("--interface", name,
                  pattern ? "is not a valid interface pattern" : "is not a valid interface name");
}

// HOST:PORT ("[v6]:PORT" for IPv6), optionally behind udp:// or tcp://.
void check_endpoint(const std::string& opt, const std::string& text, bool url) {
    std::string rest = text;
    if (url) {
        if (rest.rfind("udp://", 0) != 0 && rest.rfind("tcp://", 0) != 0)
            bad_value(opt, text, "must be udp://HOST:PORT or tcp://HOST:PORT");
        rest = rest.substr(6);
    }
    const auto hp = parse_host_port(rest);
    if (!hp || hp->port == 0)
        bad_value(opt, text,
                  url ? "must be udp://HOST:PORT or tcp://HOST:PORT (port 1-65535)"
                      : "must be ADDR:PORT (port 1-65535; [ADDR]:PORT for IPv6)");
}

// --node-name's default: $NODE_NAME (a DaemonSet sets it from spec.nodeName),
// else the host name.
std::string default_node_name() {
    if (const char* env = std::getenv("NODE_NAME"); env && *env) return env;
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) return "";
    return host;
}

// A label value and an IPFIX string: printable, at most a DNS name's length.
void check_node_name(const std::string& name) {
    if (name.size() > 253)
        throw UsageError("--node-name: at most 253 characters (a DNS name), got " +
                         std::to_string(name.size()));
    for (const unsigned char c : name)
        if (c < 0x20 || c == 0x7f)
            throw UsageError("--node-name: control characters are not allowed");
}

// --max-flows: a round limit under the store's (TT_MAX_SLOTS, tcptrack/store.h).
constexpr std::uint64_t kMaxFlows = 16000000;
static_assert(kMaxFlows <= TT_MAX_SLOTS);
constexpr double kMaxSeconds = 86400;  // keeps ns conversions far from overflow

// --test-hash-key: 32 hex digits, the 16 key bytes in order; only where the
// environment says this is a test (a fixed key would let anyone craft collisions).
std::array<std::uint8_t, 16> parse_hash_key(const std::string& text) {
    const char* mode = std::getenv("TCPTRACK_TEST_MODE");
    if (!mode || std::string(mode) != "1")
        throw UsageError("--test-hash-key is for tests only: set TCPTRACK_TEST_MODE=1");
    const bool hex = text.size() == 32 && std::all_of(text.begin(), text.end(), [](char c) {
                         return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                     });
    if (!hex) bad_value("--test-hash-key", text, "must be 32 hex digits (16 bytes)");
    std::array<std::uint8_t, 16> key{};
    for (std::size_t i = 0; i < key.size(); ++i)
        key[i] = static_cast<std::uint8_t>(std::stoul(text.substr(2 * i, 2), nullptr, 16));
    return key;
}

ParseResult usage(const std::string& message) {
    ParseResult r;
    r.code = ExitCode::Usage;
    r.err = "tcptrack: " + message;
    // One line, whatever CLI11 said.
    std::replace(r.err.begin(), r.err.end(), '\n', ' ');
    while (!r.err.empty() && r.err.back() == ' ') r.err.pop_back();
    return r;
}

}  // namespace

const char* version_string() { return TCPTRACK_VERSION; }

ParseResult parse_options(int argc, const char* const* argv) {
    CLI::App app{"Track TCP connections per interface with eBPF (TCX or tc).", "tcptrack"};
    // Leftovers are reported by us, so the message names the offending argument.
    app.allow_extras();
    app.set_help_flag("-h,--help", "Print this help and exit");

    std::vector<std::string> ifaces;
    std::string interval, count, format, attach, max_flows, idle_timeout, sort, top, netns;
    std::string ipfix, ipfix_active, prometheus, unassured_timeout, test_hash_key, max_ifaces;
    std::string node_name, rtt_rate_limit;

    app.add_option("-i,--interface", ifaces,
                   "Interface to watch, or a shell pattern ('veth*', quoted) for every "
                   "matching one now and as they appear; a pattern matching none waits "
                   "(repeatable; default: the default-route interface)")
        ->type_name("IFACE")
        ->allow_extra_args(false);
    // A repeated scalar option keeps its last value, like most Unix tools.
    const auto scalar = [&](const char* name, std::string& into, const char* help,
                            const char* type) {
        return app.add_option(name, into, help)
            ->type_name(type)
            ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    };
    auto* o_interval =
        scalar("--interval", interval, "Seconds between reports (default 2)", "SECONDS");
    auto* o_count = scalar("--count", count, "Print N reports, then exit", "N");
    auto* o_format =
        scalar("--format", format,
               "Output format: table, json, csv, none (exporters only; default table)", "FORMAT");
    auto* o_attach =
        scalar("--attach", attach, "Attach mode: auto, tcx, tc (default auto)", "MODE");
    auto* o_max =
        scalar("--max-flows", max_flows, "Flow table size (default 65536, max 16000000)", "N");
    auto* o_idle = scalar("--idle-timeout", idle_timeout,
                          "Forget flows idle this long (default 60)", "SECONDS");
    auto* o_unassured =
        scalar("--unassured-timeout", unassured_timeout,
               "Forget half-open and one-way flows idle this long (default 30, at most "
               "--idle-timeout)",
               "SECONDS");
    auto* o_rtt_limit =
        scalar("--rtt-rate-limit", rtt_rate_limit,
               "Start a live-RTT probe on each side of a connection at most every MS "
               "milliseconds (default 100; 0: every round trip)",
               "MS");
    auto* o_max_ifaces =
        scalar("--max-interfaces", max_ifaces,
               "With patterns or --all-interfaces: watch at most N interfaces at once "
               "(default 1024)",
               "N");
    auto* o_sort = scalar(
        "--sort", sort,
        "Row order, largest first: rate, bytes, packets, age, rtt, retrans (default rate)", "KEY");
    auto* o_top =
        scalar("--top", top, "At most N rows per report (the header still counts all)", "N");
    auto* o_netns = scalar("--netns", netns,
                           "Watch interfaces of this network namespace: a name from "
                           "'ip netns', a path, or a pid (like ss -N)",
                           "NAME|PATH|PID");
    auto* o_ipfix = scalar("--ipfix", ipfix,
                           "Export flow records (IPFIX, RFC 7011) to a collector: "
                           "udp://HOST:PORT or tcp://HOST:PORT",
                           "URL");
    auto* o_ipfix_active = scalar("--ipfix-active-timeout", ipfix_active,
                                  "IPFIX: a record for each long-lived connection this often "
                                  "(default 60)",
                                  "SECONDS");
    auto* o_prometheus =
        scalar("--prometheus", prometheus, "Serve Prometheus metrics on http://ADDR:PORT/metrics",
               "ADDR:PORT");
    auto* o_prom_pods = app.add_flag("--prometheus-pods")
                            ->description(
                                "Prometheus: also per-pod byte and connection counters (label "
                                "pod_uid) of the pods on this node, at most " +
                                std::to_string(PodSeriesLimits::kMaxPods) +
                                " pods (needs --prometheus, not --no-process)");
    auto* o_node = scalar("--node-name", node_name,
                          "Name this node on every IPFIX record and Prometheus series "
                          "(default: $NODE_NAME, else the host name)",
                          "NAME");
    // Tests only (never in --help): a fixed index hash key, so crafted collisions are reproducible.
    auto* o_test_key = scalar("--test-hash-key", test_hash_key, "", "HEX")->group("");
    const auto flag = [&](const char* name, const char* help) {
        return app.add_flag(name)->description(help);
    };
    auto* o_once = flag("--once", "Print one report, then exit (same as --count 1)");
    auto* o_summary = flag("--summary",
                           "JSON: add a summary record per report; table: a summary line "
                           "under each report (not with --format csv)");
    auto* o_all_ifaces =
        flag("--all-interfaces",
             "Watch every Ethernet or L3 (tun, wireguard) interface but lo, now and as they "
             "appear");
    auto* o_no_process = flag("--no-process", "Do not look up the process owning each connection");
    auto* o_no_health =
        flag("--no-health",
             "Do not track connection health (retransmissions, windows, live RTT): saves 128 "
             "bytes of kernel memory per --max-flows and the per-segment work");
    auto* o_resolve = flag("-r,--resolve", "Show host names (reverse DNS, asynchronous, cached)");
    auto* o_closed = flag("--closed", "Log connections as they close instead of periodic reports");
    auto* o_changed = flag("--changed",
                           "Rows only for connections that are new, moved or closed since the "
                           "last report (idle ones are left out)");
    auto* o_cleanup = flag("--cleanup", "Remove stale tc filters left by tcptrack, then exit");
    auto* o_check = flag("--check",
                         "Report the kernel's features, the attach mode tcptrack would use, "
                         "and whether it can run here (exit 0) or not (exit 1)");
    auto* o_verbose = flag("-v,--verbose", "Verbose (libbpf debug) output");
    auto* o_version = flag("--version", "Print the version and exit");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        ParseResult r;
        r.out = app.help();
        return r;
    } catch (const CLI::ArgumentMismatch& e) {
        // e.g. "--interval: 1 required SECONDS missing": the option name leads.
        std::string what = e.what();
        const auto colon = what.find(':');
        if (colon != std::string::npos && what.rfind("-", 0) == 0)
            return usage(what.substr(0, colon) + ": missing value (see --help)");
        return usage(what);
    } catch (const CLI::ParseError& e) {
        return usage(std::string(e.what()) + " (see --help)");
    }

    if (o_version->count() > 0) {
        ParseResult r;
        r.out = std::string("tcptrack ") + version_string() + "\n";
        return r;
    }

    // CLI11 accepts "--flag=value"; a flag given a value is a mistake here.
    for (const CLI::Option* f :
         {o_once, o_summary, o_closed, o_changed, o_cleanup, o_check, o_verbose, o_no_process,
          o_no_health, o_resolve, o_all_ifaces, o_prom_pods}) {
        for (const auto& value : f->results())
            if (value != "true")
                return usage(f->get_name() + ": takes no value (got '" + value + "')");
    }

    // What is left is the filter expression ("port 443 and not net 10.0.0.0/8"),
    // as tcpdump and iftop -f take it; "--" only ends the options.
    Options o;
    bool after_dashes = false;
    for (const auto& a : app.remaining()) {
        if (a == "--" && !after_dashes) {
            after_dashes = true;
            continue;
        }
        if (!after_dashes && a.size() > 1 && a[0] == '-')
            return usage("unknown option '" + a + "' (see --help)");
        o.filter += (o.filter.empty() ? "" : " ") + a;
    }
    try {
        if (!o.filter.empty())
            compile_filter(o.filter);  // a bad expression is a usage error naming its token
        if (o_netns->count() > 0) {
            if (netns.empty())
                bad_value("--netns", netns, "must name a namespace, a path or a pid");
            o.netns = netns;
        }
        for (const auto& name : ifaces) {
            check_iface(name);
            // The same interface twice would mean attaching twice.
            if (std::find(o.ifaces.begin(), o.ifaces.end(), name) == o.ifaces.end())
                o.ifaces.push_back(name);
        }
        if (o_all_ifaces->count() > 0 && !o.ifaces.empty())
            throw UsageError("--all-interfaces and -i cannot be used together");
        o.all_interfaces = o_all_ifaces->count() > 0;
        if (o_max_ifaces->count() > 0)
            o.max_interfaces = static_cast<std::uint32_t>(parse_integer(
                "--max-interfaces", max_ifaces, 1, 65536, "must be an integer from 1 to 65536"));
        if (o_once->count() > 0 && o_count->count() > 0)
            throw UsageError("--once and --count cannot be used together");
        if (o_interval->count() > 0)
            o.interval_s = parse_seconds("--interval", interval, kMaxSeconds);
        if (o_idle->count() > 0)
            o.idle_timeout_s = parse_seconds("--idle-timeout", idle_timeout, kMaxSeconds);
        // Half-open flows never outlive open ones: a larger value given is a
        // mistake; the default only follows a shorter --idle-timeout down.
        if (o_unassured->count() > 0) {
            o.unassured_timeout_s =
                parse_seconds("--unassured-timeout", unassured_timeout, kMaxSeconds);
            if (o.unassured_timeout_s > o.idle_timeout_s)
                bad_value("--unassured-timeout", unassured_timeout,
                          ("must be at most --idle-timeout (" +
                           (o_idle->count() > 0 ? idle_timeout : std::string("60")) + ")")
                              .c_str());
        } else {
            o.unassured_timeout_s = std::min(o.unassured_timeout_s, o.idle_timeout_s);
        }
        if (o_rtt_limit->count() > 0)
            o.rtt_rate_limit_us = static_cast<std::uint32_t>(
                parse_integer("--rtt-rate-limit", rtt_rate_limit, 0, 60000,
                              "must be an integer from 0 to 60000 (milliseconds)") *
                1000);
        if (o_test_key->count() > 0) o.test_hash_key = parse_hash_key(test_hash_key);
        if (o_count->count() > 0)
            o.count = parse_integer("--count", count, 1, UINT64_MAX, "must be an integer >= 1");
        if (o_once->count() > 0) o.count = 1;
        if (o_max->count() > 0)
            o.max_flows = static_cast<std::uint32_t>(parse_integer(
                "--max-flows", max_flows, 1, kMaxFlows, "must be an integer from 1 to 16000000"));
        if (o_format->count() > 0) {
            static constexpr std::pair<const char*, Format> formats[] = {{"table", Format::Table},
                                                                         {"json", Format::Json},
                                                                         {"csv", Format::Csv},
                                                                         {"none", Format::None}};
            o.format = parse_enum("--format", format, formats);
        }
        if (o_sort->count() > 0) {
            static constexpr std::pair<const char*, SortKey> keys[] = {
                {"rate", SortKey::Rate}, {"bytes", SortKey::Bytes}, {"packets", SortKey::Packets},
                {"age", SortKey::Age},   {"rtt", SortKey::Rtt},     {"retrans", SortKey::Retrans}};
            o.sort = parse_enum("--sort", sort, keys);
        }
        if (o_top->count() > 0)
            o.top = parse_integer("--top", top, 1, UINT64_MAX, "must be an integer >= 1");
        if (o_attach->count() > 0) {
            static constexpr std::pair<const char*, AttachMode> modes[] = {
                {"auto", AttachMode::Auto}, {"tcx", AttachMode::Tcx}, {"tc", AttachMode::Tc}};
            o.attach = parse_enum("--attach", attach, modes);
        }
        if (o_ipfix->count() > 0) {
            check_endpoint("--ipfix", ipfix, true);
            o.ipfix = ipfix;
        }
        if (o_ipfix_active->count() > 0)
            o.ipfix_active_timeout_s =
                parse_seconds("--ipfix-active-timeout", ipfix_active, kMaxSeconds);
        if (o_prometheus->count() > 0) {
            check_endpoint("--prometheus", prometheus, false);
            o.prometheus = prometheus;
        }
        // Per-pod series come from the owners' cgroups: nothing to serve them
        // on without --prometheus, nothing to label them with without owners.
        if (o_prom_pods->count() > 0) {
            if (o.prometheus.empty())
                throw UsageError("--prometheus-pods: needs --prometheus ADDR:PORT");
            if (o_no_process->count() > 0)
                throw UsageError(
                    "--prometheus-pods: needs process attribution (cannot be used with "
                    "--no-process)");
            o.prometheus_pods = true;
        }
        o.node_name = o_node->count() > 0 ? node_name : default_node_name();
        check_node_name(o.node_name);
        if (o.format == Format::None && o.ipfix.empty() && o.prometheus.empty())
            throw UsageError(
                "--format none: nothing would be output (add --ipfix or --prometheus)");
        if (o_summary->count() > 0 && o.format == Format::Csv)
            throw UsageError("--summary: not available with --format csv (use json or table)");
    } catch (const UsageError& e) {
        return usage(e.what());
    } catch (const FilterError& e) {
        return usage(std::string("filter: ") + e.what());
    }
    o.process = o_no_process->count() == 0;
    o.health = o_no_health->count() == 0;
    o.resolve = o_resolve->count() > 0;
    o.summary = o_summary->count() > 0;
    o.closed_only = o_closed->count() > 0;
    o.changed_only = o_changed->count() > 0;
    o.cleanup = o_cleanup->count() > 0;
    o.check = o_check->count() > 0;
    o.verbose = o_verbose->count() > 0;

    ParseResult r;
    r.options = std::move(o);
    return r;
}

}  // namespace tcptrack
