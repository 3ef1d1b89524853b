// The global pool serving the large tier: best fit with the aligned rest kept in place,
// unaligned fragments, and gathering the resident pages of several pooled mappings into a
// new block when none is large enough (src/segment_pool.cc).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "internal_headers.h"
#include "os.h"
#include "test_util.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

namespace {

using namespace tmtest;

// Every test starts with an empty pool and keeps pooled memory unpurged for its duration,
// so which mapping serves a request is deterministic.
class Pool : public HeapTest {
 protected:
  void SetUp() override {
    tm_release_cached();
    HeapTest::SetUp();
  }
  void TearDown() override {
    HeapTest::TearDown();
    tm_release_cached();
  }
  ScopedOption segments_{"pool_segments", 64};
  ScopedOption delay_{"purge_delay_ms", 600000};
};

// The allocator reads the virtual clock for the scope of one test (tm_test_clock_advance moves
// it), so pooling times and purges are exact.
struct VirtualClock {
  VirtualClock() { tm_test_clock_virtual(1); }
  ~VirtualClock() { tm_test_clock_virtual(0); }
  VirtualClock(const VirtualClock&) = delete;
  VirtualClock& operator=(const VirtualClock&) = delete;
};

// Allocates a large block, fills it with the pattern of `seed` and frees it into the pool.
void pool_filled_block(size_t size, uint64_t seed) {
  void* p = tm_malloc(size);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, size, seed);
  tm_free(p);
}

// Bytes of the block's mapping in front of its user pointer (the large block header).
constexpr size_t kHeader = 64;
constexpr size_t kPageSizeForTests = 4096;

// x rounded up to a multiple of the power of two `align`.
constexpr size_t align_up_for_tests(size_t x, size_t align) { return (x + align - 1) & ~(align - 1); }

// True when every byte fill_sparse would write reads as zero.
bool sparse_zero(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  bool zero = true;
  for_sparse(n, [&](size_t i) { zero = zero && b[i] == 0; });
  return zero;
}

TEST_F(Pool, ASmallerBlockTakesTheHeadAndTheAlignedRestStaysPooled) {
  pool_filled_block(20 * MiB, 1);
  ASSERT_EQ(stats().pool_segments, 1u);
  const size_t maps = stats().os_map_calls;
  void* small = tm_malloc(1 * MiB);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps) << "served from the pool";
  EXPECT_EQ(stats().pool_segments, 2u) << "the 16 MiB aligned rest and the unaligned fragment after the block";
  // The aligned rest is exactly large enough for a 16 MiB block: again no new mapping.
  void* rest = tm_malloc(16 * MiB);
  ASSERT_NE(rest, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps);
  EXPECT_EQ(stats().pool_segments, 1u) << "only the fragment is left";
  // Both blocks are fully usable and apart.
  std::memset(small, 0x11, 1 * MiB);
  std::memset(rest, 0x22, 16 * MiB);
  EXPECT_TRUE(static_cast<char*>(rest) >= static_cast<char*>(small) + 1 * MiB ||
              static_cast<char*>(small) >= static_cast<char*>(rest) + 16 * MiB);
  tm_free(small);
  tm_free(rest);
}

TEST_F(Pool, ALargerBlockGathersTheResidentPagesOfPooledMappings) {
  pool_filled_block(24 * MiB, 2);
  const size_t maps = stats().os_map_calls;
  auto* grown = static_cast<unsigned char*>(tm_malloc(40 * MiB));
  ASSERT_NE(grown, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps + 1) << "one fresh mapping for the new block";
  EXPECT_EQ(stats().pool_segments, 0u) << "the pooled mapping was moved into the block";
  // The old block's pages moved to the front of the new one, contents and all: the first
  // 24 MiB read back the old pattern (malloc does not clear), the rest is fresh and zero.
  EXPECT_EQ(check_pattern(grown, 24 * MiB, 2), 24 * MiB) << "pages were faulted in fresh, not moved";
  const size_t moved = 24 * MiB + kPageSizeForTests;
  for (size_t i = moved; i < 40 * MiB; i += 4096) ASSERT_EQ(grown[i], 0) << "fresh part at " << i;
  fill_pattern(grown, 40 * MiB, 3);
  EXPECT_EQ(check_pattern(grown, 40 * MiB, 3), 40 * MiB);
  TM_EXPECT_HEAP_OK();
  tm_free(grown);
}

