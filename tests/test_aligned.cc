// tm_aligned_alloc / tm_posix_memalign: every power-of-two alignment up to 64 MiB (and
// TM_MAX_ALIGNMENT), bad alignments, impossible sizes, aligned blocks in a busy heap.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

class Aligned : public HeapTest {};

const size_t kSizes[] = {1, 16, 100, 5000, 100000, 1 * MiB};

void check_group_disjoint(std::vector<std::pair<char*, size_t>>& group) {
  std::vector<std::pair<uintptr_t, uintptr_t>> r;
  for (auto& [p, n] : group)
    r.emplace_back(reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + tm_usable_size(p));
  std::sort(r.begin(), r.end());
  for (size_t i = 1; i < r.size(); ++i) ASSERT_LE(r[i - 1].second, r[i].first) << "aligned blocks overlap";
}

TEST_F(Aligned, AlignedAllocEveryAlignmentAndSize) {
  for (unsigned k = 0; k <= 26; ++k) {
    const size_t alignment = size_t{1} << k;
    std::vector<std::pair<char*, size_t>> group;
    for (size_t n : kSizes) {
      SCOPED_TRACE(::testing::Message() << "alignment 2^" << k << " size " << n);
      const tm_stats_t s0 = stats();
      errno = 0;
      auto* p = static_cast<char*>(tm_aligned_alloc(alignment, n));
      ASSERT_NE(p, nullptr) << "errno " << errno;
      EXPECT_TRUE(is_aligned(p, alignment)) << static_cast<void*>(p);
      if (n >= 16) {
        EXPECT_TRUE(is_aligned(p, 16));
      }
      EXPECT_GE(tm_usable_size(p), n);
      EXPECT_TRUE(tm_owns(p));
      const tm_stats_t s1 = stats();
      EXPECT_EQ(s1.live_blocks, s0.live_blocks + 1);
      EXPECT_EQ(s1.requested_bytes, s0.requested_bytes + n);
      EXPECT_EQ(s1.usable_bytes, s0.usable_bytes + tm_usable_size(p));
      fill_pattern(p, n, k * 100 + n);
      group.emplace_back(p, n);
    }
    check_group_disjoint(group);
    TM_ASSERT_HEAP_OK() << " alignment 2^" << k;
    for (auto& [p, n] : group) {
      EXPECT_EQ(check_pattern(p, n, k * 100 + n), n) << "alignment 2^" << k << " size " << n;
      tm_free(p);
    }
    TM_ASSERT_HEAP_OK() << " after freeing, alignment 2^" << k;
  }
}

// An alignment the default already gives (16 or less) costs nothing: the same block size as
// malloc's, from every aligned entry point (a mutant that sent alignment 16 through the
// aligned path served aligned_alloc(16, 16) from the 64-byte class).
TEST_F(Aligned, DefaultAlignmentsGetMallocsBlockSize) {
  for (size_t n : {size_t{1}, size_t{16}, size_t{17}, size_t{48}, size_t{63}, size_t{100}, size_t{5000}, size_t{8192},
                   size_t{8193}, size_t{100000}}) {
    void* plain = tm_malloc(n);
    ASSERT_NE(plain, nullptr);
    const size_t want = tm_usable_size(plain);
    for (size_t alignment : {size_t{1}, size_t{2}, size_t{4}, size_t{8}, size_t{16}}) {
      SCOPED_TRACE(::testing::Message() << "size " << n << " alignment " << alignment);
      void* a = tm_aligned_alloc(alignment, n);
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(tm_usable_size(a), want);
      tm_free(a);
      if (alignment >= sizeof(void*)) {
        void* p = nullptr;
        ASSERT_EQ(tm_posix_memalign(&p, alignment, n), 0);
        EXPECT_EQ(tm_usable_size(p), want);
        tm_free(p);
      }
    }
    tm_free(plain);
  }
  TM_ASSERT_HEAP_OK();
}

