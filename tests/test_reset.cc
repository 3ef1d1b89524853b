// Test hooks (tinymalloc_test.h): tm_test_reset brings the allocator back to the state of a
// process that has not allocated yet, the virtual clock drives purging and sweeping, and
// tm_check_heap_around checks the heap around one address; recycled mappings
// (tm_test_recycle_mappings) give the allocator what fresh ones would.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "internal_headers.h"
#include "os.h"
#include "small.h"
#include "test_util.h"
#include "thread_cache.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

namespace {

// tm_arena_stats summed over every arena: segment counts, mapped and committed bytes.
tm_arena_stats_t arena_totals() {
  tm_arena_stats_t arenas[128];
  const size_t n = tm_arena_stats(arenas, 128);
  tm_arena_stats_t sum{};
  for (size_t i = 0; i < n && i < 128; ++i) {
    sum.small_segments += arenas[i].small_segments;
    sum.medium_segments += arenas[i].medium_segments;
    sum.mapped_bytes += arenas[i].mapped_bytes;
    sum.committed_bytes += arenas[i].committed_bytes;
  }
  return sum;
}

using namespace tmtest;

// Every test starts from, and leaves, a pristine allocator on the virtual clock.
class Reset : public ::testing::Test {
 protected:
  void SetUp() override {
    tm_test_clock_virtual(1);
    ASSERT_EQ(tm_test_reset(), 0);
  }
  void TearDown() override {
    EXPECT_EQ(tm_test_reset(), 0);
    tm_test_clock_virtual(0);
  }
};

// A mix of every tier: small classes, medium blocks, large blocks, an aligned large block.
std::vector<void*> allocate_mix(Rng& rng, size_t count) {
  std::vector<void*> blocks;
  for (size_t i = 0; i < count; ++i) {
    const size_t size = rng.chance(70) ? rng.range(1, 8192) : rng.chance(80) ? rng.range(8193, 500000) : 3 * MiB;
    void* p = rng.chance(10) ? tm_aligned_alloc(8 * MiB, size) : tm_malloc(size);
    EXPECT_NE(p, nullptr);
    fill_sparse(p, size, i);
    blocks.push_back(p);
  }
  return blocks;
}

// The outcome of a program that does not depend on where the kernel put the mappings:
// every block's offset in its 4 MiB segment and the OS counters after each step.
std::string run_program(uint64_t seed) {
  Rng rng(seed);
  std::string out;
  std::vector<void*> live;
  for (int step = 0; step < 400; ++step) {
    if (!live.empty() && rng.chance(45)) {
      const size_t i = rng.below(live.size());
      tm_free(live[i]);
      live.erase(live.begin() + static_cast<long>(i));
    } else {
      const size_t size = rng.chance(80) ? rng.range(1, 4096) : rng.range(8193, 700000);
      void* p = tm_malloc(size);
      live.push_back(p);
      out += std::to_string(reinterpret_cast<uintptr_t>(p) & (4 * MiB - 1)) + " ";
    }
    if (step % 50 == 0) tm_test_clock_advance(600);  // sweeps and purges happen, deterministically
    const tm_stats_t s = stats();
    out += std::to_string(s.mapped_bytes) + "/" + std::to_string(s.committed_bytes) + "/" +
           std::to_string(s.os_map_calls) + "/" + std::to_string(s.os_purge_calls) + "\n";
  }
  for (void* p : live) tm_free(p);
  return out;
}

TEST_F(Reset, ReturnsEveryMappingAndStartsTheCountersOver) {
  Rng rng(1);
  std::vector<void*> blocks = allocate_mix(rng, 300);
  for (size_t i = 0; i < blocks.size(); i += 2) tm_free(blocks[i]);
  for (size_t i = 1; i < blocks.size(); i += 2) tm_free(blocks[i]);
  tm_heap_t* pool = tm_heap_create();
  tm_heap_free(pool, tm_heap_malloc(pool, 100000));
  tm_heap_destroy(pool);
  const tm_stats_t before = stats();
  EXPECT_GT(before.mapped_bytes, 0u);
  EXPECT_GT(before.os_map_calls, 0u);

  ASSERT_EQ(tm_test_reset(), 0);
  const tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_EQ(s.mapped_bytes, 0u);
  EXPECT_EQ(s.committed_bytes, 0u);
  EXPECT_EQ(s.peak_mapped_bytes, 0u);
  EXPECT_EQ(s.peak_requested_bytes, 0u);
  EXPECT_EQ(s.small_segments + s.medium_segments + s.large_mappings, 0u);
  EXPECT_EQ(s.os_map_calls + s.os_unmap_calls + s.os_purge_calls, 0u);
  EXPECT_EQ(s.pool_segments, 0u);
  EXPECT_EQ(s.thread_caches, 0u) << "the calling thread's cache is set up again at its next call";
  EXPECT_EQ(s.arenas_used, 1u);
  EXPECT_EQ(s.cached_blocks + s.remote_blocks, 0u);
  tm_class_stats_t classes[TM_SMALL_CLASS_COUNT];
  tm_class_stats(classes, TM_SMALL_CLASS_COUNT);
  for (const tm_class_stats_t& c : classes) EXPECT_EQ(c.peak_blocks + c.runs, 0u);
  // The allocator works on from there, and its heap check agrees.
  void* p = tm_malloc(100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(stats().thread_caches, 1u);
  TM_EXPECT_HEAP_OK();
  tm_free(p);
}

TEST_F(Reset, TheSameProgramGivesTheSameOffsetsAndCountersAfterAnyHistory) {
  const std::string first = run_program(7);
  ASSERT_EQ(tm_test_reset(), 0);
  // Some other history: other sizes, pools, a thread, time.
  Rng rng(99);
  std::vector<void*> noise = allocate_mix(rng, 200);
  tm_test_clock_advance(5000);
  for (void* q : noise) tm_free(q);
  std::thread([] { tm_free(tm_malloc(5000)); }).join();
  tm_heap_t* pool = tm_heap_create();
  tm_heap_malloc(pool, 70000);
  tm_heap_destroy(pool);
  ASSERT_EQ(tm_test_reset(), 0);
  EXPECT_EQ(run_program(7), first);
  // Without the reset the history shows (the check above can fail).
  EXPECT_NE(run_program(7), first);
}

TEST_F(Reset, RefusesWhileABlockIsLiveAndLeavesItIntact) {
  auto* p = static_cast<char*>(tm_malloc(3000));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 3000, 5);
  errno = 0;
  EXPECT_EQ(tm_test_reset(), -1);
  EXPECT_EQ(errno, EBUSY);
  EXPECT_EQ(check_pattern(p, 3000, 5), 3000u);
  EXPECT_GE(tm_usable_size(p), 3000u);
  TM_EXPECT_HEAP_OK();
  tm_free(p);
  EXPECT_EQ(tm_test_reset(), 0);
}

TEST_F(Reset, RefusesWhileAMemoryPoolExists) {
  tm_heap_t* pool = tm_heap_create();
  ASSERT_NE(pool, nullptr);
  errno = 0;
  EXPECT_EQ(tm_test_reset(), -1);
  EXPECT_EQ(errno, EBUSY);
  tm_heap_destroy(pool);
  EXPECT_EQ(tm_test_reset(), 0);
}

TEST_F(Reset, RefusesWhileAnotherThreadHasACache) {
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  bool done = false;
  std::thread t([&] {
    tm_free(tm_malloc(48));  // the thread's cache is set up
    std::unique_lock<std::mutex> lock(mu);
    ready = true;
    cv.notify_all();
    cv.wait(lock, [&] { return done; });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return ready; });
  }
  errno = 0;
  EXPECT_EQ(tm_test_reset(), -1);
  EXPECT_EQ(errno, EBUSY);
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  t.join();  // its cache went back at its exit
  EXPECT_EQ(tm_test_reset(), 0);
}