TEST_F(Pool, CallocOfAGatheredBlockIsZero) {
  pool_filled_block(12 * MiB, 4);
  pool_filled_block(9 * MiB, 5);
  auto* zeroed = static_cast<unsigned char*>(tm_calloc(1, 30 * MiB));
  ASSERT_NE(zeroed, nullptr);
  EXPECT_EQ(stats().pool_segments, 0u) << "both mappings were gathered";
  size_t nonzero = 0;
  for (size_t i = 0; i < 30 * MiB; ++i) nonzero += zeroed[i] != 0;
  EXPECT_EQ(nonzero, 0u) << "old data survived calloc";
  tm_free(zeroed);
}

// A gather whose new mapping the OS refuses leaves the pool as it was: no entry split into
// pieces, no entry marked unmovable. (It took its sources first and put them back split, and
// under ASan released and re-faulted their shadow, at every refused request.)
TEST_F(Pool, ARefusedGatherLeavesThePoolAsItWas) {
  void* large = tm_malloc(24 * MiB);
  void* smaller = tm_malloc(9 * MiB);
  ASSERT_NE(large, nullptr);
  ASSERT_NE(smaller, nullptr);
  fill_pattern(large, 24 * MiB, 6);
  fill_pattern(smaller, 9 * MiB, 7);
  tm_free(large);
  tm_free(smaller);
  ASSERT_EQ(stats().pool_segments, 2u);
  const size_t pooled_bytes = stats().mapped_bytes;
  tm_test_fail_os_after(0);
  for (int attempt = 0; attempt < 3; ++attempt) {
    errno = 0;
    EXPECT_EQ(tm_malloc(30 * MiB), nullptr) << "every OS request fails";
    EXPECT_EQ(errno, ENOMEM);
  }
  tm_test_fail_os_after(-1);
  EXPECT_EQ(stats().pool_segments, 2u) << "a refused gather split the 9 MiB mapping for the 24 MiB one's missing 6";
  EXPECT_EQ(stats().mapped_bytes, pooled_bytes);
  // Both entries are still gather sources: the next request moves their pages, contents and
  // all, into one new mapping.
  auto* gathered = static_cast<unsigned char*>(tm_malloc(30 * MiB));
  ASSERT_NE(gathered, nullptr);
  EXPECT_EQ(stats().pool_segments, 1u) << "the 24 MiB mapping and 6 MiB of the 9 MiB one were gathered";
  EXPECT_EQ(check_pattern(gathered, 24 * MiB, 6), 24 * MiB) << "the largest source's pages lead the new block";
  TM_EXPECT_HEAP_OK();
  tm_free(gathered);
}

// calloc of a reused large block clears the stale bytes with memset up to 64 MiB (the pages
// stay resident: refaulting a dropped page costs about ten times clearing it), and drops them
// to the kernel (a purge) above that. Regression: 5-25 MiB callocs were 3.2x glibc's time when
// every reused block was dropped and faulted in again (bench/workloads/large --zero 2, 5-25 MiB).
void calloc_of_reused_block_case(size_t size, bool expect_purge) {
  SCOPED_TRACE(::testing::Message() << "size " << size / MiB << " MiB");
  pool_filled_block(size, 7);
  ASSERT_EQ(stats().pool_segments, 1u);
  const size_t maps = stats().os_map_calls;
  const size_t purges = stats().os_purge_calls;
  auto* zeroed = static_cast<unsigned char*>(tm_calloc(1, size));
  ASSERT_NE(zeroed, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps) << "the pooled mapping was reused";
  EXPECT_EQ(stats().os_purge_calls - purges, expect_purge ? 1u : 0u) << "stale pages kept and cleared, or dropped";
  size_t nonzero = 0;
  for (size_t i = 0; i < size; ++i) nonzero += zeroed[i] != 0;
  EXPECT_EQ(nonzero, 0u) << "old data survived calloc";
  TM_EXPECT_HEAP_OK();
  tm_free(zeroed);
  tm_release_cached();
}

