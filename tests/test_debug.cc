// Debug mode (option debug=1, switched on at run time with tm_option_set) and the leak report:
// deliberately buggy code must be reported with the exact message and SIGABRT (death tests,
// each in a fresh child process), correct code must run clean, and tm_leak_report must count
// and group what was not freed.
//
// Allocation sites are the return addresses of tm_* calls, named with dladdr: the blocks are
// allocated by the small functions of namespace dbgsite (external linkage, exported by
// -rdynamic, never inlined, each with its own body so identical-code folding keeps them apart)
// and the reports are expected to name them.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "debug.h"
#include "test_util.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

// ---- Allocation and free sites ---------------------------------------------------------

namespace dbgsite {

// Each function stores its result in its own slot, so no two bodies are identical and the
// call is not a tail call (the return address stays inside the function).
volatile uintptr_t g_sink[32];

#define TM_DEBUG_SITE_ALLOC(name, slot)               \
  __attribute__((noinline)) void* name(size_t size) { \
    void* p = tm_malloc(size);                        \
    g_sink[slot] = reinterpret_cast<uintptr_t>(p);    \
    return p;                                         \
  }

TM_DEBUG_SITE_ALLOC(allocate_for_overflow, 0)
TM_DEBUG_SITE_ALLOC(allocate_for_underflow, 1)
TM_DEBUG_SITE_ALLOC(allocate_for_use_after_free, 2)
TM_DEBUG_SITE_ALLOC(allocate_for_double_free, 3)
TM_DEBUG_SITE_ALLOC(allocate_for_sized_delete, 4)
TM_DEBUG_SITE_ALLOC(allocate_leaked_small, 5)
TM_DEBUG_SITE_ALLOC(allocate_leaked_big, 6)
TM_DEBUG_SITE_ALLOC(allocate_for_invalid_free, 7)

__attribute__((noinline)) void* allocate_aligned_for_underflow(size_t alignment, size_t size) {
  void* p = tm_aligned_alloc(alignment, size);
  g_sink[8] = reinterpret_cast<uintptr_t>(p);
  return p;
}

__attribute__((noinline)) void* calloc_leaked(size_t count, size_t size) {
  void* p = tm_calloc(count, size);
  g_sink[9] = reinterpret_cast<uintptr_t>(p);
  return p;
}

__attribute__((noinline)) void free_here(void* p) {
  tm_free(p);
  g_sink[10] = reinterpret_cast<uintptr_t>(p);
}

// One distinct allocation site per N (the leak report's site cap).
template <int N>
__attribute__((noinline)) void* allocate_at_site(size_t size) {
  void* p = tm_malloc(size);
  g_sink[11] = reinterpret_cast<uintptr_t>(p) + N;
  return p;
}

}  // namespace dbgsite

namespace {

using namespace tmtest;

// Regex pieces: an address, and a site named by its function.
#define HEX "0x[0-9a-f]+"
#define SITE(fn) HEX " [A-Za-z0-9_]*" fn "[A-Za-z0-9_]*\\+" HEX " \\(tm_test_debug\\)"

const auto kAbort = ::testing::KilledBySignal(SIGABRT);

// The runtime starts before any test switches an option: tm_test_reset restores the options in
// force when it started, and a test that set debug=1 before the process's first allocation
// would make that the value every later reset restores (the whole binary in one process then
// failed DebugOptions.LeaksImpliesRecordingAndDebugIsARuntimeSwitch after a DebugTest and the
// DebugGuard test; ctest runs each test alone, where it passed).
[[maybe_unused]] const bool kRuntimeStarted = [] {
  tm_free(tm_malloc(1));
  return true;
}();

// Debug mode on (the death tests switch it on inside their child process).
void debug_on() { ASSERT_EQ(tm_option_set("debug", 1), 0); }

// ---- Death tests: deliberately buggy code ----------------------------------------------

class DebugDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(DebugDeathTest, OverflowByOneByte) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_overflow(100));
        p[100] = 'x';
        tm_free(p);
      },
      kAbort,
      "tinymalloc: heap overflow at " HEX " \\(block of 100 bytes allocated at " SITE(
          "allocate_for_overflow") "; 1 bytes written past its end, first at offset 100\\)");
}

TEST_F(DebugDeathTest, OverflowOfSeveralBytesCaughtByRealloc) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_overflow(5000));
        std::memset(p, 0, 5005);  // a NUL terminator and then some: canary bytes are never 0
        void* q = tm_realloc(p, 6000);
        (void)q;
      },
      kAbort,
      "tinymalloc: heap overflow at " HEX " \\(block of 5000 bytes allocated at " SITE(
          "allocate_for_overflow") "; 5 bytes written past its end, first at offset 5000\\)");
}

#if TM_TEST_ASAN || TM_TEST_TSAN
// Under a sanitizer a zero-size block has only its canary: a write is found when it is freed.
TEST_F(DebugDeathTest, OverflowOfZeroByteBlock) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_overflow(0));
        p[3] = 'A';
        tm_free(p);
      },
      kAbort,
      "tinymalloc: heap overflow at " HEX " \\(block of 0 bytes allocated at " SITE(
          "allocate_for_overflow") "; 1 bytes written past its end, first at offset 3\\)");
}
#else
// A zero-size block is an inaccessible page: a write, a read or an underflow faults at once.
const auto kSegv = ::testing::KilledBySignal(SIGSEGV);