// A worker thread that stays alive (a harness's pooled thread) can do what its exit would:
// tm_test_thread_exit returns its cached blocks to the heap and makes it a thread that has
// not allocated, so tm_test_reset succeeds; the thread then allocates again from scratch.
TEST_F(Reset, AThreadThatRetiredItsCacheDoesNotBlockTheReset) {
  std::mutex mu;
  std::condition_variable cv;
  int step = 0;  // 1: allocated and retired; 2: main reset; 3: allocated again; 4: exit
  size_t cached_before_retire = 0;
  size_t cached_after_retire = 1;
  std::thread t([&] {
    void* blocks[32];
    for (void*& b : blocks) b = tm_malloc(48);
    for (void* b : blocks) tm_free(b);  // into the thread's cache
    tm_stats_t s;
    tm_stats(&s);
    cached_before_retire = s.cached_blocks;
    tm_test_thread_exit();
    tm_stats(&s);
    cached_after_retire = s.cached_blocks;
    std::unique_lock<std::mutex> lock(mu);
    step = 1;
    cv.notify_all();
    cv.wait(lock, [&] { return step == 2; });
    tm_free(tm_malloc(48));  // a new cache, chosen and set up again after the reset
    step = 3;
    cv.notify_all();
    cv.wait(lock, [&] { return step == 4; });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return step == 1; });
  }
  EXPECT_GT(cached_before_retire, 0u) << "the frees went to the thread's cache";
  EXPECT_EQ(cached_after_retire, 0u) << "the retired cache's blocks went back to the heap";
  EXPECT_EQ(tm_test_reset(), 0) << "a retired thread has no active cache";
  TM_EXPECT_HEAP_OK();
  {
    std::unique_lock<std::mutex> lock(mu);
    step = 2;
    cv.notify_all();
    cv.wait(lock, [&] { return step == 3; });
  }
  errno = 0;
  EXPECT_EQ(tm_test_reset(), -1) << "its new cache is active again";
  EXPECT_EQ(errno, EBUSY);
  {
    std::lock_guard<std::mutex> lock(mu);
    step = 4;
  }
  cv.notify_all();
  t.join();
  EXPECT_EQ(tm_test_reset(), 0);
}

TEST_F(Reset, PutsTheOptionsBackToTheirValuesAtStartUp) {
  long arenas = -1, delay = -1, retain = -1, track = -1;
  ASSERT_EQ(tm_option_get("arenas", &arenas), 0);
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  ASSERT_EQ(tm_option_get("arena_retain", &retain), 0);
  ASSERT_EQ(tm_option_get("track_requested", &track), 0);
  ASSERT_EQ(tm_option_set("arenas", 5), 0);
  ASSERT_EQ(tm_option_set("purge_delay_ms", 7), 0);
  ASSERT_EQ(tm_option_set("arena_retain", 9), 0);
  ASSERT_EQ(tm_test_reset(), 0);
  long value = -1;
  tm_option_get("arenas", &value);
  EXPECT_EQ(value, arenas);
  tm_option_get("purge_delay_ms", &value);
  EXPECT_EQ(value, delay);
  tm_option_get("arena_retain", &value);
  EXPECT_EQ(value, retain);
  // track_requested was set by the test program before the first allocation: that is its
  // start-up value too.
  tm_option_get("track_requested", &value);
  EXPECT_EQ(value, track);
}

TEST_F(Reset, ReportsAccountingThatDidNotReturnToZero) {
  tm_free(tm_malloc(100));
  tmalloc::os_note_recommitted(4096);  // committed bytes drift by a page
  EXPECT_EQ(tm_test_reset(), TM_CHECK_STATS);
  EXPECT_EQ(tm_test_reset(), 0) << "the counters start from zero again";
}

TEST_F(Reset, FlushesTheQuarantineOfDebugMode) {
  ASSERT_EQ(tm_option_set("debug", 1), 0);
  tm_free(tm_malloc(200));  // waits in the quarantine
  EXPECT_EQ(tm_test_reset(), 0);
  long debug = -1;
  tm_option_get("debug", &debug);
  EXPECT_EQ(debug, 0) << "debug mode was off at start-up";
}

// A memory pool counts its arena slot from its creation, before its first block
// (tm_arena_stats: "a memory pool counts its slot and every slot below it").
TEST_F(Reset, ACreatedPoolCountsItsArenaSlotBeforeItsFirstBlock) {
  EXPECT_EQ(stats().arenas_used, 1u);
  tm_heap_t* pool = tm_heap_create();
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(stats().arenas_used, tmalloc::kMaxArenas + 1) << "the first pool takes the first slot after the arenas";
  EXPECT_EQ(tm_arena_stats(nullptr, 0), tmalloc::kMaxArenas + 1);
  tm_heap_destroy(pool);
}

