// Small size classes: 16 B steps up to 128 B, then 8 classes per power of two up to 8 KiB.
//
// Waste bound: for a request n > 128 B the block is at most one step (1/8 of the lower
// power of two) larger, so (class - n) / class < 1/9 (11.1%) and (class - n) / n < 1/8
// (12.5%). For n <= 128 B the 16-byte alignment quantum dominates: waste < 16 B.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.h"
#include "platform.h"

namespace tmalloc {

inline constexpr size_t kSmallClassCount = 56;
inline constexpr size_t kSmallLinearMax = 128;  // classes below are 16 B apart

// Block size of a small class.
constexpr size_t class_size(size_t class_index) {
  if (class_index < 8) return (class_index + 1) * 16;
  const size_t group = (class_index - 8) / 8;  // 0 for 144..256
  const size_t step_in_group = (class_index - 8) % 8 + 1;
  const size_t base = size_t{128} << group;
  return base + step_in_group * (base / 8);
}

// class_size of every class, for lookups on hot paths.
inline constexpr auto kClassSizes = [] {
  struct Table {
    uint32_t size[kSmallClassCount];
  } table{};
  for (size_t c = 0; c < kSmallClassCount; ++c) table.size[c] = static_cast<uint32_t>(class_size(c));
  return table;
}();

// Smallest class whose block holds `size` bytes; size must be <= kSmallMax.
constexpr size_t size_to_class(size_t size) {
  if (size <= kSmallLinearMax) return size == 0 ? 0 : (size + 15) / 16 - 1;
  // b = floor(log2(size - 1)); size lies in (2^b, 2^(b+1)].
  const unsigned b = 63u - static_cast<unsigned>(__builtin_clzll(size - 1));
  const size_t k = ((size - 1) >> (b - 3)) - 7;  // 1..8
  return 7 + (b - 7) * 8 + k;
}

// Number of blocks of a class that fit in one run.
constexpr uint32_t blocks_per_run(size_t class_index) {
  return static_cast<uint32_t>(kRunSize / class_size(class_index));
}

// Multiplier for dividing a run offset by the class size without a division instruction:
// ceil(2^64 / size). For 32-bit offsets and sizes, one 64x64->128-bit multiplication gives
// both the quotient (the high half) and whether the division is exact (the low half is below
// the divider): Lemire, Kaser and Kurz, "Faster remainder by direct computation" (2019).
constexpr uint64_t class_divider(size_t class_index) { return UINT64_MAX / class_size(class_index) + 1; }

// offset / size and whether size divides offset exactly, from the class's divider.
struct RunDivision {
  size_t index;
  bool exact;
};
TM_ALWAYS_INLINE constexpr RunDivision divide_run_offset(uint64_t offset, uint64_t divider) {
  const unsigned __int128 product = static_cast<unsigned __int128>(offset) * divider;
  return RunDivision{static_cast<size_t>(product >> 64), static_cast<uint64_t>(product) < divider};
}

// Requests up to this size find their class in one table lookup (class_for_small_size).
inline constexpr size_t kSizeTableMax = 1024;

// size_to_class for every multiple of 16 up to kSizeTableMax, indexed by (size + 15) / 16.
inline constexpr auto kSizeTable = [] {
  struct Table {
    uint8_t class_index[kSizeTableMax / 16 + 1];
  } table{};
  for (size_t i = 0; i <= kSizeTableMax / 16; ++i) table.class_index[i] = static_cast<uint8_t>(size_to_class(i * 16));
  return table;
}();

// size_to_class for size <= kSizeTableMax: one load.
constexpr size_t class_for_small_size(size_t size) { return kSizeTable.class_index[(size + 15) / 16]; }

static_assert(class_size(kSmallClassCount - 1) == kSmallMax);
static_assert(size_to_class(kSmallMax) == kSmallClassCount - 1);
static_assert(size_to_class(129) == 8 && class_size(8) == 144);

}  // namespace tmalloc
