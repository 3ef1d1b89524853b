// Metadata integrity: a write the allocator did not make into a free block's links or into a
// list's metadata ends in a report ("tinymalloc: corrupted <list> at 0x<addr> (...)") and an
// abort before anything is written through the bad link or handed out from it. Each test
// corrupts one structure on purpose, in a child process.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "internal_headers.h"
#include "large.h"
#include "os.h"
#include "small.h"
#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

const auto kAbort = ::testing::KilledBySignal(SIGABRT);
const char kCorruptedFreeList[] = "tinymalloc: corrupted free list at 0x[0-9a-f]+ \\(";

// Static data a free-list poisoning attack would aim a link at.
char g_static_target[256];

class IntegrityDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Word `index` of a freed block (its memory is poisoned under ASan).
uintptr_t* freed_words(void* block) {
  unpoison(block, 16);
  return static_cast<uintptr_t*>(block);
}

// The run descriptor of the small block p (white-box access to its segment's header).
tmi::RunDesc* run_of(const void* p) {
  auto* segment = reinterpret_cast<tmi::SmallSegment*>(reinterpret_cast<uintptr_t>(p) & ~(tmi::kSegmentSize - 1));
  return &segment->runs[(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(segment)) >> tmi::kRunShift];
}

// The issue's classic free-list poisoning: one write after free into the first word of a
// freed 64-byte block, aimed at static data. The next malloc(64) pops that block, decodes its
// link and stops; no later malloc returns the static address.
TEST_F(IntegrityDeathTest, ALinkWrittenAfterFreeIsReportedNotHandedOut) {
  EXPECT_EXIT(
      {
        void* keep = tm_malloc(64);  // the run stays in use
        void* p = tm_malloc(64);
        tm_free(p);
        freed_words(p)[0] = reinterpret_cast<uintptr_t>(g_static_target);
        for (int i = 0; i < 4; ++i) {
          if (tm_malloc(64) == g_static_target) std::_Exit(2);  // poisoned: the attack worked
        }
        (void)keep;
        std::_Exit(0);  // not reached: the corrupted link must abort
      },
      kAbort, std::string(kCorruptedFreeList) + "a freed block's link decodes to 0x[0-9a-f]+, not a block address");
}

// A write into the second word (the free-block key) of a cached block: reported when the
// block is popped, instead of handing out a block that was written after its free.
TEST_F(IntegrityDeathTest, AKeyWrittenAfterFreeIsReportedWhenTheBlockIsPopped) {
  EXPECT_EXIT(
      {
        void* p = tm_malloc(48);
        tm_free(p);
        freed_words(p)[1] = 0;
        (void)tm_malloc(48);
        std::_Exit(0);
      },
      kAbort, std::string(kCorruptedFreeList) + "a freed block lost its free-block key");
}

// The same for a medium block in the thread's medium cache.
TEST_F(IntegrityDeathTest, AMediumCacheLinkWrittenAfterFreeIsReported) {
  EXPECT_EXIT(
      {
        void* p = tm_malloc(16000);
        tm_free(p);
        freed_words(p)[0] = reinterpret_cast<uintptr_t>(g_static_target);
        for (int i = 0; i < 4; ++i) {
          if (tm_malloc(16000) == g_static_target) std::_Exit(2);
        }
        std::_Exit(0);
      },
      kAbort, kCorruptedFreeList);
}

// A block in the middle of a bin: the link is checked when the walk (here the flush of
// tm_release_cached) follows it, not only at the head.
TEST_F(IntegrityDeathTest, ACorruptedLinkDeeperInABinIsReportedWhenTheBinIsFlushed) {
  EXPECT_EXIT(
      {
        void* keep = tm_malloc(96);
        void* blocks[4];
        for (void*& b : blocks) b = tm_malloc(96);
        for (void* b : blocks) tm_free(b);
        freed_words(blocks[1])[0] ^= 0x1234;  // blocks[1] is third from the head
        tm_release_cached();
        (void)keep;
        std::_Exit(0);
      },
      kAbort, kCorruptedFreeList);
}

