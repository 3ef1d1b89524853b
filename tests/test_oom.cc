// Out-of-memory behaviour through the failure-injection hook tm_test_fail_os_after(k): the
// (k+1)-th and later OS map requests fail. Allocations that need the OS return NULL +
// ENOMEM, the heap stays consistent, blocks that exist stay intact, and after switching the
// injection off everything works and frees cleanly.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

class Oom : public HeapTest {
 protected:
  void SetUp() override {
    HeapTest::SetUp();
    // Cached empty segments would satisfy requests without the OS; drop them so the
    // injection decides.
    tm_release_cached();
  }
  void TearDown() override {
    tm_test_fail_os_after(-1);
    HeapTest::TearDown();
  }
};

struct Block {
  char* p;
  size_t n;
  uint64_t seed;
};

// Runs `alloc` and records the result; a NULL must come with ENOMEM.
template <typename F>
void attempt(std::vector<Block>& live, size_t n, uint64_t seed, size_t* nulls, F&& alloc) {
  errno = 0;
  auto* p = static_cast<char*>(alloc());
  if (p == nullptr) {
    EXPECT_EQ(errno, ENOMEM) << "NULL without ENOMEM, size " << n;
    ++*nulls;
    return;
  }
  EXPECT_GE(tm_usable_size(p), n);
  fill_sparse(p, n, seed);
  live.push_back({p, n, seed});
}

class OomAfter : public Oom, public ::testing::WithParamInterface<long> {};

TEST_P(OomAfter, MixedTiersFailCleanly) {
  const long k = GetParam();
  Rng rng(static_cast<uint64_t>(k) + 100);
  std::vector<Block> live;
  size_t nulls = 0;
  uint64_t seed = 0;
  tm_test_fail_os_after(k);
  for (int round = 0; round < 24; ++round) {
    // Medium blocks: several 4 MiB segments' worth over the rounds.
    for (int i = 0; i < 3; ++i) {
      const size_t n = rng.range(100 * KiB, 500 * KiB);
      attempt(live, n, ++seed, &nulls, [&] { return tm_malloc(n); });
    }
    // Large blocks: one mapping each.
    {
      const size_t n = rng.range(512 * KiB + 1, 3 * MiB);
      attempt(live, n, ++seed, &nulls, [&] { return tm_malloc(n); });
      const size_t m = rng.range(600 * KiB, 2 * MiB);
      attempt(live, m, ++seed, &nulls, [&] { return tm_calloc(1, m); });
      attempt(live, 100 * KiB, ++seed, &nulls, [&] { return tm_aligned_alloc(size_t{1} << 23, 100 * KiB); });
    }
    // Small blocks: whole runs of the large classes, and then new segments.
    for (int i = 0; i < 120; ++i) {
      const size_t n = rng.range(4097, 8192);
      attempt(live, n, ++seed, &nulls, [&] { return tm_malloc(n); });
    }
    for (int i = 0; i < 40; ++i) {
      const size_t n = rng.range(1, 512);
      attempt(live, n, ++seed, &nulls, [&] { return tm_malloc(n); });
    }
    if (round % 4 == 0) {
      TM_ASSERT_HEAP_OK() << " round " << round << ", k=" << k;
    }
  }
  EXPECT_GT(nulls, 0u) << "injection after " << k << " maps never made an allocation fail";
  TM_ASSERT_HEAP_OK();
  const tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks, base_.live_blocks + live.size()) << "a failed allocation was counted";
  for (const Block& b : live) ASSERT_TRUE(check_sparse(b.p, b.n, b.seed)) << "contents changed under OOM";

  // Free half under OOM (freeing needs no new memory), then switch injection off.
  for (size_t i = 0; i < live.size(); i += 2) tm_free(live[i].p);
  TM_ASSERT_HEAP_OK();
  tm_test_fail_os_after(-1);
  for (int i = 0; i < 4; ++i) {
    void* p = tm_malloc(2 * MiB);
    void* q = tm_malloc(400 * KiB);
    ASSERT_NE(p, nullptr) << "allocation still fails after tm_test_fail_os_after(-1)";
    ASSERT_NE(q, nullptr);
    tm_free(p);
    tm_free(q);
  }
  for (size_t i = 1; i < live.size(); i += 2) {
    ASSERT_TRUE(check_sparse(live[i].p, live[i].n, live[i].seed));
    tm_free(live[i].p);
  }
  TM_ASSERT_HEAP_OK();
}

INSTANTIATE_TEST_SUITE_P(K, OomAfter, ::testing::Values(0L, 1L, 2L, 3L, 5L, 8L, 13L, 21L));

TEST_F(Oom, InjectionCountsMapRequestsExactly) {
  // Every large block needs exactly one map request.
  tm_test_fail_os_after(2);
  errno = 0;
  void* a = tm_malloc(1 * MiB);
  void* b = tm_malloc(1 * MiB);
  void* c = tm_malloc(1 * MiB);
  const int c_errno = errno;
  void* d = tm_malloc(1 * MiB);
  EXPECT_NE(a, nullptr) << "1st map request must succeed";
  EXPECT_NE(b, nullptr) << "2nd map request must succeed";
  EXPECT_EQ(c, nullptr) << "3rd map request must fail";
  EXPECT_EQ(c_errno, ENOMEM);
  EXPECT_EQ(d, nullptr) << "later map requests must fail too";
  tm_test_fail_os_after(-1);
  void* e = tm_malloc(1 * MiB);
  EXPECT_NE(e, nullptr);
  for (void* p : {a, b, c, d, e}) tm_free(p);
}

