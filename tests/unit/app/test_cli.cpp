// SPDX-License-Identifier: MIT
// parse_options: defaults, each validation rule, and the one-line errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "tcptrack/store.h"
#include "app/cli.hpp"

using namespace tcptrack;

namespace {

ParseResult parse(std::vector<const char*> args) {
    args.insert(args.begin(), "tcptrack");
    return parse_options(static_cast<int>(args.size()), args.data());
}

Options ok(std::vector<const char*> args) {
    auto r = parse(std::move(args));
    EXPECT_TRUE(r.options.has_value()) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    return r.options.value_or(Options{});
}

// A usage error: exit code 2, no options, one "tcptrack: " line naming `needle`.
void usage_error(std::vector<const char*> args, const std::string& needle) {
    auto r = parse(args);
    std::string joined;
    for (auto* a : args) joined += std::string(a) + " ";
    SCOPED_TRACE(joined);
    EXPECT_FALSE(r.options.has_value());
    EXPECT_EQ(r.code, ExitCode::Usage);
    EXPECT_EQ(static_cast<int>(r.code), 2);
    EXPECT_TRUE(r.out.empty());
    EXPECT_EQ(r.err.rfind("tcptrack: ", 0), 0u) << r.err;
    EXPECT_EQ(r.err.find('\n'), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("Usage:"), std::string::npos) << "no help dump: " << r.err;
}

}  // namespace

TEST(Options, SortAndTop) {
    EXPECT_EQ(ok({}).sort, tcptrack::SortKey::Rate);
    EXPECT_FALSE(ok({}).top.has_value());
    EXPECT_EQ(ok({"--sort", "rate"}).sort, tcptrack::SortKey::Rate);
    EXPECT_EQ(ok({"--sort", "bytes"}).sort, tcptrack::SortKey::Bytes);
    EXPECT_EQ(ok({"--sort", "packets"}).sort, tcptrack::SortKey::Packets);
    EXPECT_EQ(ok({"--sort", "age"}).sort, tcptrack::SortKey::Age);
    EXPECT_EQ(ok({"--sort=rtt"}).sort, tcptrack::SortKey::Rtt);
    EXPECT_EQ(ok({"--sort", "retrans"}).sort, tcptrack::SortKey::Retrans);
    EXPECT_EQ(ok({"--top", "10"}).top, 10u);
    EXPECT_EQ(ok({"--top", "5", "--top", "7"}).top, 7u);  // last one wins
    usage_error({"--sort", "speed"}, "--sort");
    usage_error({"--sort"}, "--sort");
    usage_error({"--top", "0"}, "--top");
    usage_error({"--top", "-3"}, "--top");
    usage_error({"--top", "ten"}, "--top");
}

TEST(Options, Defaults) {
    const Options o = ok({});
    EXPECT_TRUE(o.ifaces.empty());
    EXPECT_DOUBLE_EQ(o.interval_s, 2.0);
    EXPECT_FALSE(o.count.has_value());
    EXPECT_EQ(o.format, Format::Table);
    EXPECT_EQ(o.attach, AttachMode::Auto);
    EXPECT_EQ(o.max_flows, 65536u);
    EXPECT_DOUBLE_EQ(o.idle_timeout_s, 60.0);
    EXPECT_DOUBLE_EQ(o.unassured_timeout_s, 30.0);
    EXPECT_FALSE(o.test_hash_key.has_value());
    EXPECT_FALSE(o.summary);
    EXPECT_FALSE(o.closed_only);
    EXPECT_FALSE(o.changed_only);
    EXPECT_FALSE(o.cleanup);
    EXPECT_FALSE(o.verbose);
}

TEST(Options, AllSet) {
    const Options o = ok({"-i",       "eth0",      "--interface", "lo",        "--interval",
                          "0.5",      "--count",   "3",           "--format",  "json",
                          "--attach", "tc",        "--max-flows", "1024",      "--idle-timeout",
                          "1.5",      "--summary", "--closed",    "--changed", "--cleanup",
                          "-v"});
    EXPECT_EQ(o.ifaces, (std::vector<std::string>{"eth0", "lo"}));
    EXPECT_DOUBLE_EQ(o.interval_s, 0.5);
    EXPECT_EQ(o.count, 3u);
    EXPECT_EQ(o.format, Format::Json);
    EXPECT_EQ(o.attach, AttachMode::Tc);
    EXPECT_EQ(o.max_flows, 1024u);
    EXPECT_DOUBLE_EQ(o.idle_timeout_s, 1.5);
    EXPECT_TRUE(o.summary);
    EXPECT_TRUE(o.closed_only);
    EXPECT_TRUE(o.changed_only);
    EXPECT_TRUE(o.cleanup);
    EXPECT_TRUE(o.verbose);
}

