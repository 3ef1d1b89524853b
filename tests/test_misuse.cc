// Misuse is reported as "tinymalloc: <what> at 0x<addr> (<detail>)" on stderr followed by
// abort(): double frees, foreign and interior pointers, and tm_check_heap's detection of
// corrupted metadata (run in a child process so the corruption cannot leak into other tests).
#include <gtest/gtest.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

const char kDoubleFree[] = "tinymalloc: double free at 0x[0-9a-f]+ \\(";
const char kInvalidFree[] = "tinymalloc: invalid free at 0x[0-9a-f]+ \\(";
const char kInvalidRealloc[] = "tinymalloc: invalid realloc at 0x[0-9a-f]+ \\(";
const char kInvalidUsable[] = "tinymalloc: invalid usable_size at 0x[0-9a-f]+ \\(";

int g_global_block[64];

class MisuseDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

const auto kAbort = ::testing::KilledBySignal(SIGABRT);

// ---- double free -----------------------------------------------------------------------

TEST_F(MisuseDeathTest, DoubleFreeSmall) {
  EXPECT_EXIT(
      {
        void* p = tm_malloc(64);
        tm_free(p);
        tm_free(p);
      },
      kAbort, kDoubleFree);
}

TEST_F(MisuseDeathTest, DoubleFreeSmallNotMostRecent) {
  EXPECT_EXIT(
      {
        void* a = tm_malloc(200);
        void* b = tm_malloc(200);
        void* c = tm_malloc(200);
        tm_free(a);
        tm_free(b);
        void* d = tm_malloc(1000);  // other activity in between
        (void)d;
        tm_free(a);
        (void)c;
      },
      kAbort, kDoubleFree);
}

TEST_F(MisuseDeathTest, DoubleFreeMedium) {
  EXPECT_EXIT(
      {
        void* keep = tm_malloc(30000);
        void* p = tm_malloc(30000);
        void* after = tm_malloc(30000);
        tm_free(p);
        tm_free(p);
        (void)keep;
        (void)after;
      },
      kAbort, kDoubleFree);
}

TEST_F(MisuseDeathTest, DoubleFreeMediumAfterCoalescing) {
  // The second free names a block that merged with its free neighbour: it is no longer a
  // block start, yet must still be caught (as a double or an invalid free).
  EXPECT_EXIT(
      {
        std::vector<char*> run = adjacent_medium(30000, 4);
        if (run.size() != 4) std::_Exit(3);
        tm_free(run[1]);
        tm_free(run[2]);  // merges with run[1]
        tm_free(run[2]);
      },
      kAbort, "tinymalloc: (double|invalid) free at 0x[0-9a-f]+ \\(");
}

TEST_F(MisuseDeathTest, DoubleFreeOfAMediumBlockMergedIntoTheFreeBlockBeforeItIsNamed) {
  // Without the medium cache the first free of run[2] merges it into run[1]'s free block at
  // once: its address is then inside a free block, which the report says.
  EXPECT_EXIT(
      {
        if (tm_option_set("medium_cache", 0) != 0) std::_Exit(2);
        std::vector<char*> run = adjacent_medium(30000, 4);
        if (run.size() != 4) std::_Exit(3);
        tm_free(run[1]);
        tm_free(run[2]);
        tm_free(run[2]);
      },
      kAbort,
      "tinymalloc: double free at 0x[0-9a-f]+ \\(medium block already freed and merged into a free block of "
      "[0-9]+ bytes\\)");
}

TEST_F(MisuseDeathTest, DoubleFreeLarge) {
  EXPECT_EXIT(
      {
        void* p = tm_malloc(2 * MiB);
        tm_free(p);
        tm_free(p);
      },
      kAbort, kDoubleFree);
}

TEST_F(MisuseDeathTest, DoubleFreeAligned) {
  EXPECT_EXIT(
      {
        void* p = tm_aligned_alloc(4096, 20000);
        tm_free(p);
        tm_free(p);
      },
      kAbort, kDoubleFree);
}

TEST_F(MisuseDeathTest, ReallocOfFreedBlock) {
  EXPECT_EXIT(
      {
        void* keep = tm_malloc(100);
        void* p = tm_malloc(100);
        tm_free(p);
        void* q = tm_realloc(p, 200);
        (void)q;
        (void)keep;
      },
      kAbort, "tinymalloc: (invalid realloc|double free) at 0x[0-9a-f]+ \\(");
}

// tm_usable_size of a freed small block is misuse, whether the block waits in the thread
// cache (it carries the free-block key) or went back to its run (its bitmap bit is set).
// Found by tools/tm-mutate: requiring both signs instead of either survived every other test.
TEST_F(MisuseDeathTest, UsableSizeOfAFreedSmallBlock) {
  for (int cache : {1, 0}) {
    EXPECT_EXIT(
        {
          if (tm_option_set("thread_cache", cache) != 0) std::_Exit(3);
          void* keep = tm_malloc(48);
          void* p = tm_malloc(48);
          tm_free(p);
          (void)tm_usable_size(p);
          (void)keep;
          std::_Exit(0);  // not reached
        },
        kAbort, "tinymalloc: invalid usable_size at 0x[0-9a-f]+ \\(block is free")
        << "thread_cache=" << cache;
  }
}

