// Memory pools (tm_heap_*): allocation in every tier, pool-local realloc, reset and destroy
// releasing everything at once, per-pool statistics, misuse reports, concurrent use.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

const size_t kSizes[] = {1, 24, 100, 1000, 8192, 9000, 70000, 400000, 600000, 3 * MiB};

class Heap : public ::testing::Test {
 protected:
  void SetUp() override { base_ = stats(); }
  void TearDown() override {
    TM_EXPECT_HEAP_OK();
    const tm_stats_t now = stats();
    EXPECT_EQ(now.live_blocks, base_.live_blocks);
    EXPECT_EQ(now.requested_bytes, base_.requested_bytes);
  }
  tm_stats_t base_{};
};

// Fills a block with a pattern derived from its index.
void fill(void* p, size_t n, size_t seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(seed * 31 + i);
}

// True when the pattern of fill() is intact.
bool intact(const void* p, size_t n, size_t seed) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (bytes[i] != static_cast<unsigned char>(seed * 31 + i)) return false;
  }
  return true;
}

TEST_F(Heap, AllocatesInEveryTierAndCountsItsBlocks) {
  tm_heap_t* heap = tm_heap_create();
  ASSERT_NE(heap, nullptr);
  std::vector<void*> blocks;
  size_t usable = 0;
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    void* p = tm_heap_malloc(heap, kSizes[i]);
    ASSERT_NE(p, nullptr);
    fill(p, kSizes[i], i);
    usable += tm_usable_size(p);
    blocks.push_back(p);
  }
  tm_heap_stats_t hs;
  tm_heap_stats(heap, &hs);
  EXPECT_EQ(hs.live_blocks, std::size(kSizes));
  EXPECT_EQ(hs.usable_bytes, usable);
  EXPECT_EQ(hs.large_blocks, 2u);  // 600000 and 3 MiB (above the 512 KiB medium maximum)
  EXPECT_GE(hs.segments, 2u);
  EXPECT_EQ(stats().live_blocks, base_.live_blocks + std::size(kSizes));
  TM_EXPECT_HEAP_OK();
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_TRUE(intact(blocks[i], kSizes[i], i)) << kSizes[i];
    tm_heap_free(heap, blocks[i]);
  }
  tm_heap_stats(heap, &hs);
  EXPECT_EQ(hs.live_blocks, 0u);
  tm_heap_destroy(heap);
}

// Which tier's live-block count rose between two snapshots: 0 small, 1 medium, 2 large, -1 none.
int tier_raised(const tm_stats_t& before, const tm_stats_t& after) {
  if (after.small_live_blocks > before.small_live_blocks) return 0;
  if (after.medium_live_blocks > before.medium_live_blocks) return 1;
  if (after.large_live_blocks > before.large_live_blocks) return 2;
  return -1;
}

// A pool serves each size from the tier malloc serves it from, at the tiers' limits too:
// the largest small and medium requests, and one byte more.
TEST_F(Heap, EachSizeComesFromTheTierMallocServesItFrom) {
  tm_heap_t* pool = tm_heap_create();
  ASSERT_NE(pool, nullptr);
  for (size_t size : {size_t{8192}, size_t{8193}, size_t{512} << 10, (size_t{512} << 10) + 1}) {
    SCOPED_TRACE(size);
    const tm_stats_t before_malloc = stats();
    void* p = tm_malloc(size);
    ASSERT_NE(p, nullptr);
    const int malloc_tier = tier_raised(before_malloc, stats());
    tm_free(p);
    const tm_stats_t before_pool = stats();
    void* q = tm_heap_malloc(pool, size);
    ASSERT_NE(q, nullptr);
    EXPECT_NE(malloc_tier, -1);
    EXPECT_EQ(tier_raised(before_pool, stats()), malloc_tier);
    tm_heap_free(pool, q);
  }
  tm_heap_destroy(pool);
}

