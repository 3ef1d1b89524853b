// tm_malloc / tm_free / tm_calloc / tm_usable_size / tm_owns / tm_stats: tier boundaries,
// block geometry, coalescing, calloc zeroing, error returns and the statistics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "internal_headers.h"
#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

class Alloc : public HeapTest {};

int g_global_variable = 42;

// ---- tier boundaries -------------------------------------------------------------------

TEST_F(Alloc, TierBoundaries) {
  struct Case {
    size_t size;
    int tier;  // 0 small, 1 medium, 2 large
  };
  const Case cases[] = {{0, 0},
                        {1, 0},
                        {16, 0},
                        {8191, 0},
                        {8192, 0},
                        {8193, 1},
                        {8208, 1},
                        {65536, 1},
                        {512 * KiB - 1, 1},
                        {512 * KiB, 1},
                        {512 * KiB + 1, 2},
                        {512 * KiB + 16, 2},
                        {4 * MiB, 2}};
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "size " << c.size);
    const tm_stats_t before = stats();
    void* p = tm_malloc(c.size);
    ASSERT_NE(p, nullptr);
    const tm_stats_t after = stats();
    EXPECT_EQ(after.live_blocks, before.live_blocks + 1);
    EXPECT_EQ(after.requested_bytes, before.requested_bytes + c.size);
    EXPECT_EQ(after.usable_bytes, before.usable_bytes + tm_usable_size(p));
    EXPECT_EQ(after.small_live_blocks - before.small_live_blocks, c.tier == 0 ? 1u : 0u);
    EXPECT_EQ(after.medium_live_blocks - before.medium_live_blocks, c.tier == 1 ? 1u : 0u);
    EXPECT_EQ(after.large_live_blocks - before.large_live_blocks, c.tier == 2 ? 1u : 0u);
    EXPECT_EQ(after.large_mappings - before.large_mappings, c.tier == 2 ? 1u : 0u);
    if (c.tier == 0) {
      const size_t cls = tm_size_to_class(c.size);
      EXPECT_EQ(after.class_live_blocks[cls], before.class_live_blocks[cls] + 1) << "class " << cls;
      EXPECT_EQ(tm_usable_size(p), tm_size_class_size(cls)) << "small usable size is not the class size";
    }
    EXPECT_GE(tm_usable_size(p), c.size);
    std::memset(p, 0x5A, writable(p, c.size));
    TM_EXPECT_HEAP_OK();
    tm_free(p);
    const tm_stats_t freed = stats();
    EXPECT_EQ(freed.live_blocks, before.live_blocks);
    EXPECT_EQ(freed.requested_bytes, before.requested_bytes);
    EXPECT_EQ(freed.usable_bytes, before.usable_bytes);
  }
}

TEST_F(Alloc, MallocZeroGivesUniqueBlocks) {
  std::set<void*> seen;
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) {
    void* p = tm_malloc(0);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(seen.insert(p).second) << "tm_malloc(0) returned a live pointer twice";
    EXPECT_TRUE(tm_owns(p));
    blocks.push_back(p);
  }
  const tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks, base_.live_blocks + 100);
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes);
  for (void* p : blocks) tm_free(p);
}

TEST_F(Alloc, FreeNullAndUsableSizeNull) {
  tm_free(nullptr);
  tinyfree(nullptr);
  EXPECT_EQ(tm_usable_size(nullptr), 0u);
  errno = 1234;
  void* p = tm_malloc(100);
  tm_free(p);
  EXPECT_EQ(errno, 1234) << "tm_free must preserve errno";
}

