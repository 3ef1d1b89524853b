// Under ASan, tinymalloc poisons free blocks, the slack after each requested size and the
// medium headers, so a caller's overflow or use-after-free inside tinymalloc memory is an
// ASan report (src/sanitizer.h). These death tests prove it; without ASan they are skipped.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

#if TM_TEST_ASAN
#include <sanitizer/asan_interface.h>

namespace {

// Writes one byte through a volatile pointer so the compiler keeps the access.
void poke(void* p, ptrdiff_t offset) { static_cast<volatile char*>(p)[offset] = 1; }

constexpr const char* kAsanReport = "AddressSanitizer: use-after-poison";

TEST(AsanPoisoningDeathTest, SmallOverflowIntoSlack) {
  EXPECT_DEATH(
      {
        void* p = tm_malloc(20);  // 32-byte class: 12 bytes of slack
        poke(p, 20);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, SmallUseAfterFree) {
  EXPECT_DEATH(
      {
        void* p = tm_malloc(48);
        tm_free(p);
        poke(p, 0);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, MediumOverflowIntoNextHeader) {
  EXPECT_DEATH(
      {
        void* p = tm_malloc(20000);
        poke(p, 20000);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, MediumUnderflowIntoOwnHeader) {
  EXPECT_DEATH(
      {
        void* p = tm_malloc(20000);
        poke(p, -8);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, MediumUseAfterFree) {
  EXPECT_DEATH(
      {
        void* p = tm_malloc(30000);
        tm_free(p);
        poke(p, 4000);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, ShrunkMediumTailIsPoisoned) {
  EXPECT_DEATH(
      {
        void* p = tm_realloc(tm_malloc(20000), 10000);
        poke(p, 10001);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, ShrunkSmallBlockSlackIsPoisoned) {
  EXPECT_DEATH(
      {
        void* p = tm_realloc(tm_malloc(100), 70);
        poke(p, 75);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, LargeOverflowIntoPageSlack) {
  EXPECT_DEATH(
      {
        void* p = tm_malloc(600000);
        poke(p, 600001);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, LargeSlackAfterMremapGrowIsPoisoned) {
  EXPECT_DEATH(
      {
        void* p = tm_realloc(tm_malloc(600000), 2000000);
        poke(p, 1999999);
        poke(p, 2000001);
      },
      kAsanReport);
}

TEST(AsanPoisoningDeathTest, LargeUseAfterFreeIsReported) {
  // A freed large block's mapping waits in the pool, poisoned (or is unmapped: a SEGV).
  EXPECT_DEATH(
      {
        void* p = tm_malloc(600000);
        tm_free(p);
        poke(p, 100);
      },
      "AddressSanitizer: (SEGV|use-after-poison)");
}

// The poisoning invariants themselves, for every tier. The sizes are chosen so each block
// has slack after the request (so p + n must be poisoned right after the allocation).
TEST(AsanPoisoning, RequestedBytesAddressableRestPoisoned) {
  for (size_t n : {1u, 21u, 100u, 8000u, 9000u, 100001u, 600001u}) {
    char* p = static_cast<char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(__asan_region_is_poisoned(p, n), nullptr) << n;
    EXPECT_TRUE(__asan_address_is_poisoned(p + n)) << n;
    tm_free(p);
    // Freed blocks of every tier are poisoned (a large one waits poisoned in the pool).
    EXPECT_TRUE(__asan_address_is_poisoned(p)) << n;
  }
}

// tm_usable_size promises every usable byte to the caller, so it makes them addressable.
TEST(AsanPoisoning, UsableSizeQueryUnpoisonsTheSlack) {
  for (size_t n : {21u, 9000u, 600001u}) {
    char* p = static_cast<char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    const size_t usable = tm_usable_size(p);
    EXPECT_GT(usable, n);
    EXPECT_EQ(__asan_region_is_poisoned(p, usable), nullptr) << n;
    tm_free(p);
    if (n <= tm_medium_max()) EXPECT_TRUE(__asan_address_is_poisoned(p)) << n;
  }
}

// A large block's mapping is pooled with only its edges poisoned, and a block taking it again
// has exactly those edges cleared (src/segment_pool.cc: unpoison_taken): whatever part of the
// pooled mapping a new block gets, every requested byte is addressable. Sizes: the whole
// mapping, its head leaving an unaligned fragment (the fragment then taken as well), a head
// that ends inside the old tail edge, and a block within the first edge.
TEST(AsanPoisoning, ABlockReusingAPooledLargeMappingIsAddressableEverywhere) {
  tmtest::ScopedOption segments("pool_segments", 64);
  tmtest::ScopedOption delay("purge_delay_ms", 600000);
  tm_release_cached();
  constexpr size_t kOld = 3 * 1024 * 1024;
  for (size_t n : {kOld, kOld / 2, kOld - 20000, size_t{40000} + 300000}) {
    void* old = tm_malloc(kOld);
    ASSERT_NE(old, nullptr);
    std::memset(old, 1, kOld);
    tm_free(old);
    char* p = static_cast<char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(__asan_region_is_poisoned(p, n), nullptr) << n;
    EXPECT_TRUE(__asan_address_is_poisoned(p + n)) << n;
    char* rest = static_cast<char*>(tm_malloc(kOld - n > 300000 ? kOld - n - 200000 : 300000));
    ASSERT_NE(rest, nullptr);
    const size_t rest_size = tm_usable_size(rest);  // makes the slack addressable too
    EXPECT_EQ(__asan_region_is_poisoned(rest, rest_size), nullptr) << n;
    std::memset(p, 2, n);
    std::memset(rest, 3, rest_size);
    tm_free(rest);
    tm_free(p);
  }
  tm_release_cached();
}

// Taking a pooled mapping changes the shadow of that mapping only (found by tools/tm-mutate's
// ASan tier: a tail edge computed below the mapping instead of inside it unpoisoned everything
// from there up, the slack of the live block in front of the mapping included, and no other
// test told). A 12 MiB mapping is pooled; a 3 MiB block takes its head and an 8 MiB block the
// aligned rest, right after the first block's mapping.
TEST(AsanPoisoning, TakingAPooledMappingLeavesTheShadowBeforeItAlone) {
  tmtest::ScopedOption segments("pool_segments", 64);
  tmtest::ScopedOption delay("purge_delay_ms", 600000);
  tm_release_cached();
  constexpr size_t kMiB = 1024 * 1024;
  char* whole = static_cast<char*>(tm_malloc(12 * kMiB));
  ASSERT_NE(whole, nullptr);
  tm_free(whole);
  constexpr size_t kFirst = 3 * kMiB - 1000;  // a 3 MiB mapping: 936 bytes of poisoned slack
  char* first = static_cast<char*>(tm_malloc(kFirst));
  ASSERT_EQ(first, whole) << "the pooled mapping's head";
  ASSERT_TRUE(__asan_address_is_poisoned(first + kFirst)) << "the slack after the requested bytes";
  char* second = static_cast<char*>(tm_malloc(8 * kMiB - 4096));  // an 8 MiB mapping: the rest exactly
  ASSERT_EQ(second, whole + 4 * kMiB) << "the aligned rest";
  EXPECT_EQ(__asan_region_is_poisoned(second, 8 * kMiB - 4096), nullptr);
  EXPECT_TRUE(__asan_address_is_poisoned(first + kFirst)) << "taking the rest changed the shadow before it";
  EXPECT_TRUE(__asan_address_is_poisoned(first + kFirst + 935));
  tm_free(second);
  tm_free(first);
  tm_release_cached();
}

// A medium block is addressable in every requested byte and poisoned right after it, whatever
// its memory held before: freed blocks and the stale header of the free tail a freed block
// merged with, fresh memory, a block grown in place, an aligned block, and the blocks of a
// segment the idle sweep purged (whose last page the purge poisons).
TEST(AsanPoisoning, MediumBlocksOverFreedAndFreshMemoryAreAddressableEverywhere) {
  tm_test_clock_virtual(1);
  ASSERT_EQ(tm_test_reset(), 0);  // a fresh medium segment
  auto expect_addressable = [](void* p, size_t n, const char* what) {
    EXPECT_EQ(__asan_region_is_poisoned(p, n), nullptr) << what;
    EXPECT_TRUE(__asan_address_is_poisoned(static_cast<char*>(p) + n)) << what;
    std::memset(p, 0x5c, n);
  };
  void* a = tm_malloc(100000);
  void* b = tm_malloc(100000);
  ASSERT_TRUE(a && b);
  expect_addressable(a, 100000, "first block of a fresh segment");
  expect_addressable(b, 100000, "second block");
  tm_free(b);  // merges with the free tail: b's memory, the tail's old header, fresh memory
  void* c = tm_malloc(300000);
  ASSERT_EQ(c, b) << "best fit is the merged free block";
  expect_addressable(c, 300000, "freed, stale tail header and fresh memory");
  void* grown = tm_realloc(c, 500000);  // in place, into the fresh tail
  ASSERT_EQ(grown, c);
  expect_addressable(grown, 500000, "grown in place");
  void* aligned = tm_aligned_alloc(64 * 1024, 200000);
  ASSERT_NE(aligned, nullptr);
  expect_addressable(aligned, 200000, "aligned, past the grown block");
  tm_free(a);
  tm_free(grown);
  tm_free(aligned);
  // Two sweeps a purge delay apart purge the empty segment (its last page is poisoned).
  long delay = 0;
  ASSERT_EQ(tm_option_get("purge_delay_ms", &delay), 0);
  tm_stats_t before;
  tm_stats(&before);
  for (size_t size : {5000, 6000, 7000}) {
    tm_test_clock_advance(static_cast<uint64_t>(delay) / 2);
    tm_free(tm_malloc(size));
  }
  tm_stats_t after;
  tm_stats(&after);
  EXPECT_GT(after.os_purge_calls, before.os_purge_calls) << "the idle segment was purged";
  // Eight blocks of 500000 bytes (500016 with their headers) and one that fills the rest of
  // the segment up to its end sentinel: 4 MiB - 64 KiB of segment header - 16.
  constexpr size_t kSegmentBlockBytes = 4 * tmtest::MiB - 64 * tmtest::KiB - 16;
  std::vector<size_t> sizes(8, 500000);
  sizes.push_back(kSegmentBlockBytes - 8 * 500016 - 16);
  std::vector<void*> blocks;
  for (size_t size : sizes) blocks.push_back(tm_malloc(size));
  EXPECT_EQ(blocks[0], a) << "the same segment, from its start";
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_NE(blocks[i], nullptr);
    expect_addressable(blocks[i], sizes[i], "a block of a purged segment");
  }
  for (void* p : blocks) tm_free(p);
  EXPECT_EQ(tm_test_reset(), 0);
  tm_test_clock_virtual(0);
}

}  // namespace

#else

TEST(AsanPoisoning, SkippedWithoutAsan) { GTEST_SKIP() << "poisoning exists only in ASan builds"; }

#endif