// A pool's realloc leaves a block in the tier malloc serves the new size from, at the tiers'
// limits too, and keeps it in place where its tier allows: a small block grown to the largest
// small size within its class, a medium block shrunk to the smallest medium size.
TEST_F(Heap, ReallocAtTheTierLimitsEndsInTheTierOfTheNewSize) {
  tm_heap_t* pool = tm_heap_create();
  ASSERT_NE(pool, nullptr);
  struct Case {
    size_t from;
    size_t to;
    int tier;       // of the block realloc returns
    bool in_place;  // whether it returns the same address
  };
  const size_t kSmallMax = 8192;
  const size_t kMediumMax = size_t{512} << 10;
  const Case cases[] = {
      {kSmallMax - 92, kSmallMax, 0, true},          // the largest small class holds it
      {100, kSmallMax + 1, 1, false},                // small -> medium
      {20000, kSmallMax + 1, 1, true},               // a medium block shrinks in place ...
      {20000, kSmallMax, 0, false},                  // ... but not into the small tier's sizes
      {kMediumMax, kMediumMax, 1, true},             // the largest medium size stays in place
      {kMediumMax + 4096, kMediumMax, 1, false},     // large -> medium
      {kMediumMax + 4096, kMediumMax + 1, 2, true},  // a large block shrinks in place
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.from) + " -> " + std::to_string(c.to));
    const tm_stats_t empty = stats();
    auto* p = static_cast<unsigned char*>(tm_heap_malloc(pool, c.from));
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < 64; ++i) p[i] = static_cast<unsigned char>(i * 7 + 1);
    void* q = tm_heap_realloc(pool, p, c.to);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(tier_raised(empty, stats()), c.tier);
    EXPECT_EQ(q == p, c.in_place);
    EXPECT_GE(tm_usable_size(q), c.to);
    for (size_t i = 0; i < 64; ++i) ASSERT_EQ(static_cast<unsigned char*>(q)[i], static_cast<unsigned char>(i * 7 + 1));
    tm_heap_free(pool, q);
  }
  tm_heap_destroy(pool);
}

TEST_F(Heap, ResetReleasesEverythingAtOnceAndThePoolStaysUsable) {
  tm_heap_t* heap = tm_heap_create();
  ASSERT_NE(heap, nullptr);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3000; ++i) {
      const size_t n = kSizes[static_cast<size_t>(i) % std::size(kSizes)];
      if (n > MiB && i > 100) continue;
      void* p = tm_heap_calloc(heap, 1, n);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(static_cast<unsigned char*>(p)[n - 1], 0) << "calloc in a reset pool";
      std::memset(p, 0xEE, n);
    }
    EXPECT_GT(stats().live_blocks, base_.live_blocks);
    tm_heap_reset(heap);
    tm_heap_stats_t hs;
    tm_heap_stats(heap, &hs);
    EXPECT_EQ(hs.live_blocks, 0u);
    EXPECT_EQ(hs.segments, 0u);
    const tm_stats_t now = stats();
    EXPECT_EQ(now.live_blocks, base_.live_blocks) << "round " << round;
    EXPECT_EQ(now.requested_bytes, base_.requested_bytes) << "round " << round;
    TM_EXPECT_HEAP_OK();
  }
  tm_heap_destroy(heap);
}

TEST_F(Heap, ReallocKeepsTheBlockInItsPool) {
  tm_heap_t* heap = tm_heap_create();
  ASSERT_NE(heap, nullptr);
  void* p = tm_heap_malloc(heap, 10);
  fill(p, 10, 3);
  for (size_t n : {100u, 5000u, 9000u, 200000u, 700000u, 2000000u, 50u}) {
    p = tm_heap_realloc(heap, p, n);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(intact(p, 10, 3)) << n;
    tm_heap_stats_t hs;
    tm_heap_stats(heap, &hs);
    EXPECT_EQ(hs.live_blocks, 1u) << "the realloc'ed block is the pool's, at size " << n;
  }
  tm_heap_destroy(heap);  // frees p with the pool
}