// The sampled blocks' slots start over: slots a block used before the reset hold nothing of it
// afterwards. A history fills 64 slots with freed blocks whose pages stay resident (under the
// purge cap); after the reset a program uses 20 slots with enough pages that its frees purge the
// freed slots. A slot left as it was would have its old pages purged again in the new region
// and taken off the resident count: the program's counters would differ from those it gives
// in a pristine allocator.
TEST_F(Reset, SampledSlotsStartOverAndPurgeAsInAPristineAllocator) {
  if (TM_TEST_ASAN || TM_TEST_TSAN) GTEST_SKIP() << "sample_rate has no effect under a sanitizer";
  const auto sample_all = [](size_t count, size_t size) {
    std::vector<void*> blocks;
    for (size_t i = 0; i < count; ++i) {
      void* p = tm_malloc(size);
      EXPECT_EQ(tm_test_is_sampled(p), 1) << "block " << i;
      std::memset(p, 0x5a, size);  // every data page resident
      blocks.push_back(p);
    }
    return blocks;
  };
  // 20 slots of 14 pages (280, over the cap of 256); the counters after their frees.
  const auto program = [&] {
    EXPECT_EQ(tm_option_set("sample_rate", 1), 0);
    std::vector<void*> blocks = sample_all(20, 14 * 4096 - 64);
    const size_t committed = stats().committed_bytes;
    for (void* p : blocks) tm_free(p);
    const tm_stats_t after = stats();
    EXPECT_LT(after.committed_bytes, committed) << "the freed slots' pages were purged";
    return std::vector<size_t>{after.committed_bytes, after.os_purge_calls, after.mapped_bytes};
  };
  const std::vector<size_t> pristine = program();
  ASSERT_EQ(tm_test_reset(), 0);
  ASSERT_EQ(tm_option_set("sample_rate", 1), 0);
  for (void* p : sample_all(64, 3 * 4096 - 64)) tm_free(p);  // 64 slots, 192 pages: no purge
  ASSERT_EQ(tm_test_reset(), 0);
  EXPECT_EQ(program(), pristine) << "committed bytes, purge calls, mapped bytes";
  TM_EXPECT_HEAP_OK();
}

// A thread's cache starts small in every class and grows with use, whether the thread tracks
// requested bytes (track_requested, the harness's setting) or not: a pristine allocator that
// serves one block of a class carves a batch of a few blocks, not a full bin (64 KiB of 1 KiB
// blocks, 16 pages to fault in, for each class a short harness input touches).
TEST_F(Reset, FirstAllocationOfAClassCarvesASmallBatchThatGrowsWithUse) {
  constexpr size_t kSize = 1024;
  size_t class_index = TM_SMALL_CLASS_COUNT;
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    if (tm_size_class_size(c) == kSize) class_index = c;
  }
  ASSERT_LT(class_index, static_cast<size_t>(TM_SMALL_CLASS_COUNT)) << "1024 bytes is a class size";
  auto cached = [&] {
    tm_class_stats_t classes[TM_SMALL_CLASS_COUNT];
    tm_class_stats(classes, TM_SMALL_CLASS_COUNT);
    return classes[class_index].cached_blocks;
  };
  long thread_cache = 0;
  ASSERT_EQ(tm_option_get("thread_cache", &thread_cache), 0);
  void* first = tm_malloc(kSize);
  ASSERT_NE(first, nullptr);
  const size_t after_first = cached();
  EXPECT_LE(after_first, 7u) << "the first refill of a class takes at most 8 blocks";
  if (thread_cache != 0) {
    EXPECT_GE(after_first, 1u) << "a refill takes more than the one block asked for";
  }
  constexpr size_t kCount = 300;
  void* blocks[kCount];
  for (void*& p : blocks) {
    p = tm_malloc(kSize);
    ASSERT_NE(p, nullptr);
  }
  for (void* p : blocks) tm_free(p);
  tm_free(first);
  const size_t bound = tmalloc::kCacheBinBytes / kSize;
  if (thread_cache != 0) {
    EXPECT_GT(cached(), 8u) << "the bin grew with use";
    EXPECT_LE(cached(), bound) << "up to its bound of kCacheBinBytes";
  } else {
    EXPECT_EQ(cached(), 0u);
  }
}

// An arena keeps up to arena_retain empty small segments for reuse; the next one to become
// empty leaves it (for the global pool or the OS). Found by tools/tm-mutate: keeping one fewer
// (`>` written `>=` in run_release) survived every other test.
TEST_F(Reset, AnArenaKeepsArenaRetainEmptySmallSegments) {
  // Without a thread cache every free goes straight back to its run, so runs and segments
  // empty as the frees come (a cache would send its overflow through remote-free lists).
  ASSERT_EQ(tm_option_set("thread_cache", 0), 0);
  ASSERT_EQ(tm_option_set("arena_retain", 1), 0);
  auto small_segments = [] {
    tm_arena_stats_t arenas[128];
    const size_t n = tm_arena_stats(arenas, 128);
    size_t total = 0;
    for (size_t i = 0; i < n && i < 128; ++i) total += arenas[i].small_segments;
    return total;
  };
  // More than three segments' worth of 8 KiB blocks (at most 512 in a 4 MiB segment), freed in
  // allocation order. The first run to empty stays as its class's one partial run (no
  // map/unmap thrash), which keeps the first segment; the second segment to empty is retained
  // (arena_retain=1); the later ones leave.
  std::vector<void*> blocks;
  for (int i = 0; i < 3 * 512; ++i) {
    blocks.push_back(tm_malloc(8192));
    ASSERT_NE(blocks.back(), nullptr);
  }
  ASSERT_GE(small_segments(), 4u);
  for (void* p : blocks) tm_free(p);
  EXPECT_EQ(small_segments(), 2u) << "the segment of the kept run and one retained empty segment";
  tm_release_cached();
  EXPECT_LT(small_segments(), 2u) << "tm_release_cached returns the retained empty segment";
}