// ---- invalid free ----------------------------------------------------------------------

TEST_F(MisuseDeathTest, InvalidFreeStackAddress) {
  EXPECT_EXIT(
      {
        int local[16];
        void* volatile p = local;
        void* warm = tm_malloc(16);  // the allocator is initialised
        (void)warm;
        tm_free(p);
      },
      kAbort, kInvalidFree);
}

TEST_F(MisuseDeathTest, InvalidFreeBeforeAnyAllocation) {
  // A fresh child: the first call into tinymalloc is a bad free.
  EXPECT_EXIT(
      {
        void* volatile p = &g_global_block[3];
        tm_free(p);
      },
      kAbort, kInvalidFree);
}

TEST_F(MisuseDeathTest, InvalidFreeGlobal) {
  EXPECT_EXIT(
      {
        void* warm = tm_malloc(16);
        (void)warm;
        tm_free(&g_global_block[0]);
      },
      kAbort, kInvalidFree);
}

TEST_F(MisuseDeathTest, InvalidFreeGlibcPointer) {
  EXPECT_EXIT(
      {
        void* warm = tm_malloc(16);
        (void)warm;
        void* foreign = std::malloc(100);
        tm_free(foreign);
      },
      kAbort, kInvalidFree);
}

TEST_F(MisuseDeathTest, InvalidFreeInteriorSmall) {
  for (size_t offset : {size_t{1}, size_t{8}, size_t{16}, size_t{48}}) {
    EXPECT_EXIT(
        {
          auto* p = static_cast<char*>(tm_malloc(64));
          tm_free(p + offset);
        },
        kAbort, kInvalidFree)
        << "offset " << offset;
  }
}

TEST_F(MisuseDeathTest, InvalidFreeInteriorMedium) {
  // Odd offsets too: a block-start test that looked at fewer low bits (found by
  // tools/tm-mutate) took p + 1 for the block and read a header one byte off.
  for (size_t offset :
       {size_t{1}, size_t{7}, size_t{8}, size_t{16}, size_t{17}, size_t{32}, size_t{4096}, size_t{19984}}) {
    EXPECT_EXIT(
        {
          auto* p = static_cast<char*>(tm_malloc(20000));
          tm_free(p + offset);
        },
        kAbort, kInvalidFree)
        << "offset " << offset;
  }
}

TEST_F(MisuseDeathTest, InvalidFreeInteriorLarge) {
  for (size_t offset : {size_t{16}, size_t{4096}, size_t{1} << 20}) {
    EXPECT_EXIT(
        {
          auto* p = static_cast<char*>(tm_malloc(2 * MiB));
          tm_free(p + offset);
        },
        kAbort, kInvalidFree)
        << "offset " << offset;
  }
}

TEST_F(MisuseDeathTest, InvalidFreeSmallSegmentHeader) {
  // A pointer into tinymalloc's own memory that is no block: the start of a small segment
  // (its header), found by rounding a small block down to 4 MiB.
  EXPECT_EXIT(
      {
        auto* p = static_cast<char*>(tm_malloc(64));
        void* segment = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{(4 * MiB) - 1});
        tm_free(static_cast<char*>(segment) + 64);
      },
      kAbort, kInvalidFree);
}

// Pointers into a medium segment outside its blocks: inside the segment header, and the end
// sentinel's header. Both name the metadata (found by tools/tm-mutate: a range test that
// let either through reported them as the interior of a block, or read the block-start
// bitmap before its start).
TEST_F(MisuseDeathTest, InvalidFreeMediumSegmentMetadata) {
  const size_t kSentinel = 4 * MiB - 16;
  for (size_t offset : {size_t{64}, size_t{32 * 1024}, size_t{64 * 1024}, kSentinel}) {
    EXPECT_EXIT(
        {
          auto* p = static_cast<char*>(tm_malloc(20000));
          auto* segment = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{(4 * MiB) - 1});
          tm_free(segment + offset);
        },
        kAbort, "tinymalloc: invalid free at 0x[0-9a-f]+ \\(pointer into medium segment metadata\\)")
        << "offset " << offset;
  }
}

TEST_F(MisuseDeathTest, InvalidReallocAndUsableSize) {
  EXPECT_EXIT(
      {
        int local = 0;
        void* volatile p = &local;
        void* warm = tm_malloc(16);
        (void)warm;
        void* q = tm_realloc(p, 100);
        (void)q;
      },
      kAbort, kInvalidRealloc);
  EXPECT_EXIT(
      {
        auto* p = static_cast<char*>(tm_malloc(20000));
        void* q = tm_realloc(p + 16, 100);
        (void)q;
      },
      kAbort, kInvalidRealloc);
  EXPECT_EXIT(
      {
        int local = 0;
        void* warm = tm_malloc(16);
        (void)warm;
        (void)tm_usable_size(&local);
      },
      kAbort, kInvalidUsable);
  EXPECT_EXIT(
      {
        auto* p = static_cast<char*>(tm_malloc(100));
        (void)tm_usable_size(p + 16);
      },
      kAbort, kInvalidUsable);
}