TEST(Options, EqualsSyntaxAndLongVerbose) {
    const Options o = ok({"--interval=3", "--format=csv", "--attach=tcx", "--verbose"});
    EXPECT_DOUBLE_EQ(o.interval_s, 3.0);
    EXPECT_EQ(o.format, Format::Csv);
    EXPECT_EQ(o.attach, AttachMode::Tcx);
    EXPECT_TRUE(o.verbose);
}

TEST(Options, RepeatableInterfaceKeepsOrderAndDropsDuplicates) {
    EXPECT_EQ(ok({"-i", "b", "-i", "a", "-i", "b"}).ifaces, (std::vector<std::string>{"b", "a"}));
}

TEST(Options, InterfaceTakesOneValuePerFlag) { usage_error({"-i", "eth0", "eth1"}, "'eth1'"); }

TEST(Options, InvalidInterfaceNames) {
    usage_error({"-i", ""}, "--interface");
    usage_error({"-i", "a-name-that-is-too-long"}, "'a-name-that-is-too-long'");
    usage_error({"-i", "a/b"}, "'a/b'");
}

TEST(Options, RepeatedScalarKeepsLast) {
    EXPECT_DOUBLE_EQ(ok({"--interval", "1", "--interval", "4"}).interval_s, 4.0);
}

TEST(Options, Help) {
    for (const char* flag : {"-h", "--help"}) {
        auto r = parse({flag});
        EXPECT_FALSE(r.options.has_value());
        EXPECT_EQ(r.code, ExitCode::Ok);
        EXPECT_TRUE(r.err.empty());
        EXPECT_NE(r.out.find("--interval"), std::string::npos);
        EXPECT_NE(r.out.find("--max-flows"), std::string::npos);
    }
}

TEST(Options, Version) {
    auto r = parse({"--version"});
    EXPECT_FALSE(r.options.has_value());
    EXPECT_EQ(r.code, ExitCode::Ok);
    EXPECT_EQ(r.out, std::string("tcptrack ") + TCPTRACK_VERSION + "\n");
    EXPECT_STREQ(version_string(), TCPTRACK_VERSION);
    EXPECT_TRUE(r.err.empty());
}

TEST(Options, OnceIsCountOne) { EXPECT_EQ(ok({"--once"}).count, 1u); }

TEST(Options, OnceConflictsWithCount) {
    usage_error({"--once", "--count", "2"}, "--once");
    usage_error({"--count", "2", "--once"}, "--count");
}

TEST(Options, ExactMessages) {
    EXPECT_EQ(parse({"--interval", "0"}).err, "tcptrack: --interval: '0' must be a number > 0");
    EXPECT_EQ(parse({"--foo"}).err, "tcptrack: unknown option '--foo' (see --help)");
    // Words after the options are the filter expression: a stray one is a filter error.
    EXPECT_EQ(parse({"extra"}).err,
              "tcptrack: filter: 'extra': expected host, net, port or portrange");
    EXPECT_EQ(parse({"-i", "eth0", "port", "80", "--", "or", "port", "443"}).options->filter,
              "port 80 or port 443");
    EXPECT_EQ(parse({"--count", "0"}).err, "tcptrack: --count: '0' must be an integer >= 1");
    EXPECT_EQ(parse({"--format", "xml"}).err,
              "tcptrack: --format: 'xml' must be one of table, json, csv, none");
    EXPECT_EQ(parse({"--attach", "xdp"}).err,
              "tcptrack: --attach: 'xdp' must be one of auto, tcx, tc");
}