TEST_F(DebugDeathTest, WriteToZeroByteBlockFaults) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<volatile char*>(dbgsite::allocate_for_overflow(0));
        p[3] = 'A';
      },
      kSegv,
      "tinymalloc: buffer overflow at " HEX " \\(3 bytes to the right of zero-size block " HEX
      " of 0 bytes \\(0 usable\\), allocated by thread [0-9]+ at " SITE("allocate_for_overflow") "\\)");
}

TEST_F(DebugDeathTest, ReadOfZeroByteBlockFaults) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<volatile char*>(dbgsite::calloc_leaked(0, 8));
        dbgsite::g_sink[12] = static_cast<uintptr_t>(p[0]);
      },
      kSegv,
      "tinymalloc: buffer overflow at " HEX " \\(0 bytes to the right of zero-size block " HEX ".*calloc_leaked");
}

TEST_F(DebugDeathTest, UnderflowOfZeroByteBlockFaults) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<volatile char*>(dbgsite::allocate_for_underflow(0));
        p[-1] = 'A';
      },
      kSegv,
      "tinymalloc: buffer underflow at " HEX " \\(1 bytes to the left of zero-size block .*allocate_for_underflow");
}

TEST_F(DebugDeathTest, AccessToAFreedZeroByteBlockFaults) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<volatile char*>(dbgsite::allocate_for_use_after_free(0));
        dbgsite::free_here(const_cast<char*>(p));
        p[0] = 'A';
      },
      kSegv, "tinymalloc: use after free at " HEX " \\(0 bytes to the right of zero-size block .*free_here");
}

// debug=guard: every block of up to 56 KiB on guard pages of its own.
void guard_on() {
  ASSERT_EQ(tm_test_reset(), 0);  // the region is sized when it is mapped
  ASSERT_EQ(tm_option_set("debug", 2), 0);
}

// A debug=guard block placed as asked: right (its usable end on a page end) or left (its start
// on a page start); placements alternate, so two tries suffice.
char* guard_block(size_t size, bool right) {
  for (int i = 0; i < 2; ++i) {
    auto* p = static_cast<char*>(dbgsite::allocate_for_overflow(size));
    const auto at = reinterpret_cast<uintptr_t>(p);
    const bool is_left = at % 4096 == 0;
    if (is_left != right) return p;
  }
  return nullptr;
}

TEST_F(DebugDeathTest, GuardModeOverflowPastThePageFaults) {
  EXPECT_EXIT(
      {
        guard_on();
        volatile char* p = guard_block(100, true);
        p[112] = 'x';  // the usable end (100 rounded up to 16) is the page end
      },
      kSegv, "tinymalloc: buffer overflow at " HEX " \\(0 bytes to the right of sampled block " HEX " of 100 bytes");
}

TEST_F(DebugDeathTest, GuardModeOverflowIntoTheSlackIsFoundAtFree) {
  EXPECT_EXIT(
      {
        guard_on();
        char* p = guard_block(100, false);  // left: the rest of its page is filled
        p[100] = 'x';
        tm_free(p);
      },
      kAbort,
      "tinymalloc: heap overflow at " HEX " \\(block of 100 bytes allocated at " SITE(
          "allocate_for_overflow") "; 1 bytes written past its end, first at offset 100\\)");
}

TEST_F(DebugDeathTest, GuardModeUnderflowFaults) {
  EXPECT_EXIT(
      {
        guard_on();
        volatile char* p = guard_block(3000, false);  // its start on a page start
        p[-1] = 'x';
      },
      kSegv, "tinymalloc: buffer underflow at " HEX " \\(1 bytes to the left of sampled block");
}

TEST_F(DebugDeathTest, GuardModeUseAfterFreeFaults) {
  EXPECT_EXIT(
      {
        guard_on();
        volatile char* p = guard_block(5000, true);
        dbgsite::free_here(const_cast<char*>(p));
        dbgsite::g_sink[13] = static_cast<uintptr_t>(p[10]);
      },
      kSegv, "tinymalloc: use after free at " HEX " \\(byte 10 of freed sampled block .*free_here");
}

TEST_F(DebugDeathTest, GuardModeOverflowOfABlockNeverFreedFoundAtExit) {
  EXPECT_EXIT(
      {
        guard_on();
        char* p = guard_block(40, false);
        p[45] = 'x';
        std::exit(0);
      },
      kAbort, "tinymalloc: heap overflow at " HEX " \\(block of 40 bytes allocated at .*first at offset 45\\)");
}

TEST_F(DebugDeathTest, DoubleFreeOfZeroByteBlock) {
  EXPECT_EXIT(
      {
        debug_on();
        void* p = dbgsite::allocate_for_double_free(0);
        dbgsite::free_here(p);
        tm_free(p);
      },
      kAbort, "tinymalloc: double free at " HEX " \\(already freed: zero-size block .*allocate_for_double_free");
}

#endif

TEST_F(DebugDeathTest, UnderflowByOneByte) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_underflow(64));
        p[-1] = '\0';
        tm_free(p);
      },
      kAbort,
      "tinymalloc: heap underflow at " HEX
      " \\(block of 64 bytes allocated at " SITE("allocate_for_underflow") "; 1 bytes written before its start\\)");
}

TEST_F(DebugDeathTest, UnderflowOfAlignedBlock) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_aligned_for_underflow(256, 1000));
        p[-200] = 'u';
        tm_free(p);
      },
      kAbort,
      "tinymalloc: heap underflow at " HEX " \\(block of 1000 bytes allocated at " SITE(
          "allocate_aligned_for_underflow") "; 200 bytes written before its start\\)");
}