TEST_F(Aligned, PosixMemalignEveryAlignmentAndSize) {
  for (unsigned k = 3; k <= 26; ++k) {
    const size_t alignment = size_t{1} << k;
    std::vector<std::pair<char*, size_t>> group;
    for (size_t n : kSizes) {
      SCOPED_TRACE(::testing::Message() << "alignment 2^" << k << " size " << n);
      void* out = reinterpret_cast<void*>(uintptr_t{0xdead0});
      ASSERT_EQ(tm_posix_memalign(&out, alignment, n), 0);
      auto* p = static_cast<char*>(out);
      ASSERT_NE(p, nullptr);
      ASSERT_NE(out, reinterpret_cast<void*>(uintptr_t{0xdead0}));
      EXPECT_TRUE(is_aligned(p, alignment)) << out;
      EXPECT_GE(tm_usable_size(p), n);
      fill_pattern(p, n, k + n);
      group.emplace_back(p, n);
    }
    check_group_disjoint(group);
    TM_ASSERT_HEAP_OK();
    for (auto& [p, n] : group) {
      EXPECT_EQ(check_pattern(p, n, k + n), n);
      tm_free(p);
    }
  }
}

TEST_F(Aligned, MaxAlignmentAccepted) {
  void* p = tm_aligned_alloc(TM_MAX_ALIGNMENT, 64);
  ASSERT_NE(p, nullptr) << "TM_MAX_ALIGNMENT must be accepted";
  EXPECT_TRUE(is_aligned(p, TM_MAX_ALIGNMENT));
  std::memset(p, 1, 64);
  TM_EXPECT_HEAP_OK();
  tm_free(p);
  void* q = nullptr;
  ASSERT_EQ(tm_posix_memalign(&q, TM_MAX_ALIGNMENT, 4096), 0);
  EXPECT_TRUE(is_aligned(q, TM_MAX_ALIGNMENT));
  tm_free(q);
}

TEST_F(Aligned, AboveMaxAlignmentFails) {
  for (size_t alignment : {TM_MAX_ALIGNMENT << 1, size_t{1} << 40, size_t{1} << 63}) {
    errno = 0;
    void* p = tm_aligned_alloc(alignment, 16);
    EXPECT_EQ(p, nullptr) << alignment;
    EXPECT_TRUE(errno == EINVAL || errno == ENOMEM) << "errno " << errno;
    if (p != nullptr) tm_free(p);
    void* out = reinterpret_cast<void*>(uintptr_t{0x1234});
    const int rc = tm_posix_memalign(&out, alignment, 16);
    EXPECT_TRUE(rc == EINVAL || rc == ENOMEM) << rc;
    EXPECT_EQ(out, reinterpret_cast<void*>(uintptr_t{0x1234})) << "*out written on failure";
  }
}

TEST_F(Aligned, BadAlignmentIsEinval) {
  const size_t bad[] = {
      0, 3, 5, 6, 7, 12, 24, 48, 100, 4097, (size_t{1} << 20) + 16, SIZE_MAX, SIZE_MAX / 2, (size_t{1} << 63) + 1};
  for (size_t alignment : bad) {
    for (size_t n : {size_t{16}, size_t{100}, size_t{100000}}) {
      errno = 0;
      void* p = tm_aligned_alloc(alignment, n);
      EXPECT_EQ(p, nullptr) << "alignment " << alignment;
      EXPECT_EQ(errno, EINVAL) << "alignment " << alignment;
      if (p != nullptr) tm_free(p);
      void* out = reinterpret_cast<void*>(uintptr_t{0x1234});
      EXPECT_EQ(tm_posix_memalign(&out, alignment, n), EINVAL) << "alignment " << alignment;
      EXPECT_EQ(out, reinterpret_cast<void*>(uintptr_t{0x1234})) << "*out written on failure";
    }
  }
  // posix_memalign also requires a multiple of sizeof(void *).
  for (size_t alignment : {size_t{1}, size_t{2}, size_t{4}}) {
    void* out = reinterpret_cast<void*>(uintptr_t{0x1234});
    EXPECT_EQ(tm_posix_memalign(&out, alignment, 64), EINVAL) << "alignment " << alignment;
    EXPECT_EQ(out, reinterpret_cast<void*>(uintptr_t{0x1234}));
    // ...which aligned_alloc does not.
    void* p = tm_aligned_alloc(alignment, 64);
    EXPECT_NE(p, nullptr) << "aligned_alloc(" << alignment << ", 64)";
    tm_free(p);
  }
  const tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks, base_.live_blocks);
}