TEST(Options, ExportersAndHeadless) {
    const Options o = ok({"--ipfix", "udp://127.0.0.1:4739", "--prometheus", "[::1]:9100",
                          "--ipfix-active-timeout", "30", "--format", "none"});
    EXPECT_EQ(o.ipfix, "udp://127.0.0.1:4739");
    EXPECT_EQ(o.prometheus, "[::1]:9100");
    EXPECT_EQ(o.ipfix_active_timeout_s, 30.0);
    EXPECT_EQ(o.format, Format::None);
    EXPECT_EQ(ok({"--ipfix", "tcp://collector.example:4739"}).ipfix,
              "tcp://collector.example:4739");
    EXPECT_EQ(parse({"--ipfix", "127.0.0.1:4739"}).err,
              "tcptrack: --ipfix: '127.0.0.1:4739' must be udp://HOST:PORT or tcp://HOST:PORT");
    EXPECT_EQ(parse({"--ipfix", "udp://h:0"}).err,
              "tcptrack: --ipfix: 'udp://h:0' must be udp://HOST:PORT or tcp://HOST:PORT (port "
              "1-65535)");
    EXPECT_EQ(parse({"--prometheus", "9100"}).err,
              "tcptrack: --prometheus: '9100' must be ADDR:PORT (port 1-65535; [ADDR]:PORT for "
              "IPv6)");
    EXPECT_EQ(parse({"--prometheus", "::1:9100"}).err,
              "tcptrack: --prometheus: '::1:9100' must be ADDR:PORT (port 1-65535; [ADDR]:PORT "
              "for IPv6)");
    EXPECT_EQ(parse({"--format", "none"}).err,
              "tcptrack: --format none: nothing would be output (add --ipfix or --prometheus)");
    usage_error({"--ipfix-active-timeout", "0"}, "--ipfix-active-timeout");
}

TEST(Options, PrometheusPodsNeedsPrometheusAndOwners) {
    EXPECT_FALSE(ok({"--prometheus", "127.0.0.1:9100"}).prometheus_pods);  // off by default
    EXPECT_TRUE(ok({"--prometheus", "127.0.0.1:9100", "--prometheus-pods"}).prometheus_pods);
    EXPECT_TRUE(ok({"--prometheus-pods", "--prometheus", "127.0.0.1:9100"}).prometheus_pods);
    EXPECT_EQ(parse({"--prometheus-pods"}).err,
              "tcptrack: --prometheus-pods: needs --prometheus ADDR:PORT");
    usage_error({"--prometheus-pods"}, "--prometheus-pods");
    usage_error({"--prometheus-pods", "--ipfix", "udp://127.0.0.1:4739"}, "--prometheus");
    usage_error({"--prometheus", "127.0.0.1:9100", "--prometheus-pods", "--no-process"},
                "--no-process");
    usage_error({"--prometheus", "127.0.0.1:9100", "--prometheus-pods=yes"}, "takes no value");
}

TEST(Options, IntervalRejects) {
    for (const char* bad : {"0", "-1", "nan", "NaN", "inf", "-inf", "1e400", "1e-400", "2x", "abc",
                            "", " 2", "0x10", "+2", "0.0", "1e9"}) {
        usage_error({"--interval", bad}, std::string("'") + bad + "'");
    }
    usage_error({"--interval=-1"}, "'-1'");
}

TEST(Options, IntervalAccepts) {
    EXPECT_DOUBLE_EQ(ok({"--interval", "0.1"}).interval_s, 0.1);
    EXPECT_DOUBLE_EQ(ok({"--interval", ".5"}).interval_s, 0.5);
    EXPECT_DOUBLE_EQ(ok({"--interval", "1e1"}).interval_s, 10.0);
    EXPECT_DOUBLE_EQ(ok({"--interval", "10"}).interval_s, 10.0);
}

TEST(Options, IdleTimeoutRejects) {
    for (const char* bad : {"0", "-5", "nan", "inf", "x"})
        usage_error({"--idle-timeout", bad}, std::string("--idle-timeout: '") + bad + "'");
}

TEST(Options, RttRateLimit) {
    EXPECT_EQ(ok({}).rtt_rate_limit_us, 100000u);  // ePPing's default: a probe per 100 ms at most
    EXPECT_EQ(ok({"--rtt-rate-limit", "0"}).rtt_rate_limit_us, 0u);  // every round trip
    EXPECT_EQ(ok({"--rtt-rate-limit", "250"}).rtt_rate_limit_us, 250000u);
    EXPECT_EQ(ok({"--rtt-rate-limit=60000"}).rtt_rate_limit_us, 60000000u);
    for (const char* bad : {"-1", "60001", "1.5", "x", ""})
        usage_error({"--rtt-rate-limit", bad}, std::string("--rtt-rate-limit: '") + bad + "'");
}

