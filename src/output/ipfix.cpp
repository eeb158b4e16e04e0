// SPDX-License-Identifier: MIT
// --ipfix: see output/ipfix.hpp. libfixbuf builds the IPFIX
// messages (templates, sets, sequence numbers) into a memory buffer
// (fbExporterAllocBuffer, manual mode); we send each message ourselves on a
// non-blocking socket, so nothing here waits for the collector.
#include "output/ipfix.hpp"
#include "report/flow_model.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fixbuf/public.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <iterator>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sys/error.hpp"
#include "sys/host_port.hpp"
#include "sys/netns.hpp"

namespace tcptrack {
namespace {

// The health counters exported, in the records' order: a row's cumulative
// figures (report/report.hpp: SideHealth), sent as deltas.
constexpr std::uint64_t SideHealth::*kHealthCounters[] = {
    &SideHealth::retrans, &SideHealth::retrans_bytes, &SideHealth::lost_segments,
    &SideHealth::dup_acks, &SideHealth::zero_windows};
constexpr std::size_t kNHealth = std::size(kHealthCounters);
// A connection's, [client -> server, server -> client][kHealthCounters].
using HealthCounts = std::array<std::array<std::uint64_t, kNHealth>, 2>;

// Record layouts handed to libfixbuf's transcoder: the internal template lists
// the same fields in the same order and sizes (packed: no holes). [2]: forward
// (client -> server), reverse.
#define TT_IPFIX_COMMON_HEAD                                                           \
    std::uint64_t start_ms, end_ms, octets, packets, rev_octets, rev_packets, payload, \
        rev_payload;                                                                   \
    std::uint64_t health[kNHealth][2]; /* deltas, as kHealthCounters */                \
    std::uint64_t rtt_samples[2];
#define TT_IPFIX_COMMON_TAIL                                \
    std::uint32_t rtt_us;                                   \
    std::uint32_t rtt_min_us[2], srtt_us[2], rtt_max_us[2]; \
    std::uint16_t sport, dport, tcp_flags;                  \
    std::uint8_t proto, end_reason, biflow_dir;             \
    fbVarfield_t pod_uid, container_id, node;

struct __attribute__((packed)) RecV4 {
    TT_IPFIX_COMMON_HEAD
    std::uint32_t src, dst;  // host order (fixbuf encodes them as integers)
    TT_IPFIX_COMMON_TAIL
};
struct __attribute__((packed)) RecV6 {
    TT_IPFIX_COMMON_HEAD
    std::uint8_t src[16], dst[16];
    TT_IPFIX_COMMON_TAIL
};

#define TT_IPFIX_SPEC_HEAD                                                                 \
    {(char*)"flowStartMilliseconds", 8, 0}, {(char*)"flowEndMilliseconds", 8, 0},          \
        {(char*)"octetDeltaCount", 8, 0}, {(char*)"packetDeltaCount", 8, 0},               \
        {(char*)"reverseOctetDeltaCount", 8, 0}, {(char*)"reversePacketDeltaCount", 8, 0}, \
        {(char*)"tcptrackPayloadOctetDeltaCount", 8, 0},                                   \
        {(char*)"reverseTcptrackPayloadOctetDeltaCount", 8, 0},                            \
        {(char*)"tcptrackRetransmittedSegmentDeltaCount", 8, 0},                           \
        {(char*)"reverseTcptrackRetransmittedSegmentDeltaCount", 8, 0},                    \
        {(char*)"tcptrackRetransmittedOctetDeltaCount", 8, 0},                             \
        {(char*)"reverseTcptrackRetransmittedOctetDeltaCount", 8, 0},                      \
        {(char*)"tcptrackLostSegmentDeltaCount", 8, 0},                                    \
        {(char*)"reverseTcptrackLostSegmentDeltaCount", 8, 0},                             \
        {(char*)"tcptrackDuplicateAckDeltaCount", 8, 0},                                   \
        {(char*)"reverseTcptrackDuplicateAckDeltaCount", 8, 0},                            \
        {(char*)"tcptrackZeroWindowDeltaCount", 8, 0},                                     \
        {(char*)"reverseTcptrackZeroWindowDeltaCount", 8, 0},                              \
        {(char*)"tcptrackRttSampleTotalCount", 8, 0},                                      \
        {(char*)"reverseTcptrackRttSampleTotalCount", 8, 0},
#define TT_IPFIX_SPEC_TAIL                                                               \
    {(char*)"tcptrackHandshakeRttMicroseconds", 4, 0},                                   \
        {(char*)"tcptrackRttMinimumMicroseconds", 4, 0},                                 \
        {(char*)"reverseTcptrackRttMinimumMicroseconds", 4, 0},                          \
        {(char*)"tcptrackRttSmoothedMicroseconds", 4, 0},                                \
        {(char*)"reverseTcptrackRttSmoothedMicroseconds", 4, 0},                         \
        {(char*)"tcptrackRttMaximumMicroseconds", 4, 0},                                 \
        {(char*)"reverseTcptrackRttMaximumMicroseconds", 4, 0},                          \
        {(char*)"sourceTransportPort", 2, 0}, {(char*)"destinationTransportPort", 2, 0}, \
        {(char*)"tcpControlBits", 2, 0}, {(char*)"protocolIdentifier", 1, 0},            \
        {(char*)"flowEndReason", 1, 0}, {(char*)"biflowDirection", 1, 0},                \
        {(char*)"tcptrackPodUid", FB_IE_VARLEN, 0},                                      \
        {(char*)"tcptrackContainerId", FB_IE_VARLEN, 0},                                 \
        {(char*)"tcptrackNodeName", FB_IE_VARLEN, 0}, FB_IESPEC_NULL

fbInfoElementSpec_t kSpecV4[] = {TT_IPFIX_SPEC_HEAD{(char*)"sourceIPv4Address", 4, 0},
                                 {(char*)"destinationIPv4Address", 4, 0},
                                 TT_IPFIX_SPEC_TAIL};
fbInfoElementSpec_t kSpecV6[] = {TT_IPFIX_SPEC_HEAD{(char*)"sourceIPv6Address", 16, 0},
                                 {(char*)"destinationIPv6Address", 16, 0},
                                 TT_IPFIX_SPEC_TAIL};

fbInfoElement_t kOurElements[] = {
    FB_IE_INIT_FULL("tcptrackPayloadOctetDeltaCount", kIpfixPen, kIpfixIePayload, 8,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_IE_DELTACOUNTER, 0, 0, FB_UINT_64,
                    (char*)"TCP payload octets since the previous record"),
    FB_IE_INIT_FULL("tcptrackHandshakeRttMicroseconds", kIpfixPen, kIpfixIeRttUs, 4, FB_IE_F_ENDIAN,
                    0, 0, FB_UINT_32, (char*)"TCP handshake round-trip time (0: not measured)"),
    FB_IE_INIT_FULL("tcptrackPodUid", kIpfixPen, kIpfixIePodUid, FB_IE_VARLEN, FB_IE_DEFAULT, 0, 0,
                    FB_STRING, (char*)"Kubernetes pod UID of the local socket's process"),
    FB_IE_INIT_FULL("tcptrackContainerId", kIpfixPen, kIpfixIeContainerId, FB_IE_VARLEN,
                    FB_IE_DEFAULT, 0, 0, FB_STRING,
                    (char*)"container id of the local socket's process"),
    FB_IE_INIT_FULL("tcptrackNodeName", kIpfixPen, kIpfixIeNodeName, FB_IE_VARLEN, FB_IE_DEFAULT, 0,
                    0, FB_STRING, (char*)"the exporting node (--node-name)"),
    // Connection health (ipfix.hpp), forward = what the source (client) sent.
    FB_IE_INIT_FULL("tcptrackRetransmittedSegmentDeltaCount", kIpfixPen, kIpfixIeRetransSegments, 8,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_IE_DELTACOUNTER | FB_UNITS_PACKETS, 0,
                    0, FB_UINT_64,
                    (char*)"TCP segments retransmitted since the previous record (wire segments)"),
    FB_IE_INIT_FULL("tcptrackRetransmittedOctetDeltaCount", kIpfixPen, kIpfixIeRetransOctets, 8,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_IE_DELTACOUNTER | FB_UNITS_OCTETS, 0,
                    0, FB_UINT_64,
                    (char*)"TCP payload octets sent again since the previous record"),
    FB_IE_INIT_FULL("tcptrackLostSegmentDeltaCount", kIpfixPen, kIpfixIeLostSegments, 8,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_IE_DELTACOUNTER | FB_UNITS_PACKETS, 0,
                    0, FB_UINT_64,
                    (char*)"TCP segments starting past the next expected sequence number (data "
                           "not seen here) since the previous record"),
    FB_IE_INIT_FULL("tcptrackDuplicateAckDeltaCount", kIpfixPen, kIpfixIeDupAcks, 8,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_IE_DELTACOUNTER | FB_UNITS_PACKETS, 0,
                    0, FB_UINT_64, (char*)"duplicate TCP ACKs sent since the previous record"),
    FB_IE_INIT_FULL("tcptrackZeroWindowDeltaCount", kIpfixPen, kIpfixIeZeroWindows, 8,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_IE_DELTACOUNTER, 0, 0, FB_UINT_64,
                    (char*)"transitions to an advertised TCP window of zero since the previous "
                           "record"),
    FB_IE_INIT_FULL("tcptrackRttMinimumMicroseconds", kIpfixPen, kIpfixIeRttMinUs, 4,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_UNITS_MICROSECONDS, 0, 0, FB_UINT_32,
                    (char*)"minimum RTT of the data sent, over the connection so far (0: none)"),
    FB_IE_INIT_FULL("tcptrackRttSmoothedMicroseconds", kIpfixPen, kIpfixIeSrttUs, 4,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_UNITS_MICROSECONDS, 0, 0, FB_UINT_32,
                    (char*)"smoothed RTT of the data sent, at the record's end (0: none)"),
    FB_IE_INIT_FULL("tcptrackRttMaximumMicroseconds", kIpfixPen, kIpfixIeRttMaxUs, 4,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_UNITS_MICROSECONDS, 0, 0, FB_UINT_32,
                    (char*)"maximum RTT of the data sent, over the connection so far (0: none)"),
    FB_IE_INIT_FULL("tcptrackRttSampleTotalCount", kIpfixPen, kIpfixIeRttSamples, 8,
                    FB_IE_F_ENDIAN | FB_IE_F_REVERSIBLE | FB_IE_TOTALCOUNTER, 0, 0, FB_UINT_64,
                    (char*)"RTT samples of the data sent, over the connection so far"),
    FB_IE_NULL};

// flowEndReason (RFC 5102): kLack (lack of resources) ends a half-open flow
// displaced to make room for a new connection.
enum EndReason : std::uint8_t { kIdle = 1, kActive = 2, kEnd = 3, kForced = 4, kLack = 5 };

constexpr std::size_t kUdpMessage = 1400;  // one datagram on a 1500-byte path
constexpr std::size_t kTcpMessage = 16384;
constexpr std::size_t kTcpQueueMax = 4u << 20;  // unsent bytes kept while the collector is slow

struct Exported {
    std::uint64_t bytes[2]{}, packets[2]{}, payload[2]{};
    std::uint64_t last_ns = 0;  // CLOCK_MONOTONIC of the previous record's end
    std::uint64_t seen = 0;     // the write() that last saw it (stale entries are dropped)
};

class IpfixOutput final : public Output {
   public:
    IpfixOutput(bool tcp, const sockaddr_storage& addr, socklen_t addrlen, double active_s,
                std::uint64_t& errors, std::string node, ExportRowOf row_of)
        : errors_(errors),
          node_(std::move(node)),
          row_of_(row_of ? std::move(row_of) : ExportRowOf(fill_row)),
          tcp_(tcp),
          addr_(addr),
          addrlen_(addrlen),
          active_ns_(static_cast<std::uint64_t>(active_s * 1e9)),
          msg_(tcp ? kTcpMessage : kUdpMessage) {
        model_ = fbInfoModelAlloc();
        fbInfoModelAddElementArray(model_, kOurElements);
        session_ = fbSessionAlloc(model_);
        GError* err = nullptr;
        for (auto [spec, tid] :
             {std::pair{kSpecV4, kIpfixTemplateV4}, std::pair{kSpecV6, kIpfixTemplateV6}}) {
            fbTemplate_t* t = fbTemplateAlloc(model_);
            if (!fbTemplateAppendSpecArray(t, spec, UINT32_MAX, &err) ||
                !fbSessionAddTemplate(session_, TRUE, tid, t, &err) ||
                !fbSessionAddTemplate(session_, FALSE, tid, t, &err)) {
                std::string what = err ? err->message : "?";
                g_clear_error(&err);
                throw Error("--ipfix: cannot build the IPFIX templates: " + what);
            }
        }
        exporter_ = fbExporterAllocBuffer(msg_.data(), static_cast<std::uint16_t>(msg_.size()));
        fbuf_ = fBufAllocForExport(session_, exporter_);
        fBufSetAutomaticMode(fbuf_, FALSE);
        if (tcp_)
            start_connect();
        else
            open_udp();
    }

