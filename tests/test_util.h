// Shared helpers for the tinymalloc unit tests: deterministic PRNG, byte patterns, stats deltas.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tinymalloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define TM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TM_TEST_ASAN 1
#endif
#endif
#ifndef TM_TEST_ASAN
#define TM_TEST_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define TM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TM_TEST_TSAN 1
#endif
#endif
#ifndef TM_TEST_TSAN
#define TM_TEST_TSAN 0
#endif

#if TM_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace tmtest {

inline constexpr size_t KiB = 1024;
inline constexpr size_t MiB = 1024 * 1024;

// Makes a region writable for a test that deliberately corrupts allocator metadata, in case
// the allocator poisons its headers for ASan.
inline void unpoison(void* p, size_t n) {
#if TM_TEST_ASAN
  __asan_unpoison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}

// splitmix64: small, fast, deterministic.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  // Uniform in [lo, hi].
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  bool chance(unsigned percent) { return below(100) < percent; }
  // Log-uniform size in [lo, hi] (lo >= 1).
  size_t log_uniform(size_t lo, size_t hi) {
    const int lo_bits = 63 - __builtin_clzll(lo);
    const int hi_bits = 63 - __builtin_clzll(hi);
    const int bits = static_cast<int>(range(static_cast<uint64_t>(lo_bits), static_cast<uint64_t>(hi_bits)));
    const size_t base = size_t{1} << bits;
    size_t v = base + below(base);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return v;
  }

 private:
  uint64_t state_;
};

// Byte i of the pattern for `seed`.
inline uint8_t pattern_byte(uint64_t seed, size_t i) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + i * 0xd6e8feb86659fd93ULL;
  x ^= x >> 29;
  return static_cast<uint8_t>(x ^ (x >> 8));
}

// Fills all n bytes with the pattern.
inline void fill_pattern(void* p, size_t n, uint64_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = pattern_byte(seed, i);
}

// Index of the first byte that differs from the pattern, or n.
inline size_t check_pattern(const void* p, size_t n, uint64_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != pattern_byte(seed, i)) return i;
  }
  return n;
}

// Sparse pattern: the first and last 128 bytes and one byte every 16381 bytes (about every
// fourth page, so fresh large mappings do not fault in every page). Cheap for multi-megabyte
// blocks and still catches a realloc that copied too little.
template <typename F>
inline void for_sparse(size_t n, F&& f) {
  const size_t edge = 128;
  for (size_t i = 0; i < n && i < edge; ++i) f(i);
  for (size_t i = edge; i + edge < n; i += 16381) f(i);
  for (size_t i = (n > edge ? n - edge : 0); i < n; ++i) {
    if (i >= edge) f(i);
  }
}

inline void fill_sparse(void* p, size_t n, uint64_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  for_sparse(n, [&](size_t i) { b[i] = pattern_byte(seed, i); });
}

// Checks the sparse pattern that fill_sparse(p, filled, seed) wrote, at its positions below
// n (n <= filled: after a shrinking realloc only the prefix survives).
inline bool check_sparse(const void* p, size_t n, uint64_t seed, size_t filled = 0) {
  if (filled == 0) filled = n;
  const auto* b = static_cast<const uint8_t*>(p);
  bool ok = true;
  for_sparse(filled, [&](size_t i) { ok = ok && (i >= n || b[i] == pattern_byte(seed, i)); });
  return ok;
}

inline tm_stats_t stats() {
  tm_stats_t s;
  std::memset(&s, 0, sizeof s);
  tm_stats(&s);
  return s;
}

// Human-readable heap-check result for assertion messages.
inline std::string heap_report() {
  tm_check_report_t r;
  std::memset(&r, 0, sizeof r);
  const int code = tm_check_heap_report(&r);
  if (code == 0) return "ok";
  char buf[400];
  std::snprintf(buf, sizeof buf, "code %d at 0x%llx: %s", code, static_cast<unsigned long long>(r.address), r.message);
  return buf;
}

#define TM_EXPECT_HEAP_OK() EXPECT_EQ(tm_check_heap(), 0) << ::tmtest::heap_report()
#define TM_ASSERT_HEAP_OK() ASSERT_EQ(tm_check_heap(), 0) << ::tmtest::heap_report()

// Sets an option for the scope and restores it afterwards.
class ScopedOption {
 public:
  ScopedOption(const char* name, long value) : name_(name) {
    EXPECT_EQ(tm_option_get(name, &old_), 0);
    EXPECT_EQ(tm_option_set(name, value), 0);
  }
  ~ScopedOption() { tm_option_set(name_, old_); }
  ScopedOption(const ScopedOption&) = delete;
  ScopedOption& operator=(const ScopedOption&) = delete;

 private:
  const char* name_;
  long old_ = 0;
};

// Fixture: records the live counters at the start of a test and, at the end, checks that the
// heap is consistent and that everything the test allocated was freed.
class HeapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    errno = 0;
    base_ = stats();
  }
  void TearDown() override {
    tm_test_fail_os_after(-1);
    TM_EXPECT_HEAP_OK();
    if (!check_balance_) return;
    const tm_stats_t now = stats();
    EXPECT_EQ(now.live_blocks, base_.live_blocks) << "blocks leaked by the test (or counter drift)";
    EXPECT_EQ(now.requested_bytes, base_.requested_bytes);
    EXPECT_EQ(now.usable_bytes, base_.usable_bytes);
    EXPECT_EQ(now.small_live_blocks, base_.small_live_blocks);
    EXPECT_EQ(now.medium_live_blocks, base_.medium_live_blocks);
    EXPECT_EQ(now.large_live_blocks, base_.large_live_blocks);
  }

  tm_stats_t base_{};
  bool check_balance_ = true;
};

// For tests of the medium tier's exact geometry (splitting, coalescing, in-place realloc):
// switches the per-thread medium cache off while in scope. Cached blocks are neither live nor
// free and blocks are carved at their cache class's size, so with the cache on a free
// coalesces only when the block leaves the cache; tm_release_cached() empties the calling
// thread's bins first.
class MediumCacheOff {
 public:
  MediumCacheOff() { tm_release_cached(); }

 private:
  ScopedOption option_{"medium_cache", 0};
};

// Bytes of a live block a test may write: its usable size, except under ASan, where the
// allocator poisons the slack past the requested size.
inline size_t writable(const void* p, size_t requested) { return TM_TEST_ASAN ? requested : tm_usable_size(p); }

// Allocates `count` physically adjacent medium blocks of `size` bytes each (in address
// order: block i+1 starts right after block i's last usable byte and the next header).
// Blocks allocated on the way and not part of the run are freed again. Returns an empty
// vector when no such run turned up among the first `tries` blocks.
inline std::vector<char*> adjacent_medium(size_t size, size_t count, size_t tries = 64) {
  std::vector<char*> all;
  for (size_t i = 0; i < tries; ++i) {
    auto* p = static_cast<char*>(tm_malloc(size));
    if (p == nullptr) break;
    all.push_back(p);
  }
  std::vector<char*> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  std::vector<char*> run;
  for (size_t i = 0; i + count <= sorted.size() && run.empty(); ++i) {
    bool ok = true;
    for (size_t k = i; k + 1 < i + count && ok; ++k) {
      ok = sorted[k + 1] == sorted[k] + tm_usable_size(sorted[k]) + 16;
    }
    if (ok) run.assign(sorted.begin() + static_cast<long>(i), sorted.begin() + static_cast<long>(i + count));
  }
  for (char* p : all) {
    if (std::find(run.begin(), run.end(), p) == run.end()) tm_free(p);
  }
  return run;
}

inline bool is_aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

}  // namespace tmtest