TEST_F(Alloc, UsableSizeEverySmallAndMediumSize) {
  // Every size 0..9000 and a sweep through the medium tier: usable >= requested, 16-byte
  // alignment from 16 B up, and the whole usable area is writable without harming the heap.
  std::vector<std::pair<void*, size_t>> live;
  auto one = [&](size_t n) {
    void* p = tm_malloc(n);
    ASSERT_NE(p, nullptr) << n;
    const size_t usable = tm_usable_size(p);
    ASSERT_GE(usable, n) << "usable size below the request, n=" << n;
    if (n >= 16) {
      ASSERT_TRUE(is_aligned(p, 16)) << "n=" << n << " p=" << p;
    }
    if (n <= tm_small_max()) {
      ASSERT_EQ(usable, tm_size_class_size(tm_size_to_class(n))) << n;
    }
    if (n > tm_small_max() && n <= tm_medium_max()) {
      // Medium: 16-byte granules, a remainder below 256 B may stay in the block; up to 64 KiB
      // the block is carved at its medium cache class's size (8 classes per doubling).
      const size_t carved = n <= tmi::kMediumCacheMax ? tmi::medium_cache_class_size(tmi::medium_cache_class(n)) : n;
      ASSERT_GE(usable, carved) << "medium block below its class size, n=" << n;
      ASSERT_LT(usable, carved + 256 + 16) << "medium block wastes too much, n=" << n;
    }
    std::memset(p, static_cast<int>(n & 0xFF), writable(p, n));
    live.emplace_back(p, n);
  };
  for (size_t n = 0; n <= 9000; ++n) {
    one(n);
    if (::testing::Test::HasFatalFailure()) return;
    if (live.size() >= 512) {
      for (auto& [p, sz] : live) tm_free(p);
      live.clear();
    }
  }
  for (size_t n = 9000; n <= tm_medium_max() + 4096; n += 997) {
    one(n);
    if (::testing::Test::HasFatalFailure()) return;
    if (live.size() >= 64) {
      TM_ASSERT_HEAP_OK();
      for (auto& [p, sz] : live) tm_free(p);
      live.clear();
    }
  }
  TM_ASSERT_HEAP_OK();
  for (auto& [p, sz] : live) tm_free(p);
}

TEST_F(Alloc, BlocksDoNotOverlapAndKeepContents) {
  Rng rng(31337);
  struct Block {
    char* p;
    size_t n;
    uint64_t seed;
  };
  std::vector<Block> blocks;
  for (int i = 0; i < 1500; ++i) {
    const size_t n = rng.chance(3) ? rng.log_uniform(512 * KiB, 3 * MiB) : rng.log_uniform(1, 256 * KiB);
    auto* p = static_cast<char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    fill_sparse(p, n, static_cast<uint64_t>(i));
    if (n <= 4096) fill_pattern(p, n, static_cast<uint64_t>(i));
    blocks.push_back({p, n, static_cast<uint64_t>(i)});
  }
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  for (auto& b : blocks) {
    ranges.emplace_back(reinterpret_cast<uintptr_t>(b.p), reinterpret_cast<uintptr_t>(b.p) + tm_usable_size(b.p));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    ASSERT_LE(ranges[i - 1].second, ranges[i].first) << "two live blocks overlap";
  }
  TM_ASSERT_HEAP_OK();
  for (auto& b : blocks) {
    ASSERT_TRUE(check_sparse(b.p, b.n, b.seed)) << "contents changed, size " << b.n;
    if (b.n <= 4096) {
      ASSERT_EQ(check_pattern(b.p, b.n, b.seed), b.n);
    }
  }
  // Free in a scrambled order, checking the survivors on the way.
  for (size_t i = 0; i < blocks.size(); ++i) std::swap(blocks[i], blocks[rng.below(blocks.size())]);
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE(check_sparse(blocks[i].p, blocks[i].n, blocks[i].seed));
    tm_free(blocks[i].p);
    if (i % 300 == 0) {
      TM_ASSERT_HEAP_OK();
    }
  }
}

// ---- medium split / coalesce ---------------------------------------------------------

