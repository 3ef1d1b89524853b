// Properties of the small size-class map (src/size_class.h) and its public wrappers.
//
//   size_to_class(n) is the smallest class whose block holds n bytes; class sizes increase
//   strictly; the map is monotonic; waste is < 12.5% of the request for n > 128 B and
//   < 16 B below; tm_size_to_class / tm_size_class_size agree with the internal map; a
//   small tm_malloc(n) hands out a block of exactly its class size.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_size_class --gtest_filter=SizeClass.<Name>
//   RC_PARAMS="seed=<seed printed as 'Using configuration: seed=...'>" ./tm_prop_size_class
//   More cases: RC_PARAMS="max_success=10000" (under ctest the last key wins).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "prop_common.h"
#include "size_class.h"
#include "tinymalloc.h"

namespace {

using tmalloc::class_size;
using tmalloc::kSmallClassCount;
using tmalloc::kSmallMax;
using tmalloc::size_to_class;

rc::Gen<size_t> small_request() {
  return rc::gen::weightedOneOf<size_t>({
      {2, rc::gen::inRange<size_t>(0, kSmallMax + 1)},
      {2, tmprop::log_uniform(0, kSmallMax + 1)},
      {1, rc::gen::suchThat(rc::gen::elementOf(tmprop::boundary_sizes()), [](size_t n) { return n <= kSmallMax; })},
  });
}

// Checks every invariant of one request size; used by the property and the exhaustive sweep.
void check_size(size_t n) {
  const size_t c = size_to_class(n);
  RC_ASSERT(c < kSmallClassCount);
  const size_t block = class_size(c);
  // The class holds the request ...
  RC_ASSERT(block >= n);
  // ... and is the smallest that does.
  if (c > 0) RC_ASSERT(class_size(c - 1) < n);
  // Waste bound.
  const size_t waste = block - n;
  if (n > tmalloc::kSmallLinearMax) {
    RC_ASSERT(waste * 8 < n);  // < 12.5% of the request
  } else if (n > 0) {
    RC_ASSERT(waste < 16u);
  } else {
    RC_ASSERT(block == 16u);  // size 0: the minimal block
  }
  // Public wrappers agree.
  RC_ASSERT(tm_size_to_class(n) == c);
  RC_ASSERT(tm_size_class_size(c) == block);
}

RC_GTEST_PROP(SizeClass, SmallestFittingClassWithBoundedWaste, ()) {
  const size_t n = *small_request();
  RC_CLASSIFY(n <= tmalloc::kSmallLinearMax, "linear classes (<=128)");
  RC_CLASSIFY(n > tmalloc::kSmallLinearMax, "geometric classes (>128)");
  check_size(n);
}

RC_GTEST_PROP(SizeClass, MapIsMonotonic, ()) {
  const size_t a = *small_request();
  const size_t b = *small_request();
  const size_t lo = a < b ? a : b, hi = a < b ? b : a;
  RC_ASSERT(size_to_class(lo) <= size_to_class(hi));
  RC_ASSERT(class_size(size_to_class(lo)) <= class_size(size_to_class(hi)));
}

RC_GTEST_PROP(SizeClass, ClassSizesStrictlyIncreaseAndRoundTrip, ()) {
  const size_t c = *rc::gen::inRange<size_t>(0, kSmallClassCount);
  const size_t s = class_size(c);
  RC_ASSERT(s % 16 == 0);
  RC_ASSERT(s <= kSmallMax);
  if (c + 1 < kSmallClassCount) RC_ASSERT(class_size(c + 1) > s);
  RC_ASSERT(size_to_class(s) == c);  // a class size maps to its own class
  RC_ASSERT(size_to_class(s + 1) == c + 1 || s == kSmallMax);
  RC_ASSERT(tmalloc::blocks_per_run(c) * s <= tmalloc::kRunSize);
  RC_ASSERT(tmalloc::blocks_per_run(c) >= 1u);
}

RC_GTEST_PROP(SizeClass, PublicWrappersOutOfRange, ()) {
  const size_t n = *rc::gen::weightedOneOf<size_t>({
      {3, rc::gen::inRange<size_t>(kSmallMax + 1, size_t{1} << 40)},
      {1, rc::gen::element<size_t>(kSmallMax + 1, SIZE_MAX, SIZE_MAX / 2)},
  });
  RC_ASSERT(tm_size_to_class(n) == size_t{TM_SMALL_CLASS_COUNT});
  const size_t bad = *rc::gen::inRange<size_t>(kSmallClassCount, kSmallClassCount + 1000);
  RC_ASSERT(tm_size_class_size(bad) == 0u);
  RC_ASSERT(tm_small_max() == kSmallMax);
  RC_ASSERT(tm_medium_max() == tmalloc::kMediumMax);
}

// A small allocation's usable size is exactly its class size, and it is 16-aligned when
// the class size is a multiple of 16 (all are).
RC_GTEST_PROP(SizeClass, SmallAllocationGetsItsClassBlock, ()) {
  const size_t n = *small_request();
  void* p = tm_malloc(n);
  RC_ASSERT(!tmprop::is_null(p));
  const size_t usable = tm_usable_size(p);
  const size_t expected = class_size(size_to_class(n));
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  tm_free(p);
  RC_ASSERT(usable == expected);
  RC_ASSERT(addr % 16 == 0u);
}

// Not random: the whole domain is only 8193 sizes.
TEST(SizeClass, ExhaustiveOverAllSmallSizes) {
  for (size_t n = 0; n <= kSmallMax; ++n) {
    const size_t c = size_to_class(n);
    ASSERT_LT(c, kSmallClassCount) << "n=" << n;
    ASSERT_GE(class_size(c), n) << "n=" << n;
    if (c > 0) {
      ASSERT_LT(class_size(c - 1), n) << "n=" << n;
    }
    if (n > 0) {
      ASSERT_LE(size_to_class(n - 1), c) << "n=" << n;
    }
    const size_t waste = class_size(c) - n;
    if (n > tmalloc::kSmallLinearMax) {
      ASSERT_LT(waste * 8, n) << "n=" << n << " class " << c << " size " << class_size(c);
    } else if (n > 0) {
      ASSERT_LT(waste, 16u) << "n=" << n;
    }
    ASSERT_EQ(tm_size_to_class(n), c);
  }
}

}  // namespace