    ~IpfixOutput() override {
        if (fbuf_) fBufFree(fbuf_);  // frees the session and exporter with it
        if (model_) fbInfoModelFree(model_);
        if (fd_ >= 0) ::close(fd_);
    }

    const char* name() const override { return "ipfix"; }

    bool write(const ReportFrame& f) override {
        process(f, false);
        return true;
    }

    // At exit (a last look at the store): closed and idle ones as usual, the
    // rest with flowEndReason 4 (forced end).
    void finish(const ReportFrame* last) override {
        if (last) process(*last, true);
        if (tcp_ && state_ == Tcp::Up) {
            // Give the queued bytes a moment to leave, then give up (bounded).
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
            while (!queue_.empty() && state_ == Tcp::Up &&
                   std::chrono::steady_clock::now() < deadline) {
                pollfd p{fd_, POLLOUT, 0};
                ::poll(&p, 1, 100);
                flush_queue();
            }
            for (const auto& q : queue_) errors_ += q.records;
            queue_.clear();
        }
    }

   private:
    std::uint64_t& errors_;  // tally.counter("ipfix"): records not delivered
    std::string node_;       // --node-name, on every record
    ExportRowOf row_of_;     // a sample's row, for its health (fill_row)
    enum class Tcp { Down, Connecting, Up };