TEST_F(Pool, CallocOfAReusedBlockClearsItUpTo64MiBAndDropsItsPagesAbove) {
  calloc_of_reused_block_case(20 * MiB, false);
  calloc_of_reused_block_case(80 * MiB, true);
}

// Allocates a large block, writes one byte in its first page only and frees it into the pool:
// a mapping whose pages are almost all untouched (not resident).
void pool_barely_touched_block(size_t size) {
  auto* p = static_cast<unsigned char*>(tm_malloc(size));
  ASSERT_NE(p, nullptr);
  p[0] = 0xA5;
  tm_free(p);
}

// A stale range the old block barely touched is dropped (one purge), not cleared page by page:
// memset would fault in every page the old owner never wrote only to clear it.
TEST_F(Pool, CallocOfABarelyTouchedReusedBlockDropsItsPages) {
  pool_barely_touched_block(8 * MiB);
  ASSERT_EQ(stats().pool_segments, 1u);
  const size_t maps = stats().os_map_calls;
  const size_t purges = stats().os_purge_calls;
  auto* zeroed = static_cast<unsigned char*>(tm_calloc(1, 8 * MiB));
  ASSERT_NE(zeroed, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps) << "the pooled mapping was reused";
  EXPECT_EQ(stats().os_purge_calls - purges, 1u) << "the mostly untouched stale range was dropped";
  size_t nonzero = 0;
  for (size_t i = 0; i < 8 * MiB; ++i) nonzero += zeroed[i] != 0;
  EXPECT_EQ(nonzero, 0u) << "old data survived calloc";
  TM_EXPECT_HEAP_OK();
  tm_free(zeroed);
}

// Pooled mappings whose pages are mostly not resident are not moved into a larger block
// (moving saves nothing but the faults of the few resident pages): the block is mapped fresh,
// they stay pooled and are never tried as gather sources again.
TEST_F(Pool, AMostlyUntouchedMappingIsNotGathered) {
  pool_barely_touched_block(8 * MiB);
  pool_barely_touched_block(12 * MiB);
  ASSERT_EQ(stats().pool_segments, 2u);
  const size_t maps = stats().os_map_calls;
  auto* block = static_cast<unsigned char*>(tm_malloc(24 * MiB));
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps + 1) << "one fresh mapping for the new block";
  EXPECT_EQ(stats().pool_segments, 2u) << "the barely touched mappings stayed pooled";
  for (size_t i = 0; i < 24 * MiB; i += 4096) ASSERT_EQ(block[i], 0) << "a fresh block holds no moved page, at " << i;
  // They still serve requests that fit them.
  void* fits = tm_malloc(12 * MiB - 8192);
  ASSERT_NE(fits, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps + 1) << "served from the pool";
  TM_EXPECT_HEAP_OK();
  tm_free(fits);
  tm_free(block);
}

// Among pooled mappings of the same size the most recently pooled serves first (its pages are
// the most likely to be in the caches), also when both entered the pool at the same millisecond:
// the virtual clock stands still, so both carry the same pooling time.
TEST_F(Pool, TheMostRecentlyPooledOfEqualMappingsServesFirstEvenAtTheSameTime) {
  const VirtualClock clock;
  void* older = tm_malloc(6 * MiB);
  void* newer = tm_malloc(6 * MiB);
  ASSERT_NE(older, nullptr);
  ASSERT_NE(newer, nullptr);
  tm_free(older);
  tm_free(newer);
  ASSERT_EQ(stats().pool_segments, 2u);
  void* again = tm_malloc(6 * MiB);
  EXPECT_EQ(again, newer) << "the newest of two equal pooled mappings is taken";
  void* next = tm_malloc(6 * MiB);
  EXPECT_EQ(next, older);
  tm_free(next);
  tm_free(again);
}