TEST_F(Heap, FreeOfAPoolBlockThroughTmFreeGoesBackToThePool) {
  tm_heap_t* heap = tm_heap_create();
  std::vector<void*> blocks;
  for (int i = 0; i < 500; ++i) blocks.push_back(tm_heap_malloc(heap, 64));
  for (void* p : blocks) tm_free(p);
  tm_heap_stats_t hs;
  tm_heap_stats(heap, &hs);
  EXPECT_EQ(hs.live_blocks, 0u);
  EXPECT_EQ(stats().cached_blocks, base_.cached_blocks) << "pool blocks never enter a thread cache";
  tm_heap_destroy(heap);
}

// Regression (found by HeapState.MatchesHarnessShadowHeap under TSan, 2026-12-06; the input
// is corpus/regressions/heap_pools/aligned-medium-block-on-a-reset-pools-free-key): a small
// block freed into its run keeps its free-block key, a reset hands the pool's segment to the
// shared segment pool unzeroed, and an aligned medium block of the main heap, placed inside
// a free block where one of those small blocks had been, carried the key: its usable_size and
// its free were reported as misuse ("already freed into a thread cache"). (A block carved from
// the front of a free block does not: the free block's own links were written there.)
TEST_F(Heap, AlignedMediumBlocksInTheMemoryOfAResetPoolAreLive) {
  tm_heap_t* heap = tm_heap_create();
  ASSERT_NE(heap, nullptr);
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) blocks.push_back(tm_heap_malloc(heap, 16));
  const auto first_block = reinterpret_cast<uintptr_t>(blocks.front());
  const auto last_block = reinterpret_cast<uintptr_t>(blocks.back());
  // One block in 64 stays live, so no run empties (an empty run's pages may go back to the
  // OS, zeroing the keys) and the reset drops runs of keyed free blocks. The kept blocks are
  // not at 1 KiB multiples: every 64 KiB boundary of the runs holds a freed block.
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i % 64 != 1) tm_free(blocks[i]);
  }
  tm_heap_reset(heap);
  // 64 KiB-aligned medium blocks of the main heap until some land where the pool's blocks were.
  std::vector<void*> aligned;
  size_t landed = 0;
  for (int i = 0; i < 1000 && landed < 3; ++i) {
    void* p = tm_aligned_alloc(64 * 1024, 100);
    ASSERT_NE(p, nullptr);
    aligned.push_back(p);
    const auto at = reinterpret_cast<uintptr_t>(p);
    if (at >= first_block && at <= last_block) ++landed;
  }
  ASSERT_EQ(landed, 3u) << "the main heap's aligned blocks did not reuse the reset pool's segment";
  for (void* p : aligned) {
    EXPECT_GE(tm_usable_size(p), 100u);
    tm_free(p);
  }
  tm_heap_destroy(heap);
}

TEST_F(Heap, PoolsAreLimitedTo64) {
  std::vector<tm_heap_t*> heaps;
  for (;;) {
    tm_heap_t* heap = tm_heap_create();
    if (heap == nullptr) break;
    heaps.push_back(heap);
    ASSERT_LE(heaps.size(), 64u);
  }
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(heaps.size(), 64u);
  for (tm_heap_t* heap : heaps) tm_heap_destroy(heap);
  tm_heap_t* again = tm_heap_create();
  EXPECT_NE(again, nullptr) << "destroyed pools can be created again";
  tm_heap_destroy(again);
}