// An empty small segment the idle sweep purged counts as committed again, whole, once a run is
// taken from it (found by tools/tm-mutate: leaving its purged flag set survived every other
// test; the arena's committed bytes then left out a segment in use).
TEST_F(Reset, ASmallSegmentTakenAgainAfterItsPurgeCountsAsCommitted) {
  ASSERT_EQ(tm_option_set("thread_cache", 0), 0);
  ASSERT_EQ(tm_option_set("arena_retain", 1), 0);
  long delay = 0;
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  // Two segments' worth of 8 KiB blocks, freed: one segment keeps the class's partial run,
  // the other stays empty (arena_retain=1).
  std::vector<void*> blocks;
  for (int i = 0; i < 2 * 512; ++i) blocks.push_back(tm_malloc(8192));
  for (void* p : blocks) ASSERT_NE(p, nullptr);
  for (void* p : blocks) tm_free(p);
  blocks.clear();
  tm_free(tm_malloc(20000));  // the medium segment whose allocations run the upkeep below
  ASSERT_EQ(arena_totals().small_segments, 2u);
  for (int sweep = 0; sweep < 3; ++sweep) {
    tm_test_clock_advance(static_cast<uint64_t>(delay) / 2);
    tm_free(tm_malloc(20000));
  }
  const tm_arena_stats_t purged = arena_totals();
  ASSERT_LT(purged.committed_bytes + 2 * MiB, purged.mapped_bytes) << "the empty segment was purged";
  // Taking the runs of both segments again (and more): every segment counts whole.
  for (int i = 0; i < 2 * 480; ++i) blocks.push_back(tm_malloc(8192));
  for (void* p : blocks) ASSERT_NE(p, nullptr);
  const tm_arena_stats_t in_use = arena_totals();
  EXPECT_GE(in_use.small_segments, 2u);
  EXPECT_EQ(in_use.committed_bytes, in_use.mapped_bytes) << "no segment in use counts as purged";
  for (void* p : blocks) tm_free(p);
}

// ---- Virtual clock -------------------------------------------------------------------------

TEST_F(Reset, PooledMemoryIsPurgedOnlyAfterThePurgeDelayOfVirtualTime) {
  long delay = 0;
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  ASSERT_GT(delay, 1);
  EXPECT_EQ(tm_test_clock_now(), 0u);
  tm_free(tm_malloc(20000));       // the medium segment the upkeep's allocations below use
  void* big = tm_malloc(2 * MiB);  // a large block: its mapping goes to the pool when freed
  ASSERT_NE(big, nullptr);
  std::memset(big, 1, 2 * MiB);
  tm_free(big);
  const tm_stats_t pooled = stats();
  ASSERT_EQ(pooled.pool_segments, 1u);
  ASSERT_EQ(pooled.pool_purged_segments, 0u);
  // However long the wall clock runs, nothing happens until virtual time passes.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  tm_test_clock_advance(static_cast<uint64_t>(delay) - 1);
  tm_free(tm_malloc(20000));  // a medium allocation runs the upkeep
  EXPECT_EQ(stats().pool_purged_segments, 0u);
  tm_test_clock_advance(1);
  EXPECT_EQ(tm_test_clock_now(), static_cast<uint64_t>(delay));
  tm_free(tm_malloc(20000));
  const tm_stats_t purged = stats();
  EXPECT_EQ(purged.pool_purged_segments, 1u);
  EXPECT_LT(purged.committed_bytes, pooled.committed_bytes);
  EXPECT_GT(purged.os_purge_calls, pooled.os_purge_calls);
}

// Allocations served from a thread cache run the upkeep too: once per tick interval (64 of
// them), the slow path's expiry of `ticks` calls heap_maintain, which purges what is due. (A
// program that only ever hits its cache must not keep pooled memory committed forever.)
TEST_F(Reset, CachedAllocationsAloneRunTheUpkeepOncePerTickInterval) {
  long delay = 0;
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  // Warm the cache: the block below comes back to the same bin every time.
  for (int i = 0; i < 8; ++i) tm_free(tm_malloc(64));
  void* big = tm_malloc(2 * MiB);  // its mapping goes to the pool when freed
  ASSERT_NE(big, nullptr);
  std::memset(big, 1, 2 * MiB);
  tm_free(big);
  ASSERT_EQ(stats().pool_purged_segments, 0u);
  tm_test_clock_advance(static_cast<uint64_t>(delay));
  for (int i = 0; i < 200; ++i) tm_free(tm_malloc(64));  // cache hits only
  EXPECT_EQ(stats().pool_purged_segments, 1u) << "200 cached allocations ran no upkeep";
}

TEST_F(Reset, IdleFreeMediumInteriorsArePurgedAfterTwoSweepsOfVirtualTime) {
  long delay = 0;
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  auto* before = static_cast<char*>(tm_malloc(100 * KiB));
  auto* hole = static_cast<char*>(tm_malloc(300 * KiB));
  auto* after = static_cast<char*>(tm_malloc(100 * KiB));
  ASSERT_TRUE(before && hole && after);
  std::memset(hole, 0x5a, 300 * KiB);
  fill_sparse(before, 100 * KiB, 1);
  fill_sparse(after, 100 * KiB, 2);
  tm_free(hole);
  tm_free(tm_malloc(64));  // a small segment exists before the count
  const tm_stats_t freed = stats();
  for (size_t size : {5000, 6000, 7000}) {
    tm_test_clock_advance(static_cast<uint64_t>(delay) / 2);
    // The first block of a class the thread has not used: a cache refill, whose slow path
    // runs the upkeep (and takes nothing from the hole).
    tm_free(tm_malloc(size));
  }
  const tm_stats_t swept = stats();
  EXPECT_GT(swept.os_purge_calls, freed.os_purge_calls);
  EXPECT_LE(swept.committed_bytes + 200 * KiB, freed.committed_bytes) << "the hole's interior went back to the OS";
  EXPECT_TRUE(check_sparse(before, 100 * KiB, 1));
  EXPECT_TRUE(check_sparse(after, 100 * KiB, 2));
  TM_EXPECT_HEAP_OK();
  tm_free(before);
  tm_free(after);
}

