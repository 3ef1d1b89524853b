// tm_realloc: glibc edge cases, in-place resizing per tier, moves across tiers, contents,
// statistics and failure.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

class Realloc : public HeapTest {};

TEST_F(Realloc, NullPointerIsMalloc) {
  for (size_t n : {size_t{1}, size_t{100}, size_t{8192}, size_t{20000}, 512 * KiB, 1 * MiB}) {
    const tm_stats_t s0 = stats();
    void* p = tm_realloc(nullptr, n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_GE(tm_usable_size(p), n);
    const tm_stats_t s1 = stats();
    EXPECT_EQ(s1.live_blocks, s0.live_blocks + 1);
    EXPECT_EQ(s1.requested_bytes, s0.requested_bytes + n);
    std::memset(p, 3, n);
    tm_free(p);
  }
  errno = 0;
  EXPECT_EQ(tm_realloc(nullptr, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST_F(Realloc, ZeroSizeFreesAndReturnsNull) {
  for (size_t n : {size_t{1}, size_t{100}, size_t{8192}, size_t{20000}, 512 * KiB, 2 * MiB}) {
    SCOPED_TRACE(n);
    const tm_stats_t s0 = stats();
    void* p = tm_malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(stats().live_blocks, s0.live_blocks + 1);
    EXPECT_EQ(tm_realloc(p, 0), nullptr);
    const tm_stats_t s1 = stats();
    EXPECT_EQ(s1.live_blocks, s0.live_blocks) << "realloc(p, 0) did not free p";
    EXPECT_EQ(s1.requested_bytes, s0.requested_bytes);
    EXPECT_EQ(s1.usable_bytes, s0.usable_bytes);
    TM_EXPECT_HEAP_OK();
  }
}

TEST_F(Realloc, SmallSameClassStaysInPlace) {
  auto* p = static_cast<char*>(tm_malloc(100));  // class of 112 bytes
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 100, 1);
  EXPECT_EQ(tm_realloc(p, 112), p);
  EXPECT_EQ(check_pattern(p, 100, 1), 100u);
  EXPECT_EQ(stats().requested_bytes, base_.requested_bytes + 112) << "requested bytes not updated in place";
  EXPECT_EQ(tm_realloc(p, 97), p);
  EXPECT_EQ(check_pattern(p, 97, 1), 97u);
  EXPECT_EQ(stats().requested_bytes, base_.requested_bytes + 97);
  EXPECT_EQ(tm_realloc(p, 100), p);
  EXPECT_EQ(stats().live_blocks, base_.live_blocks + 1);
  EXPECT_EQ(stats().usable_bytes, base_.usable_bytes + 112);
  tm_free(p);
}

TEST_F(Realloc, ZeroSizeNeighbourDoesNotShortenRealloc) {
  // 16-byte blocks interleaved with malloc(0) blocks in the same run: resizing the data
  // blocks must keep every byte (the allocator must not lose track of their requested size).
  std::vector<char*> data;
  for (int i = 0; i < 256; ++i) {
    auto* p = static_cast<char*>(tm_malloc(10));
    ASSERT_NE(p, nullptr);
    data.push_back(p);
  }
  std::sort(data.begin(), data.end());
  std::vector<char*> keep;
  for (size_t i = 0; i < data.size(); ++i) {
    if (i % 2 == 0) {
      tm_free(data[i]);
    } else {
      fill_pattern(data[i], 10, i);
      keep.push_back(data[i]);
    }
  }
  std::vector<void*> zeros;
  for (int i = 0; i < 128; ++i) zeros.push_back(tm_malloc(0));
  EXPECT_EQ(stats().requested_bytes, base_.requested_bytes + 128 * 10) << "malloc(0) changed the requested bytes";
  TM_EXPECT_HEAP_OK();
  size_t damaged = 0;
  for (size_t k = 0; k < keep.size(); ++k) {
    const size_t seed = 2 * k + 1;
    auto* q = static_cast<char*>(tm_realloc(keep[k], 100));
    ASSERT_NE(q, nullptr);
    if (check_pattern(q, 10, seed) != 10) ++damaged;
    keep[k] = q;
  }
  EXPECT_EQ(damaged, 0u) << "realloc lost bytes of blocks next to malloc(0) blocks";
  for (char* p : keep) tm_free(p);
  for (void* p : zeros) tm_free(p);
}

TEST_F(Realloc, SameSizeKeepsPointerInEveryTier) {
  for (size_t n : {size_t{64}, size_t{5000}, size_t{30000}, size_t{400000}, 3 * MiB}) {
    auto* p = static_cast<char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    fill_sparse(p, n, n);
    EXPECT_EQ(tm_realloc(p, n), p) << n;
    EXPECT_TRUE(check_sparse(p, n, n));
    tm_free(p);
  }
}

TEST_F(Realloc, ContentsPreservedAcrossAllTiers) {
  // 10 B -> ... -> 3 MiB -> ... -> 10 B; after each step the common prefix is intact and the
  // statistics name exactly one live block of the new size.
  const size_t steps[] = {10,        100,       1000, 8192, 8193, 60000, 512 * KiB, 512 * KiB + 1, 600 * KiB, 3 * MiB,
                          700 * KiB, 100 * KiB, 9000, 5000, 8193, 10,    1,         2 * MiB,       16};
  size_t cur = 10;
  auto* p = static_cast<unsigned char*>(tm_malloc(cur));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, cur, 77);
  for (size_t next : steps) {
    SCOPED_TRACE(::testing::Message() << cur << " -> " << next);
    auto* q = static_cast<unsigned char*>(tm_realloc(p, next));
    ASSERT_NE(q, nullptr);
    const size_t keep = cur < next ? cur : next;
    ASSERT_EQ(check_pattern(q, keep, 77), keep) << "prefix not preserved";
    ASSERT_GE(tm_usable_size(q), next);
    fill_pattern(q, next, 77);
    const tm_stats_t s = stats();
    EXPECT_EQ(s.live_blocks, base_.live_blocks + 1);
    EXPECT_EQ(s.requested_bytes, base_.requested_bytes + next);
    EXPECT_EQ(s.usable_bytes, base_.usable_bytes + tm_usable_size(q));
    EXPECT_EQ(s.small_live_blocks - base_.small_live_blocks, next <= 8192 ? 1u : 0u);
    EXPECT_EQ(s.medium_live_blocks - base_.medium_live_blocks, next > 8192 && next <= 512 * KiB ? 1u : 0u);
    EXPECT_EQ(s.large_live_blocks - base_.large_live_blocks, next > 512 * KiB ? 1u : 0u);
    TM_ASSERT_HEAP_OK();
    p = q;
    cur = next;
  }
  tm_free(p);
}

TEST_F(Realloc, MediumShrinkStaysInPlace) {
  auto* p = static_cast<char*>(tm_malloc(200000));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 200000, 5);
  EXPECT_EQ(tm_realloc(p, 100000), p);
  EXPECT_EQ(check_pattern(p, 100000, 5), 100000u);
  EXPECT_GE(tm_usable_size(p), 100000u);
  EXPECT_LT(tm_usable_size(p), 100000u + 256 + 16) << "the tail was not split off";
  EXPECT_EQ(stats().requested_bytes, base_.requested_bytes + 100000);
  TM_ASSERT_HEAP_OK();
  EXPECT_EQ(tm_realloc(p, 9000), p);
  EXPECT_EQ(check_pattern(p, 9000, 5), 9000u);
  EXPECT_EQ(stats().requested_bytes, base_.requested_bytes + 9000);
  EXPECT_EQ(stats().usable_bytes, base_.usable_bytes + tm_usable_size(p));
  TM_ASSERT_HEAP_OK();
  // Into the small tier: moves.
  auto* q = static_cast<char*>(tm_realloc(p, 8000));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(check_pattern(q, 8000, 5), 8000u);
  EXPECT_EQ(stats().small_live_blocks, base_.small_live_blocks + 1);
  tm_free(q);
}

TEST_F(Realloc, MediumShrinkMergesTailWithFreeSuccessor) {
  const MediumCacheOff exact_geometry;  // frees coalesce at once, blocks at their exact size
  std::vector<char*> run = adjacent_medium(50000, 4);
  ASSERT_EQ(run.size(), 4u);
  tm_free(run[2]);  // the successor of run[1] is free
  const tm_stats_t s0 = stats();
  fill_pattern(run[1], 20000, 9);
  EXPECT_EQ(tm_realloc(run[1], 20000), run[1]);
  TM_ASSERT_HEAP_OK();  // an unmerged tail would be TM_CHECK_UNCOALESCED
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.medium_free_blocks, s0.medium_free_blocks) << "tail not merged with the free successor";
  EXPECT_EQ(check_pattern(run[1], 20000, 9), 20000u);
  tm_free(run[0]);
  tm_free(run[1]);
  tm_free(run[3]);
}