    void process(const ReportFrame& f, bool at_exit) {
        ++reports_;
        begin(f);
        idle_.clear();
        for (const SlotRef& r : f.idle) idle_.insert(flow_id(r));
        for (std::size_t i = 0; i < f.samples.size(); ++i) {
            const FlowSample& s = f.samples[i];
            if (i >= f.live) {
                export_sample(f, s, displaced(s) ? kLack : kEnd, true);
            } else if (!idle_.empty() && idle_.count(flow_id(s.ref))) {
                export_sample(f, s, kIdle, true);
            } else if (at_exit) {
                export_sample(f, s, kForced, true);
            } else {
                auto it = flows_.find(flow_id(s.ref));
                const std::uint64_t since = it != flows_.end()
                                                ? it->second.last_ns
                                                : (s.has_info ? s.info.first_ns : f.now_ns);
                if (f.now_ns >= since && f.now_ns - since >= active_ns_)
                    export_sample(f, s, kActive, false);
                else if (it != flows_.end())
                    it->second.seen = reports_;
                else
                    flows_[flow_id(s.ref)] = Exported{{}, {}, {}, since, reports_};
            }
        }
        // Connections that left without a final sample (none should): forget them.
        if (flows_.size() > f.live) {
            for (auto it = flows_.begin(); it != flows_.end();) {
                if (it->second.seen == reports_) {
                    ++it;
                    continue;
                }
                health_prev_.erase(it->first);
                it = flows_.erase(it);
            }
        }
        end();
    }