// tm_arena_stats' committed bytes: a medium segment counts whole until the idle sweep purges
// it, then without its purged range [header page + 1 page, last page). Found by
// tools/tm-mutate: the purged range subtracted from every unpurged segment, or added, survived
// every other test.
TEST_F(Reset, ArenaCommittedBytesLeaveOutAPurgedMediumSegmentsRange) {
  long delay = 0;
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  void* block = tm_malloc(100 * KiB);
  void* hole = tm_malloc(300 * KiB);
  void* after = tm_malloc(100 * KiB);
  ASSERT_TRUE(block && hole && after);
  std::memset(block, 1, 100 * KiB);
  std::memset(hole, 2, 300 * KiB);
  tm_free(tm_malloc(5000));  // the small segment the upkeep's allocations below use
  const tm_arena_stats_t in_use = arena_totals();
  ASSERT_EQ(in_use.medium_segments, 1u);
  EXPECT_EQ(in_use.committed_bytes, in_use.mapped_bytes) << "nothing purged yet";
  // A free block's interior pages purged by two sweeps leave the arena's committed bytes as
  // they leave the process's.
  tm_free(hole);
  const size_t committed_before = stats().committed_bytes;
  for (size_t size : {4200, 5500, 6100}) {  // classes 4608, 5632, 6144
    tm_test_clock_advance(static_cast<uint64_t>(delay) / 2);
    tm_free(tm_malloc(size));  // a class the thread has not used: its slow path runs the upkeep
  }
  const size_t purged_interior = committed_before - stats().committed_bytes;
  EXPECT_GE(purged_interior, 200 * KiB) << "the hole's interior went back to the OS";
  EXPECT_EQ(arena_totals().committed_bytes, in_use.committed_bytes - purged_interior);
  tm_free(block);
  tm_free(after);                           // the segment is empty; arena_retain keeps it
  for (size_t size : {6600, 7100, 7600}) {  // classes 6656, 7168, 7680
    tm_test_clock_advance(static_cast<uint64_t>(delay) / 2);
    tm_free(tm_malloc(size));  // a class the thread has not used: its slow path runs the upkeep
  }
  const tm_arena_stats_t purged = arena_totals();
  ASSERT_EQ(purged.medium_segments, 1u);
  // kMediumPurgeStart = 64 KiB header + 4 KiB, kMediumPurgeEnd = 4 MiB - 4 KiB.
  constexpr size_t kPurgedRange = (4 * MiB - 4 * KiB) - (64 * KiB + 4 * KiB);
  EXPECT_EQ(purged.committed_bytes, purged.mapped_bytes - kPurgedRange);
}

// ---- Scoped heap check -------------------------------------------------------------------

// The scoped check looks at the block before p's block too: a smashed tag there, even a
// slack just one byte over the usable size, is found from its successor (found by
// tools/tm-mutate: the slack bound written size + 16 instead of size - 16 survived every
// other test). The tag is restored before anything frees.
TEST_F(Reset, CheckAroundFindsASmashedTagOfThePreviousBlock) {
  const MediumCacheOff exact_geometry;  // frees coalesce at once, blocks at their exact size
  constexpr size_t kRequest = 20000;
  constexpr size_t kBlock = 20016;  // request + 16-byte header, 16-byte aligned
  auto* a = static_cast<char*>(tm_malloc(kRequest));
  auto* b = static_cast<char*>(tm_malloc(kRequest));
  auto* c = static_cast<char*>(tm_malloc(kRequest));
  ASSERT_TRUE(a && b && c);
  ASSERT_EQ(b, a + kBlock) << "adjacent in a fresh segment";
  ASSERT_EQ(c, b + kBlock);
  char* tag = a - 8;  // a's size and flags; the upper 32 bits hold its slack
  unpoison(tag, 8);
  uint64_t saved = 0;
  std::memcpy(&saved, tag, sizeof saved);
  // A slack one byte more than the usable bytes: the smallest smashed value.
  const uint64_t smashed = (saved & 0xFFFFFFFFu) | (uint64_t{kBlock - 16 + 1} << 32);
  std::memcpy(tag, &smashed, sizeof smashed);
  tm_check_report_t r;
  EXPECT_EQ(tm_check_heap_around(b, &r), TM_CHECK_BOUNDARY_TAG) << r.message;
  EXPECT_EQ(r.address, reinterpret_cast<uintptr_t>(a - 16)) << r.message;
  EXPECT_EQ(tm_check_heap_around(c, &r), TM_CHECK_OK) << "a is no neighbour of c: " << r.message;
  std::memcpy(tag, &saved, sizeof saved);
  EXPECT_EQ(tm_check_heap_around(b, &r), TM_CHECK_OK) << r.message;
  tm_free(a);
  tm_free(b);
  tm_free(c);
}

TEST_F(Reset, CheckAroundAcceptsEveryTierAndAddressesTinymallocDoesNotOwn) {
  Rng rng(3);
  std::vector<void*> blocks = allocate_mix(rng, 100);
  for (size_t i = 0; i < blocks.size(); i += 3) {
    tm_free(blocks[i]);
    EXPECT_EQ(tm_check_heap_around(blocks[i], nullptr), TM_CHECK_OK) << "a block just freed";
    blocks[i] = nullptr;
  }
  for (void* p : blocks) {
    if (p == nullptr) continue;
    tm_check_report_t r;
    EXPECT_EQ(tm_check_heap_around(p, &r), TM_CHECK_OK) << r.message;
    EXPECT_STREQ(r.message, "heap is consistent");
    EXPECT_EQ(tm_check_heap_around(static_cast<char*>(p) + 7, nullptr), TM_CHECK_OK) << "inside the block";
  }
  int local = 0;
  EXPECT_EQ(tm_check_heap_around(&local, nullptr), TM_CHECK_OK);
  EXPECT_EQ(tm_check_heap_around(nullptr, nullptr), TM_CHECK_OK);
  for (void* p : blocks) tm_free(p);
}

TEST_F(Reset, CheckAroundFindsACorruptedBoundaryTag) {
  auto* a = static_cast<char*>(tm_malloc(20000));
  auto* b = static_cast<char*>(tm_malloc(20000));
  ASSERT_TRUE(a && b);
  uint64_t* size_word = reinterpret_cast<uint64_t*>(b - 8);  // b's header: prev_size, size|flags
  unpoison(size_word, 8);
  const uint64_t saved = *size_word;
  *size_word = saved + 4096;
  tm_check_report_t r;
  EXPECT_EQ(tm_check_heap_around(b, &r), TM_CHECK_BOUNDARY_TAG);
  EXPECT_NE(std::string(r.message).find("medium block"), std::string::npos) << r.message;
  EXPECT_EQ(tm_check_heap_around(a, nullptr), TM_CHECK_BOUNDARY_TAG) << "b is a's neighbour";
  *size_word = saved;
  EXPECT_EQ(tm_check_heap_around(b, nullptr), TM_CHECK_OK);
  tm_free(a);
  tm_free(b);
}