// A pooled mapping is purged once it has waited the purge delay, at exactly that age, not a
// millisecond later (Arenas.ZeroPurgeDelayPurgesAtOnce pins the age test at a zero delay only).
// Each free of a large block pools it and purges what has expired.
TEST_F(Pool, APooledMappingIsPurgedAtExactlyThePurgeDelay) {
  const VirtualClock clock;
  ScopedOption delay("purge_delay_ms", 100);
  void* first = tm_malloc(5 * MiB);
  void* second = tm_malloc(6 * MiB);
  void* third = tm_malloc(7 * MiB);
  ASSERT_TRUE(first && second && third);
  tm_free(first);  // pooled at 0 ms
  tm_test_clock_advance(99);
  tm_free(second);  // at 99 ms: the first has waited 99 ms
  ASSERT_EQ(stats().pool_segments, 2u);
  EXPECT_EQ(stats().pool_purged_segments, 0u) << "purged before its delay";
  tm_test_clock_advance(1);
  tm_free(third);  // at 100 ms: the first has waited exactly the delay, the second 1 ms
  EXPECT_EQ(stats().pool_segments, 3u);
  EXPECT_EQ(stats().pool_purged_segments, 1u) << "the first mapping, at exactly the delay, and only it";
}

// Unpurged pooled bytes may reach the cap (512 MiB) before the delay; only bytes beyond it have
// the oldest mappings purged early (found by tools/tm-mutate: purging at exactly the cap
// survived every other test). The mappings are reserved, never touched: no memory is used.
TEST_F(Pool, PooledBytesUpToTheDirtyCapWaitForTheDelayAndBytesBeyondPurgeTheOldest) {
  constexpr size_t kCap = 512 * MiB;
  void* first = tm_malloc(kCap / 2 - kHeader);  // mappings of exactly 256 MiB
  void* second = tm_malloc(kCap / 2 - kHeader);
  void* third = tm_malloc(1 * MiB);
  ASSERT_TRUE(first && second && third);
  tm_free(first);
  tm_free(second);
  ASSERT_EQ(stats().pool_segments, 2u);
  EXPECT_EQ(stats().pool_purged_segments, 0u) << "exactly the cap is unpurged: nothing purged before the delay";
  tm_free(third);
  EXPECT_EQ(stats().pool_segments, 3u);
  EXPECT_EQ(stats().pool_purged_segments, 1u) << "over the cap: the oldest mapping, and only it, was purged";
}

// A fragment cut from a pooled mapping keeps the age of its pages. When the pool is full and the
// fragment is older than every entry in it, the fragment is the coldest and leaves itself; the
// newer entries stay (found by tools/tm-mutate: skipping that age test, or making it `count > 1`,
// evicted the newest mapping instead, and no other test told). The pool is full here because its
// limit was lowered below what it holds.
TEST_F(Pool, AFragmentOlderThanAFullPoolLeavesInsteadOfANewerMapping) {
  const VirtualClock clock;
  void* older = tm_malloc(5 * MiB);
  void* newer = tm_malloc(24 * MiB);
  ASSERT_TRUE(older && newer);
  tm_free(older);  // pooled at 0 ms: one segment and a bit more
  tm_test_clock_advance(10);
  tm_free(newer);  // pooled at 10 ms
  ASSERT_EQ(stats().pool_segments, 2u);
  ScopedOption one("pool_segments", 1);
  ASSERT_EQ(stats().pool_segments, 2u) << "lowering the limit evicts nothing by itself";
  // Best fit takes the 5 MiB mapping whole (its rest is under a segment); the unused part of its
  // head is a fragment of age 0, older than the 24 MiB mapping the full pool still holds.
  void* small = tm_malloc(1 * MiB);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(stats().pool_segments, 1u);
  const size_t maps = stats().os_map_calls;
  void* again = tm_malloc(20 * MiB);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again, newer) << "the 24 MiB mapping stayed pooled and serves the 20 MiB block";
  EXPECT_EQ(stats().os_map_calls, maps);
  tm_free(again);
  tm_free(small);
}