// Above a page of alignment the front is the alignment too, its canary in the last 4 KiB
// before the block (the block's own header lay there before: an underrun went unreported and
// wrote over the core block's slack). Medium, large and very large alignments.
TEST_F(DebugDeathTest, UnderflowOfABlockAlignedAboveAPage) {
  for (size_t alignment : {size_t{8192}, size_t{64} * KiB, size_t{4} * MiB}) {
    for (size_t size : {size_t{1}, size_t{8193}, size_t{600} * KiB}) {
      EXPECT_EXIT(
          {
            debug_on();
            auto* p = static_cast<char*>(dbgsite::allocate_aligned_for_underflow(alignment, size));
            if (!is_aligned(p, alignment)) std::_Exit(3);
            p[-1] = 'u';
            tm_free(p);
          },
          kAbort,
          "tinymalloc: heap underflow at " HEX " \\(block of " + std::to_string(size) +
              " bytes allocated at " SITE("allocate_aligned_for_underflow") "; 1 bytes written before its start\\)")
          << alignment << " " << size;
    }
  }
}

TEST_F(DebugDeathTest, FreeOfTheCoreStartOfABlockAlignedAboveAPage) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_aligned_for_underflow(64 * KiB, 100));
        tm_free(p - 64 * KiB);
      },
      kAbort,
      "tinymalloc: invalid free at " HEX " \\(pointer 65536 bytes before the block of 100 bytes allocated at " SITE(
          "allocate_aligned_for_underflow") "\\)");
}

TEST_F(DebugDeathTest, WriteAfterFreeFoundByFlush) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_use_after_free(48));
        dbgsite::free_here(p);
        p[7] = 1;
        tmalloc::debug_flush_quarantine();
      },
      kAbort,
      "tinymalloc: write after free at " HEX " \\(block of 48 bytes allocated at " SITE(
          "allocate_for_use_after_free") ", freed at " SITE("free_here") "; byte at offset 7 changed\\)");
}

TEST_F(DebugDeathTest, WriteAfterFreeFoundWhenTheBlockLeavesTheQuarantine) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_use_after_free(3000));
        dbgsite::free_here(p);
        p[2999] = 'z';
        // Enough later frees push it out of the quarantine (4096 blocks in all).
        for (int i = 0; i < 20000; ++i) tm_free(tm_malloc(32));
      },
      kAbort,
      "tinymalloc: write after free at " HEX " \\(block of 3000 bytes allocated at " SITE(
          "allocate_for_use_after_free") ", freed at " SITE("free_here") "; byte at offset 2999 changed\\)");
}

TEST_F(DebugDeathTest, WriteAfterFreeFoundAtExit) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_use_after_free(200));
        dbgsite::free_here(p);
        p[0] = 0;
        std::exit(0);
      },
      kAbort,
      "tinymalloc: write after free at " HEX " \\(block of 200 bytes allocated at .*; byte at offset 0 changed\\)");
}

TEST_F(DebugDeathTest, OverflowOfABlockNeverFreedFoundAtExit) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_overflow(40));
        std::memset(p, 'x', 43);  // three bytes into the rear canary, and the block stays live
        std::exit(0);
      },
      kAbort,
      "tinymalloc: heap overflow at " HEX " \\(block of 40 bytes allocated at " SITE(
          "allocate_for_overflow") "; 3 bytes written past its end, first at offset 40\\)");
}

TEST_F(DebugDeathTest, UnderflowOfABlockNeverFreedFoundAtExit) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_underflow(40));
        p[-2] = 0;
        std::exit(0);
      },
      kAbort,
      "tinymalloc: heap underflow at " HEX
      " \\(block of 40 bytes allocated at " SITE("allocate_for_underflow") "; 2 bytes written before its start\\)");
}

TEST_F(DebugDeathTest, DoubleFree) {
  EXPECT_EXIT(
      {
        debug_on();
        void* p = dbgsite::allocate_for_double_free(32);
        dbgsite::free_here(p);
        tm_free(p);
      },
      kAbort,
      "tinymalloc: double free at " HEX
      " \\(block of 32 bytes allocated at " SITE("allocate_for_double_free") ", freed at " SITE("free_here") "\\)");
}

TEST_F(DebugDeathTest, DoubleFreeOfLargeBlock) {
  // Larger than the quarantine takes: released at once, so the core reports the second free.
  EXPECT_EXIT(
      {
        debug_on();
        void* p = dbgsite::allocate_for_double_free(8 * MiB);
        tm_free(p);
        tm_free(p);
      },
      kAbort, "tinymalloc: (double|invalid) free at " HEX " \\(");
}

TEST_F(DebugDeathTest, FreeOfStackAddress) {
  EXPECT_EXIT(
      {
        debug_on();
        char local[64];
        void* volatile p = local;
        tm_free(tm_malloc(16));
        tm_free(p);
      },
      kAbort, "tinymalloc: invalid free at " HEX " \\(pointer not owned by tinymalloc\\)");
}

TEST_F(DebugDeathTest, FreeOfForeignMmapPointer) {
  EXPECT_EXIT(
      {
        debug_on();
        void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) std::_Exit(3);
        tm_free(page);
      },
      kAbort, "tinymalloc: invalid free at " HEX " \\(pointer not owned by tinymalloc\\)");
}