TEST_F(Reset, CheckAroundFindsACachedBlockWrittenAfterFree) {
  auto* p = static_cast<char*>(tm_malloc(64));
  auto* keep = static_cast<char*>(tm_malloc(64));  // the run stays in use
  ASSERT_TRUE(p && keep);
  tm_free(p);  // into the thread cache, its free-block key in its second word
  unpoison(p, 64);
  const uint64_t saved = reinterpret_cast<uint64_t*>(p)[1];
  reinterpret_cast<uint64_t*>(p)[1] = 0;
  tm_check_report_t r;
  EXPECT_EQ(tm_check_heap_around(p, &r), TM_CHECK_FREE_LINKS);
  EXPECT_NE(std::string(r.message).find("free-block key"), std::string::npos) << r.message;
  // The whole-heap check walks the thread caches after every tier (a mutant that ended the
  // walk after the large tier survived every other test: tools/tm-mutate).
  EXPECT_EQ(tm_check_heap_report(&r), TM_CHECK_FREE_LINKS);
  EXPECT_NE(std::string(r.message).find("free-block key"), std::string::npos) << r.message;
  reinterpret_cast<uint64_t*>(p)[1] = saved;
  EXPECT_EQ(tm_check_heap_around(p, nullptr), TM_CHECK_OK);
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_free(keep);
}

// A thread-cache link that points into the middle of a block is reported as such (found by
// tools/tm-mutate: the block-start test requiring every condition at once, instead of any,
// survived every other test).
TEST_F(Reset, HeapCheckFindsACacheLinkIntoTheMiddleOfABlock) {
  auto* q = static_cast<char*>(tm_malloc(64));
  auto* p = static_cast<char*>(tm_malloc(64));
  auto* keep = static_cast<char*>(tm_malloc(64));  // the run stays in use
  ASSERT_TRUE(p && q && keep);
  tm_free(q);
  tm_free(p);  // the cache's list: p, then q (word 0 of a cached block links the next,
               // encoded with the key in word 1)
  unpoison(p, 64);
  auto* link = reinterpret_cast<uintptr_t*>(p);
  ASSERT_EQ(link[0] ^ link[1], reinterpret_cast<uintptr_t>(q));
  link[0] = reinterpret_cast<uintptr_t>(q + 16) ^ link[1];
  tm_check_report_t r;
  EXPECT_EQ(tm_check_heap_report(&r), TM_CHECK_FREE_LINKS);
  EXPECT_NE(std::string(r.message).find("not a block start"), std::string::npos) << r.message;
  EXPECT_EQ(r.address, reinterpret_cast<uintptr_t>(q + 16));
  link[0] = reinterpret_cast<uintptr_t>(q) ^ link[1];
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_free(keep);
}

// Corruptions only the small tier's own checks see, each undone before anything frees (found
// by tools/tm-mutate: skipping every touched arena, skipping the per-class list walk, or
// checking another block than p's in the scoped check survived every other test).
TEST_F(Reset, HeapChecksFindCorruptedSmallSegmentsRunListsAndSlack) {
  auto* p = static_cast<char*>(tm_malloc(64));
  ASSERT_NE(p, nullptr);
  auto* segment = reinterpret_cast<tmi::SmallSegment*>(reinterpret_cast<uintptr_t>(p) & ~(tmi::kSegmentSize - 1));
  const size_t offset = static_cast<size_t>(p - reinterpret_cast<char*>(segment));
  tmi::RunDesc* run = &segment->runs[offset >> tmi::kRunShift];
  ASSERT_EQ(run->block_size, 64u);
  tm_check_report_t r;
  // The segment header's magic.
  const uint32_t magic = segment->magic;
  segment->magic = 0;
  EXPECT_EQ(tm_check_heap_report(&r), TM_CHECK_SEGMENT);
  EXPECT_NE(std::string(r.message).find("bad magic"), std::string::npos) << r.message;
  segment->magic = magic;
  // The class's partial list: the run (it has free blocks) linked to itself.
  ASSERT_NE(run->on_partial, 0);
  tmi::RunDesc* const next = run->next;
  run->next = run;
  EXPECT_EQ(tm_check_heap_report(&r), TM_CHECK_RUN_LIST);
  EXPECT_NE(std::string(r.message).find("class partial list"), std::string::npos) << r.message;
  run->next = next;
  // p's recorded slack larger than its block, seen by the check around p.
  const size_t index = (offset & (tmi::kRunSize - 1)) / 64;
  const uint16_t slack = run->slack.halves[index];
  run->slack.halves[index] = 65;
  EXPECT_EQ(tm_check_heap_around(p, &r), TM_CHECK_RUN_BITMAP);
  EXPECT_NE(std::string(r.message).find("slack exceeds"), std::string::npos) << r.message;
  // The whole-heap check walks every live block's slack too (a mutant that skipped that walk
  // in full checks survived the scoped case above).
  EXPECT_EQ(tm_check_heap_report(&r), TM_CHECK_RUN_BITMAP);
  EXPECT_NE(std::string(r.message).find("slack exceeds"), std::string::npos) << r.message;
  run->slack.halves[index] = slack;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  // The scoped check of a block in a later bitmap word than the first.
  std::vector<char*> more;
  char* far = nullptr;
  size_t far_index = 0;
  for (int i = 0; i < 300 && far == nullptr; ++i) {
    auto* q = static_cast<char*>(tm_malloc(64));
    ASSERT_NE(q, nullptr);
    more.push_back(q);
    const size_t q_offset = static_cast<size_t>(q - reinterpret_cast<char*>(segment));
    if (reinterpret_cast<uintptr_t>(q) >> tmi::kSegmentShift == reinterpret_cast<uintptr_t>(p) >> tmi::kSegmentShift &&
        (q_offset >> tmi::kRunShift) == (offset >> tmi::kRunShift) && (q_offset & (tmi::kRunSize - 1)) / 64 >= 64) {
      far = q;
      far_index = (q_offset & (tmi::kRunSize - 1)) / 64;
    }
  }
  ASSERT_NE(far, nullptr) << "no block of p's run past its first 64 was handed out";
  const uint16_t far_slack = run->slack.halves[far_index];
  run->slack.halves[far_index] = 65;
  EXPECT_EQ(tm_check_heap_around(far, &r), TM_CHECK_RUN_BITMAP);
  EXPECT_NE(std::string(r.message).find("slack exceeds"), std::string::npos) << r.message;
  run->slack.halves[far_index] = far_slack;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  for (char* q : more) tm_free(q);
  tm_free(p);
}