TEST_F(Alloc, MediumCoalesceThreeFreedNeighbours) {
  const MediumCacheOff exact_geometry;  // frees coalesce at once, blocks at their exact size
  constexpr size_t kSize = 40000;       // multiple of 16: each block is exactly kSize + 16 bytes
  std::vector<char*> run = adjacent_medium(kSize, 5);
  ASSERT_EQ(run.size(), 5u) << "could not get five adjacent medium blocks";
  char* guard_before = run[0];
  char* a = run[1];
  char* b = run[2];
  char* c = run[3];
  char* guard_after = run[4];
  const size_t span = static_cast<size_t>(guard_after - a);  // A+B+C, headers included
  ASSERT_EQ(span, 3 * (kSize + 16));
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s0 = stats();

  tm_free(a);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.medium_free_blocks, s0.medium_free_blocks + 1) << "A has used neighbours: one more free block";
  EXPECT_EQ(s1.medium_live_blocks, s0.medium_live_blocks - 1);

  tm_free(c);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s2 = stats();
  EXPECT_EQ(s2.medium_free_blocks, s0.medium_free_blocks + 2) << "C has used neighbours: one more free block";

  tm_free(b);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s3 = stats();
  EXPECT_EQ(s3.medium_free_blocks, s0.medium_free_blocks + 1) << "A, B and C must merge into one free block";
  const size_t freed_bytes = s3.medium_free_bytes - s0.medium_free_bytes;
  EXPECT_TRUE(freed_bytes == span || freed_bytes == span - 16)
      << "free bytes grew by " << freed_bytes << ", span " << span;
  EXPECT_GE(s3.medium_largest_free, span - 16);
  EXPECT_EQ(s3.medium_live_blocks, s0.medium_live_blocks - 3);

  // The merged block serves a request of its whole payload, in place of A.
  auto* merged = static_cast<char*>(tm_malloc(span - 16));
  ASSERT_NE(merged, nullptr);
  EXPECT_EQ(merged, a) << "the exact-fit merged block was not used";
  EXPECT_EQ(tm_usable_size(merged), span - 16);
  std::memset(merged, 0x11, span - 16);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s4 = stats();
  EXPECT_EQ(s4.medium_free_blocks, s0.medium_free_blocks);

  // Shrinking it splits the tail off as a free block (its successor is in use).
  void* shrunk = tm_realloc(merged, kSize);
  EXPECT_EQ(shrunk, merged) << "medium shrink moved the block";
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s5 = stats();
  EXPECT_EQ(s5.medium_free_blocks, s0.medium_free_blocks + 1) << "the split-off tail is one free block";
  EXPECT_EQ(s5.medium_free_bytes - s0.medium_free_bytes, (span - (kSize + 16)) - (freed_bytes == span ? 0 : 16));
  for (size_t i = 0; i < kSize; ++i) {
    if (merged[i] != 0x11) FAIL() << "content lost by the shrink at " << i;
  }

  tm_free(merged);
  tm_free(guard_before);
  tm_free(guard_after);
}

TEST_F(Alloc, MediumFreeMergesWithFreeSuccessorAndPredecessor) {
  const MediumCacheOff exact_geometry;  // frees coalesce at once, blocks at their exact size
  constexpr size_t kSize = 20000;
  std::vector<char*> run = adjacent_medium(kSize, 4);
  ASSERT_EQ(run.size(), 4u);
  const tm_stats_t s0 = stats();
  tm_free(run[2]);  // successor of run[1]
  tm_free(run[1]);  // merges forward
  TM_ASSERT_HEAP_OK();
  EXPECT_EQ(stats().medium_free_blocks, s0.medium_free_blocks + 1);
  tm_free(run[0]);  // merges forward into the pair; may merge backwards with older free space
  TM_ASSERT_HEAP_OK();
  EXPECT_LE(stats().medium_free_blocks, s0.medium_free_blocks + 1);
  tm_free(run[3]);
  TM_ASSERT_HEAP_OK();
}