// A medium free block whose best-fit list links were overwritten after its free: the next
// allocation that unlinks its neighbour on the list checks the back link first.
TEST_F(IntegrityDeathTest, ABestFitListLinkWrittenAfterFreeIsReportedBeforeTheUnlink) {
  EXPECT_EXIT(
      {
        MediumCacheOff off;
        std::vector<char*> run = adjacent_medium(20000, 5);
        if (run.size() != 5) std::_Exit(3);
        tm_free(run[1]);
        tm_free(run[3]);  // the same list as run[1], in front of it
        unpoison(run[1], 16);
        std::memset(run[1], 0x42, 16);  // next_free and prev_free
        (void)tm_malloc(20000);         // takes run[3]: its successor no longer links back
        std::_Exit(0);
      },
      kAbort,
      "tinymalloc: corrupted best-fit free list at 0x[0-9a-f]+ \\(its successor 0x[0-9a-f]+ links back to 0x4242");
}

// The large-block list: a header whose back link was overwritten (an underflow of the block
// above it, or a stray write) is reported when the block is freed.
TEST_F(IntegrityDeathTest, ALargeBlockListLinkOverwrittenIsReportedOnFree) {
  EXPECT_EXIT(
      {
        void* older = tm_malloc(2 * MiB);
        void* newer = tm_malloc(2 * MiB);  // the list: newer, then older
        auto* header = reinterpret_cast<tmi::LargeHeader*>(static_cast<char*>(older) - tmi::kLargeHeaderSize);
        unpoison(header, sizeof *header);
        if (header->prev == nullptr) std::_Exit(3);
        header->prev = header;  // links to itself, not to `newer`
        tm_free(older);
        (void)newer;
        std::_Exit(0);
      },
      kAbort, "tinymalloc: corrupted large-block list at 0x[0-9a-f]+ \\(its predecessor");
}

// The same list when a large block is resized in place by mremap: the neighbours' links are
// checked before they are rewritten to the moved header.
TEST_F(IntegrityDeathTest, ALargeBlockListLinkOverwrittenIsReportedOnRemap) {
  EXPECT_EXIT(
      {
        void* older = tm_malloc(2 * MiB);
        void* newer = tm_malloc(2 * MiB);
        auto* header = reinterpret_cast<tmi::LargeHeader*>(static_cast<char*>(older) - tmi::kLargeHeaderSize);
        unpoison(header, sizeof *header);
        header->prev = nullptr;  // claims to head the list, which `newer` heads
        void* grown = tm_realloc(older, 64 * MiB);
        (void)grown;
        (void)newer;
        std::_Exit(0);
      },
      kAbort, "tinymalloc: corrupted large-block list at 0x[0-9a-f]+ \\(it has no predecessor, but the list head is");
}

// A partial-run list whose forward link was overwritten: the run's unlink (when its last
// block comes back) sees that the next run does not link back.
TEST_F(IntegrityDeathTest, APartialRunListLinkOverwrittenIsReportedOnUnlink) {
  EXPECT_EXIT(
      {
        ScopedOption no_cache("thread_cache", 0);
        auto* p = static_cast<char*>(tm_malloc(64));
        tmi::RunDesc* run = run_of(p);
        if (run->block_size != 64 || run->on_partial == 0) std::_Exit(3);
        static tmi::RunDesc stray{};  // its prev is not `run`
        run->next = &stray;
        tm_free(p);  // the run is empty and (it claims) not alone on its list: it is unlinked
        std::_Exit(0);
      },
      kAbort, "tinymalloc: corrupted partial-run list at 0x[0-9a-f]+ \\(");
}

// A run whose bitmap was written over so that its only free bit lies past its block count:
// the search's result is checked against the count, not handed out as a block outside the run.
TEST_F(IntegrityDeathTest, ARunBitmapOfferingABlockPastTheRunIsReported) {
  EXPECT_EXIT(
      {
        ScopedOption no_cache("thread_cache", 0);
        auto* p = static_cast<char*>(tm_malloc(48));
        tmi::RunDesc* run = run_of(p);
        const size_t words = (run->block_count + 63) / 64;
        const size_t past = words * 64 - 1;  // 48-byte blocks: the last word is partly past the count
        if (run->block_size != 48 || past < run->block_count) std::_Exit(3);
        for (size_t w = 0; w < words; ++w) run->bitmap[w] = 0;
        run->bitmap[past / 64] = uint64_t{1} << (past % 64);
        run->hint_word = 0;
        (void)tm_malloc(48);
        std::_Exit(0);
      },
      kAbort,
      "tinymalloc: corrupted run bitmap at 0x[0-9a-f]+ \\(its bitmap offers block [0-9]+ of a run of [0-9]+ blocks");
}