// The whole-heap check covers every class, the first included (kills mutant c40e5fd1cb: the
// class loop of small_check starting at class 1).
TEST_F(Reset, HeapCheckCoversTheSmallestClassPartialList) {
  const size_t size = tm_size_class_size(0);
  auto* p = static_cast<char*>(tm_malloc(size));
  ASSERT_NE(p, nullptr);
  auto* segment = reinterpret_cast<tmi::SmallSegment*>(reinterpret_cast<uintptr_t>(p) & ~(tmi::kSegmentSize - 1));
  const size_t offset = static_cast<size_t>(p - reinterpret_cast<char*>(segment));
  tmi::RunDesc* run = &segment->runs[offset >> tmi::kRunShift];
  ASSERT_EQ(run->class_index, 0u);
  ASSERT_NE(run->on_partial, 0) << "the run has free blocks: it is on its class's partial list";
  tmi::RunDesc* const next = run->next;
  run->next = run;
  tm_check_report_t r;
  EXPECT_EQ(tm_check_heap_report(&r), TM_CHECK_RUN_LIST);
  EXPECT_NE(std::string(r.message).find("class partial list"), std::string::npos) << r.message;
  run->next = next;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_free(p);
}

TEST_F(Reset, CheckAroundFindsACorruptedLargeHeader) {
  auto* p = static_cast<char*>(tm_malloc(3 * MiB));
  ASSERT_NE(p, nullptr);
  auto* magic = reinterpret_cast<uint32_t*>(p - 64);  // the large header before the block
  unpoison(magic, 4);
  const uint32_t saved = *magic;
  *magic = 0;
  EXPECT_EQ(tm_check_heap_around(p + MiB, nullptr), TM_CHECK_SEGMENT) << "the address map names no segment header";
  *magic = saved;
  EXPECT_EQ(tm_check_heap_around(p + MiB, nullptr), TM_CHECK_OK);
  tm_free(p);
}

// ---- Recycled mappings (tm_test_recycle_mappings) ----------------------------------------------

// Switches recycling on for one test and off (unmapping the table) after it.
class Recycle : public Reset {
 protected:
  void SetUp() override {
    Reset::SetUp();
    tm_test_recycle_mappings(1);
  }
  void TearDown() override {
    Reset::TearDown();
    tm_test_recycle_mappings(0);
    EXPECT_EQ(tm_test_recycled_bytes(), 0u);
  }
};

// Whether every page of [p, p + n) is mapped (mincore fails with ENOMEM on an unmapped one).
bool mapped(const void* p, size_t n) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095};
  std::vector<unsigned char> pages(n / 4096 + 2);
  return mincore(reinterpret_cast<void*>(first), reinterpret_cast<uintptr_t>(p) + n - first, pages.data()) == 0;
}

TEST_F(Recycle, AnUnmappedRangeServesALaterMappingZeroed) {
  auto* p = static_cast<unsigned char*>(tm_malloc(3 * MiB));
  ASSERT_NE(p, nullptr);
  memset(p, 0xa5, 3 * MiB);
  tm_free(p);
  tm_release_cached();  // the pooled mapping is unmapped: into the table
  EXPECT_EQ(stats().mapped_bytes, 0u) << "recycled ranges are not the allocator's";
  EXPECT_GE(tm_test_recycled_bytes(), 3 * MiB);
  EXPECT_TRUE(mapped(p, 3 * MiB));
  auto* q = static_cast<unsigned char*>(tm_calloc(1, 3 * MiB));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q, p) << "the newest range that holds the mapping serves it";
  for (size_t i = 0; i < 3 * MiB; ++i) ASSERT_EQ(q[i], 0) << "byte " << i << " of a recycled mapping";
  memset(q, 0x5a, 3 * MiB);
  tm_free(q);
  ASSERT_EQ(tm_test_reset(), 0);  // the reset's unmaps go to the table too
  auto* r = static_cast<unsigned char*>(tm_malloc(3 * MiB));
  ASSERT_NE(r, nullptr);
  for (size_t i = 0; i < 3 * MiB; i += 4093) ASSERT_EQ(r[i], 0) << "byte " << i << " after the reset";
  tm_free(r);
}

// A pooled mapping the upkeep purged goes back to the table without its pages being read
// again (os_unmap_zeroed): it must read as zero all the same when it serves the next mapping.
TEST_F(Recycle, APurgedPooledMappingServesALaterMappingZeroed) {
  long delay = 0;
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  tm_test_clock_virtual(1);
  tm_free(tm_malloc(20000));  // the medium segment the upkeep's allocations below use
  auto* big = static_cast<unsigned char*>(tm_malloc(2 * MiB));
  ASSERT_NE(big, nullptr);
  memset(big, 0xa5, 2 * MiB);
  tm_free(big);
  tm_test_clock_advance(static_cast<uint64_t>(delay));
  tm_free(tm_malloc(20000));  // runs the upkeep: the pooled mapping is purged
  ASSERT_EQ(stats().pool_purged_segments, 1u);
  tm_release_cached();  // the purged entry leaves the pool: into the table
  EXPECT_GE(tm_test_recycled_bytes(), 2 * MiB);
  auto* again = static_cast<unsigned char*>(tm_malloc(2 * MiB));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again, big) << "the newest range that holds the mapping serves it";
  for (size_t i = 0; i < 2 * MiB; ++i) ASSERT_EQ(again[i], 0) << "byte " << i << " of a purged, recycled mapping";
  tm_free(again);
  tm_test_clock_virtual(0);
}