TEST_F(MisuseDeathTest, ValidUseDoesNotAbort) {
  // Control: the same shapes without misuse exit normally.
  EXPECT_EXIT(
      {
        void* a = tm_malloc(64);
        void* b = tm_malloc(20000);
        void* c = tm_malloc(2 * MiB);
        tm_free(a);
        tm_free(b);
        tm_free(c);
        std::_Exit(tm_check_heap() == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- tm_check_heap detects corruption (and never aborts) -------------------------------

TEST_F(MisuseDeathTest, CheckHeapDetectsMediumOverrun) {
  // Writing past the end of a medium block smashes the next block's boundary tag.
  EXPECT_EXIT(
      {
        std::vector<char*> run = adjacent_medium(20000, 3);
        if (run.size() != 3) std::_Exit(3);
        if (tm_check_heap() != 0) std::_Exit(4);
        char* past = run[0] + tm_usable_size(run[0]);
        unpoison(past, 16);
        std::memset(past, 0x41, 16);  // run[1]'s prev_size and size
        const int code = tm_check_heap();
        std::fprintf(stderr, "check=%d\n", code);
        std::_Exit(code != 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(MisuseDeathTest, FreeOfOverrunNeighbourIsReported) {
  EXPECT_EXIT(
      {
        std::vector<char*> run = adjacent_medium(20000, 3);
        if (run.size() != 3) std::_Exit(3);
        char* past = run[0] + tm_usable_size(run[0]);
        unpoison(past, 16);
        std::memset(past, 0x41, 16);
        tm_free(run[1]);
        std::_Exit(0);  // not reached: misuse or corruption must abort
      },
      kAbort, "tinymalloc: (heap corruption|invalid free) at 0x[0-9a-f]+ \\(");
}

TEST_F(MisuseDeathTest, CheckHeapDetectsCorruptedFreeLinks) {
  EXPECT_EXIT(
      {
        std::vector<char*> run = adjacent_medium(20000, 3);
        if (run.size() != 3) std::_Exit(3);
        tm_free(run[1]);  // a free block with list links in its first 16 bytes
        unpoison(run[1], 16);
        std::memset(run[1], 0x42, 16);
        const int code = tm_check_heap();
        std::fprintf(stderr, "check=%d\n", code);
        std::_Exit(code != 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// A block whose tag says free but which is on no free list, its back link pointing at itself:
// the heap check's walk back to the list head must stop (it is bounded by the free-block
// count) and report it, not loop. Found by tools/tm-mutate: the walk without its step
// count survived every other test.
TEST_F(MisuseDeathTest, CheckHeapStopsOnACyclicBackLink) {
  EXPECT_EXIT(
      {
        std::vector<char*> run = adjacent_medium(20000, 3);
        if (run.size() != 3) std::_Exit(3);
        char* header = run[1] - 16;
        unpoison(header, 32);
        uint64_t size_flags = 0;
        std::memcpy(&size_flags, header + 8, sizeof size_flags);
        size_flags |= 1;  // kBlockFree
        std::memcpy(header + 8, &size_flags, sizeof size_flags);
        void* next_free = nullptr;
        void* prev_free = header;  // itself
        std::memcpy(run[1], &next_free, sizeof next_free);
        std::memcpy(run[1] + 8, &prev_free, sizeof prev_free);
        tm_check_report_t report;
        const int code = tm_check_heap_report(&report);
        std::fprintf(stderr, "check=%d %s\n", code, report.message);
        std::_Exit(code == TM_CHECK_FIT_INDEX ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "free medium block is not on the best-fit index list");
}

TEST_F(MisuseDeathTest, CheckHeapDetectsLargeHeaderCorruption) {
  EXPECT_EXIT(
      {
        auto* p = static_cast<char*>(tm_malloc(2 * MiB));
        if (tm_check_heap() != 0) std::_Exit(4);
        unpoison(p - 64, 64);
        std::memset(p - 64, 0x5A, 64);
        tm_check_report_t r;
        const int code = tm_check_heap_report(&r);
        std::fprintf(stderr, "check=%d %s\n", code, r.message);
        std::_Exit(code != 0 && r.address != 0 && r.message[0] != '\0' ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(MisuseDeathTest, CheckHeapReportOnHealthyHeap) {
  EXPECT_EXIT(
      {
        void* a = tm_malloc(100);
        void* b = tm_malloc(100000);
        tm_check_report_t r;
        std::memset(&r, 0x33, sizeof r);
        const int code = tm_check_heap_report(&r);
        const bool ok = code == 0 && r.code == 0 && r.address == 0 && tm_check_heap_report(nullptr) == 0;
        tm_free(a);
        tm_free(b);
        std::_Exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