// A medium block that ends exactly at the segment's end sentinel, in a fresh process (the
// first medium allocation creates the segment, so the layout is known).
int segment_end_scenario() {
  constexpr size_t kBig = 512 * KiB;
  constexpr size_t kBigBlock = kBig + 16;
  auto* first = static_cast<char*>(tm_malloc(kBig));
  char* base = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(first) & ~uintptr_t{tmi::kSegmentSize - 1});
  if (first != base + tmi::kMediumHeaderSize + 16) {
    std::fprintf(stderr, "first medium block at offset %zu\n", static_cast<size_t>(first - base));
    return 2;
  }
  std::vector<char*> blocks{first};
  size_t remaining = tmi::kSegmentSize - tmi::kMediumHeaderSize - 16 - kBigBlock;  // 16: end sentinel
  while (remaining - 16 > kBig) {
    auto* p = static_cast<char*>(tm_malloc(kBig));
    if (p != blocks.back() + kBigBlock) {
      std::fprintf(stderr, "block not carved from the front of the free rest\n");
      return 3;
    }
    blocks.push_back(p);
    remaining -= kBigBlock;
  }
  auto* last = static_cast<char*>(tm_malloc(remaining - 16));
  if (last != blocks.back() + kBigBlock || last + tm_usable_size(last) != base + tmi::kSegmentSize - 16) {
    std::fprintf(stderr, "last block does not end at the sentinel\n");
    return 4;
  }
  std::memset(last, 0x6B, tm_usable_size(last));
  if (tm_check_heap() != 0) return 5;
  tm_free(last);  // next is the sentinel: nothing to merge with
  if (tm_check_heap() != 0) {
    std::fprintf(stderr, "after freeing the last block: %s\n", heap_report().c_str());
    return 6;
  }
  // Grow the block before it into the freed space and shrink it back.
  char* prev = blocks.back();
  if (tm_realloc(prev, kBig) != prev) return 7;
  tm_free(prev);  // merges with the free tail up to the sentinel
  blocks.pop_back();
  if (tm_check_heap() != 0) return 8;
  auto* again = static_cast<char*>(tm_malloc(kBig));  // from the merged free tail
  if (again == nullptr || tm_check_heap() != 0) return 9;
  std::memset(again, 0x6C, tm_usable_size(again));
  tm_free(again);
  for (char* p : blocks) tm_free(p);
  if (tm_check_heap() != 0) return 10;
  const tm_stats_t s = stats();
  if (s.medium_live_blocks != 0) return 11;
  std::fprintf(stderr, "segment-end scenario ok\n");
  return 0;
}

TEST(AllocFreshProcessTest, MediumBlockEndingAtSegmentEnd) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(segment_end_scenario()), ::testing::ExitedWithCode(0), "segment-end scenario ok");
}

// ---- calloc ------------------------------------------------------------------------------

void calloc_reuse_case(size_t size, bool must_reuse) {
  SCOPED_TRACE(::testing::Message() << "size " << size);
  constexpr int kBlocks = 12;
  std::set<void*> old;
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    void* p = tm_malloc(size);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xAB, writable(p, size));
    blocks.push_back(p);
    old.insert(p);
  }
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) tm_free(*it);
  blocks.clear();
  size_t reused = 0;
  for (int i = 0; i < kBlocks; ++i) {
    auto* p = static_cast<unsigned char*>(tm_calloc(1, size));
    ASSERT_NE(p, nullptr);
    reused += old.count(p);
    for (size_t k = 0; k < size; ++k) {
      if (p[k] != 0) FAIL() << "calloc block " << static_cast<void*>(p) << " has byte " << int(p[k]) << " at " << k;
    }
    blocks.push_back(p);
  }
  if (must_reuse) {
    EXPECT_GT(reused, 0u) << "no dirty block was reused: the zeroing was not exercised";
  }
  for (void* p : blocks) tm_free(p);
}

TEST_F(Alloc, CallocZeroesReusedDirtyMemory) {
  for (size_t size : {size_t{1}, size_t{48}, size_t{1000}, size_t{8192}}) calloc_reuse_case(size, true);
  for (size_t size : {size_t{8193}, size_t{20000}, size_t{300000}, 512 * KiB}) calloc_reuse_case(size, true);
  for (size_t size : {512 * KiB + 1, 3 * MiB}) calloc_reuse_case(size, false);
}

TEST_F(Alloc, CallocZeroesMemoryOfAnotherClassAndTier) {
  // Dirty whole runs of one class, free them, then calloc a different class whose blocks
  // land in the recycled runs; the same for medium memory reused at a different size.
  std::vector<void*> dirty;
  for (int i = 0; i < 600; ++i) {
    void* p = tm_malloc(4000);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xCD, writable(p, 4000));
    dirty.push_back(p);
  }
  for (int i = 0; i < 40; ++i) {
    void* p = tm_malloc(100000);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xCD, writable(p, 100000));
    dirty.push_back(p);
  }
  for (void* p : dirty) tm_free(p);
  std::vector<void*> fresh;
  for (int i = 0; i < 40000; ++i) {
    auto* p = static_cast<unsigned char*>(tm_calloc(3, 16));  // class 48
    ASSERT_NE(p, nullptr);
    for (int k = 0; k < 48; ++k) ASSERT_EQ(p[k], 0) << "dirty small calloc block " << static_cast<void*>(p);
    fresh.push_back(p);
  }
  for (int i = 0; i < 30; ++i) {
    auto* p = static_cast<unsigned char*>(tm_calloc(1, 130000));
    ASSERT_NE(p, nullptr);
    for (size_t k = 0; k < 130000; ++k) ASSERT_EQ(p[k], 0) << "dirty medium calloc block at byte " << k;
    fresh.push_back(p);
  }
  for (int i = 0; i < 200; ++i) {
    auto* p = static_cast<unsigned char*>(tm_calloc(7, 1000));  // medium, odd size
    ASSERT_NE(p, nullptr);
    for (size_t k = 0; k < 7000; ++k) ASSERT_EQ(p[k], 0);
    fresh.push_back(p);
  }
  TM_ASSERT_HEAP_OK();
  for (void* p : fresh) tm_free(p);
}