TEST(Options, UnassuredTimeout) {
    EXPECT_DOUBLE_EQ(ok({"--unassured-timeout", "5"}).unassured_timeout_s, 5.0);
    EXPECT_DOUBLE_EQ(ok({"--unassured-timeout=0.5"}).unassured_timeout_s, 0.5);
    // Up to --idle-timeout, equal included.
    EXPECT_DOUBLE_EQ(ok({"--unassured-timeout", "60"}).unassured_timeout_s, 60.0);
    const Options o = ok({"--idle-timeout", "120", "--unassured-timeout", "90"});
    EXPECT_DOUBLE_EQ(o.unassured_timeout_s, 90.0);
    EXPECT_DOUBLE_EQ(o.idle_timeout_s, 120.0);
    // The default follows a shorter --idle-timeout down, silently.
    EXPECT_DOUBLE_EQ(ok({"--idle-timeout", "10"}).unassured_timeout_s, 10.0);
    EXPECT_DOUBLE_EQ(ok({"--idle-timeout", "45"}).unassured_timeout_s, 30.0);
    // A value given larger than --idle-timeout is refused, naming both.
    EXPECT_EQ(parse({"--unassured-timeout", "61"}).err,
              "tcptrack: --unassured-timeout: '61' must be at most --idle-timeout (60)");
    EXPECT_EQ(parse({"--unassured-timeout", "20", "--idle-timeout", "15"}).err,
              "tcptrack: --unassured-timeout: '20' must be at most --idle-timeout (15)");
    for (const char* bad : {"0", "-5", "nan", "inf", "x", "1e9"})
        usage_error({"--unassured-timeout", bad},
                    std::string("--unassured-timeout: '") + bad + "'");
    usage_error({"--unassured-timeout"}, "--unassured-timeout");
    EXPECT_NE(parse({"--help"}).out.find("--unassured-timeout SECONDS"), std::string::npos);
}

// An environment variable, set or not, for the scope of one check.
class ScopedEnv {
   public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        value ? setenv(name, value, 1) : unsetenv(name);
    }
    ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

   private:
    const char* name_;
    std::optional<std::string> old_;
};