// A fragment younger than the oldest entry of a full pool goes in and the oldest leaves, even
// when an entry younger than the fragment is there too (found by tools/tm-mutate: comparing the
// fragment with the second-oldest entry instead turned it away, and no other test told).
TEST_F(Pool, AFragmentYoungerThanTheOldestOfAFullPoolEvictsTheOldest) {
  const VirtualClock clock;
  void* oldest = tm_malloc(28 * MiB);
  void* middle = tm_malloc(5 * MiB);
  void* newest = tm_malloc(24 * MiB);
  ASSERT_TRUE(oldest && middle && newest);
  tm_free(oldest);  // pooled at 0 ms
  tm_test_clock_advance(10);
  tm_free(middle);  // at 10 ms
  tm_test_clock_advance(10);
  tm_free(newest);  // at 20 ms
  ScopedOption two("pool_segments", 2);
  ASSERT_EQ(stats().pool_segments, 3u);
  // Best fit takes the 5 MiB mapping whole; its unused part is a fragment aged 10 ms, between
  // the 28 MiB mapping (0 ms) and the 24 MiB one (20 ms): the 28 MiB one leaves.
  void* small = tm_malloc(1 * MiB);
  ASSERT_NE(small, nullptr);
  ASSERT_EQ(stats().pool_segments, 2u);
  const size_t maps = stats().os_map_calls;
  void* big = tm_malloc(28 * MiB);
  ASSERT_NE(big, nullptr);
  EXPECT_GT(stats().os_map_calls, maps) << "the oldest (28 MiB) mapping was evicted: none in the pool serves it";
  tm_free(big);
  tm_free(small);
}

// A fragment older than every pooled entry goes first in the pool's age order, so the purge,
// which scans oldest first and stops at the first entry younger than the delay, reaches it
// (found by tools/tm-mutate: an insertion that never moved an entry into the first slot left
// the fragment behind a younger entry, never purged, and no other test told).
TEST_F(Pool, AFragmentOlderThanEveryEntryIsPurgedFirst) {
  const VirtualClock clock;
  ScopedOption delay("purge_delay_ms", 100);
  void* older = tm_malloc(5 * MiB);
  void* younger = tm_malloc(24 * MiB);
  void* last = tm_malloc(6 * MiB);
  ASSERT_TRUE(older && younger && last);
  tm_free(older);  // pooled at 0 ms
  tm_test_clock_advance(50);
  tm_free(younger);  // at 50 ms
  // Best fit takes the 5 MiB mapping whole; its unused part, aged 0 ms, goes in before the
  // 24 MiB mapping.
  void* small = tm_malloc(1 * MiB);
  ASSERT_NE(small, nullptr);
  ASSERT_EQ(stats().pool_segments, 2u);
  tm_test_clock_advance(50);
  tm_free(last);  // at 100 ms: the fragment has waited the delay, the 24 MiB mapping half of it
  EXPECT_EQ(stats().pool_segments, 3u);
  EXPECT_EQ(stats().pool_purged_segments, 1u) << "the fragment, the oldest entry, was purged";
  tm_free(small);
}

// A full pool evicts its oldest entry for a new one, also when both were pooled at the same
// time (found by tools/tm-mutate: the new mapping turned away instead when its time equalled
// the oldest's survived every other test).
TEST_F(Pool, AFullPoolEvictsItsOldestEntryEvenAtTheSameTime) {
  const VirtualClock clock;
  ScopedOption two("pool_segments", 2);
  void* first = tm_malloc(5 * MiB);
  void* second = tm_malloc(6 * MiB);
  void* third = tm_malloc(7 * MiB);
  ASSERT_TRUE(first && second && third);
  tm_free(first);
  tm_free(second);
  tm_free(third);  // the pool is full: the first (oldest) leaves
  ASSERT_EQ(stats().pool_segments, 2u);
  const size_t maps = stats().os_map_calls;
  void* again = tm_malloc(7 * MiB);
  EXPECT_EQ(again, third) << "the newest mapping stayed pooled";
  EXPECT_EQ(stats().os_map_calls, maps);
  tm_free(again);
}