TEST_F(DebugDeathTest, FreeOfTheBlockHeaderAddress) {
  // The start of the core block (before the front canary) passes the core's checks: the
  // debug layer reports it.
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_invalid_free(100));
        tm_free(p - 16);
      },
      kAbort,
      "tinymalloc: invalid free at " HEX
      " \\(pointer 16 bytes before the block of 100 bytes allocated at " SITE("allocate_for_invalid_free") "\\)");
}

TEST_F(DebugDeathTest, FreeOfInteriorPointer) {
  EXPECT_EXIT(
      {
        debug_on();
        auto* p = static_cast<char*>(dbgsite::allocate_for_invalid_free(100));
        tm_free(p + 8);
      },
      kAbort, "tinymalloc: invalid free at " HEX " \\(");
}

TEST_F(DebugDeathTest, MismatchedSizedDelete) {
  EXPECT_EXIT(
      {
        debug_on();
        void* p = dbgsite::allocate_for_sized_delete(100);
        tm_free_sized(p, 96);
      },
      kAbort,
      "tinymalloc: mismatched sized delete at " HEX
      " \\(delete of 96 bytes, block of 100 bytes allocated at " SITE("allocate_for_sized_delete") "\\)");
}

TEST_F(DebugDeathTest, ReallocOfFreedBlock) {
  EXPECT_EXIT(
      {
        debug_on();
        void* p = dbgsite::allocate_for_double_free(40);
        dbgsite::free_here(p);
        void* q = tm_realloc(p, 80);
        (void)q;
      },
      kAbort,
      "tinymalloc: invalid realloc at " HEX
      " \\(block of 40 bytes allocated at " SITE("allocate_for_double_free") ", freed at " SITE("free_here") "\\)");
}

TEST_F(DebugDeathTest, UsableSizeOfFreedBlock) {
  EXPECT_EXIT(
      {
        debug_on();
        void* p = dbgsite::allocate_for_double_free(40);
        dbgsite::free_here(p);
        size_t n = tm_usable_size(p);
        (void)n;
      },
      kAbort,
      "tinymalloc: invalid usable_size at " HEX
      " \\(block of 40 bytes allocated at " SITE("allocate_for_double_free") ", freed at ");
}

// ---- Leak report at exit -----------------------------------------------------------------

class NotContaining : public ::testing::MatcherInterface<const std::string&> {
 public:
  explicit NotContaining(std::string text) : text_(std::move(text)) {}
  bool MatchAndExplain(const std::string& s, ::testing::MatchResultListener*) const override {
    return s.find(text_) == std::string::npos;
  }
  void DescribeTo(std::ostream* os) const override { *os << "does not contain \"" << text_ << "\""; }

 private:
  std::string text_;
};

TEST_F(DebugDeathTest, LeakReportAtExitSetsTheExitCode) {
  EXPECT_EXIT(
      {
        ASSERT_EQ(tm_option_set("leaks", 1), 0);
        ASSERT_EQ(tm_option_set("leak_exitcode", 42), 0);
        void* freed = dbgsite::allocate_leaked_small(10);
        tm_free(freed);
        dbgsite::allocate_leaked_small(100);
        dbgsite::allocate_leaked_small(200);
        std::exit(0);
      },
      ::testing::ExitedWithCode(42),
      "tinymalloc: leak report: 2 blocks, 300 bytes in 1 allocation sites\n"
      "tinymalloc:   300 bytes in 2 blocks allocated at " SITE("allocate_leaked_small") "\n");
}

TEST_F(DebugDeathTest, LeakReportAtExitKeepsTheStatusWithoutLeakExitcode) {
  EXPECT_EXIT(
      {
        ASSERT_EQ(tm_option_set("leaks", 1), 0);
        dbgsite::allocate_leaked_big(5000);
        std::exit(7);
      },
      ::testing::ExitedWithCode(7),
      "tinymalloc: leak report: 1 blocks, 5000 bytes in 1 allocation sites\n"
      "tinymalloc:   5000 bytes in 1 blocks allocated at " SITE("allocate_leaked_big") "\n");
}

TEST_F(DebugDeathTest, NoLeakNoReportAtExit) {
  EXPECT_EXIT(
      {
        ASSERT_EQ(tm_option_set("leaks", 1), 0);
        ASSERT_EQ(tm_option_set("leak_exitcode", 42), 0);
        tm_free(dbgsite::allocate_leaked_small(100));
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), ::testing::MakeMatcher(new NotContaining("leak report")));
}

// ---- Correct programs run clean in debug mode ------------------------------------------

class DebugTest : public HeapTest {
 protected:
  void SetUp() override {
    HeapTest::SetUp();
    ASSERT_EQ(tm_option_set("debug", 1), 0);
  }
  // Switching debug off flushes the quarantine, so the fixture's balance check sees every
  // block back in the core.
  void TearDown() override {
    ASSERT_EQ(tm_option_set("debug", 0), 0);
    HeapTest::TearDown();
  }
};

