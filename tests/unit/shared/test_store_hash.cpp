// SPDX-License-Identifier: MIT
// The store's placement of flows, shared with the datapath
// (include/tcptrack/store.h): the keyed SipHash, buckets, tags, index entries
// and slot generations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "tcptrack/abi.h"
#include "tcptrack/store.h"
#include "keys.hpp"

namespace {

tt_flow_key key4(const char* src, __u16 sport, const char* dst, __u16 dport) {
    return tt_test::flow_key(AF_INET, src, sport, dst, dport, 3);
}

tt_flow_key key6(const char* src, __u16 sport, const char* dst, __u16 dport) {
    return tt_test::flow_key(AF_INET6, src, sport, dst, dport, 3);
}

}  // namespace

// --- the store's index: tt_index_hash (keyed SipHash-1-3), its two buckets and its tag ---

namespace {

constexpr __u32 kBuckets = 8192;  // --max-flows 65536: 65536 / 8 buckets
constexpr __u32 kMask = kBuckets - 1;
constexpr tt_hash_key kKey{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};  // any fixed key

__u32 index_hash(const tt_flow_key* k) { return tt_index_hash(k, &kKey); }

// The same code, with the reference's 2 and 4 rounds.
TT_DEFINE_SIPHASH_KEY(siphash24_key, 2, 4)

// Normalised keys as the datapath builds them: random IPv4/IPv6 endpoints.
std::vector<tt_flow_key> random_keys(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<tt_flow_key> keys(n);
    for (auto& k : keys) {
        k = tt_flow_key{};
        const bool v6 = rng() % 4 == 0;
        const int words = v6 ? 4 : 1;
        for (int w = 0; w < words; ++w) {
            const __u32 a = rng(), b = rng();
            std::memcpy(k.addr_a + 4 * w, &a, 4);
            std::memcpy(k.addr_b + 4 * w, &b, 4);
        }
        k.port_a = static_cast<__u16>(rng());
        k.port_b = static_cast<__u16>(rng());
        k.ifindex = 1 + rng() % 4;
        k.family = v6 ? TT_FAMILY_INET6 : TT_FAMILY_INET;
        tt_key_normalise(&k);
    }
    return keys;
}

struct Loads {
    std::vector<__u32> b1, b2;
    __u32 max1 = 0, max2 = 0;
    std::size_t same = 0;  // keys whose two buckets coincide
};

Loads loads(const std::vector<tt_flow_key>& keys) {
    Loads l;
    l.b1.assign(kBuckets, 0);
    l.b2.assign(kBuckets, 0);
    for (const auto& k : keys) {
        const __u32 h = index_hash(&k);
        const __u32 i1 = tt_bucket1(h, kMask), i2 = tt_bucket2(h, kMask);
        EXPECT_LT(i1, kBuckets);
        EXPECT_LT(i2, kBuckets);
        l.max1 = std::max(l.max1, ++l.b1[i1]);
        l.max2 = std::max(l.max2, ++l.b2[i2]);
        l.same += i1 == i2;
    }
    return l;
}

}  // namespace

TEST(KeyHash, SipHashMatchesTheReferenceVector) {
    // vectors_sip64[44] of the SipHash reference (veorq/SipHash vectors.h):
    // key 00 01 .. 0f, message 00 01 .. 2b (44 bytes, the size of a flow key),
    // output bytes f2 1d f2 e4 1d 45 35 f9 (little-endian).
    static_assert(sizeof(tt_flow_key) == 44);
    tt_flow_key msg;
    for (std::size_t i = 0; i < sizeof msg; ++i) reinterpret_cast<__u8*>(&msg)[i] = __u8(i);
    EXPECT_EQ(siphash24_key(&msg, &kKey), 0xf935451de4f21df2ull);
    // 1-3 is the same construction with fewer rounds: a different value.
    EXPECT_NE(tt_siphash13_key(&msg, &kKey), 0xf935451de4f21df2ull);
}

