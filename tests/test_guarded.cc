// Sampled guard pages (option sample_rate, src/guarded.h): correct use of many sampled blocks
// reports nothing and keeps the statistics exact; the sampling rate is about one in N; an
// overflow, an underflow and a use after free of a sampled block fault and are reported with
// the block and its sites. (The misuse suite has more cases: tests/misuse, `sampled_*`.)
#include <gtest/gtest.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

namespace {

using namespace tmtest;

const auto kSegv = ::testing::KilledBySignal(SIGSEGV);

class Guarded : public ::testing::Test {
 protected:
  void SetUp() override {
    // A sanitizer owns SIGSEGV and guards every block itself: sampling is off there.
    if (TM_TEST_ASAN || TM_TEST_TSAN) GTEST_SKIP() << "sample_rate has no effect under a sanitizer";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    ASSERT_EQ(tm_option_set("sample_rate", 1), 0);
    base_ = stats();
  }
  void TearDown() override {
    if (TM_TEST_ASAN || TM_TEST_TSAN) return;
    TM_EXPECT_HEAP_OK();
    const tm_stats_t now = stats();
    EXPECT_EQ(now.live_blocks, base_.live_blocks);
    EXPECT_EQ(now.small_live_blocks, base_.small_live_blocks);
    EXPECT_EQ(now.medium_live_blocks, base_.medium_live_blocks);
    EXPECT_EQ(now.usable_bytes, base_.usable_bytes);
    tm_option_set("sample_rate", 0);
  }
  tm_stats_t base_{};
};

// A sampled block of `size` whose placement is the one asked for (right: its usable end on a
// page end; left: its start on a page start). Slots alternate, so two tries suffice.
void* sampled_block(size_t size, bool right) {
  for (int i = 0; i < 2; ++i) {
    auto* p = static_cast<char*>(tm_malloc(size));
    if (tm_test_is_sampled(p) == 0) return nullptr;
    const auto at = reinterpret_cast<uintptr_t>(p);
    const bool is_right = (at + tm_usable_size(p)) % 4096 == 0 && at % 4096 != 0;
    if (is_right == right) return p;
    tm_free(p);
  }
  return nullptr;
}

TEST_F(Guarded, TenThousandSampledBlocksUsedCorrectlyReportNothing) {
  const size_t sizes[] = {1, 8, 16, 24, 100, 256, 1000, 4096, 5000, 9000, 20000, 40000, 57344};
  std::vector<void*> live(48, nullptr);
  size_t sampled = 0;
  for (size_t i = 0; i < 10000; ++i) {
    const size_t slot = (i * 7) % live.size();
    if (live[slot] != nullptr) tm_free(live[slot]);
    const size_t size = sizes[i % std::size(sizes)];
    void* p = nullptr;
    switch (i % 4) {
      case 0:
        p = tm_malloc(size);
        break;
      case 1: {
        p = tm_calloc(1, size);
        ASSERT_NE(p, nullptr);
        const auto* bytes = static_cast<const unsigned char*>(p);
        for (size_t b = 0; b < size; ++b) ASSERT_EQ(bytes[b], 0) << "calloc of " << size;
        break;
      }
      case 2:
        p = tm_aligned_alloc(size_t{64} << (i % 7), size);
        ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % (size_t{64} << (i % 7)), 0u);
        break;
      default:
        p = tm_realloc(tm_malloc(size / 2 + 1), size);
        break;
    }
    ASSERT_NE(p, nullptr);
    sampled += static_cast<size_t>(tm_test_is_sampled(p));
    std::memset(p, 0xA5, tm_usable_size(p));  // every usable byte may be written
    live[slot] = p;
  }
  for (void* p : live) tm_free(p);
  EXPECT_GE(sampled, 9000u) << "sample_rate=1 samples every allocation while a slot is free";
}

TEST_F(Guarded, SampledBlocksCountInTheTierOfTheirSize) {
  void* small = tm_malloc(24);
  void* medium = tm_malloc(20000);
  ASSERT_EQ(tm_test_is_sampled(small), 1);
  ASSERT_EQ(tm_test_is_sampled(medium), 1);
  EXPECT_EQ(tm_usable_size(small), tm_size_class_size(tm_size_to_class(24)));
  EXPECT_EQ(tm_usable_size(medium), 20000u);
  const tm_stats_t s = stats();
  EXPECT_EQ(s.small_live_blocks, base_.small_live_blocks + 1);
  EXPECT_EQ(s.class_live_blocks[tm_size_to_class(24)], base_.class_live_blocks[tm_size_to_class(24)] + 1);
  EXPECT_EQ(s.medium_live_blocks, base_.medium_live_blocks + 1);
  EXPECT_EQ(s.live_blocks, base_.live_blocks + 2);
  EXPECT_EQ(s.usable_bytes, base_.usable_bytes + tm_usable_size(small) + 20000u);
  EXPECT_GE(s.committed_bytes, 4096u * 6) << "the sampled blocks' pages are committed";
  // tm_class_stats says what tm_stats says (the harness's check_heap op found the class rows
  // leaving sampled blocks out).
  tm_class_stats_t rows[TM_SMALL_CLASS_COUNT];
  ASSERT_EQ(tm_class_stats(rows, TM_SMALL_CLASS_COUNT), size_t{TM_SMALL_CLASS_COUNT});
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    EXPECT_EQ(rows[c].live_blocks, s.class_live_blocks[c]) << "class " << c;
    EXPECT_EQ(rows[c].usable_bytes, rows[c].live_blocks * rows[c].size) << "class " << c;
    EXPECT_GE(rows[c].peak_blocks, rows[c].live_blocks) << "class " << c;
  }
  tm_free(small);
  tm_free(medium);
}