TEST_F(Alloc, CallocRequestedBytesAndOddShapes) {
  const tm_stats_t s0 = stats();
  void* a = tm_calloc(100, 80);
  void* b = tm_calloc(3, 3000);
  void* c = tm_calloc(1000, 1000);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.requested_bytes - s0.requested_bytes, 8000u + 9000u + 1000000u);
  EXPECT_EQ(s1.live_blocks - s0.live_blocks, 3u);
  EXPECT_GE(tm_usable_size(a), 8000u);
  EXPECT_GE(tm_usable_size(b), 9000u);
  EXPECT_GE(tm_usable_size(c), 1000000u);
  tm_free(a);
  tm_free(b);
  tm_free(c);
  void* z1 = tm_calloc(0, 100);
  void* z2 = tm_calloc(100, 0);
  tm_free(z1);  // NULL or a unique block, either frees fine
  tm_free(z2);
}

TEST_F(Alloc, CallocOverflowIsEnomem) {
  const std::pair<size_t, size_t> cases[] = {{SIZE_MAX, 2},         {2, SIZE_MAX},
                                             {SIZE_MAX / 2 + 1, 2}, {size_t{1} << 32, size_t{1} << 32},
                                             {SIZE_MAX, SIZE_MAX},  {(SIZE_MAX / 16) + 1, 16},
                                             {1, SIZE_MAX},         {SIZE_MAX, 1}};
  for (auto [n, m] : cases) {
    errno = 0;
    void* p = tm_calloc(n, m);
    EXPECT_EQ(p, nullptr) << n << " x " << m;
    EXPECT_EQ(errno, ENOMEM) << n << " x " << m;
    if (p != nullptr) tm_free(p);
  }
}

// ---- impossible sizes ----------------------------------------------------------------

TEST_F(Alloc, HugeMallocIsEnomem) {
  const size_t sizes[] = {SIZE_MAX,        SIZE_MAX - 1,          SIZE_MAX - 15,  SIZE_MAX - 64,
                          SIZE_MAX - 4095, SIZE_MAX - 4 * MiB,    SIZE_MAX / 2,   SIZE_MAX / 2 + 1,
                          size_t{1} << 62, (size_t{1} << 48) + 1, size_t{1} << 47};
  for (size_t n : sizes) {
    errno = 0;
    void* p = tm_malloc(n);
    EXPECT_EQ(p, nullptr) << "tm_malloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM) << "tm_malloc(" << n << ")";
    if (p != nullptr) tm_free(p);
    errno = 0;
    p = tinymalloc(n);
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  const tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks, base_.live_blocks);
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes);
}

// ---- ownership ---------------------------------------------------------------------------