TEST_F(Pool, AFragmentIsGatheredIntoALaterBlock) {
  pool_filled_block(20 * MiB, 6);
  void* head = tm_malloc(1 * MiB);
  void* rest = tm_malloc(16 * MiB);
  ASSERT_NE(head, nullptr);
  ASSERT_NE(rest, nullptr);
  ASSERT_EQ(stats().pool_segments, 1u);
  // The fragment starts where the head block's mapping ends, and runs to the first segment
  // boundary; relative to the old block's user pointer it starts at the head's mapping size.
  const size_t head_mapping = tm_usable_size(head) + kHeader;
  const size_t fragment_size = 4 * MiB - head_mapping;
  auto* later = static_cast<unsigned char*>(tm_malloc(6 * MiB));
  ASSERT_NE(later, nullptr);
  EXPECT_EQ(stats().pool_segments, 0u);
  size_t mismatches = 0;
  for (size_t i = 0; i < fragment_size - kHeader; ++i) mismatches += later[i] != pattern_byte(6, head_mapping + i);
  EXPECT_EQ(mismatches, 0u) << "the fragment's pages are the front of the new block";
  fill_pattern(later, 6 * MiB, 7);
  EXPECT_EQ(check_pattern(later, 6 * MiB, 7), 6 * MiB);
  tm_free(head);
  tm_free(rest);
  tm_free(later);
}

TEST_F(Pool, GatheredBlocksResizeAndAreGatheredAgain) {
  // A gathered block is made of several kernel mappings; mremap may refuse to grow it
  // (kernels before 6.17), and realloc then copies. Either way the contents survive.
  pool_filled_block(8 * MiB, 8);
  pool_filled_block(6 * MiB, 9);
  auto* block = static_cast<char*>(tm_malloc(20 * MiB));
  ASSERT_NE(block, nullptr);
  fill_pattern(block, 20 * MiB, 10);
  block = static_cast<char*>(tm_realloc(block, 50 * MiB));
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(check_pattern(block, 20 * MiB, 10), 20 * MiB);
  fill_pattern(block, 50 * MiB, 11);
  block = static_cast<char*>(tm_realloc(block, 30 * MiB));
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(check_pattern(block, 30 * MiB, 11), 30 * MiB);
  tm_free(block);
  // The freed block is a pooled entry again and a source for the next gather.
  auto* again = static_cast<char*>(tm_malloc(45 * MiB));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(check_pattern(again, 30 * MiB - kPageSizeForTests, 11), 30 * MiB - kPageSizeForTests);
  fill_pattern(again, 45 * MiB, 12);
  EXPECT_EQ(check_pattern(again, 45 * MiB, 12), 45 * MiB);
  TM_EXPECT_HEAP_OK();
  tm_free(again);
}

// Regression (found by the heap_pools corpus replay): realloc of a memory pool's large block
// that the pool had gathered failed with ENOMEM, because mremap refused to grow it.
TEST_F(Pool, MemoryPoolReallocOfAGatheredBlockGrowsInItsPool) {
  pool_filled_block(8 * MiB, 15);
  pool_filled_block(6 * MiB, 16);
  tm_heap_t* heap = tm_heap_create();
  ASSERT_NE(heap, nullptr);
  auto* block = static_cast<char*>(tm_heap_malloc(heap, 20 * MiB));
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(stats().pool_segments, 0u) << "gathered from both pooled mappings";
  fill_sparse(block, 20 * MiB, 17);
  for (int round = 0; round < 3; ++round) {
    const size_t from = (size_t{20} << round) * MiB;
    block = static_cast<char*>(tm_heap_realloc(heap, block, 2 * from));
    ASSERT_NE(block, nullptr) << "round " << round;
    EXPECT_TRUE(check_sparse(block, from, 17, 20 * MiB)) << "round " << round;
  }
  TM_EXPECT_HEAP_OK();
  tm_heap_destroy(heap);  // frees the block: it is still the pool's
}