// Output of tm_leak_report through a pipe, and its return value.
std::pair<size_t, std::string> leak_report() {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const size_t n = tm_leak_report(fds[1]);
  close(fds[1]);
  std::string out;
  char buffer[4096];
  ssize_t got;
  while ((got = read(fds[0], buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<size_t>(got));
  close(fds[0]);
  return {n, out};
}

TEST_F(DebugTest, MixedSizesAndReallocChainsRunClean) {
  Rng rng(7);
  struct Block {
    char* p;
    size_t size;
    uint64_t seed;
  };
  std::vector<Block> live;
  for (int op = 0; op < 4000; ++op) {
    const unsigned action = static_cast<unsigned>(rng.below(10));
    if (action < 5 || live.empty()) {
      const size_t size = rng.chance(5) ? rng.range(100000, 600000) : rng.log_uniform(1, 20000);
      auto* p = static_cast<char*>(rng.chance(20) ? tm_calloc(1, size) : tm_malloc(size));
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(tm_usable_size(p), size);
      const uint64_t seed = rng.next();
      fill_pattern(p, size, seed);
      live.push_back({p, size, seed});
    } else if (action < 8) {
      const size_t i = rng.below(live.size());
      Block& b = live[i];
      const size_t size = rng.log_uniform(1, 70000);
      auto* q = static_cast<char*>(tm_realloc(b.p, size));
      ASSERT_NE(q, nullptr);
      ASSERT_EQ(check_pattern(q, std::min(size, b.size), b.seed), std::min(size, b.size));
      ASSERT_EQ(tm_usable_size(q), size);
      fill_pattern(q, size, b.seed);
      b.p = q;
      b.size = size;
    } else {
      const size_t i = rng.below(live.size());
      ASSERT_EQ(check_pattern(live[i].p, live[i].size, live[i].seed), live[i].size);
      if (rng.chance(50)) {
        tm_free(live[i].p);
      } else {
        tm_free_sized(live[i].p, live[i].size);
      }
      live[i] = live.back();
      live.pop_back();
    }
  }
  for (const Block& b : live) {
    EXPECT_EQ(check_pattern(b.p, b.size, b.seed), b.size);
    tm_free(b.p);
  }
  tmalloc::debug_flush_quarantine();  // every freed block is verified here
  TM_EXPECT_HEAP_OK();
  EXPECT_EQ(leak_report().first, 0u);
}

// With report=json the leak report adds one JSON object for the whole and one per site, the
// site in the same words as the text line.
TEST_F(DebugTest, LeakReportInJsonGivesTheTotalsAndEachSiteAnObject) {
  ASSERT_EQ(tm_option_set("report", 1), 0);
  void* small = dbgsite::allocate_leaked_small(100);
  void* other_small = dbgsite::allocate_leaked_small(200);
  void* big = dbgsite::allocate_leaked_big(5000);
  const auto [blocks, out] = leak_report();
  ASSERT_EQ(tm_option_set("report", 0), 0);
  tm_free(small);
  tm_free(other_small);
  tm_free(big);
  EXPECT_EQ(blocks, 3u);
  EXPECT_NE(out.find("{\"tinymalloc\":\"leaks\",\"blocks\":3,\"bytes\":5300,\"sites\":2}\n"), std::string::npos) << out;
  // The larger site first, as in the text lines.
  const std::regex sites(
      "tinymalloc:   5000 bytes in 1 blocks allocated at (" SITE("allocate_leaked_big") ")\n"
      "\\{\"tinymalloc\":\"leak\",\"bytes\":5000,\"blocks\":1,\"alloc_site\":\"(" SITE("allocate_leaked_big") ")\"\\}\n"
      "tinymalloc:   300 bytes in 2 blocks allocated at (" SITE("allocate_leaked_small") ")\n"
      "\\{\"tinymalloc\":\"leak\",\"bytes\":300,\"blocks\":2,\"alloc_site\":\"(" SITE("allocate_leaked_small") ")\"\\}\n");
  std::smatch match;
  ASSERT_TRUE(std::regex_search(out, match, sites)) << out;
  EXPECT_EQ(match[1], match[2]);
  EXPECT_EQ(match[3], match[4]);
}

// tm_check_heap sees a damaged canary of a live block and a write into a quarantined one (and
// reports nothing once the bytes are put back), without aborting.
TEST_F(DebugTest, HeapCheckFindsDamagedCanariesAndQuarantinedWrites) {
  auto* p = static_cast<unsigned char*>(tm_malloc(100));
  std::memset(p, 1, 100);
  ASSERT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_check_report_t report;
  const unsigned char saved_rear = p[101];
  p[101] = 0;  // second byte of the rear canary
  ASSERT_EQ(tm_check_heap_report(&report), TM_CHECK_DEBUG_BLOCK);
  EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(p));
  EXPECT_NE(std::string(report.message).find("heap overflow: 1 bytes written past the end of a debug block of 100"),
            std::string::npos)
      << report.message;
  p[101] = saved_rear;
  ASSERT_EQ(tm_check_heap(), TM_CHECK_OK);
  const unsigned char saved_front = p[-16];
  p[-16] = 0;
  ASSERT_EQ(tm_check_heap_report(&report), TM_CHECK_DEBUG_BLOCK);
  EXPECT_NE(std::string(report.message).find("heap underflow"), std::string::npos) << report.message;
  p[-16] = saved_front;
  ASSERT_EQ(tm_check_heap(), TM_CHECK_OK);

  tm_free(p);  // quarantined, filled with 0xDF
  ASSERT_EQ(tm_check_heap(), TM_CHECK_OK);
  p[50] = 0;
  ASSERT_EQ(tm_check_heap_report(&report), TM_CHECK_DEBUG_BLOCK);
  EXPECT_EQ(report.address, reinterpret_cast<uintptr_t>(p));
  EXPECT_NE(std::string(report.message).find("write after free into a quarantined debug block of 100"),
            std::string::npos)
      << report.message;
  p[50] = 0xDF;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
}

// Zero-size blocks with correct use: freeable, reallocable, counted by the leak report, and
// past the region's 64 slots (or under a sanitizer) still served with canaries.
// tm_test_debug_totals (what the harness compares its model with in debug mode): blocks
// recorded as live with their requested bytes, and the quarantine, through a free, a
// realloc (it always moves: the old block goes to the quarantine) and a flush.
TEST_F(DebugTest, TotalsFollowLiveBlocksAndTheQuarantine) {
  size_t live, bytes, quarantined;
  tm_test_debug_totals(&live, &bytes, &quarantined);
  const size_t live0 = live, bytes0 = bytes, quarantined0 = quarantined;
  void* a = tm_malloc(100);
  void* b = tm_calloc(3, 7);
  void* c = tm_aligned_alloc(256, 40);
  ASSERT_TRUE(a != nullptr && b != nullptr && c != nullptr);
  tm_test_debug_totals(&live, &bytes, &quarantined);
  EXPECT_EQ(live - live0, 3u);
  EXPECT_EQ(bytes - bytes0, 100u + 21u + 40u);
  EXPECT_EQ(quarantined, quarantined0);
  tm_free(b);
  a = tm_realloc(a, 300);
  ASSERT_NE(a, nullptr);
  tm_test_debug_totals(&live, &bytes, &quarantined);
  EXPECT_EQ(live - live0, 2u);
  EXPECT_EQ(bytes - bytes0, 300u + 40u);
  EXPECT_EQ(quarantined - quarantined0, 2u) << "the freed block and the block realloc moved from";
  tm_free(a);
  tm_free(c);
  tm_release_cached();  // empties the quarantine
  tm_test_debug_totals(&live, &bytes, &quarantined);
  EXPECT_EQ(live, live0);
  EXPECT_EQ(bytes, bytes0);
  EXPECT_EQ(quarantined, 0u);
}

TEST_F(DebugTest, ZeroSizeBlocksRunCleanAndAreReported) {
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) {
    void* p = i % 2 == 0 ? tm_malloc(0) : tm_calloc(0, 4);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(tm_usable_size(p), 0u);
    // Found by the harness's debug-mode corpus replay: a zero-size block on an inaccessible
    // page of the sampled-block region (no usable byte) was not owned at its own address.
    EXPECT_NE(tm_owns(p), 0) << "block " << i;
    blocks.push_back(p);
  }
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  EXPECT_GE(tm_leak_report(-1), 100u);
  void* grown = tm_realloc(blocks[0], 10);
  ASSERT_NE(grown, nullptr);
  std::memset(grown, 7, 10);
  blocks[0] = grown;
  for (void* p : blocks) tm_free(p);
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  EXPECT_EQ(tm_leak_report(-1), 0u);
}