// An overrun of a live medium block into the boundary tag of the free block after it: the
// next allocation that the best-fit index serves from that block checks its tag first.
TEST_F(IntegrityDeathTest, AnOverrunIntoAFreeMediumBlocksTagIsReportedBeforeItIsHandedOut) {
  EXPECT_EXIT(
      {
        MediumCacheOff off;
        std::vector<char*> run = adjacent_medium(20000, 3);
        if (run.size() != 3) std::_Exit(3);
        tm_free(run[1]);  // free, filed in the index; run[0] and run[2] stay live
        char* past = run[0] + tm_usable_size(run[0]);
        unpoison(past, 16);
        std::memset(past, 0x41, 16);  // prev_size and size (free bit still set)
        (void)tm_malloc(20000);
        std::_Exit(0);
      },
      kAbort,
      "tinymalloc: heap corruption at 0x[0-9a-f]+ \\(boundary tag of a medium block is corrupted: size of a free "
      "block");
}

// An underrun of a live medium block writes the slack word of its own header (the bytes just
// before the payload): its free reports it, through the medium cache or straight to the index,
// instead of taking the block back with a requested size that skews the counters for good.
TEST_F(IntegrityDeathTest, AnUnderrunIntoAMediumBlocksOwnHeaderIsReportedAtItsFree) {
  for (const bool cache : {false, true}) {
    EXPECT_EXIT(
        {
          if (tm_option_set("medium_cache", cache ? 1 : 0) != 0) std::_Exit(3);
          auto* p = static_cast<char*>(tm_malloc(10000));
          unpoison(p - 1, 1);
          p[-1] = 'x';
          tm_free(p);
          std::_Exit(0);
        },
        kAbort,
        "tinymalloc: heap corruption at 0x[0-9a-f]+ \\(boundary tag of a medium block is corrupted: slack [0-9]+;")
        << "medium_cache=" << cache;
  }
}

// The same underrun of a large block lands in its header's requested size.
TEST_F(IntegrityDeathTest, AnUnderrunIntoALargeBlocksHeaderIsReportedAtItsFree) {
  EXPECT_EXIT(
      {
        auto* p = static_cast<char*>(tm_malloc(600 * KiB));
        unpoison(p - 1, 1);
        p[-1] = 'x';
        tm_free(p);
        std::_Exit(0);
      },
      kAbort,
      "tinymalloc: heap corruption at 0x[0-9a-f]+ \\(large block header is corrupted \\(mapping or requested "
      "size\\)\\)");
}

// Heap checks report a link that decodes to no block as a check failure (no abort): the
// harness's checks see a use-after-free write into a cached block's first word.
TEST(Integrity, HeapCheckReportsACachedLinkThatDecodesToNoBlock) {
  void* keep = tm_malloc(64);
  void* p = tm_malloc(64);
  ASSERT_TRUE(keep && p);
  tm_free(p);
  uintptr_t* words = freed_words(p);
  const uintptr_t saved = words[0];
  words[0] ^= 0x8;  // decodes to an address that is not 16-byte aligned
  tm_check_report_t report;
  EXPECT_EQ(tm_check_heap_report(&report), TM_CHECK_FREE_LINKS);
  EXPECT_NE(std::string(report.message).find("does not decode to a block"), std::string::npos) << report.message;
  EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(p));
  words[0] = saved;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_free(keep);
}

// tm_check_heap reconciles the OS accounting with the mappings it walks: a mapping nothing
// holds (a leaked segment) and committed bytes no mapping accounts for are both reported.
TEST(Integrity, HeapCheckReconcilesMappedAndCommittedBytesWithTheWalk) {
  std::vector<void*> blocks;
  for (int i = 0; i < 200; ++i) blocks.push_back(tm_malloc(static_cast<size_t>(64 + i * 997)));
  blocks.push_back(tm_malloc(size_t{6} << 20));
  ASSERT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_check_report_t report;

  // A segment mapped behind the walk's back.
  void* leaked = tmi::os_map_aligned(tmi::kSegmentSize, tmi::kSegmentSize);
  ASSERT_NE(leaked, nullptr);
  ASSERT_EQ(tm_check_heap_report(&report), TM_CHECK_STATS);
  EXPECT_NE(std::strstr(report.message, "mapped-bytes counter ("), nullptr) << report.message;
  tmi::os_unmap(leaked, tmi::kSegmentSize);
  ASSERT_EQ(tm_check_heap(), TM_CHECK_OK);

  // Committed bytes drifting from the segments' purge state.
  tmi::os_note_recommitted(tmi::kPageSize * 3);
  ASSERT_EQ(tm_check_heap_report(&report), TM_CHECK_STATS);
  EXPECT_NE(std::strstr(report.message, "committed-bytes counter ("), nullptr) << report.message;
  // Taken back: a mapping purged (not committed) and unmapped counts its size off once more.
  void* scratch = tmi::os_map_aligned(tmi::kSegmentSize, tmi::kSegmentSize);
  ASSERT_NE(scratch, nullptr);
  tmi::os_purge(scratch, tmi::kPageSize * 3);
  tmi::os_unmap(scratch, tmi::kSegmentSize);
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  for (void* p : blocks) tm_free(p);
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
}