TEST_F(Pool, ChurnOfVaryingSizesKeepsContentsAndTheMappedBytesBounded) {
  Rng rng(13);
  struct Live {
    char* p = nullptr;
    size_t n = 0;
    uint64_t seed = 0;
  };
  std::vector<Live> slots(4);
  size_t peak_mapped = 0;
  for (int op = 0; op < 120; ++op) {
    Live& slot = slots[rng.below(slots.size())];
    if (slot.p != nullptr) {
      ASSERT_TRUE(check_sparse(slot.p, slot.n, slot.seed)) << "op " << op;
      tm_free(slot.p);
    }
    slot.n = (size_t{256} << 10) << rng.below(7);  // 256 KiB .. 16 MiB
    slot.n += rng.below(64) * 4096;
    slot.seed = rng.next();
    slot.p = static_cast<char*>(op % 3 == 0 ? tm_calloc(1, slot.n) : tm_malloc(slot.n));
    ASSERT_NE(slot.p, nullptr);
    if (op % 3 == 0) {
      ASSERT_TRUE(sparse_zero(slot.p, slot.n)) << "calloc block not zero, op " << op;
    }
    fill_sparse(slot.p, slot.n, slot.seed);
    const tm_stats_t s = stats();
    peak_mapped = s.mapped_bytes > peak_mapped ? s.mapped_bytes : peak_mapped;
  }
  TM_EXPECT_HEAP_OK();
  for (Live& slot : slots) {
    EXPECT_TRUE(check_sparse(slot.p, slot.n, slot.seed));
    tm_free(slot.p);
  }
  // 4 live blocks of at most 16.3 MiB, plus what the pool may keep (its dirty cap is 512 MiB,
  // far above this): bounded by the live peak and the pooled mappings of the run.
  EXPECT_LT(peak_mapped, size_t{600} * MiB);
}

TEST_F(Pool, NoPoolingWithPoolSegmentsZero) {
  ScopedOption off("pool_segments", 0);
  pool_filled_block(8 * MiB, 14);
  EXPECT_EQ(stats().pool_segments, 0u);
  const size_t maps = stats().os_map_calls;
  void* p = tm_malloc(8 * MiB);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(stats().os_map_calls, maps + 1) << "nothing pooled: a fresh mapping";
  tm_free(p);
}

}  // namespace

// The OS layer maps an aligned range with one mmap where it can (src/os.cc map_below_hint)
// instead of over-mapping and trimming (three calls): a range returned to the OS is mapped
// again in its place, and a new range goes just below the last one.
TEST(OsLayer, AnAlignedMappingTakesOneKernelCallWhereTheHintHolds) {
  constexpr size_t kSegment = 4 * MiB;
  for (size_t size : {kSegment, 12 * MiB + 4096}) {
    const size_t calls = tmi::os_aligned_map_syscalls();
    char* first = static_cast<char*>(tmi::os_map_aligned(size, kSegment));
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % kSegment, 0u);
    std::memset(first, 1, size);
    tmi::os_unmap(first, size);
    const size_t before_again = tmi::os_aligned_map_syscalls();
    EXPECT_GE(before_again - calls, 1u);
    char* again = static_cast<char*>(tmi::os_map_aligned(size, kSegment));
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(again, first) << "mapped again in the range just returned (" << size << " bytes)";
    EXPECT_EQ(tmi::os_aligned_map_syscalls() - before_again, 1u) << "one mmap, no trims";
    EXPECT_TRUE(sparse_zero(again, size)) << "fresh memory";
    const size_t before_below = tmi::os_aligned_map_syscalls();
    char* below = static_cast<char*>(tmi::os_map_aligned(size, kSegment));
    ASSERT_NE(below, nullptr);
    EXPECT_EQ(below, again - align_up_for_tests(size, kSegment)) << "just below the last mapping";
    EXPECT_EQ(tmi::os_aligned_map_syscalls() - before_below, 1u);
    tmi::os_unmap(below, size);
    tmi::os_unmap(again, size);
  }
}
