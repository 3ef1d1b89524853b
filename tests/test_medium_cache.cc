// The per-thread medium-block cache (src/medium_cache.h): class carving, reuse without the
// lock, the coalescing contract (a cached block is neither live nor free, and is coalesced
// when it leaves the cache), the bounds, misuse of cached blocks, threads and the option.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <thread>
#include <vector>

#include "internal_headers.h"
#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

class MediumCache : public HeapTest {
 protected:
  void SetUp() override {
    tm_release_cached();  // earlier tests' cached blocks out of the way
    HeapTest::SetUp();
  }
};

// The payload size a request of `n` bytes is carved at.
size_t class_size_of(size_t n) { return tmi::medium_cache_class_size(tmi::medium_cache_class(n)); }

TEST(MediumCacheClasses, EveryRequestMapsToTheSmallestClassThatHoldsIt) {
  for (size_t n = tm_small_max() + 1; n <= tmi::kMediumCacheMax; ++n) {
    const size_t c = tmi::medium_cache_class(n);
    ASSERT_LT(c, tmi::kMediumCacheClasses) << n;
    ASSERT_GE(tmi::medium_cache_class_size(c), n) << n;
    if (c > 0) {
      ASSERT_LT(tmi::medium_cache_class_size(c - 1), n) << n;
    }
    ASSERT_EQ(tmi::medium_cache_class_size(c) % 16, 0u);
  }
  // A freed block goes to the largest class whose every request it can serve.
  for (size_t usable = 8192; usable < 80 * KiB; usable += 16) {
    const size_t bin = tmi::medium_cache_bin_for_usable(usable);
    if (bin == tmi::kMediumCacheClasses) {
      EXPECT_TRUE(usable < tmi::medium_cache_class_size(0) || usable >= tmi::kMediumCacheMax + tmi::kMediumCacheMax / 8)
          << usable;
      continue;
    }
    ASSERT_LE(tmi::medium_cache_class_size(bin), usable) << usable;
    if (bin + 1 < tmi::kMediumCacheClasses) {
      ASSERT_GT(tmi::medium_cache_class_size(bin + 1), usable) << usable;
    }
  }
}

TEST_F(MediumCache, AFreedBlockIsNeitherLiveNorFreeAndServesItsClassAgain) {
  auto* keep = static_cast<char*>(tm_malloc(20000));  // the blocks around stay in use
  auto* p = static_cast<char*>(tm_malloc(20000));
  auto* after = static_cast<char*>(tm_malloc(20000));
  ASSERT_TRUE(keep && p && after);
  EXPECT_EQ(tm_usable_size(p), class_size_of(20000)) << "carved at its class size";
  const tm_stats_t s0 = stats();
  tm_free(p);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.medium_live_blocks, s0.medium_live_blocks - 1);
  EXPECT_EQ(s1.live_blocks, s0.live_blocks - 1);
  EXPECT_EQ(s1.usable_bytes, s0.usable_bytes - class_size_of(20000));
  EXPECT_EQ(s1.requested_bytes, s0.requested_bytes - 20000);
  EXPECT_EQ(s1.medium_free_blocks, s0.medium_free_blocks) << "a cached block is not in the free index";
  EXPECT_EQ(s1.medium_free_bytes, s0.medium_free_bytes);
  EXPECT_EQ(s1.cached_blocks, s0.cached_blocks + 1);
  // Any request of the same class gets it back, its old data cleared by calloc.
  std::memset(keep, 0x5a, 20000);
  auto* q = static_cast<char*>(tm_calloc(1, class_size_of(20000) - 100));
  EXPECT_EQ(q, p) << "the cached block was not reused";
  for (size_t i = 0; i < class_size_of(20000) - 100; ++i) ASSERT_EQ(q[i], 0) << "calloc of a cached block at " << i;
  const tm_stats_t s2 = stats();
  EXPECT_EQ(s2.medium_live_blocks, s0.medium_live_blocks);
  EXPECT_EQ(s2.requested_bytes, s0.requested_bytes - 20000 + class_size_of(20000) - 100);
  EXPECT_EQ(s2.cached_blocks, s0.cached_blocks);
  TM_ASSERT_HEAP_OK();
  tm_free(q);
  tm_free(keep);
  tm_free(after);
}