TEST_F(Realloc, MediumGrowsInPlaceIntoFreeSuccessor) {
  const MediumCacheOff exact_geometry;  // frees coalesce at once, blocks at their exact size
  constexpr size_t kSize = 20000;
  std::vector<char*> run = adjacent_medium(kSize, 4);  // P X Y Z
  ASSERT_EQ(run.size(), 4u);
  char* x = run[1];
  fill_pattern(x, kSize, 11);
  fill_pattern(run[3], kSize, 12);
  tm_free(run[2]);
  const tm_stats_t s0 = stats();
  EXPECT_EQ(tm_realloc(x, 30000), x) << "did not grow into the free successor";
  EXPECT_EQ(check_pattern(x, kSize, 11), kSize);
  EXPECT_GE(tm_usable_size(x), 30000u);
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.medium_free_blocks, s0.medium_free_blocks) << "the rest of Y stays one free block";
  EXPECT_EQ(s1.requested_bytes, s0.requested_bytes - kSize + 30000);
  // Take all of Y: X + Y payload = 2 * kSize + 16.
  EXPECT_EQ(tm_realloc(x, 2 * kSize + 16), x);
  TM_ASSERT_HEAP_OK();
  EXPECT_EQ(stats().medium_free_blocks, s0.medium_free_blocks - 1) << "Y was not consumed completely";
  std::memset(x + kSize, 0x77, kSize + 16);
  EXPECT_EQ(check_pattern(x, kSize, 11), kSize);
  EXPECT_EQ(check_pattern(run[3], kSize, 12), kSize) << "growing X overwrote Z";
  // No more room: moves, contents kept, Z untouched.
  auto* moved = static_cast<char*>(tm_realloc(x, 3 * kSize));
  ASSERT_NE(moved, nullptr);
  EXPECT_NE(moved, x);
  EXPECT_EQ(check_pattern(moved, kSize, 11), kSize);
  EXPECT_EQ(check_pattern(run[3], kSize, 12), kSize);
  TM_ASSERT_HEAP_OK();
  tm_free(moved);
  tm_free(run[0]);
  tm_free(run[3]);
}