#if !TM_TEST_ASAN && !TM_TEST_TSAN
// debug=guard with correct use: blocks of every size up to 56 KiB and every alignment up to a
// page go on guard pages (4096 slots; past them, canary blocks), every byte usable, contents
// kept by realloc, calloc zeroed, heap check clean, every slot free again after the frees.
TEST(DebugGuard, CorrectUseRunsCleanOnGuardPages) {
  ASSERT_EQ(tm_test_reset(), 0);
  ASSERT_EQ(tm_option_set("debug", 2), 0);
  std::vector<std::pair<char*, size_t>> blocks;
  size_t guarded = 0;
  for (size_t i = 0; i < 4500; ++i) {
    const size_t size = 1 + (i * 7919) % 57000;
    char* p = static_cast<char*>(i % 3 == 0 ? tm_calloc(1, size) : tm_malloc(size));
    ASSERT_NE(p, nullptr);
    if (i % 3 == 0) {
      for (size_t k = 0; k < size; k += 97) ASSERT_EQ(p[k], 0) << "calloc block not zeroed";
    }
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
    std::memset(p, static_cast<int>(i & 0x7f), size);
    guarded += tm_test_is_sampled(p) != 0 ? 1 : 0;
    blocks.emplace_back(p, size);
  }
  EXPECT_EQ(guarded, 4096u) << "every slot in use, the rest served with canaries";
  for (size_t alignment = 32; alignment <= 4096; alignment *= 2) {
    void* a = tm_aligned_alloc(alignment, 200);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % alignment, 0u);
    std::memset(a, 1, 200);
    tm_free(a);
  }
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  for (size_t i = 0; i < blocks.size(); i += 2) {
    char* q = static_cast<char*>(tm_realloc(blocks[i].first, blocks[i].second + 100));
    ASSERT_NE(q, nullptr);
    for (size_t k = 0; k < blocks[i].second; k += 61) ASSERT_EQ(q[k], static_cast<char>(i & 0x7f));
    std::memset(q + blocks[i].second, 3, 100);
    blocks[i] = {q, blocks[i].second + 100};
  }
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  for (auto& [p, size] : blocks) tm_free(p);
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  EXPECT_EQ(tm_leak_report(-1), 0u);
  ASSERT_EQ(tm_option_set("debug", 0), 0);
  EXPECT_EQ(tm_test_reset(), 0);
}
#endif