TEST_F(MediumCache, LeavingTheCacheCoalescesNoTwoFreeNeighboursAfterRelease) {
  std::vector<char*> run = adjacent_medium(30000, 5);
  ASSERT_EQ(run.size(), 5u);
  tm_release_cached();  // the blocks adjacent_medium freed again
  const tm_stats_t s0 = stats();
  tm_free(run[1]);
  tm_free(run[2]);
  tm_free(run[3]);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.medium_free_blocks, s0.medium_free_blocks) << "cached blocks were coalesced at their free";
  EXPECT_EQ(s1.medium_live_blocks, s0.medium_live_blocks - 3);
  // tm_release_cached empties the caller's bins: the three neighbours become one free block.
  tm_release_cached();
  TM_ASSERT_HEAP_OK();  // the walk fails on two adjacent free blocks
  const tm_stats_t s2 = stats();
  EXPECT_EQ(s2.medium_free_blocks, s0.medium_free_blocks + 1) << "three cached neighbours did not merge";
  EXPECT_GE(s2.medium_largest_free, 3 * (class_size_of(30000) + 16) - 16);
  EXPECT_EQ(s2.cached_blocks, 0u);
  tm_free(run[0]);
  tm_free(run[4]);
}

TEST_F(MediumCache, AFullBinHandsBackExactlyItsOlderHalf) {
  // The smallest class, whose full bin stays within the thread's byte bound.
  const size_t size = tmi::medium_cache_class_size(0);
  const unsigned limit = tmi::medium_cache_bin_limit(0);
  ASSERT_LE((limit + 1) * size, tmi::kMediumCacheThreadBytes) << "the byte bound would empty the bin first";
  tm_release_cached();
  std::vector<void*> blocks;
  for (unsigned i = 0; i <= limit; ++i) blocks.push_back(tm_malloc(size));
  const tm_stats_t s0 = stats();
  for (unsigned i = 0; i < limit; ++i) tm_free(blocks[i]);
  EXPECT_EQ(stats().cached_blocks - s0.cached_blocks, limit) << "a bin holds up to its limit";
  tm_free(blocks[limit]);  // the bin is full: half of it goes back, then this block joins it
  EXPECT_EQ(stats().cached_blocks - s0.cached_blocks, limit / 2 + 1);
  TM_ASSERT_HEAP_OK();
  tm_release_cached();
}

TEST_F(MediumCache, BinsAndTheThreadStayWithinTheirBounds) {
  // One class: at most its limit of blocks; a full bin hands back its older half.
  const size_t size = 40000;
  const unsigned limit = tmi::medium_cache_bin_limit(tmi::medium_cache_class(size));
  std::vector<void*> blocks;
  for (unsigned i = 0; i < 4 * limit; ++i) blocks.push_back(tm_malloc(size));
  const tm_stats_t s0 = stats();
  for (void* p : blocks) tm_free(p);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s1 = stats();
  EXPECT_LE(s1.cached_blocks - s0.cached_blocks, limit);
  EXPECT_GE(s1.cached_blocks - s0.cached_blocks, 1u);
  EXPECT_EQ(s1.medium_live_blocks, s0.medium_live_blocks - 4 * limit) << "blocks handed back are not live";
  blocks.clear();
  // Every class: the thread's cached bytes stay within kMediumCacheThreadBytes.
  for (size_t c = 0; c < tmi::kMediumCacheClasses; ++c) {
    for (unsigned i = 0; i < tmi::medium_cache_bin_limit(c); ++i)
      blocks.push_back(tm_malloc(tmi::medium_cache_class_size(c)));
  }
  const tm_stats_t s2 = stats();
  for (void* p : blocks) tm_free(p);
  TM_ASSERT_HEAP_OK();  // the heap check holds the caller's bins to the thread's byte bound
  const tm_stats_t s3 = stats();
  EXPECT_GT(s3.cached_blocks, s2.cached_blocks);
  // The cached ones are live in no count: every freed block left the live counts.
  EXPECT_EQ(s2.medium_live_blocks - s3.medium_live_blocks, blocks.size());
  tm_release_cached();
  const tm_stats_t s4 = stats();
  EXPECT_EQ(s4.cached_blocks, 0u);
  TM_ASSERT_HEAP_OK();
}

