// Size-class table (size_class.h) and its public mirror (tm_size_class_size / tm_size_to_class).
#include <gtest/gtest.h>

#include "internal_headers.h"

#include <cstddef>
#include <cstdint>

#include "tinymalloc.h"

namespace {

using tmi::class_size;
using tmi::kSmallClassCount;
using tmi::size_to_class;

static_assert(TM_SMALL_CLASS_COUNT == tmi::kSmallClassCount, "public and internal class counts differ");

TEST(SizeClass, TableShape) {
  EXPECT_EQ(class_size(0), 16u);
  EXPECT_EQ(class_size(7), 128u);
  EXPECT_EQ(class_size(8), 144u);
  EXPECT_EQ(class_size(kSmallClassCount - 1), tmi::kSmallMax);
  for (size_t i = 0; i < kSmallClassCount; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(class_size(i) % 16, 0u) << "class " << i << " size " << class_size(i);
    EXPECT_GE(class_size(i), tmi::kMinBlock);
    if (i > 0) {
      EXPECT_LT(class_size(i - 1), class_size(i)) << "table not strictly increasing";
    }
  }
}

TEST(SizeClass, LinearThenEightPerPowerOfTwo) {
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(class_size(i), (i + 1) * 16);
  // Above 128 B: exactly 8 classes in every (2^k, 2^(k+1)], evenly spaced by 2^k / 8.
  for (size_t k = 7; k < 13; ++k) {
    const size_t lo = size_t{1} << k;
    size_t in_range = 0;
    for (size_t i = 0; i < kSmallClassCount; ++i) {
      const size_t c = class_size(i);
      if (c > lo && c <= 2 * lo) {
        ++in_range;
        EXPECT_EQ((c - lo) % (lo / 8), 0u) << "class " << i << " size " << c;
      }
    }
    EXPECT_EQ(in_range, 8u) << "power-of-two range (" << lo << ", " << 2 * lo << "]";
  }
}

TEST(SizeClass, SizeToClassIsSmallestFit) {
  for (size_t n = 0; n <= tmi::kSmallMax; ++n) {
    const size_t c = size_to_class(n);
    ASSERT_LT(c, kSmallClassCount) << "n=" << n;
    ASSERT_GE(class_size(c), n) << "class too small for n=" << n;
    if (c > 0) {
      ASSERT_LT(class_size(c - 1), n) << "a smaller class also fits n=" << n;
    }
  }
  EXPECT_EQ(size_to_class(0), 0u);
  EXPECT_EQ(size_to_class(1), 0u);
  EXPECT_EQ(size_to_class(16), 0u);
  EXPECT_EQ(size_to_class(17), 1u);
  EXPECT_EQ(size_to_class(128), 7u);
  EXPECT_EQ(size_to_class(129), 8u);
  EXPECT_EQ(size_to_class(8192), kSmallClassCount - 1);
}

TEST(SizeClass, SizeToClassOfEveryClassSizeIsItself) {
  for (size_t i = 0; i < kSmallClassCount; ++i) {
    EXPECT_EQ(size_to_class(class_size(i)), i);
    if (i + 1 < kSmallClassCount) {
      EXPECT_EQ(size_to_class(class_size(i) + 1), i + 1);
    }
  }
}

TEST(SizeClass, WasteBound) {
  for (size_t n = 1; n <= tmi::kSmallMax; ++n) {
    const size_t c = class_size(size_to_class(n));
    const size_t waste = c - n;
    if (n > tmi::kSmallLinearMax) {
      // (c - n) / n < 1/8 and (c - n) / c <= 1/9, in exact integer arithmetic.
      ASSERT_LT(waste * 8, n) << "n=" << n << " class=" << c;
      ASSERT_LE(waste * 9, c) << "n=" << n << " class=" << c;
    } else {
      ASSERT_LT(waste, 16u) << "n=" << n << " class=" << c;
    }
  }
}

TEST(SizeClass, BlocksPerRun) {
  for (size_t i = 0; i < kSmallClassCount; ++i) {
    const size_t size = class_size(i);
    const size_t n = tmi::blocks_per_run(i);
    EXPECT_EQ(n, tmi::kRunSize / size) << "class " << i;
    EXPECT_LE(n * size, tmi::kRunSize);
    EXPECT_GT((n + 1) * size, tmi::kRunSize);
    EXPECT_GE(n, 8u) << "run of class " << i << " holds too few blocks";
    EXPECT_LE(n, tmi::kMaxBlocksPerRun);
    EXPECT_LE(n, tmi::kRunBitmapWords * 64) << "bitmap cannot track every block";
  }
  EXPECT_EQ(tmi::blocks_per_run(0), tmi::kMaxBlocksPerRun);
  EXPECT_EQ(tmi::blocks_per_run(kSmallClassCount - 1), 8u);
}

// free's block-start check and index come from one multiplication (divide_run_offset): for
// every class and every offset in a run, the quotient and the exactness must match a division.
TEST(SizeClass, DividerGivesQuotientAndExactness) {
  for (size_t i = 0; i < kSmallClassCount; ++i) {
    const uint64_t size = class_size(i);
    const uint64_t divider = tmi::class_divider(i);
    for (uint64_t offset = 0; offset < tmi::kRunSize; ++offset) {
      const tmi::RunDivision division = tmi::divide_run_offset(offset, divider);
      if (division.index != offset / size || division.exact != (offset % size == 0)) {
        FAIL() << "class " << i << " (size " << size << ") offset " << offset << ": divider gives " << division.index
               << (division.exact ? " exact" : " inexact") << ", division gives " << offset / size << " remainder "
               << offset % size;
      }
    }
  }
}

TEST(SizeClass, ConstexprEvaluation) {
  static_assert(tmi::class_size(3) == 64);
  static_assert(tmi::size_to_class(8192) == 55);
  static_assert(tmi::blocks_per_run(0) == 4096);
  SUCCEED();
}

TEST(SizeClassApi, ThresholdsMatchConfig) {
  EXPECT_EQ(tm_small_max(), tmi::kSmallMax);
  EXPECT_EQ(tm_small_max(), 8192u);
  EXPECT_EQ(tm_medium_max(), tmi::kMediumMax);
  EXPECT_EQ(tm_medium_max(), 512u * 1024u);
}

TEST(SizeClassApi, ClassSizeAgreesWithTable) {
  for (size_t i = 0; i < kSmallClassCount; ++i) EXPECT_EQ(tm_size_class_size(i), class_size(i)) << "class " << i;
  EXPECT_EQ(tm_size_class_size(kSmallClassCount), 0u);
  EXPECT_EQ(tm_size_class_size(kSmallClassCount + 1), 0u);
  EXPECT_EQ(tm_size_class_size(SIZE_MAX), 0u);
}

TEST(SizeClassApi, SizeToClassAgreesWithTable) {
  for (size_t n = 0; n <= tmi::kSmallMax; ++n) {
    ASSERT_EQ(tm_size_to_class(n), size_to_class(n)) << "n=" << n;
  }
  EXPECT_EQ(tm_size_to_class(tmi::kSmallMax + 1), size_t{TM_SMALL_CLASS_COUNT});
  EXPECT_EQ(tm_size_to_class(tmi::kMediumMax), size_t{TM_SMALL_CLASS_COUNT});
  EXPECT_EQ(tm_size_to_class(SIZE_MAX), size_t{TM_SMALL_CLASS_COUNT});
  EXPECT_EQ(tm_size_to_class(SIZE_MAX / 2 + 1), size_t{TM_SMALL_CLASS_COUNT});
}

}  // namespace

// The malloc fast path's table lookup agrees with size_to_class for every size it serves.
TEST(SizeClass, TableLookupMatchesTheFormulaUpToTheTableLimit) {
  using tmalloc::class_for_small_size;
  using tmalloc::kSizeTableMax;
  using tmalloc::size_to_class;
  for (size_t size = 0; size <= kSizeTableMax; ++size) {
    ASSERT_EQ(class_for_small_size(size), size_to_class(size)) << "size " << size;
  }
}