TEST(KeyHash, TheKeyDecidesWhereAFlowGoes) {
    // An attacker who does not know the key cannot tell which keys share buckets:
    // under another key almost every key lands elsewhere (by chance 1 in 8192).
    const tt_hash_key other{0x1122334455667788ull, 0x99aabbccddeeff00ull};
    const auto keys = random_keys(20000, 7);
    std::size_t same_bucket = 0, same_cache = 0;
    for (const auto& k : keys) {
        same_bucket += tt_bucket1(tt_index_hash(&k, &kKey), kMask) ==
                       tt_bucket1(tt_index_hash(&k, &other), kMask);
        same_cache += tt_cache_index(tt_cache_hash(&k, &kKey), TT_CACHE_SET_BITS_MAX) ==
                      tt_cache_index(tt_cache_hash(&k, &other), TT_CACHE_SET_BITS_MAX);
    }
    EXPECT_LT(same_bucket, 20u);
    EXPECT_LT(same_cache, 40u);  // 4096 sets: ~5 by chance
    // Keys colliding under one key are spread under another.
    std::map<__u32, std::vector<tt_flow_key>> by_bucket;
    for (const auto& k : keys) by_bucket[tt_bucket1(tt_index_hash(&k, &kKey), kMask)].push_back(k);
    const auto& crowd = std::max_element(by_bucket.begin(), by_bucket.end(), [](auto& a, auto& b) {
                            return a.second.size() < b.second.size();
                        })->second;
    std::set<__u32> elsewhere;
    for (const auto& k : crowd) elsewhere.insert(tt_bucket1(tt_index_hash(&k, &other), kMask));
    EXPECT_GE(elsewhere.size(), crowd.size() - 1);
}

TEST(KeyHash, DeterministicAndOverTheWholeKey) {
    const tt_flow_key k = key6("fd00::1", 51000, "fd00::2", 443);
    tt_flow_key copy;
    std::memcpy(&copy, &k, sizeof k);
    EXPECT_EQ(index_hash(&k), index_hash(&copy));
    // Every byte of the key (address, ports, ifindex, family) reaches the hash:
    // one flipped bit changes it (a 32-bit PRF output: 1 in 4 billion by chance).
    const __u32 h = index_hash(&k);
    for (std::size_t byte = 0; byte < sizeof k; ++byte) {
        for (__u8 flip : {0x01, 0x80}) {
            tt_flow_key m = k;
            reinterpret_cast<__u8*>(&m)[byte] ^= flip;
            EXPECT_NE(index_hash(&m), h) << "byte " << byte << " flip " << int(flip);
        }
    }
}

TEST(KeyHash, RandomKeysSpreadOverBothBuckets) {
    const Loads l = loads(random_keys(100000, 1));
    // 12.2 keys per bucket on average: a uniform hash's fullest bucket holds
    // about 27 (Poisson), and more than 34 in fewer than 1 of 500 key sets.
    EXPECT_LE(l.max1, 34u);
    EXPECT_LE(l.max2, 34u);
    // The second choice is another bucket for almost every key (1 in 8192 by chance).
    EXPECT_LT(l.same, 100u);
    const auto empty = std::count(l.b1.begin(), l.b1.end(), 0u);
    EXPECT_LT(empty, 10) << "buckets never chosen first";
}

TEST(KeyHash, StructuredKeysSpreadToo) {
    // The realistic worst case: one client, one server, every source port; and
    // many clients of one service, addresses counting up.
    std::vector<tt_flow_key> ports, hosts;
    for (__u32 p = 1024; p < 65536; ++p) {
        tt_flow_key k = key4("10.0.0.1", static_cast<__u16>(p), "10.0.0.2", 443);
        tt_key_normalise(&k);
        ports.push_back(k);
    }
    for (__u32 i = 0; i < 65536; ++i) {
        tt_flow_key k = key4("172.16.0.1", 443, "10.0.0.0", 40000);
        const __u32 a = htonl(0x0A000000u + i);
        std::memcpy(k.addr_b, &a, 4);
        tt_key_normalise(&k);
        hosts.push_back(k);
    }
    for (const auto* keys : {&ports, &hosts}) {
        const Loads l = loads(*keys);
        // ~8 per bucket on average; a uniform hash's fullest holds about 20
        // and more than 25 in fewer than 1 of 100 key sets.
        EXPECT_LE(l.max1, 25u);
        EXPECT_LE(l.max2, 25u);
        EXPECT_LT(l.same, 100u);
    }
}