TEST_F(Realloc, MediumGrowWithUsedSuccessorMoves) {
  constexpr size_t kSize = 20000;
  std::vector<char*> run = adjacent_medium(kSize, 3);  // P X Y
  ASSERT_EQ(run.size(), 3u);
  fill_pattern(run[1], kSize, 21);
  fill_pattern(run[2], kSize, 22);
  auto* q = static_cast<char*>(tm_realloc(run[1], kSize + 4096));
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, run[1]) << "grew in place over a block in use";
  EXPECT_EQ(check_pattern(q, kSize, 21), kSize);
  EXPECT_EQ(check_pattern(run[2], kSize, 22), kSize) << "neighbour overwritten";
  TM_ASSERT_HEAP_OK();
  tm_free(q);
  tm_free(run[0]);
  tm_free(run[2]);
}

TEST_F(Realloc, LargeGrowAndShrinkKeepContents) {
  const size_t n0 = 1 * MiB;
  auto* p = static_cast<char*>(tm_malloc(n0));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 64 * KiB, 31);
  fill_sparse(p + 64 * KiB, n0 - 64 * KiB, 32);
  const tm_stats_t s0 = stats();
  auto* q = static_cast<char*>(tm_realloc(p, 64 * MiB));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(check_pattern(q, 64 * KiB, 31), 64 * KiB);
  EXPECT_TRUE(check_sparse(q + 64 * KiB, n0 - 64 * KiB, 32));
  EXPECT_GE(tm_usable_size(q), 64 * MiB);
  q[64 * MiB - 1] = 1;
  q[32 * MiB] = 2;
  const tm_stats_t s1 = stats();
  EXPECT_EQ(s1.large_live_blocks, s0.large_live_blocks);
  EXPECT_EQ(s1.large_mappings, s0.large_mappings) << "the grown block should still be one mapping";
  EXPECT_EQ(s1.requested_bytes, s0.requested_bytes - n0 + 64 * MiB);
  EXPECT_TRUE(tm_owns(q + 64 * MiB - 1));
  TM_ASSERT_HEAP_OK();
  auto* r = static_cast<char*>(tm_realloc(q, 600 * KiB));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(check_pattern(r, 64 * KiB, 31), 64 * KiB);
  EXPECT_TRUE(check_sparse(r + 64 * KiB, 600 * KiB - 64 * KiB, 32, n0 - 64 * KiB));
  EXPECT_EQ(stats().requested_bytes, s0.requested_bytes - n0 + 600 * KiB);
  EXPECT_LT(stats().mapped_bytes, s1.mapped_bytes) << "shrinking did not return address space";
  TM_ASSERT_HEAP_OK();
  // Into the medium tier.
  auto* m = static_cast<char*>(tm_realloc(r, 100 * KiB));
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(check_pattern(m, 64 * KiB, 31), 64 * KiB);
  EXPECT_EQ(stats().medium_live_blocks, s0.medium_live_blocks + 1);
  EXPECT_EQ(stats().large_live_blocks, s0.large_live_blocks - 1);
  tm_free(m);
}