TEST_F(DebugTest, ReallocMovesAndKeepsTheData) {
  auto* p = static_cast<char*>(tm_malloc(10));
  std::memcpy(p, "0123456789", 10);
  for (size_t size = 11; size < 300000; size = size * 3 / 2) {
    auto* q = static_cast<char*>(tm_realloc(p, size));
    ASSERT_NE(q, nullptr);
    EXPECT_NE(q, p) << "debug realloc always moves, so a stale pointer is a use after free";
    EXPECT_EQ(std::memcmp(q, "0123456789", 10), 0);
    EXPECT_EQ(static_cast<unsigned char>(q[size - 1]), 0xABu) << "new bytes carry the alloc fill";
    p = q;
  }
  p = static_cast<char*>(tm_realloc(p, 4));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::memcmp(p, "0123", 4), 0);
  EXPECT_EQ(tm_usable_size(p), 4u);
  EXPECT_EQ(tm_realloc(p, 0), nullptr);  // frees
  void* fresh = tm_realloc(nullptr, 33);
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(tm_usable_size(fresh), 33u);
  tm_free(fresh);
}

// A block aligned above a page: its front canary is the 4 KiB just before it; a byte further
// out is padding nobody checks.
TEST_F(DebugTest, TheCanaryOfALargeFrontIsItsLastFourKiB) {
  auto* p = static_cast<unsigned char*>(tm_aligned_alloc(64 * KiB, 100));
  ASSERT_NE(p, nullptr);
  p[-4097] ^= 0xff;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  p[-4097] ^= 0xff;
  p[-4096] ^= 0xff;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_DEBUG_BLOCK);
  p[-4096] ^= 0xff;
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
  tm_free(p);
}