TEST_F(Aligned, ImpossibleSizeIsEnomem) {
  for (size_t alignment : {size_t{8}, size_t{16}, size_t{64}, size_t{4096}, size_t{1} << 20, size_t{1} << 26}) {
    for (size_t n : {SIZE_MAX, SIZE_MAX - alignment + 1, SIZE_MAX - 4096, SIZE_MAX / 2, size_t{1} << 50}) {
      SCOPED_TRACE(::testing::Message() << "alignment " << alignment << " size " << n);
      errno = 0;
      void* p = tm_aligned_alloc(alignment, n);
      EXPECT_EQ(p, nullptr);
      EXPECT_EQ(errno, ENOMEM);
      if (p != nullptr) tm_free(p);
      void* out = reinterpret_cast<void*>(uintptr_t{0x1234});
      EXPECT_EQ(tm_posix_memalign(&out, alignment, n), ENOMEM);
      EXPECT_EQ(out, reinterpret_cast<void*>(uintptr_t{0x1234}));
    }
  }
}

TEST_F(Aligned, AlignedBlocksRealloc) {
  for (size_t alignment : {size_t{64}, size_t{4096}, size_t{65536}, size_t{1} << 22}) {
    for (size_t n : {size_t{3000}, size_t{20000}, size_t{700000}}) {
      auto* p = static_cast<char*>(tm_aligned_alloc(alignment, n));
      ASSERT_NE(p, nullptr);
      fill_pattern(p, n, alignment + n);
      auto* q = static_cast<char*>(tm_realloc(p, 2 * n + 1));
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(check_pattern(q, n, alignment + n), n) << alignment << " " << n;
      auto* r = static_cast<char*>(tm_realloc(q, n / 3));
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(check_pattern(r, n / 3, alignment + n), n / 3);
      TM_ASSERT_HEAP_OK();
      tm_free(r);
    }
  }
}

TEST_F(Aligned, RandomAlignedMixedWithPlainBlocks) {
  Rng rng(606);
  struct B {
    char* p;
    size_t n;
    size_t a;
  };
  std::vector<B> live;
  for (int op = 0; op < 4000; ++op) {
    if (live.size() < 300 && (live.empty() || rng.chance(55))) {
      const size_t a = size_t{1} << rng.below(17);  // up to 64 KiB
      const size_t n = rng.log_uniform(1, 600 * KiB);
      const bool plain = rng.chance(30);
      auto* p = static_cast<char*>(plain ? tm_malloc(n) : tm_aligned_alloc(a, n));
      ASSERT_NE(p, nullptr);
      if (!plain) {
        ASSERT_TRUE(is_aligned(p, a)) << "alignment " << a << " size " << n;
      }
      ASSERT_GE(tm_usable_size(p), n);
      fill_sparse(p, n, reinterpret_cast<uintptr_t>(p));
      live.push_back({p, n, a});
    } else {
      const size_t i = rng.below(live.size());
      ASSERT_TRUE(check_sparse(live[i].p, live[i].n, reinterpret_cast<uintptr_t>(live[i].p)))
          << "contents of an aligned block changed";
      tm_free(live[i].p);
      live[i] = live.back();
      live.pop_back();
    }
    if (op % 200 == 0) {
      TM_ASSERT_HEAP_OK() << "op " << op;
    }
  }
  for (auto& b : live) {
    ASSERT_TRUE(check_sparse(b.p, b.n, reinterpret_cast<uintptr_t>(b.p)));
    tm_free(b.p);
  }
}

TEST_F(Aligned, EveryAlignmentOfMediumSizes) {
  // Medium-tier aligned allocations leave a free head before the aligned payload; free the
  // blocks in different orders so the heads coalesce with everything around them.
  for (unsigned k = 5; k <= 16; ++k) {
    const size_t a = size_t{1} << k;
    std::vector<char*> blocks;
    for (size_t n = 9000; n < 300000; n = n * 3 / 2) {
      auto* p = static_cast<char*>(tm_aligned_alloc(a, n));
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(is_aligned(p, a)) << "alignment " << a << " size " << n;
      ASSERT_GE(tm_usable_size(p), n);
      std::memset(p, 0x3C, writable(p, n));
      blocks.push_back(p);
    }
    TM_ASSERT_HEAP_OK() << " alignment " << a;
    for (size_t i = k % 2; i < blocks.size(); i += 2) tm_free(blocks[i]);
    TM_ASSERT_HEAP_OK();
    for (size_t i = 1 - k % 2; i < blocks.size(); i += 2) tm_free(blocks[i]);
    TM_ASSERT_HEAP_OK();
  }
}

}  // namespace