// A mapping in transit (os.h: OsTransit) is not compared: a heap check while one is under way,
// or begins and ends during the check, passes; the same leaked mapping once no transit is
// under way is reported.
TEST(Integrity, HeapCheckComparesTheOsCountersOnlyWithNoMappingInTransit) {
  void* block = tm_malloc(size_t{6} << 20);
  ASSERT_NE(block, nullptr);
  void* leaked = nullptr;
  const uint64_t before = tmi::os_transit_stamp();
  EXPECT_TRUE(tmi::os_transit_quiet(before, tmi::os_transit_stamp()));
  {
    const tmi::OsTransit transit;
    EXPECT_FALSE(tmi::os_transit_quiet(before, tmi::os_transit_stamp())) << "a transit began";
    EXPECT_FALSE(tmi::os_transit_quiet(tmi::os_transit_stamp(), tmi::os_transit_stamp())) << "one is under way";
    leaked = tmi::os_map_aligned(tmi::kSegmentSize, tmi::kSegmentSize);
    ASSERT_NE(leaked, nullptr);
    EXPECT_EQ(tm_check_heap(), TM_CHECK_OK) << "counted mapped, in no structure yet: in transit";
  }
  EXPECT_FALSE(tmi::os_transit_quiet(before, tmi::os_transit_stamp())) << "a transit began and ended";
  const uint64_t after = tmi::os_transit_stamp();
  EXPECT_TRUE(tmi::os_transit_quiet(after, tmi::os_transit_stamp()));
  tm_check_report_t report;
  ASSERT_EQ(tm_check_heap_report(&report), TM_CHECK_STATS) << "the transit ended without the mapping";
  EXPECT_NE(std::strstr(report.message, "mapped-bytes counter ("), nullptr) << report.message;
  tmi::os_unmap(leaked, tmi::kSegmentSize);
  tm_free(block);
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
}

// Regression (tsan CI, fuzz.corpus.heap_mt.fastpath): threads without a cache (thread_cache=0)
// free large blocks and empty the pool while another thread checks the heap. Their mappings
// leave the block list and the pool under a lock and are unmapped after it; the check, which
// compares the OS counters when no other thread has a cache, read a counter that still held
// them and reported "mapped-bytes counter (...) differs from the mappings walked (...)".
TEST(Integrity, HeapCheckStaysExactWhileCachelessThreadsMoveLargeBlocks) {
  ScopedOption no_caches("thread_cache", 0);
  std::atomic<bool> stop{false};
  std::atomic<int> ready{0};
  auto mover = [&](unsigned seed) {
    ready.fetch_add(1);
    for (unsigned i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      const size_t size = (size_t{1} << 20) * (1 + (seed * 7 + i * 13) % 9);
      char* p = static_cast<char*>(tm_malloc(size));
      if (p == nullptr) continue;
      p[0] = static_cast<char>(i);
      p[size - 1] = static_cast<char>(i);
      tm_free(p);
      if (i % 4 == 0) tm_release_cached();
    }
  };
  std::thread first(mover, 1u);
  std::thread second(mover, 2u);
  while (ready.load() < 2) std::this_thread::yield();
  int failures = 0;
  std::string first_failure;
  for (int check = 0; check < 3000; ++check) {
    tm_check_report_t report;
    if (tm_check_heap_report(&report) != TM_CHECK_OK && failures++ == 0) first_failure = report.message;
  }
  stop.store(true);
  first.join();
  second.join();
  EXPECT_EQ(failures, 0) << "first: " << first_failure;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
}

// Valid use never trips the link checks: blocks of every small class and of the medium
// cache go through bins, flushes and reuse with their links decoded at every step.
TEST(Integrity, ValidChurnThroughEveryBinPassesTheLinkChecks) {
  std::vector<void*> blocks;
  for (int round = 0; round < 3; ++round) {
    for (size_t size = 16; size <= 65536; size += size < 1024 ? 16 : size / 8) blocks.push_back(tm_malloc(size));
    for (size_t i = 0; i < blocks.size(); i += 2) tm_free(blocks[i]);
    EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
    for (size_t i = 1; i < blocks.size(); i += 2) tm_free(blocks[i]);
    blocks.clear();
    if (round == 1) tm_release_cached();
  }
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
}

