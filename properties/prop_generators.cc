// The suite's shared generators reach the whole range they name.
//
// RapidCheck scales `inRange` (and the generators built on it) by the size it passes down, and
// `rc::gen::resize(n, ...)` passes `n`: a list bounded that way drew its elements from a
// fraction of their range (alignment exponents 3-5 of 3-16, large blocks below 1 MiB). These
// tests sample the generators the way a property run does (sizes up to rc::kNominalSize) and
// require every value, kind and tier to come up, so a generator that loses part of its range
// fails here instead of silently narrowing what the properties explore.
//
//   ./tm_prop_generators            (no RapidCheck search: fixed samples, deterministic)
#include <gtest/gtest.h>

#include <cstddef>
#include <set>
#include <vector>

#include "config.h"
#include "prop_common.h"
#include "prop_history.h"

namespace {

constexpr int kSamples = 2000;

// The value `gen` produces from random stream `seed` at `size`.
template <typename T>
T sample(const rc::Gen<T>& gen, uint64_t seed, int size) {
  return gen(rc::Random(seed), size).value();
}

TEST(Generators, ListElementsSpanTheirRangeWhateverTheListBound) {
  const auto gen = tmprop::list_of(12, rc::gen::inRange<unsigned>(3, 17), /*non_empty=*/true);
  std::set<unsigned> seen;
  size_t longest = 0;
  for (int i = 0; i < kSamples; ++i) {
    const std::vector<unsigned> list = sample(gen, i, rc::kNominalSize);
    ASSERT_FALSE(list.empty()) << "sample " << i;
    longest = std::max(longest, list.size());
    seen.insert(list.begin(), list.end());
  }
  EXPECT_LE(longest, 13u);  // RapidCheck's length bound: the size, once in a while one more
  EXPECT_GE(longest, 10u);
  for (unsigned v = 3; v < 17; ++v) EXPECT_EQ(seen.count(v), 1u) << v << " never drawn";
}

TEST(Generators, SmallCasesStaySmall) {
  // At size 0 (RapidCheck's first cases) the elements sit at the bottom of their range.
  const auto gen = tmprop::list_of(12, rc::gen::inRange<unsigned>(3, 17));
  for (int i = 0; i < 200; ++i) {
    for (unsigned v : sample(gen, i, 0)) EXPECT_EQ(v, 3u);
  }
}

TEST(Generators, HistoriesReachEverySourceAlignmentAndTier) {
  const auto gen = tmprop::gen_history();
  std::set<tmprop::Source> sources;
  std::set<unsigned> alignments;
  size_t small = 0, medium = 0, large = 0, above_2mib = 0, largest_medium = 0;
  for (int i = 0; i < kSamples; ++i) {
    for (const tmprop::HistoryBlock& b : sample(gen, i, rc::kNominalSize)) {
      sources.insert(b.source);
      if (b.source == tmprop::Source::kAligned) alignments.insert(b.log2_align);
      if (b.size <= tmalloc::kSmallMax) {
        ++small;
      } else if (b.size <= tmalloc::kMediumMax) {
        ++medium;
        largest_medium = std::max(largest_medium, b.size);
      } else {
        ++large;
        if (b.size > (size_t{2} << 20)) ++above_2mib;
      }
    }
  }
  EXPECT_EQ(sources.size(), 5u);
  for (unsigned a = 3; a < 17; ++a) EXPECT_EQ(alignments.count(a), 1u) << "alignment 2^" << a << " never drawn";
  EXPECT_GT(small, 0u);
  EXPECT_GT(medium, 0u);
  EXPECT_GT(large, 0u);
  EXPECT_GT(above_2mib, 0u) << "no large block above 2 MiB";
  EXPECT_GT(largest_medium, tmalloc::kMediumMax - tmalloc::kMediumMax / 8) << "medium sizes stop at " << largest_medium;
}

}  // namespace
