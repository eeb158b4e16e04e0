// SPDX-License-Identifier: MIT
#include "datapath/flow_sample.hpp"

#include <algorithm>
#include <deque>
#include <mutex>
#include <vector>

namespace tcptrack {

namespace {
constexpr std::uint32_t kRttUs = 1u << 31;  // hs_rtt_ holds us

// PrevCounts' whole counts, for the few samples that need them: slots named by
// handle, freed ones reused. Samples are copied and read on several threads.
class WholePool {
   public:
    std::uint32_t add(const Counts& c) {
        const std::lock_guard<std::mutex> g(mu_);
        if (free_.empty()) {
            items_.push_back(c);
            return static_cast<std::uint32_t>(items_.size() - 1);
        }
        const std::uint32_t i = free_.back();
        free_.pop_back();
        items_[i] = c;
        return i;
    }
    Counts get(std::uint32_t i) {
        const std::lock_guard<std::mutex> g(mu_);
        return items_[i];
    }
    void set(std::uint32_t i, const Counts& c) {
        const std::lock_guard<std::mutex> g(mu_);
        items_[i] = c;
    }
    void drop(std::uint32_t i) {
        const std::lock_guard<std::mutex> g(mu_);
        free_.push_back(i);
    }
    std::size_t used() {
        const std::lock_guard<std::mutex> g(mu_);
        return items_.size() - free_.size();
    }

   private:
    std::mutex mu_;
    std::deque<Counts> items_;
    std::vector<std::uint32_t> free_;
};

WholePool& whole_pool() {
    static WholePool* pool = new WholePool;  // never destroyed: samples may outlive statics
    return *pool;
}
}  // namespace

Counts PrevCounts::whole() const { return whole_pool().get(whole_ - kFirstHandle); }

void PrevCounts::keep(const Counts& c) {
    if (whole_ >= kFirstHandle)
        whole_pool().set(whole_ - kFirstHandle, c);
    else
        whole_ = whole_pool().add(c) + kFirstHandle;
}

void PrevCounts::release() {
    if (whole_ >= kFirstHandle) whole_pool().drop(whole_ - kFirstHandle);
    whole_ = kZero;
}

std::size_t PrevCounts::pooled() { return whole_pool().used(); }

FlowInfo::FlowInfo(const tt_flow_info& i)
    : first_ns(i.first_ns),
      close_ns(i.close_ns),
      owner_cgroup(i.owner_cgroup),
      state(i.state),
      client(i.client),
      flags(i.flags),
      fin_mask(i.fin_mask),
      ack_mask(i.ack_mask),
      end(i.end),
      owner_side(i.owner_side),
      acked(i.synack_ns || i.ack_ns) {
    std::optional<std::uint64_t> rtt;
    if (i.flags & TT_F_LOCAL_CLIENT) {
        if (i.syn_ns && i.synack_ns > i.syn_ns) rtt = i.synack_ns - i.syn_ns;
    } else if (i.synack_ns && i.ack_ns > i.synack_ns) {
        rtt = i.ack_ns - i.synack_ns;
    }
    set_handshake_rtt(rtt);
}

std::optional<std::uint64_t> FlowInfo::handshake_rtt() const {
    if (!hs_rtt_) return std::nullopt;
    if (hs_rtt_ & kRttUs) return std::uint64_t{hs_rtt_ & ~kRttUs} * 1000;
    return hs_rtt_ - 1;
}

void FlowInfo::set_handshake_rtt(std::optional<std::uint64_t> ns) {
    if (!ns)
        hs_rtt_ = 0;
    else if (*ns < kRttUs - 1)
        hs_rtt_ = static_cast<std::uint32_t>(*ns + 1);
    else
        hs_rtt_ =
            kRttUs | static_cast<std::uint32_t>(std::min<std::uint64_t>(*ns / 1000, kRttUs - 1));
}

void SampleKey::set(const tt_flow_key& k) {
    if (k.family == TT_FAMILY_INET6) {
        if (family_ != TT_FAMILY_INET6) v6_ = new V6;
        std::memcpy(v6_->data(), k.addr_a, 16);
        std::memcpy(v6_->data() + 16, k.addr_b, 16);
    } else {
        release();
        std::memcpy(&v4_[0], k.addr_a, 4);
        std::memcpy(&v4_[1], k.addr_b, 4);
    }
    port_a_ = k.port_a;
    port_b_ = k.port_b;
    ifindex_ = k.ifindex;
    family_ = k.family;
}

void SampleKey::release() {
    if (family_ == TT_FAMILY_INET6) delete v6_;
    family_ = 0;
    v4_[0] = v4_[1] = 0;
}

SampleKey& SampleKey::operator=(const SampleKey& o) {
    if (this != &o) set(o.get());
    return *this;
}

void SampleKey::take(SampleKey& o) noexcept {
    static_assert(sizeof v4_ == sizeof v6_);
    std::memcpy(&v4_, &o.v4_, sizeof v4_);  // the IPv4 addresses or the IPv6 ones' pointer
    port_a_ = o.port_a_;
    port_b_ = o.port_b_;
    ifindex_ = o.ifindex_;
    family_ = o.family_;
    o.family_ = 0;  // the addresses are ours now
    o.v4_[0] = o.v4_[1] = 0;
}

SampleKey::SampleKey(SampleKey&& o) noexcept : v4_{0, 0} { take(o); }

SampleKey& SampleKey::operator=(SampleKey&& o) noexcept {
    if (this != &o) {
        release();
        take(o);
    }
    return *this;
}

tt_flow_key SampleKey::get() const {
    tt_flow_key k{};
    if (family_ == TT_FAMILY_INET6) {
        std::memcpy(k.addr_a, v6_->data(), 16);
        std::memcpy(k.addr_b, v6_->data() + 16, 16);
    } else {
        std::memcpy(k.addr_a, &v4_[0], 4);
        std::memcpy(k.addr_b, &v4_[1], 4);
    }
    k.port_a = port_a_;
    k.port_b = port_b_;
    k.ifindex = ifindex_;
    k.family = family_;
    return k;
}

std::array<std::uint8_t, 16> SampleKey::addr(int side) const {
    std::array<std::uint8_t, 16> a{};
    if (family_ == TT_FAMILY_INET6)
        std::memcpy(a.data(), v6_->data() + (side ? 16 : 0), 16);
    else
        std::memcpy(a.data(), &v4_[side ? 1 : 0], 4);
    return a;
}

bool SampleKey::operator==(const SampleKey& o) const {
    if (family_ != o.family_ || port_a_ != o.port_a_ || port_b_ != o.port_b_ ||
        ifindex_ != o.ifindex_)
        return false;
    if (family_ == TT_FAMILY_INET6) return *v6_ == *o.v6_;
    return v4_[0] == o.v4_[0] && v4_[1] == o.v4_[1];
}

}  // namespace tcptrack