TEST_F(Oom, AllocationsWithoutOsRequestsStillSucceed) {
  // Existing runs and segments keep serving while the OS refuses.
  void* warm_small = tm_malloc(64);
  void* warm_medium = tm_malloc(20000);
  ASSERT_NE(warm_small, nullptr);
  ASSERT_NE(warm_medium, nullptr);
  tm_test_fail_os_after(0);
  std::vector<void*> got;
  for (int i = 0; i < 20; ++i) {
    void* p = tm_malloc(64);
    ASSERT_NE(p, nullptr) << "small allocation from a partly used run failed under OOM";
    got.push_back(p);
    void* q = tm_malloc(20000);
    ASSERT_NE(q, nullptr) << "medium allocation from a segment with free space failed under OOM";
    got.push_back(q);
  }
  errno = 0;
  EXPECT_EQ(tm_malloc(4 * MiB), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  tm_test_fail_os_after(-1);
  for (void* p : got) tm_free(p);
  tm_free(warm_small);
  tm_free(warm_medium);
}

TEST_F(Oom, ReallocFailureLeavesOldBlockIntact) {
  struct Case {
    size_t from;
    size_t to;
    bool must_fail;  // the new size needs a new mapping
  };
  const Case cases[] = {
      {1 * MiB, 64 * MiB, true},     // large grows: mremap refused
      {300 * KiB, 2 * MiB, true},    // medium -> large
      {8000, 3 * MiB, true},         // small -> large
      {600 * KiB, 100 * MiB, true},  // large grows a lot
      {8000, 100 * KiB, false},      // small -> medium: may fit an existing segment
      {100, 5000, false},
  };
  size_t failures = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.from << " -> " << c.to);
    auto* p = static_cast<char*>(tm_malloc(c.from));
    ASSERT_NE(p, nullptr);
    fill_sparse(p, c.from, c.from);
    const size_t usable = tm_usable_size(p);
    // The previous case's freed mappings would serve the request from the pool.
    tm_release_cached();
    const tm_stats_t s0 = stats();
    tm_test_fail_os_after(0);
    errno = 0;
    auto* q = static_cast<char*>(tm_realloc(p, c.to));
    const int err = errno;
    tm_test_fail_os_after(-1);
    if (q == nullptr) {
      ++failures;
      EXPECT_EQ(err, ENOMEM);
      EXPECT_TRUE(tm_owns(p));
      EXPECT_EQ(tm_usable_size(p), usable);
      EXPECT_TRUE(check_sparse(p, c.from, c.from)) << "failed realloc damaged the old block";
      const tm_stats_t s1 = stats();
      EXPECT_EQ(s1.live_blocks, s0.live_blocks);
      EXPECT_EQ(s1.requested_bytes, s0.requested_bytes);
      EXPECT_EQ(s1.usable_bytes, s0.usable_bytes);
      TM_ASSERT_HEAP_OK();
      // The old block is still fully usable.
      auto* r = static_cast<char*>(tm_realloc(p, c.to));
      ASSERT_NE(r, nullptr);
      EXPECT_TRUE(check_sparse(r, c.from, c.from));
      tm_free(r);
    } else {
      EXPECT_FALSE(c.must_fail) << "realloc succeeded although it needed a new mapping";
      EXPECT_TRUE(check_sparse(q, c.from, c.from));
      tm_free(q);
    }
    TM_ASSERT_HEAP_OK();
  }
  EXPECT_GE(failures, 4u);
}

TEST_F(Oom, AlignedAndCallocFailCleanly) {
  tm_test_fail_os_after(0);
  errno = 0;
  EXPECT_EQ(tm_aligned_alloc(size_t{1} << 24, 1 * MiB), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* out = reinterpret_cast<void*>(uintptr_t{0x77});
  EXPECT_EQ(tm_posix_memalign(&out, size_t{1} << 24, 1 * MiB), ENOMEM);
  EXPECT_EQ(out, reinterpret_cast<void*>(uintptr_t{0x77}));
  errno = 0;
  EXPECT_EQ(tm_calloc(1024, 1024), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  tm_test_fail_os_after(-1);
  TM_EXPECT_HEAP_OK();
}

TEST_F(Oom, ManyFreshSegmentsRefused) {
  // Fill new small segments class by class until the OS refuses; nothing leaks.
  tm_test_fail_os_after(3);
  std::vector<void*> live;
  size_t nulls = 0;
  for (size_t cls = 0; cls < TM_SMALL_CLASS_COUNT; ++cls) {
    const size_t n = tm_size_class_size(cls);
    for (int i = 0; i < 400; ++i) {
      errno = 0;
      void* p = tm_malloc(n);
      if (p == nullptr) {
        EXPECT_EQ(errno, ENOMEM);
        ++nulls;
      } else {
        std::memset(p, static_cast<int>(cls), n);
        live.push_back(p);
      }
    }
  }
  TM_ASSERT_HEAP_OK();
  EXPECT_GT(nulls, 0u);
  tm_test_fail_os_after(-1);
  for (void* p : live) tm_free(p);
  TM_ASSERT_HEAP_OK();
}

}  // namespace