TEST_F(Realloc, ManyLargeBlocksReallocatedInTurn) {
  // Large blocks move in the address space when they grow; the other blocks' bookkeeping
  // (list links that point at a moved header) must follow.
  std::vector<char*> blocks;
  std::vector<size_t> sizes;
  for (int i = 0; i < 8; ++i) {
    sizes.push_back((600 + 100 * static_cast<size_t>(i)) * KiB);
    blocks.push_back(static_cast<char*>(tm_malloc(sizes.back())));
    ASSERT_NE(blocks.back(), nullptr);
    fill_sparse(blocks.back(), sizes.back(), static_cast<uint64_t>(i));
  }
  for (int round = 0; round < 4; ++round) {
    for (size_t i = 0; i < blocks.size(); ++i) {
      const size_t next = sizes[i] * ((round % 2 == 0) ? 3 : 1) / ((round % 2 == 0) ? 1 : 2);
      auto* q = static_cast<char*>(tm_realloc(blocks[i], next));
      ASSERT_NE(q, nullptr);
      const size_t keep = sizes[i] < next ? sizes[i] : next;
      ASSERT_TRUE(check_sparse(q, keep, i, sizes[i]));
      fill_sparse(q, next, i);
      blocks[i] = q;
      sizes[i] = next;
      TM_ASSERT_HEAP_OK();
    }
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE(check_sparse(blocks[i], sizes[i], i));
    tm_free(blocks[i]);
    TM_ASSERT_HEAP_OK();
  }
}

TEST_F(Realloc, FailureLeavesBlockIntact) {
  for (size_t n : {size_t{1000}, size_t{8192}, size_t{100000}, 2 * MiB}) {
    SCOPED_TRACE(n);
    auto* p = static_cast<char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    fill_pattern(p, n, 41);
    const size_t usable = tm_usable_size(p);
    const tm_stats_t s0 = stats();
    for (size_t huge : {SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, size_t{1} << 50}) {
      errno = 0;
      EXPECT_EQ(tm_realloc(p, huge), nullptr) << huge;
      EXPECT_EQ(errno, ENOMEM);
    }
    EXPECT_EQ(tm_usable_size(p), usable);
    EXPECT_EQ(check_pattern(p, n, 41), n);
    const tm_stats_t s1 = stats();
    EXPECT_EQ(s1.live_blocks, s0.live_blocks);
    EXPECT_EQ(s1.requested_bytes, s0.requested_bytes);
    TM_ASSERT_HEAP_OK();
    tm_free(p);
  }
}

TEST_F(Realloc, RandomResizeKeepsStatsExact) {
  Rng rng(8080);
  size_t cur = 1;
  auto* p = static_cast<unsigned char*>(tm_malloc(cur));
  ASSERT_NE(p, nullptr);
  fill_sparse(p, cur, 0);
  for (int i = 0; i < 3000; ++i) {
    const size_t next = rng.chance(5) ? rng.log_uniform(512 * KiB, 2 * MiB) : rng.log_uniform(1, 300 * KiB);
    auto* q = static_cast<unsigned char*>(tm_realloc(p, next));
    ASSERT_NE(q, nullptr);
    const size_t keep = cur < next ? cur : next;
    ASSERT_TRUE(check_sparse(q, keep, static_cast<uint64_t>(i), cur)) << cur << " -> " << next;
    fill_sparse(q, next, static_cast<uint64_t>(i + 1));
    const tm_stats_t s = stats();
    ASSERT_EQ(s.requested_bytes, base_.requested_bytes + next) << cur << " -> " << next;
    ASSERT_EQ(s.usable_bytes, base_.usable_bytes + tm_usable_size(q)) << cur << " -> " << next;
    ASSERT_EQ(s.live_blocks, base_.live_blocks + 1);
    if (i % 100 == 0) {
      TM_ASSERT_HEAP_OK();
    }
    p = q;
    cur = next;
  }
  tm_free(p);
}

}  // namespace

// Regression (found by the realprog gcc test): a program may write every
// malloc_usable_size() byte and then grow the block; the bytes past the requested size must
// survive the move, in every tier.
TEST(ReallocUsable, BytesUpToTheUsableSizeSurviveAMove) {
  for (size_t n : {size_t{1}, size_t{20}, size_t{100}, size_t{3000}, size_t{9000}, size_t{100000}, size_t{600000}}) {
    auto* p = static_cast<unsigned char*>(tm_malloc(n));
    ASSERT_NE(p, nullptr);
    const size_t usable = tm_usable_size(p);
    ASSERT_GE(usable, n);
    for (size_t i = 0; i < usable; ++i) p[i] = static_cast<unsigned char>(i * 7 + 1);
    auto* q = static_cast<unsigned char*>(tm_realloc(p, usable * 4 + 4096));
    ASSERT_NE(q, nullptr);
    for (size_t i = 0; i < usable; ++i) ASSERT_EQ(q[i], static_cast<unsigned char>(i * 7 + 1)) << n << " byte " << i;
    tm_free(q);
  }
  EXPECT_EQ(tm_check_heap(), 0);
}