TEST_F(Alloc, OwnsOwnPointersOnly) {
  const size_t sizes[] = {1, 16, 100, 8192, 8193, 100000, 512 * KiB, 512 * KiB + 1, 5 * MiB};
  std::vector<char*> blocks;
  for (size_t n : sizes) {
    auto* p = static_cast<char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    blocks.push_back(p);
    const size_t usable = tm_usable_size(p);
    EXPECT_TRUE(tm_owns(p)) << n;
    EXPECT_TRUE(tm_owns(p + usable / 2)) << n;
    EXPECT_TRUE(tm_owns(p + usable - 1)) << n;
  }
  int local = 0;
  void* glibc = std::malloc(64);
  ASSERT_NE(glibc, nullptr);
  void* glibc_big = std::malloc(8 * MiB);
  ASSERT_NE(glibc_big, nullptr);
  EXPECT_FALSE(tm_owns(&local));
  EXPECT_FALSE(tm_owns(&g_global_variable));
  EXPECT_FALSE(tm_owns(reinterpret_cast<const void*>(&std::malloc)));
  EXPECT_FALSE(tm_owns(glibc));
  EXPECT_FALSE(tm_owns(glibc_big));
  EXPECT_FALSE(tm_owns(static_cast<char*>(glibc_big) + 4 * MiB));
  EXPECT_FALSE(tm_owns(nullptr));
  EXPECT_FALSE(tm_owns(reinterpret_cast<void*>(uintptr_t{1})));
  EXPECT_FALSE(tm_owns(reinterpret_cast<void*>(uintptr_t{4096})));
  EXPECT_FALSE(tm_owns(reinterpret_cast<void*>(~uintptr_t{0})));
  EXPECT_FALSE(tm_owns(reinterpret_cast<void*>(uintptr_t{0xffff800000000000ULL})));
  EXPECT_FALSE(tm_owns(reinterpret_cast<void*>(uintptr_t{1} << 47)));
  EXPECT_FALSE(tm_owns(reinterpret_cast<void*>((uintptr_t{1} << 47) - 16)));
  std::free(glibc);
  std::free(glibc_big);
  // Allocator metadata is not a block: segment headers and the header before a large block.
  for (char* p : blocks) {
    const size_t n = tm_usable_size(p);
    auto* segment = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{tmi::kSegmentSize - 1});
    if (n <= tm_medium_max()) {
      EXPECT_FALSE(tm_owns(segment)) << "segment header of a block of " << n;
      EXPECT_FALSE(tm_owns(segment + 64)) << "segment header of a block of " << n;
    } else {
      EXPECT_FALSE(tm_owns(p - 1)) << "large block header";
      EXPECT_FALSE(tm_owns(p - tmi::kLargeHeaderSize)) << "large block header";
    }
  }
  for (char* p : blocks) tm_free(p);
}

TEST_F(Alloc, OwnsFreedBlockWhoseSegmentStaysMapped) {
  // A free block inside a live segment or run is still tinymalloc's memory.
  void* keep_small = tm_malloc(64);
  void* small = tm_malloc(64);
  std::vector<char*> run = adjacent_medium(30000, 3);
  ASSERT_EQ(run.size(), 3u);
  tm_free(small);
  tm_free(run[1]);
  EXPECT_TRUE(tm_owns(small));
  EXPECT_TRUE(tm_owns(run[1]));
  EXPECT_TRUE(tm_owns(run[1] + 1000));
  tm_free(keep_small);
  tm_free(run[0]);
  tm_free(run[2]);
}

// ---- statistics ------------------------------------------------------------------------