// The heap checks never follow a link they have not judged first (tinymalloc.h: they never
// abort). Found by tm_prop_heap_check: a live medium block whose free flag was overwritten
// (the block before it overran into its tag) holds user data where a free block keeps its
// best-fit links, and both checks dereferenced it (SIGSEGV). Now a link that names no block
// start in a medium segment is reported as an index inconsistency where it was read.
TEST(Integrity, HeapChecksDoNotFollowUserDataInALiveMediumBlockMarkedFree) {
  MediumCacheOff off;
  std::vector<char*> run = adjacent_medium(20000, 3);
  ASSERT_EQ(run.size(), 3u);
  auto* words = reinterpret_cast<uintptr_t*>(run[1]);
  words[0] = reinterpret_cast<uintptr_t>(run[1]) + 4096;  // next_free: inside the block, no block start
  words[1] = 0x4141414141414140;                          // prev_free: 16-byte aligned, far from any mapping
  auto* header = tmi::BlockHeader::from_payload(run[1]);
  unpoison(header, sizeof *header);
  const uint64_t flags = header->size_flags;
  header->size_flags = flags | tmi::kBlockFree;
  tm_check_report_t report;
  EXPECT_EQ(tm_check_heap_report(&report), TM_CHECK_FIT_INDEX) << report.message;
  EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(header)) << report.message;
  EXPECT_EQ(tm_check_heap_around(run[1], &report), TM_CHECK_FIT_INDEX) << report.message;
  EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(header)) << report.message;
  header->size_flags = flags;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  for (char* p : run) tm_free(p);
}

// The same for a free medium block whose links were written after its free: aimed at no
// mapping, the full check's index walk and the scoped check's membership test report the
// block instead of following them.
TEST(Integrity, HeapChecksReportAFreeMediumBlocksLinkToNowhereWithoutFollowingIt) {
  MediumCacheOff off;
  std::vector<char*> run = adjacent_medium(20000, 3);
  ASSERT_EQ(run.size(), 3u);
  tm_free(run[1]);  // filed in the index; its neighbours stay live
  auto* block = static_cast<tmi::FreeBlock*>(tmi::BlockHeader::from_payload(run[1]));
  unpoison(block, sizeof *block);
  for (tmi::FreeBlock** link : {&block->next_free, &block->prev_free}) {
    tmi::FreeBlock* const saved = *link;
    *link = reinterpret_cast<tmi::FreeBlock*>(uintptr_t{0x4141414141414140});
    tm_check_report_t report;
    EXPECT_EQ(tm_check_heap_report(&report), TM_CHECK_FIT_INDEX) << report.message;
    EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(block)) << report.message;
    EXPECT_EQ(tm_check_heap_around(run[1], &report), TM_CHECK_FIT_INDEX) << report.message;
    EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(block)) << report.message;
    *link = saved;
  }
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_free(run[0]);
  tm_free(run[2]);
}

// A large block header's list links overwritten with an address nobody mapped (an underflow
// of the block after it): both checks report the header; neither follows the link.
TEST(Integrity, HeapChecksReportALargeHeadersLinkToNowhereWithoutFollowingIt) {
  void* older = tm_malloc(2 * MiB);
  void* newer = tm_malloc(2 * MiB);  // the list: newer, then older
  ASSERT_TRUE(older != nullptr && newer != nullptr);
  for (void* block : {older, newer}) {
    auto* header = reinterpret_cast<tmi::LargeHeader*>(static_cast<char*>(block) - tmi::kLargeHeaderSize);
    unpoison(header, sizeof *header);
    for (tmi::LargeHeader** link : {&header->next, &header->prev}) {
      tmi::LargeHeader* const saved = *link;
      *link = reinterpret_cast<tmi::LargeHeader*>(uintptr_t{0x4141414141414140});
      tm_check_report_t report;
      EXPECT_EQ(tm_check_heap_report(&report), TM_CHECK_LARGE) << report.message;
      EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(header)) << report.message;
      EXPECT_EQ(tm_check_heap_around(block, &report), TM_CHECK_LARGE) << report.message;
      EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(header)) << report.message;
      *link = saved;
    }
  }
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_free(older);
  tm_free(newer);
}

}  // namespace