TEST_F(DebugTest, AlignedAllocationsAreAlignedAndExact) {
  std::vector<void*> blocks;
  for (size_t alignment = 1; alignment <= 4096; alignment *= 2) {
    for (size_t size : {size_t{1}, size_t{24}, size_t{4096}, size_t{70000}}) {
      auto* p = static_cast<unsigned char*>(tm_aligned_alloc(alignment, size));
      ASSERT_NE(p, nullptr) << alignment << " " << size;
      EXPECT_TRUE(is_aligned(p, alignment)) << alignment;
      EXPECT_EQ(tm_usable_size(p), size);
      std::memset(p, 0x5a, size);
      blocks.push_back(p);
    }
  }
  for (size_t alignment : {size_t{8192}, size_t{64} * KiB, size_t{4} * MiB}) {
    void* p = nullptr;
    ASSERT_EQ(tm_posix_memalign(&p, alignment, 3000), 0) << alignment;
    EXPECT_TRUE(is_aligned(p, alignment)) << alignment;
    EXPECT_EQ(tm_usable_size(p), 3000u);
    std::memset(p, 0x5a, 3000);
    blocks.push_back(p);
  }
  EXPECT_EQ(tm_aligned_alloc(3, 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  for (void* p : blocks) tm_free(p);
  tmalloc::debug_flush_quarantine();
  TM_EXPECT_HEAP_OK();
}

TEST_F(DebugTest, FillPatternsAndCallocZeroes) {
  auto* m = static_cast<unsigned char*>(tm_malloc(300));
  auto* c = static_cast<unsigned char*>(tm_calloc(30, 10));
  ASSERT_NE(m, nullptr);
  ASSERT_NE(c, nullptr);
  for (size_t i = 0; i < 300; ++i) {
    ASSERT_EQ(m[i], 0xABu) << i;
    ASSERT_EQ(c[i], 0u) << i;
  }
  tm_free(m);
  // The freed block waits in the quarantine, filled with 0xDF (peeking is what a use after
  // free would see; the memory still belongs to the debug layer).
  for (size_t i = 0; i < 300; ++i) ASSERT_EQ(m[i], 0xDFu) << i;
  tm_free(c);
  void* huge = tm_malloc(size_t{1} << 46);
  EXPECT_EQ(huge, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(tm_calloc(size_t{1} << 40, size_t{1} << 30), nullptr);
}

TEST_F(DebugTest, ModeSwitchesKeepEveryBlockFreeable) {
  ASSERT_EQ(tm_option_set("debug", 0), 0);
  auto* before = static_cast<char*>(tm_malloc(100));  // a plain block
  ASSERT_EQ(tm_option_set("debug", 1), 0);
  EXPECT_GE(tm_usable_size(before), 100u);  // the core's answer: no record
  auto* during = static_cast<char*>(tm_malloc(100));
  EXPECT_EQ(tm_usable_size(during), 100u);
  before = static_cast<char*>(tm_realloc(before, 200));  // becomes a debug block
  EXPECT_EQ(tm_usable_size(before), 200u);
  ASSERT_EQ(tm_option_set("debug", 0), 0);
  // Blocks with records are still routed through the debug layer and freed correctly.
  EXPECT_EQ(tm_usable_size(during), 100u);
  auto* after = static_cast<char*>(tm_malloc(100));
  EXPECT_GE(tm_usable_size(after), 100u);
  tm_free(during);
  tm_free(before);
  tm_free(after);
  EXPECT_EQ(leak_report().first, 0u);
  TM_EXPECT_HEAP_OK();
  void* plain = tm_malloc(64);  // routing is off again: an ordinary block
  EXPECT_EQ(tm_usable_size(plain), tm_size_class_size(tm_size_to_class(64)));
  tm_free(plain);
}

TEST_F(DebugTest, LeakReportGroupsBySiteLargestFirst) {
  std::vector<void*> small;
  for (int i = 0; i < 3; ++i) small.push_back(dbgsite::allocate_leaked_small(100));
  void* big = dbgsite::allocate_leaked_big(1000);
  void* zeroed = dbgsite::calloc_leaked(5, 10);
  tm_free(dbgsite::allocate_leaked_big(77777));  // freed: not a leak
  const auto [count, text] = leak_report();
  EXPECT_EQ(count, 5u);
  const std::string expected_re =
      "tinymalloc: leak report: 5 blocks, 1350 bytes in 3 allocation sites\n"
      "tinymalloc:   1000 bytes in 1 blocks allocated at " SITE("allocate_leaked_big") "\n"
      "tinymalloc:   300 bytes in 3 blocks allocated at " SITE("allocate_leaked_small") "\n"
      "tinymalloc:   50 bytes in 1 blocks allocated at " SITE("calloc_leaked") "\n";
  EXPECT_TRUE(::testing::internal::RE::FullMatch(text, ::testing::internal::RE(expected_re.c_str()))) << text;
  for (void* p : small) tm_free(p);
  tm_free(big);
  tm_free(zeroed);
  const auto [none, empty] = leak_report();
  EXPECT_EQ(none, 0u);
  EXPECT_EQ(empty, "tinymalloc: leak report: 0 blocks, 0 bytes in 0 allocation sites\n");
}

template <size_t... I>
std::vector<void*> allocate_at_sites(std::index_sequence<I...>) {
  return {dbgsite::allocate_at_site<static_cast<int>(I)>(10 + I)...};
}

TEST_F(DebugTest, LeakReportListsAtMostFiftySites) {
  std::vector<void*> blocks = allocate_at_sites(std::make_index_sequence<60>{});
  const auto [count, text] = leak_report();
  EXPECT_EQ(count, 60u);
  EXPECT_EQ(text.rfind("tinymalloc: leak report: 60 blocks, 2370 bytes in 60 allocation sites\n", 0), 0u) << text;
  size_t lines = 0;
  for (size_t at = text.find("blocks allocated at "); at != std::string::npos;
       at = text.find("blocks allocated at ", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 50u);
  // Largest first: the block of 69 bytes (site 59) heads the list.
  EXPECT_NE(text.find("\ntinymalloc:   69 bytes in 1 blocks allocated at "), std::string::npos) << text;
  EXPECT_NE(text.find("allocate_at_site"), std::string::npos) << text;
  EXPECT_NE(text.find("tinymalloc:   ... and 10 more sites\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("\ntinymalloc:   19 bytes in"), std::string::npos) << "the smallest sites are cut";
  for (void* p : blocks) tm_free(p);
}

TEST_F(DebugTest, ThreadsShareBlocksClean) {
  constexpr int kThreads = 4;
  const int ops = TM_TEST_TSAN ? 3000 : 20000;
  constexpr size_t kSlots = 256;
  std::vector<std::atomic<char*>> slots(kSlots);
  for (auto& s : slots) s.store(nullptr);
  std::atomic<int> bad{0};
  // A block starts with its size (8 bytes), then bytes equal to (size + i) & 0xff.
  auto check_and_free = [&](char* p) {
    size_t size;
    std::memcpy(&size, p, sizeof size);
    if (tm_usable_size(p) != size) bad.fetch_add(1);
    for (size_t i = sizeof size; i < size; ++i) {
      if (static_cast<unsigned char>(p[i]) != ((size + i) & 0xff)) {
        bad.fetch_add(1);
        break;
      }
    }
    tm_free(p);
  };
  auto worker = [&](int t) {
    Rng rng(100 + t);
    for (int i = 0; i < ops; ++i) {
      size_t size = rng.log_uniform(8, 40000);
      char* p = static_cast<char*>(rng.chance(10) ? tm_aligned_alloc(64, size) : tm_malloc(size));
      if (p == nullptr) {
        bad.fetch_add(1);
        continue;
      }
      if (rng.chance(20)) {
        const size_t grown = size + rng.below(5000);
        std::memcpy(p, &size, sizeof size);
        char* q = static_cast<char*>(tm_realloc(p, grown));
        if (q == nullptr) {
          bad.fetch_add(1);
          continue;
        }
        p = q;
        size = grown;
      }
      std::memcpy(p, &size, sizeof size);
      for (size_t k = sizeof size; k < size; ++k) p[k] = static_cast<char>((size + k) & 0xff);
      char* old = slots[rng.below(kSlots)].exchange(p, std::memory_order_acq_rel);
      if (old != nullptr) check_and_free(old);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  for (auto& s : slots) {
    char* p = s.exchange(nullptr);
    if (p != nullptr) check_and_free(p);
  }
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(leak_report().first, 0u);
  tmalloc::debug_flush_quarantine();
  TM_EXPECT_HEAP_OK();
}

TEST(DebugOptions, LeaksImpliesRecordingAndDebugIsARuntimeSwitch) {
  EXPECT_EQ(tm_option_set("leaks", 1), 0);
  void* p = dbgsite::allocate_leaked_small(123);
  EXPECT_EQ(tm_usable_size(p), 123u) << "leaks=1 records blocks (usable size = requested)";
  EXPECT_EQ(leak_report().first, 1u);
  tm_free(p);
  EXPECT_EQ(tm_option_set("leaks", 0), 0);
  EXPECT_EQ(leak_report().first, 0u);
  long value = -1;
  EXPECT_EQ(tm_option_get("debug", &value), 0);
  EXPECT_EQ(value, 0);
  void* plain = tm_malloc(123);
  EXPECT_GT(tm_usable_size(plain), 123u) << "debug off: the core's usable size (a size class)";
  EXPECT_EQ(leak_report().first, 0u) << "debug off: nothing is recorded";
  tm_free(plain);
  TM_EXPECT_HEAP_OK();
}

}  // namespace