TEST_F(MediumCache, BlocksOfOtherArenasAndThreadsAreCachedAndFlushedAtThreadExit) {
  std::vector<void*> blocks;
  for (int i = 0; i < 16; ++i) blocks.push_back(tm_malloc(12000 + 1000 * i));
  const tm_stats_t s0 = stats();
  std::thread other([&] {
    ScopedOption select("arena_select", 1);
    for (void* p : blocks) tm_free(p);  // into the other thread's cache
    tm_stats_t inside;
    tm_stats(&inside);
    EXPECT_GE(inside.cached_blocks, 1u);
    EXPECT_EQ(tm_check_heap(), 0);
  });
  other.join();
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.medium_live_blocks, s0.medium_live_blocks - 16);
  EXPECT_EQ(s1.cached_blocks, s0.cached_blocks) << "the exited thread's cache was not flushed";
  EXPECT_EQ(s1.requested_bytes, s0.requested_bytes - (16 * 12000 + 1000 * 120));
  TM_ASSERT_HEAP_OK();
}

TEST_F(MediumCache, OptionOffFreesCoalesceAtOnceAndBlocksHaveTheirExactSize) {
  const MediumCacheOff off;
  void* p = tm_malloc(20000);
  EXPECT_LT(tm_usable_size(p), size_t{20000} + 256 + 16);
  EXPECT_LT(tm_usable_size(p), class_size_of(20000));
  const tm_stats_t s0 = stats();
  tm_free(p);
  EXPECT_EQ(stats().cached_blocks, s0.cached_blocks);
  TM_ASSERT_HEAP_OK();
}

TEST_F(MediumCache, HeapCheckFindsAWriteIntoACachedBlock) {
  auto* keep = static_cast<char*>(tm_malloc(20000));
  auto* p = static_cast<char*>(tm_malloc(20000));
  tm_free(p);
  unpoison(p, 16);
  uint64_t saved;
  std::memcpy(&saved, p + 8, 8);
  const uint64_t smashed = saved ^ 1;
  std::memcpy(p + 8, &smashed, 8);  // a use after free over the free-block key
  EXPECT_EQ(tm_check_heap(), TM_CHECK_FREE_LINKS);
  std::memcpy(p + 8, &saved, 8);
  EXPECT_EQ(tm_check_heap(), 0);
  tm_free(keep);
}

class MediumCacheDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

const auto kAbort = ::testing::KilledBySignal(SIGABRT);

TEST_F(MediumCacheDeathTest, DoubleFreeOfACachedBlock) {
  EXPECT_EXIT(
      {
        void* keep = tm_malloc(30000);
        void* p = tm_malloc(30000);
        tm_free(p);
        tm_free(p);
        (void)keep;
      },
      kAbort, "tinymalloc: double free at 0x[0-9a-f]+ \\(medium block already freed into a thread cache");
}

TEST_F(MediumCacheDeathTest, DoubleFreeFromAnotherThreadOfABlockInACache) {
  EXPECT_EXIT(
      {
        void* p = tm_malloc(30000);
        tm_free(p);
        std::thread([p] { tm_free(p); }).join();
      },
      kAbort, "tinymalloc: double free at 0x[0-9a-f]+ \\(medium block already freed into a thread cache");
}

TEST_F(MediumCacheDeathTest, ReallocAndUsableSizeOfACachedBlock) {
  EXPECT_EXIT(
      {
        void* p = tm_malloc(30000);
        tm_free(p);
        (void)tm_realloc(p, 40000);
      },
      kAbort, "tinymalloc: invalid realloc at 0x[0-9a-f]+ \\(medium block already freed into a thread cache");
  EXPECT_EXIT(
      {
        void* p = tm_malloc(30000);
        tm_free(p);
        (void)tm_usable_size(p);
      },
      kAbort, "tinymalloc: invalid usable_size at 0x[0-9a-f]+ \\(medium block already freed into a thread cache");
}

}  // namespace
