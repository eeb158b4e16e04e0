// SPDX-License-Identifier: MIT
// Sorting a report's display order at a million rows: an in-place MSD radix
// sort on the leading words of the order (the sort key, then bytes), with the
// full comparison only inside runs those words do not tell apart. A plain
// std::sort of a million 32-byte entries was 108 ms of a 145 ms build (most of
// it mispredicted branches); this touches each entry a few times instead of
// about twenty.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace tcptrack {

// The 64-bit word that orders doubles as their values do (ascending), -0.0 as 0.0.
inline std::uint64_t ordered_bits(double v) {
    if (v == 0) v = 0.0;
    const auto b = std::bit_cast<std::uint64_t>(v);
    return b & (std::uint64_t{1} << 63) ? ~b : b | (std::uint64_t{1} << 63);
}

// Sorts [first, last) by `less`, a strict total order. `word(e, w)` for w in
// [0, words) must be a coarsening of it, word 0 first: word(a, w) < word(b, w)
// with the words before w equal implies less(a, b), and less(a, b) implies
// that the first word where they differ is smaller in a. Runs the words do not
// split are sorted by `less`.
template <typename T, typename Word, typename Less>
void radix_order(T* first, T* last, int words, const Word& word, const Less& less, int w = 0) {
    constexpr std::size_t kSmall = 48;  // below this std::sort wins
    constexpr int kBits = 8;
    constexpr std::size_t kBuckets = std::size_t{1} << kBits;
    for (;;) {
        const auto n = static_cast<std::size_t>(last - first);
        if (n <= kSmall || w >= words) {
            std::sort(first, last, less);
            return;
        }
        std::uint64_t lo = word(*first, w), hi = lo;
        for (T* p = first + 1; p != last; ++p) {
            const std::uint64_t v = word(*p, w);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        if (lo == hi) {  // this word is spent here: on to the next
            ++w;
            continue;
        }
        // The top kBits of what varies in this run.
        const int width = std::bit_width(hi - lo);
        const int shift = width > kBits ? width - kBits : 0;
        const auto bucket = [&](const T& e) {
            return static_cast<std::size_t>((word(e, w) - lo) >> shift);
        };
        std::array<std::size_t, kBuckets + 1> start{};
        for (T* p = first; p != last; ++p) ++start[bucket(*p) + 1];
        for (std::size_t b = 0; b < kBuckets; ++b) start[b + 1] += start[b];
        // American flag sort: each entry is swapped straight into its bucket.
        std::array<std::size_t, kBuckets> next;
        std::copy(start.begin(), start.end() - 1, next.begin());
        for (std::size_t b = 0; b < kBuckets; ++b) {
            while (next[b] < start[b + 1]) {
                T v = std::move(first[next[b]]);
                for (std::size_t to = bucket(v); to != b; to = bucket(v))
                    std::swap(v, first[next[to]++]);
                first[next[b]++] = std::move(v);
            }
        }
        // Each bucket is ordered on its own: with shift 0 its word is one value.
        const int in = shift == 0 ? w + 1 : w;
        for (std::size_t b = 0; b < kBuckets; ++b)
            if (start[b + 1] - start[b] > 1)
                radix_order(first + start[b], first + start[b + 1], words, word, less, in);
        return;
    }
}

}  // namespace tcptrack