    // A socket in the namespace tcptrack started in.
    int home_socket(int type) const {
        return home_.socket(addr_.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }

    void open_udp() {
        fd_ = home_socket(SOCK_DGRAM);
        if (fd_ < 0) return;
        int sz = 4 << 20;
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        // Connected, so an ICMP port unreachable comes back as a send error.
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr_), addrlen_) != 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

    void tcp_down() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        state_ = Tcp::Down;
        for (const auto& q : queue_) errors_ += q.records;
        queue_.clear();
    }

    void start_connect() {
        attempt_report_ = reports_;
        fd_ = home_socket(SOCK_STREAM);
        if (fd_ < 0) {
            ++errors_;
            return;
        }
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr_), addrlen_) == 0) {
            state_ = Tcp::Up;
            need_templates_ = true;
        } else if (errno == EINPROGRESS) {
            state_ = Tcp::Connecting;
        } else {
            ++errors_;
            tcp_down();
        }
    }

    // TCP: move the connection along, at most one connect attempt per report.
    void service_tcp() {
        if (state_ == Tcp::Down) {
            // Not twice in one report: the constructor's attempt counts for the first.
            if (attempt_report_ != reports_) start_connect();
            return;
        }
        if (state_ == Tcp::Connecting) {
            pollfd p{fd_, POLLOUT, 0};
            if (::poll(&p, 1, 0) <= 0) return;  // still connecting: records are dropped meanwhile
            int soerr = 0;
            socklen_t len = sizeof soerr;
            ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len);
            if (soerr != 0) {
                ++errors_;
                tcp_down();  // the next report tries again
                return;
            }
            state_ = Tcp::Up;
            need_templates_ = true;  // a new transport session
        }
    }

    bool can_send() const { return tcp_ ? state_ == Tcp::Up : fd_ >= 0; }

    void begin(const ReportFrame& f) {
        if (tcp_)
            service_tcp();
        else if (fd_ < 0)
            open_udp();
        wall_ns_ =
            std::chrono::duration_cast<std::chrono::nanoseconds>(f.report.time.time_since_epoch())
                .count();
        now_ns_ = f.now_ns;
        if (!tcp_ && (!templates_sent_ || f.now_ns - tmpl_ns_ >= kIpfixTemplateRefreshS * 1e9))
            need_templates_ = true;
        if (need_templates_ && can_send()) {
            GError* err = nullptr;
            // Manual mode refuses to start a message with templates: the
            // message is empty here, so automatic mode cannot emit early.
            fBufSetAutomaticMode(fbuf_, TRUE);
            const bool ok = fbSessionExportTemplates(session_, &err);
            fBufSetAutomaticMode(fbuf_, FALSE);
            if (ok) {
                has_data_ = true;
                templates_sent_ = true;
                tmpl_ns_ = f.now_ns;
                need_templates_ = false;
            } else {
                g_clear_error(&err);
                ++errors_;
            }
        }
        cur_tid_ = 0;
    }

    void end() {
        emit();
        if (tcp_ && state_ == Tcp::Up) flush_queue();
    }

    std::uint64_t wall_ms(std::uint64_t mono_ns) const {
        const std::int64_t ns =
            wall_ns_ + (static_cast<std::int64_t>(mono_ns) - static_cast<std::int64_t>(now_ns_));
        return ns > 0 ? static_cast<std::uint64_t>(ns) / 1000000 : 0;
    }

    // ns as microseconds in an unsigned32 (saturated).
    static std::uint32_t us32(std::uint64_t ns) {
        return static_cast<std::uint32_t>(std::min<std::uint64_t>(ns / 1000, UINT32_MAX));
    }

    static std::uint16_t control_bits(const FlowSample& s) {
        if (!s.has_info) return 0;
        const FlowInfo& i = s.info;
        std::uint16_t b = 0;
        if (i.flags & TT_F_SYN_SEEN) b |= TT_TCP_SYN;
        if (i.fin_mask) b |= TT_TCP_FIN;
        if (i.state == TT_RESET) b |= TT_TCP_RST;
        if (i.acked || (i.flags & TT_F_MIDSTREAM) || i.state == TT_ESTABLISHED ||
            i.state == TT_CLOSING || i.state == TT_CLOSED)
            b |= TT_TCP_ACK;
        return b;
    }

    // One record with what s did since its previous record; `last`: its final one.
    void export_sample(const ReportFrame& f, const FlowSample& s, EndReason why, bool last) {
        const std::uint64_t k = flow_id(s.ref);
        auto it = flows_.find(k);
        Exported prev{};
        if (it != flows_.end())
            prev = it->second;
        else
            prev.last_ns = s.has_info && s.info.first_ns ? s.info.first_ns : s.last_active_ns;

        const int c = client_side(s), r = c ^ 1;
        auto d = [](std::uint64_t now, std::uint64_t before) {
            return now > before ? now - before : 0;
        };
        const std::uint64_t octets = d(s.bytes[c], prev.bytes[c]),
                            rev_octets = d(s.bytes[r], prev.bytes[r]);
        const std::uint64_t packets = d(s.packets[c], prev.packets[c]),
                            rev_packets = d(s.packets[r], prev.packets[r]);
        const std::uint64_t payload = d(s.payload[c], prev.payload[c]),
                            rev_payload = d(s.payload[r], prev.payload[r]);
        // Health: the row's cumulative figures (oriented: fwd is the client's),
        // less those of the previous record (kept only when not all zero).
        row_of_(row_, s, f.iface(s.key.ifindex()), f.now_ns);
        HealthCounts health{};
        for (std::size_t i = 0; i < kNHealth; ++i) {
            health[0][i] = row_.fwd_health.*kHealthCounters[i];
            health[1][i] = row_.rev_health.*kHealthCounters[i];
        }
        auto hp = health_prev_.find(k);
        HealthCounts health_delta = health;
        if (hp != health_prev_.end())
            for (int dir = 0; dir < 2; ++dir)
                for (std::size_t i = 0; i < kNHealth; ++i)
                    health_delta[dir][i] = d(health[dir][i], hp->second[dir][i]);

        std::uint64_t end_ns = f.now_ns;
        if ((why == kEnd || why == kLack) && s.has_info && s.info.close_ns)
            end_ns = s.info.close_ns;
        else if (why == kIdle && s.last_active_ns)
            end_ns = s.last_active_ns;
        const std::uint64_t start_ns =
            prev.last_ns && prev.last_ns <= end_ns ? prev.last_ns : end_ns;

        if (last) {
            if (it != flows_.end()) flows_.erase(it);
            if (hp != health_prev_.end()) health_prev_.erase(hp);
        } else {
            const bool any = std::any_of(health.begin(), health.end(), [](const auto& side) {
                return std::any_of(side.begin(), side.end(),
                                   [](std::uint64_t v) { return v != 0; });
            });
            if (any) health_prev_[k] = health;
            Exported& e = it != flows_.end() ? it->second : flows_[k];
            for (int i = 0; i < 2; ++i) {
                e.bytes[i] = s.bytes[i];
                e.packets[i] = s.packets[i];
                e.payload[i] = s.payload[i];
            }
            e.last_ns = end_ns;
            e.seen = reports_;
        }
        // A periodic record with nothing to say is skipped (its interval restarts).
        if (why == kActive && !octets && !rev_octets && !packets && !rev_packets) return;

        if (!can_send()) {
            ++errors_;  // TCP collector down: the record is dropped
            return;
        }
        const Endpoints e = oriented(s);
        const auto rtt = s.has_info ? handshake_rtt(s.info) : std::nullopt;
        auto fill = [&](auto& rec) {
            rec.start_ms = wall_ms(start_ns);
            rec.end_ms = wall_ms(end_ns);
            rec.octets = octets;
            rec.packets = packets;
            rec.rev_octets = rev_octets;
            rec.rev_packets = rev_packets;
            rec.payload = payload;
            rec.rev_payload = rev_payload;
            for (std::size_t i = 0; i < kNHealth; ++i) {
                rec.health[i][0] = health_delta[0][i];
                rec.health[i][1] = health_delta[1][i];
            }
            const SideHealth* sides[2] = {&row_.fwd_health, &row_.rev_health};
            for (int dir = 0; dir < 2; ++dir) {
                const SideHealth& h = *sides[dir];
                rec.rtt_samples[dir] = h.rtt_samples;
                rec.rtt_min_us[dir] = h.rtt_samples ? us32(h.rtt_min_ns) : 0;
                rec.srtt_us[dir] = h.rtt_samples ? us32(h.srtt_ns) : 0;
                rec.rtt_max_us[dir] = h.rtt_samples ? us32(h.rtt_max_ns) : 0;
            }
            rec.rtt_us = rtt ? us32(*rtt) : 0;
            rec.sport = e.sport;
            rec.dport = e.dport;
            rec.tcp_flags = control_bits(s);
            rec.proto = 6;
            rec.end_reason = why;
            rec.biflow_dir = 1;  // initiator: the source is the client
            // Empty strings when the owner is unknown (one template for all).
            rec.pod_uid = {row_.pod_uid.size(),
                           reinterpret_cast<std::uint8_t*>(row_.pod_uid.data())};
            rec.container_id = {row_.container_id.size(),
                                reinterpret_cast<std::uint8_t*>(row_.container_id.data())};
            rec.node = {node_.size(), reinterpret_cast<std::uint8_t*>(node_.data())};
        };
        row_.pod_uid.clear();
        row_.container_id.clear();
        if (f.enrich) f.enrich(s.ref, row_);
        if (s.key.family() == TT_FAMILY_INET) {
            RecV4 rec{};
            fill(rec);
            std::uint32_t a, b;
            std::memcpy(&a, e.src.data(), 4);
            std::memcpy(&b, e.dst.data(), 4);
            rec.src = ntohl(a);
            rec.dst = ntohl(b);
            append(kIpfixTemplateV4, reinterpret_cast<std::uint8_t*>(&rec), sizeof rec);
        } else {
            RecV6 rec{};
            fill(rec);
            std::memcpy(rec.src, e.src.data(), 16);
            std::memcpy(rec.dst, e.dst.data(), 16);
            append(kIpfixTemplateV6, reinterpret_cast<std::uint8_t*>(&rec), sizeof rec);
        }
    }

    void append(std::uint16_t tid, std::uint8_t* rec, std::size_t len) {
        GError* err = nullptr;
        if (tid != cur_tid_) {
            if (!fBufSetInternalTemplate(fbuf_, tid, &err) ||
                !fBufSetExportTemplate(fbuf_, tid, &err)) {
                g_clear_error(&err);
                ++errors_;
                return;
            }
            cur_tid_ = tid;
        }
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (fBufAppend(fbuf_, rec, len, &err)) {
                has_data_ = true;
                ++records_;
                return;
            }
            const bool full = g_error_matches(err, FB_ERROR_DOMAIN, FB_ERROR_EOM);
            g_clear_error(&err);
            if (!full) break;
            emit();  // the message is full: send it, the record starts the next one
        }
        ++errors_;
    }

    // Sends the message libfixbuf has built, if any.
    void emit() {
        if (!has_data_) return;
        GError* err = nullptr;
        const bool ok = fBufEmit(fbuf_, &err);
        g_clear_error(&err);
        const std::uint32_t n = records_;
        has_data_ = false;
        records_ = 0;
        const std::size_t len = ok ? fbExporterGetMsgLen(exporter_) : 0;
        if (!ok || len == 0) {
            errors_ += n ? n : 1;
            return;
        }
        ++messages_;
        if (!tcp_) {
            if (fd_ < 0 || ::send(fd_, msg_.data(), len, MSG_DONTWAIT | MSG_NOSIGNAL) !=
                               static_cast<ssize_t>(len)) {
                // ECONNREFUSED (an earlier datagram met ICMP port unreachable),
                // EAGAIN (socket buffer full), ...: this message is lost.
                errors_ += n ? n : 1;
            }
            return;
        }
        if (state_ != Tcp::Up || bytes_queued_ + len > kTcpQueueMax) {
            errors_ += n ? n : 1;
            return;
        }
        queue_.push_back({std::string(reinterpret_cast<const char*>(msg_.data()), len), 0, n});
        bytes_queued_ += len;
        flush_queue();
    }

    void flush_queue() {
        while (!queue_.empty()) {
            Pending& p = queue_.front();
            const ssize_t w = ::send(fd_, p.bytes.data() + p.off, p.bytes.size() - p.off,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
                tcp_down();  // reconnect at the next report
                bytes_queued_ = 0;
                return;
            }
            p.off += static_cast<std::size_t>(w);
            bytes_queued_ -= static_cast<std::size_t>(w);
            if (p.off == p.bytes.size()) queue_.pop_front();
        }
    }

    struct Pending {
        std::string bytes;
        std::size_t off;
        std::uint32_t records;
    };

    bool tcp_;
    sockaddr_storage addr_;
    socklen_t addrlen_;
    std::uint64_t active_ns_;
    std::vector<std::uint8_t> msg_;
    fbInfoModel_t* model_ = nullptr;
    fbSession_t* session_ = nullptr;
    fbExporter_t* exporter_ = nullptr;
    fBuf_t* fbuf_ = nullptr;
    int fd_ = -1;
    // Sockets belong in tcptrack's own namespace (where the collector is),
    // even once --netns moved us: later ones are made back there.
    HomeNetns home_;
    std::uint64_t attempt_report_ = 0;
    Tcp state_ = Tcp::Down;
    std::deque<Pending> queue_;
    std::size_t bytes_queued_ = 0;
    bool need_templates_ = false, templates_sent_ = false, has_data_ = false;
    std::uint64_t tmpl_ns_ = 0;
    std::uint16_t cur_tid_ = 0;
    std::uint32_t records_ = 0;  // in the message being built
    std::uint64_t messages_ = 0, reports_ = 0;
    std::int64_t wall_ns_ = 0;
    std::uint64_t now_ns_ = 0;
    std::unordered_map<std::uint64_t, Exported> flows_;
    // The health counters of a flow's previous record, if not all zero (most
    // connections have none: no room taken for them).
    std::unordered_map<std::uint64_t, HealthCounts> health_prev_;
    std::unordered_set<std::uint64_t> idle_;
    FlowRow row_;  // the row of the sample being exported, and its enrichers' fields
};

}  // namespace

std::unique_ptr<Output> make_ipfix_output(const Options& o, ExportTally& tally,
                                          ExportRowOf row_of) {
    const bool tcp = o.ipfix.rfind("tcp://", 0) == 0;
    const auto hp = parse_host_port(o.ipfix.substr(o.ipfix.find("://") + 3));
    if (!hp) throw Error("--ipfix: must be udp://HOST:PORT or tcp://HOST:PORT");
    const std::string& host = hp->host;
    const std::string port = std::to_string(hp->port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = tcp ? SOCK_STREAM : SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res)
        throw Error("--ipfix: cannot resolve " + host + ": " +
                    (rc ? gai_strerror(rc) : "no address"));
    sockaddr_storage addr{};
    std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
    const socklen_t len = res->ai_addrlen;
    ::freeaddrinfo(res);
    return std::make_unique<IpfixOutput>(tcp, addr, len, o.ipfix_active_timeout_s,
                                         tally.counter("ipfix"), o.node_name, std::move(row_of));
}

}  // namespace tcptrack