TEST_F(Alloc, StatsTrackLiveBlocksExactly) {
  Rng rng(5);
  struct B {
    void* p;
    size_t n;
  };
  std::vector<B> blocks;
  size_t requested = 0;
  size_t usable = 0;
  size_t small = 0;
  size_t medium = 0;
  size_t large = 0;
  size_t class_live[TM_SMALL_CLASS_COUNT] = {};
  for (int i = 0; i < 600; ++i) {
    const size_t n = i % 50 == 0 ? rng.log_uniform(512 * KiB + 1, 4 * MiB) : rng.log_uniform(1, 400 * KiB);
    void* p = (i % 7 == 0) ? tm_calloc(1, n) : tm_malloc(n);
    ASSERT_NE(p, nullptr);
    blocks.push_back({p, n});
    requested += n;
    usable += tm_usable_size(p);
    if (n <= tm_small_max()) {
      ++small;
      ++class_live[tm_size_to_class(n)];
    } else if (n <= tm_medium_max()) {
      ++medium;
    } else {
      ++large;
    }
  }
  tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks - base_.live_blocks, blocks.size());
  EXPECT_EQ(s.requested_bytes - base_.requested_bytes, requested);
  EXPECT_EQ(s.usable_bytes - base_.usable_bytes, usable);
  EXPECT_EQ(s.small_live_blocks - base_.small_live_blocks, small);
  EXPECT_EQ(s.medium_live_blocks - base_.medium_live_blocks, medium);
  EXPECT_EQ(s.large_live_blocks - base_.large_live_blocks, large);
  EXPECT_EQ(s.large_mappings - base_.large_mappings, large);
  EXPECT_EQ(s.live_blocks, s.small_live_blocks + s.medium_live_blocks + s.large_live_blocks);
  size_t class_sum = 0;
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    EXPECT_EQ(s.class_live_blocks[c] - base_.class_live_blocks[c], class_live[c]) << "class " << c;
    class_sum += s.class_live_blocks[c];
  }
  EXPECT_EQ(class_sum, s.small_live_blocks);
  EXPECT_GE(s.usable_bytes, s.requested_bytes);
  EXPECT_GE(s.mapped_bytes, s.usable_bytes);
  EXPECT_LE(s.committed_bytes, s.mapped_bytes);
  EXPECT_GE(s.peak_requested_bytes, s.requested_bytes);
  EXPECT_GE(s.peak_mapped_bytes, s.mapped_bytes);
  EXPECT_GE(s.small_segments, 1u);
  EXPECT_GE(s.medium_segments, 1u);
  EXPECT_GE(s.os_map_calls, s.small_segments + s.medium_segments + s.large_mappings);

  tm_stats_reset_peaks();
  s = stats();
  EXPECT_EQ(s.peak_requested_bytes, s.requested_bytes);
  EXPECT_EQ(s.peak_mapped_bytes, s.mapped_bytes);

  for (size_t i = 0; i < blocks.size(); i += 2) tm_free(blocks[i].p);
  for (size_t i = 1; i < blocks.size(); i += 2) tm_free(blocks[i].p);
  s = stats();
  EXPECT_EQ(s.peak_requested_bytes, base_.requested_bytes + requested) << "peak moved without new requests";
  TM_EXPECT_HEAP_OK();
}

TEST_F(Alloc, PeakRequestedFollowsHighWater) {
  tm_stats_reset_peaks();
  const tm_stats_t s0 = stats();
  void* a = tm_malloc(300000);
  void* b = tm_malloc(700000);
  tm_free(a);
  void* c = tm_malloc(1000);
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.peak_requested_bytes, s0.requested_bytes + 1000000);
  EXPECT_EQ(s1.requested_bytes, s0.requested_bytes + 701000);
  EXPECT_GE(s1.peak_mapped_bytes, s1.mapped_bytes);
  tm_free(b);
  tm_free(c);
}

TEST_F(Alloc, ReleaseCachedUnmapsEmptySegments) {
  std::vector<void*> blocks;
  for (int i = 0; i < 3000; ++i) blocks.push_back(tm_malloc(4096));  // ~12 MiB of small runs
  for (int i = 0; i < 60; ++i) blocks.push_back(tm_malloc(200000));  // ~12 MiB of medium
  for (void* p : blocks) ASSERT_NE(p, nullptr);
  const tm_stats_t full = stats();
  for (void* p : blocks) tm_free(p);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t freed = stats();
  tm_release_cached();
  TM_ASSERT_HEAP_OK();
  const tm_stats_t released = stats();
  EXPECT_LE(released.mapped_bytes, freed.mapped_bytes);
  EXPECT_LE(released.small_segments, freed.small_segments);
  EXPECT_LE(released.medium_segments, freed.medium_segments);
  EXPECT_LT(released.mapped_bytes, full.mapped_bytes) << "nothing was returned to the OS";
  EXPECT_GT(released.os_unmap_calls + released.os_purge_calls, full.os_unmap_calls + full.os_purge_calls);
  // The allocator keeps working afterwards.
  void* p = tm_malloc(4096);
  void* q = tm_malloc(200000);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  std::memset(p, 1, 4096);
  std::memset(q, 1, 200000);
  tm_free(p);
  tm_free(q);
}

TEST_F(Alloc, AliasesWork) {
  void* p = tinymalloc(123);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(tm_owns(p));
  EXPECT_GE(tm_usable_size(p), 123u);
  std::memset(p, 7, 123);
  EXPECT_EQ(stats().live_blocks, base_.live_blocks + 1);
  tinyfree(p);
  void* q = tinymalloc(1 * MiB);
  ASSERT_NE(q, nullptr);
  tinyfree(q);
  void* r = tm_malloc(50);
  tinyfree(r);  // mixing the names is fine
  void* s = tinymalloc(50);
  tm_free(s);
}

}  // namespace