TEST_F(Recycle, APurgedRangeReadsZeroAndStaysMapped) {
  void* mapping = tmalloc::os_map_aligned(8 * MiB, 4 * MiB);
  ASSERT_NE(mapping, nullptr);
  auto* bytes = static_cast<unsigned char*>(mapping);
  memset(bytes, 0x77, 8 * MiB);
  const size_t committed = tmalloc::os_committed_bytes();
  tmalloc::os_purge(bytes + MiB, 2 * MiB);
  EXPECT_EQ(tmalloc::os_committed_bytes(), committed - 2 * MiB);
  for (size_t i = MiB; i < 3 * MiB; ++i) ASSERT_EQ(bytes[i], 0) << "byte " << i << " of the purged range";
  EXPECT_EQ(bytes[MiB - 1], 0x77);
  EXPECT_EQ(bytes[3 * MiB], 0x77);
  tmalloc::os_note_recommitted(2 * MiB);
  tmalloc::os_unmap(mapping, 8 * MiB);
  EXPECT_EQ(tmalloc::os_mapped_bytes(), 0u);
  EXPECT_EQ(tm_test_recycled_bytes(), 8 * MiB);
  tm_test_recycle_mappings(0);
  EXPECT_EQ(tm_test_recycled_bytes(), 0u);
  EXPECT_FALSE(mapped(mapping, 8 * MiB)) << "switching recycling off unmaps the table";
  tm_test_recycle_mappings(1);
}

TEST_F(Recycle, TheTableHoldsAtMostItsBoundAndCarvesAlignedPieces) {
  // Two ranges more than the table holds (untouched: address space only).
  std::vector<void*> mappings;
  for (size_t i = 0; i < tmalloc::kMaxRecycledBytes / (256 * MiB) + 2; ++i) {
    mappings.push_back(tmalloc::os_map_aligned(256 * MiB, 4 * MiB));
    ASSERT_NE(mappings.back(), nullptr);
  }
  for (void* m : mappings) tmalloc::os_unmap(m, 256 * MiB);
  EXPECT_LE(tm_test_recycled_bytes(), tmalloc::kMaxRecycledBytes);
  // Eviction unmaps whole ranges, neighbours joined.
  EXPECT_GE(tm_test_recycled_bytes(), tmalloc::kMaxRecycledBytes - tmalloc::kMaxRecycledRange);
  // A smaller aligned request is carved out of a recycled range; the rest stays in the table.
  const size_t held = tm_test_recycled_bytes();
  void* piece = tmalloc::os_map_aligned(12 * MiB, 8 * MiB);
  ASSERT_NE(piece, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(piece) % (8 * MiB), 0u);
  EXPECT_EQ(tm_test_recycled_bytes(), held - 12 * MiB);
  tmalloc::os_unmap(piece, 12 * MiB);
  EXPECT_EQ(tm_test_recycled_bytes(), held) << "the piece joins its neighbours again";
  EXPECT_EQ(tmalloc::os_map_aligned(256 * MiB, 4 * MiB), mappings.back()) << "the newest whole range";
  tmalloc::os_unmap(mappings.back(), 256 * MiB);
}

// The table keeps at most kMaxRecycledResidentBytes of pages the kernel holds: a fuzzer's RSS
// stays bounded by what its inputs touch, not by the table's 4 GiB of address space. Ranges
// that were never touched cost nothing and stay.
TEST_F(Recycle, TheTableKeepsAtMostItsResidentBoundAndUntouchedRangesStay) {
  constexpr size_t kRange = 16 * MiB;
  void* untouched = tmalloc::os_map_aligned(kRange, 4 * MiB);
  ASSERT_NE(untouched, nullptr);
  tmalloc::os_unmap(untouched, kRange);
  EXPECT_EQ(tm_test_recycled_resident_bytes(), 0u) << "nothing of it was ever resident";
  // Touched ranges, three more than the bound holds; kept apart so that they do not join.
  std::vector<void*> touched;
  for (size_t i = 0; i < tmalloc::kMaxRecycledResidentBytes / kRange + 3; ++i) {
    void* mapping = tmalloc::os_map_aligned(2 * kRange, 4 * MiB);
    ASSERT_NE(mapping, nullptr);
    memset(mapping, 0x3c, kRange);  // the first half resident, the second never touched
    touched.push_back(mapping);
  }
  for (size_t i = 0; i < touched.size(); ++i) {
    tmalloc::os_unmap(touched[i], kRange);  // the touched half; the untouched half stays the program's
    EXPECT_LE(tm_test_recycled_resident_bytes(), tmalloc::kMaxRecycledResidentBytes) << "after range " << i;
  }
  EXPECT_GE(tm_test_recycled_resident_bytes(), tmalloc::kMaxRecycledResidentBytes - kRange);
  EXPECT_FALSE(mapped(touched.front(), kRange)) << "the oldest touched range was unmapped";
  EXPECT_TRUE(mapped(touched.back(), kRange)) << "the newest one stays, zeroed";
  EXPECT_EQ(static_cast<unsigned char*>(touched.back())[kRange - 1], 0);
  // Carving a piece of a touched range takes its share of the resident bytes with it.
  const size_t before = tm_test_recycled_resident_bytes();
  void* piece = tmalloc::os_map_aligned(kRange / 2, 4 * MiB);
  ASSERT_NE(piece, nullptr);
  EXPECT_EQ(tm_test_recycled_resident_bytes(), before - kRange / 2);
  tmalloc::os_unmap(piece, kRange / 2);
  EXPECT_EQ(tm_test_recycled_resident_bytes(), before) << "it comes back with its pages resident";
  for (void* mapping : touched) tmalloc::os_unmap(static_cast<char*>(mapping) + kRange, kRange);
}

TEST_F(Recycle, TheSameProgramGivesTheSameOutcomeWithFreshOrRecycledMappings) {
  tm_test_recycle_mappings(0);
  ASSERT_EQ(tm_test_reset(), 0);
  const std::string fresh = run_program(11);
  ASSERT_EQ(tm_test_reset(), 0);
  tm_test_recycle_mappings(1);
  EXPECT_EQ(run_program(11), fresh) << "an empty table";
  ASSERT_EQ(tm_test_reset(), 0);
  Rng rng(5);
  std::vector<void*> noise = allocate_mix(rng, 200);  // other sizes, purges, aligned mappings
  tm_test_clock_advance(5000);
  for (void* q : noise) tm_free(q);
  ASSERT_EQ(tm_test_reset(), 0);
  EXPECT_GT(tm_test_recycled_bytes(), 0u);
  EXPECT_EQ(run_program(11), fresh) << "a table filled by another history";
}

}  // namespace