TEST(Options, TestHashKeyOnlyInTestMode) {
    const char* key = "000102030405060708090a0b0c0d0E0F";
    for (const char* mode : {static_cast<const char*>(nullptr), "0", "", "yes", "11"}) {
        const ScopedEnv m("TCPTRACK_TEST_MODE", mode);
        EXPECT_EQ(parse({"--test-hash-key", key}).err,
                  "tcptrack: --test-hash-key is for tests only: set TCPTRACK_TEST_MODE=1")
            << (mode ? mode : "(unset)");
        EXPECT_EQ(parse({"--test-hash-key", key}).code, ExitCode::Usage);
    }
    const ScopedEnv m("TCPTRACK_TEST_MODE", "1");
    const Options o = ok({"--test-hash-key", key});
    ASSERT_TRUE(o.test_hash_key.has_value());
    const std::array<std::uint8_t, 16> want{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    EXPECT_EQ(*o.test_hash_key, want);
    EXPECT_EQ((*ok({"--test-hash-key=ffFF00000000000000000000000000a5"}).test_hash_key)[15], 0xa5);
    EXPECT_EQ((*ok({"--test-hash-key=ffFF00000000000000000000000000a5"}).test_hash_key)[1], 0xff);
    for (const char* bad : {"", "00", "000102030405060708090a0b0c0d0e0",
                            "000102030405060708090a0b0c0d0e0f0", "000102030405060708090a0b0c0d0e0g",
                            "0x0102030405060708090a0b0c0d0e0f", " 00102030405060708090a0b0c0d0e0f"})
        usage_error({"--test-hash-key", bad},
                    std::string("--test-hash-key: '") + bad + "' must be 32 hex digits (16 bytes)");
    // Never offered: --help does not list it (the man page and completion follow --help).
    EXPECT_EQ(parse({"--help"}).out.find("hash"), std::string::npos);
}

TEST(Options, CountRejects) {
    for (const char* bad : {"0", "-3", "abc", "1.5", "", "1e3", "+1", "99999999999999999999999"})
        usage_error({"--count", bad}, std::string("--count: '") + bad + "'");
}

TEST(Options, MaxFlowsBounds) {
    EXPECT_EQ(ok({"--max-flows", "1"}).max_flows, 1u);
    EXPECT_EQ(ok({"--max-flows", "16000000"}).max_flows, 16000000u);
    // 16777216 was the limit before the store indexed slots in 24 bits.
    for (const char* bad :
         {"0", "16000001", "16777216", "16777217", "-1", "1.5", "4294967296", "many"})
        usage_error({"--max-flows", bad}, std::string("--max-flows: '") + bad + "'");
    EXPECT_EQ(parse({"--max-flows", "16000001"}).err,
              "tcptrack: --max-flows: '16000001' must be an integer from 1 to 16000000");
    // Every accepted limit fits the index's slot field (tcptrack/store.h).
    EXPECT_LE(16000000u, static_cast<unsigned>(TT_MAX_SLOTS));
}

TEST(Options, ChangedIsAFlag) {
    EXPECT_TRUE(ok({"--changed"}).changed_only);
    const Options o = ok({"--changed", "--format", "json", "--closed"});
    EXPECT_TRUE(o.changed_only);
    EXPECT_TRUE(o.closed_only);
    EXPECT_EQ(o.format, Format::Json);
    // Takes no value, and does not swallow the next argument.
    usage_error({"--changed=yes"}, "--changed");
    usage_error({"--changed", "3"}, "'3'");
    auto r = parse({"--help"});
    EXPECT_NE(r.out.find("--changed"), std::string::npos);
}

TEST(Options, EnumsRejected) {
    usage_error({"--format", "JSON"}, "'JSON'");
    usage_error({"--attach", ""}, "--attach");
}

TEST(Options, MissingArgument) {
    for (const char* opt :
         {"--interval", "--count", "--format", "--attach", "--max-flows", "--idle-timeout", "-i"}) {
        usage_error({opt}, opt[1] == 'i' ? "--interface" : opt);
    }
}

TEST(Options, UnknownOptionsAndExtras) {
    usage_error({"--foo"}, "'--foo'");
    usage_error({"-x"}, "'-x'");
    usage_error({"--", "foo"}, "'foo'");
    usage_error({"--once", "stray"}, "'stray'");
}

TEST(Options, FlagsTakeNoValue) {
    usage_error({"--once=3"}, "--once");
    usage_error({"--summary=no"}, "--summary");
    usage_error({"--changed=1"}, "--changed");
}

TEST(Options, InterfacePatterns) {
    const Options o = ok({"-i", "veth*", "-i", "cali*", "-i", "eth0", "-i", "veth*"});
    EXPECT_EQ(o.ifaces, (std::vector<std::string>{"veth*", "cali*", "eth0"}));
    EXPECT_FALSE(o.all_interfaces);
    EXPECT_EQ(o.max_interfaces, 1024u);
    // A pattern may be longer than a name (it is never one); still no '/' or blanks.
    EXPECT_EQ(ok({"-i", "[a-z][a-z][a-z]*[0-9]"}).ifaces.size(), 1u);
    usage_error({"-i", "veth*/x"}, "is not a valid interface pattern");
    usage_error({"-i", "veth *"}, "is not a valid interface pattern");
}

TEST(Options, AllInterfaces) {
    EXPECT_TRUE(ok({"--all-interfaces"}).all_interfaces);
    EXPECT_FALSE(ok({}).all_interfaces);
    usage_error({"--all-interfaces", "-i", "eth0"},
                "--all-interfaces and -i cannot be used together");
    usage_error({"-i", "veth*", "--all-interfaces"}, "--all-interfaces and -i");
    usage_error({"--all-interfaces=yes"}, "--all-interfaces: takes no value");
}

TEST(Options, MaxInterfaces) {
    EXPECT_EQ(ok({"--max-interfaces", "1"}).max_interfaces, 1u);
    EXPECT_EQ(ok({"--all-interfaces", "--max-interfaces", "65536"}).max_interfaces, 65536u);
    EXPECT_EQ(ok({"--max-interfaces=5", "--max-interfaces", "7"}).max_interfaces, 7u);
    for (const char* bad : {"0", "-1", "65537", "1.5", "ten", "", "1e3", "+4"})
        usage_error({"--max-interfaces", bad}, "--max-interfaces");
    usage_error({"--max-interfaces"}, "--max-interfaces");
}

TEST(Options, NodeName) {
    EXPECT_EQ(ok({"--node-name", "node-7.example"}).node_name, "node-7.example");
    {
        const ScopedEnv env("NODE_NAME", "from-downward-api");
        EXPECT_EQ(ok({}).node_name, "from-downward-api");
        EXPECT_EQ(ok({"--node-name=explicit"}).node_name, "explicit");  // the option wins
    }
    {
        const ScopedEnv env("NODE_NAME", nullptr);
        char host[256] = {};
        ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
        EXPECT_EQ(ok({}).node_name, host);
    }
    usage_error({"--node-name", std::string(254, 'n').c_str()},
                "--node-name: at most 253 characters (a DNS name), got 254");
    usage_error({"--node-name", "bad\nname"}, "--node-name: control characters are not allowed");
    EXPECT_NE(parse({"--help"}).out.find("--node-name NAME"), std::string::npos);
}