TEST_F(Guarded, AboutOneAllocationInNIsSampled) {
  ASSERT_EQ(tm_option_set("sample_rate", 100), 0);
  size_t sampled = 0;
  for (int i = 0; i < 100000; ++i) {
    void* p = tm_malloc(64);
    sampled += static_cast<size_t>(tm_test_is_sampled(p));
    tm_free(p);
  }
  EXPECT_GT(sampled, 700u);
  EXPECT_LT(sampled, 1300u);
}

TEST_F(Guarded, OffSamplesNothing) {
  ASSERT_EQ(tm_option_set("sample_rate", 0), 0);
  for (int i = 0; i < 1000; ++i) {
    void* p = tm_malloc(static_cast<size_t>(i) * 40 + 1);
    EXPECT_EQ(tm_test_is_sampled(p), 0);
    tm_free(p);
  }
}

TEST_F(Guarded, AFreedSlotIsReusedLast) {
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) blocks.push_back(tm_malloc(100));
  for (void* p : blocks) ASSERT_EQ(tm_test_is_sampled(p), 1);
  void* unsampled = tm_malloc(100);  // every slot is live: an ordinary block
  EXPECT_EQ(tm_test_is_sampled(unsampled), 0);
  tm_free(unsampled);
  const auto page = [](const void* p) { return reinterpret_cast<uintptr_t>(p) >> 16; };  // the slot
  tm_free(blocks[5]);
  tm_free(blocks[9]);
  void* again = tm_malloc(100);
  EXPECT_EQ(page(again), page(blocks[5])) << "the least recently freed slot is reused first";
  tm_free(again);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i != 5 && i != 9) tm_free(blocks[i]);
  }
}

TEST_F(Guarded, AnOverflowPastTheUsableSizeFaultsAndIsReported) {
  EXPECT_EXIT(
      {
        auto* p = static_cast<volatile char*>(sampled_block(32, true));
        if (p == nullptr) _exit(3);
        p[32] = 1;
        _exit(0);
      },
      kSegv,
      "tinymalloc: buffer overflow at 0x[0-9a-f]+ \\(0 bytes to the right of sampled block 0x[0-9a-f]+ of 32 "
      "bytes \\(32 usable\\), allocated by thread [0-9]+ at 0x");
}

TEST_F(Guarded, AnUnderflowFaultsAndIsReported) {
  EXPECT_EXIT(
      {
        auto* p = static_cast<volatile char*>(sampled_block(1000, false));
        if (p == nullptr) _exit(3);
        p[-8] = 1;
        _exit(0);
      },
      kSegv, "tinymalloc: buffer underflow at 0x[0-9a-f]+ \\(8 bytes to the left of sampled block");
}

TEST_F(Guarded, AReadAfterFreeFaultsAndNamesBothSites) {
  EXPECT_EXIT(
      {
        auto* p = static_cast<volatile char*>(tm_malloc(20000));
        if (tm_test_is_sampled(const_cast<char*>(p)) == 0) _exit(3);
        tm_free(const_cast<char*>(p));
        if (p[123] == 7) _exit(4);
        _exit(0);
      },
      kSegv,
      "tinymalloc: use after free at 0x[0-9a-f]+ \\(byte 123 of freed sampled block 0x[0-9a-f]+ of 20000 bytes "
      "\\(20000 usable\\), allocated by thread [0-9]+ at 0x[0-9a-f]+.*, freed by thread [0-9]+ at 0x");
}

TEST_F(Guarded, ADoubleFreeOfASampledBlockIsReported) {
  EXPECT_DEATH(
      {
        void* p = tm_malloc(40);
        if (tm_test_is_sampled(p) == 0) _exit(3);
        tm_free(p);
        tm_free(p);
      },
      "tinymalloc: double free at 0x[0-9a-f]+ \\(already freed: sampled block");
}

TEST_F(Guarded, AnInteriorFreeOfASampledBlockIsReported) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(tm_malloc(400));
        if (tm_test_is_sampled(p) == 0) _exit(3);
        tm_free(p + 16);
      },
      "tinymalloc: invalid free at 0x[0-9a-f]+ \\(not the start of sampled block");
}

}  // namespace
