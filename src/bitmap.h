// Bitmaps of 64-bit words: bit set = block free. Allocation finds the lowest set bit
// with __builtin_ffsll, starting from a hint word.
//
// Writers hold the owning lock; one reader (free's lock-free validation of a pointer) does
// not, so every word is read and written with relaxed atomic loads and stores (plain moves
// on x86-64 and AArch64). Never a read-modify-write: the lock serialises the writers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "platform.h"

namespace tmalloc {

// Relaxed atomic load / store of one word.
TM_ALWAYS_INLINE uint64_t bitmap_load(const uint64_t* word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }
// NOLINTNEXTLINE(readability-non-const-parameter): the builtin stores through `word`.
TM_ALWAYS_INLINE void bitmap_store(uint64_t* word, uint64_t value) { __atomic_store_n(word, value, __ATOMIC_RELAXED); }

// Sets bits [0, count) of a bitmap of `words` words and clears the rest.
TM_ALWAYS_INLINE void bitmap_fill(uint64_t* bits, size_t words, size_t count) {
  for (size_t w = 0; w < words; ++w) {
    const size_t first = w * 64;
    if (count >= first + 64) {
      bitmap_store(&bits[w], ~uint64_t{0});
    } else if (count > first) {
      bitmap_store(&bits[w], (uint64_t{1} << (count - first)) - 1);
    } else {
      bitmap_store(&bits[w], 0);
    }
  }
}

// True when bit `index` is set.
TM_ALWAYS_INLINE bool bitmap_test(const uint64_t* bits, size_t index) {
  return (bitmap_load(&bits[index / 64]) >> (index % 64)) & 1u;
}

// Sets bit `index`.
TM_ALWAYS_INLINE void bitmap_set(uint64_t* bits, size_t index) {
  bitmap_store(&bits[index / 64], bitmap_load(&bits[index / 64]) | (uint64_t{1} << (index % 64)));
}

// Clears bit `index`.
TM_ALWAYS_INLINE void bitmap_clear(uint64_t* bits, size_t index) {
  bitmap_store(&bits[index / 64], bitmap_load(&bits[index / 64]) & ~(uint64_t{1} << (index % 64)));
}

// Index of the lowest set bit at or after word `*hint`, scanning to the end of the bitmap;
// returns `words * 64` when none is set. Updates *hint to the word where the bit was found
// (words below it are known to be empty).
TM_ALWAYS_INLINE size_t bitmap_find_first(const uint64_t* bits, size_t words, size_t* hint) {
  for (size_t w = *hint; w < words; ++w) {
    const int bit = __builtin_ffsll(static_cast<long long>(bitmap_load(&bits[w])));
    if (bit != 0) {
      *hint = w;
      return w * 64 + static_cast<size_t>(bit - 1);
    }
  }
  *hint = words;
  return words * 64;
}

// Number of set bits.
TM_ALWAYS_INLINE size_t bitmap_count(const uint64_t* bits, size_t words) {
  size_t total = 0;
  for (size_t w = 0; w < words; ++w) total += static_cast<size_t>(__builtin_popcountll(bitmap_load(&bits[w])));
  return total;
}

}  // namespace tmalloc