TEST(KeyHash, KeysSharingAFirstBucketScatterOverSecondOnes) {
    // Two choices only help if a crowded first bucket's keys go different ways.
    const auto keys = random_keys(100000, 2);
    const Loads l = loads(keys);
    const __u32 crowded =
        static_cast<__u32>(std::max_element(l.b1.begin(), l.b1.end()) - l.b1.begin());
    std::set<__u32> seconds;
    __u32 n = 0;
    for (const auto& k : keys) {
        const __u32 h = index_hash(&k);
        if (tt_bucket1(h, kMask) != crowded) continue;
        ++n;
        seconds.insert(tt_bucket2(h, kMask));
    }
    ASSERT_EQ(n, l.max1);
    EXPECT_GE(seconds.size(), n - 2) << "of " << n << " keys in bucket " << crowded;
}

TEST(KeyHash, TagIsTheTopEightBitsAndSpreads) {
    std::vector<__u32> tags(256, 0);
    const auto keys = random_keys(100000, 3);
    for (const auto& k : keys) {
        const __u32 h = index_hash(&k);
        const __u32 e = tt_index_entry(h, 12345);
        EXPECT_EQ(e >> 24, h >> 24);
        EXPECT_EQ(e & 0xff000000u, h & 0xff000000u);
        ++tags[h >> 24];
    }
    // ~391 keys per tag: a tag filters out all but 1/256 of a bucket's other slots.
    for (std::size_t t = 0; t < tags.size(); ++t) {
        EXPECT_GT(tags[t], 270u) << "tag " << t;
        EXPECT_LT(tags[t], 520u) << "tag " << t;
    }
}

TEST(IndexEntry, RoundTripsSlotAndTagAndIsNeverEmpty) {
    for (__u32 h : {0x00000000u, 0xffffffffu, 0xab123456u, 0x01fffffeu}) {
        for (__u32 slot : {0u, 1u, 65535u, 16000000u - 1, TT_MAX_SLOTS - 1}) {
            const __u32 e = tt_index_entry(h, slot);
            EXPECT_NE(e, 0u) << "0 marks an empty entry";
            EXPECT_EQ((e & TT_SLOT_MASK) - 1, slot);
            EXPECT_EQ(e & ~TT_SLOT_MASK, h & 0xff000000u);
        }
    }
    // The largest slot still leaves slot + 1 inside the 24 bits.
    EXPECT_LE(TT_MAX_SLOTS, TT_SLOT_MASK);
    EXPECT_EQ(TT_SLOT_BITS, 24);
}

TEST(IndexBuckets, StayInsideAnyPowerOfTwoTable) {
    const auto keys = random_keys(2000, 4);
    for (__u32 buckets : {1u, 2u, 64u, 8192u, 1u << 21}) {
        const __u32 mask = buckets - 1;
        std::set<__u32> seen1, seen2;
        for (const auto& k : keys) {
            const __u32 h = index_hash(&k);
            ASSERT_LT(tt_bucket1(h, mask), buckets);
            ASSERT_LT(tt_bucket2(h, mask), buckets);
            seen1.insert(tt_bucket1(h, mask));
            seen2.insert(tt_bucket2(h, mask));
        }
        // Small tables are fully used by both choices.
        if (buckets <= 64) {
            EXPECT_EQ(seen1.size(), buckets);
            EXPECT_EQ(seen2.size(), buckets);
        }
    }
}

TEST(SlotGen, OddIsLive) {
    EXPECT_FALSE(tt_gen_live(0));  // never used
    EXPECT_TRUE(tt_gen_live(1));
    EXPECT_FALSE(tt_gen_live(2));  // died
    EXPECT_TRUE(tt_gen_live(3));   // a reused tuple: + 2 keeps it live
    EXPECT_TRUE(tt_gen_live(0xffffffffu));
}