TEST_F(Heap, ThreadsShareAPool) {
  tm_heap_t* heap = tm_heap_create();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([heap, t] {
      Rng rng(static_cast<uint64_t>(t) + 1);
      struct Live {
        void* p;
        size_t n;
        size_t seed;
      };
      std::vector<Live> live;
      for (int i = 0; i < 4000; ++i) {
        if (!live.empty() && rng.chance(45)) {
          const size_t k = rng.below(live.size());
          ASSERT_TRUE(intact(live[k].p, live[k].n, live[k].seed));
          tm_heap_free(heap, live[k].p);
          live[k] = live.back();
          live.pop_back();
        } else {
          const size_t n = rng.chance(90) ? rng.range(1, 2000) : rng.range(8193, 200000);
          void* p = tm_heap_malloc(heap, n);
          ASSERT_NE(p, nullptr);
          fill(p, n, static_cast<size_t>(i));
          live.push_back(Live{p, n, static_cast<size_t>(i)});
        }
      }
      for (const Live& block : live) tm_heap_free(heap, block.p);
    });
  }
  for (std::thread& t : threads) t.join();
  tm_heap_stats_t hs;
  tm_heap_stats(heap, &hs);
  EXPECT_EQ(hs.live_blocks, 0u);
  tm_heap_destroy(heap);
}

class HeapDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(HeapDeathTest, FreeThroughAnotherPoolIsReported) {
  EXPECT_EXIT(
      {
        tm_heap_t* a = tm_heap_create();
        tm_heap_t* b = tm_heap_create();
        void* p = tm_heap_malloc(a, 100);
        tm_heap_free(b, p);
      },
      ::testing::KilledBySignal(SIGABRT),
      "tinymalloc: invalid free at 0x[0-9a-f]+ \\(block does not belong to this memory pool\\)");
}

TEST_F(HeapDeathTest, DestroyedPoolIsReported) {
  EXPECT_EXIT(
      {
        tm_heap_t* a = tm_heap_create();
        tm_heap_destroy(a);
        tm_heap_malloc(a, 100);
      },
      ::testing::KilledBySignal(SIGABRT),
      "tinymalloc: invalid heap at 0x[0-9a-f]+ \\(not a memory pool created by tm_heap_create \\(or destroyed\\)\\)");
}

// A handle outside the pool table is reported even when it looks like an entry: at the
// table's stride from a real handle, over memory whose every byte is set (so its "in use"
// word reads non-zero). Without the range check, only the stride and that word would be
// tested, and these would pass.
void use_lookalike_handle(unsigned char* memory, size_t size) {
  tm_heap_t* a = tm_heap_create();
  tm_heap_t* b = tm_heap_create();
  const uintptr_t stride = reinterpret_cast<uintptr_t>(b) - reinterpret_cast<uintptr_t>(a);
  if (stride == 0 || stride > size / 2) return;  // not what the table looks like: no death, the test fails
  memset(memory, 0xff, size);
  uintptr_t at = reinterpret_cast<uintptr_t>(memory);
  while ((at - reinterpret_cast<uintptr_t>(a)) % stride != 0) ++at;
  tm_heap_malloc(reinterpret_cast<tm_heap_t*>(at), 100);
}

TEST_F(HeapDeathTest, AHandleOnTheStackIsReported) {
  EXPECT_EXIT(
      {
        alignas(16) unsigned char memory[256];
        use_lookalike_handle(memory, sizeof memory);
      },
      ::testing::KilledBySignal(SIGABRT),
      "tinymalloc: invalid heap at 0x[0-9a-f]+ \\(not a memory pool created by tm_heap_create \\(or destroyed\\)\\)");
}

TEST_F(HeapDeathTest, AHandleInAHeapBlockIsReported) {
  EXPECT_EXIT(
      {
        auto* memory = static_cast<unsigned char*>(tm_malloc(256));
        use_lookalike_handle(memory, 256);
      },
      ::testing::KilledBySignal(SIGABRT),
      "tinymalloc: invalid heap at 0x[0-9a-f]+ \\(not a memory pool created by tm_heap_create \\(or destroyed\\)\\)");
}

TEST_F(HeapDeathTest, BlockOfAResetPoolIsNotLive) {
  EXPECT_EXIT(
      {
        tm_heap_t* a = tm_heap_create();
        void* p = tm_heap_malloc(a, 100);
        tm_heap_reset(a);
        tm_free(p);
      },
      ::testing::KilledBySignal(SIGABRT),
      "tinymalloc: invalid free at 0x[0-9a-f]+ \\(pointer not owned by tinymalloc\\)");
}

}  // namespace
