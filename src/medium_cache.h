// Per-thread caches of medium blocks: malloc and free of 8-64 KiB requests without the
// arena's lock in the common case.
//
// Requests above the small tier up to kMediumCacheMax fall in classes, 8 per doubling
// (the small classes' spacing). A thread with an active cache carves such a block at its
// class's size, and its free keeps the block in the thread's bin for that class, up to a
// per-class and a per-thread byte bound (a full bin hands half of its blocks back); malloc of
// the class pops it again.
//
// The coalescing contract stays exact: a cached block is neither free in the index nor
// live. Its header still says "used" (so no two free neighbours ever exist: a cached block
// separates them), its slack is set to its whole usable size (0 requested bytes, so the
// heap walk's requested-bytes sum matches the counters), and its payload carries the
// free-block key (free_block.h): a second free, realloc or usable-size query of it is
// reported as a double free by every medium path. tm_stats counts cached blocks as neither
// live nor free (CacheTotals). A block leaving a cache (a full bin, the thread's exit,
// tm_release_cached, a fork child, tm_test_reset) is freed through medium_free, which
// coalesces it then. Memory pools' blocks are never cached.
#pragma once

#include <cstddef>

#include "config.h"

namespace tmalloc {

// Largest request the medium cache serves. Measured with churn over 8 KiB .. 256 KiB (64
// slots, 5 interleaved runs): caching up to 256 KiB ran 5-9% slower than up to 64 KiB with 1 MiB
// more peak RSS (blocks above 64 KiB take the page faults of touching them, not the lock, and
// two of them fill a bin), while up to 64 KiB the cache takes 5-18% off churn's time.
inline constexpr size_t kMediumCacheMax = 64 * 1024;
// 8 classes per doubling from kSmallMax.
inline constexpr size_t kMediumCacheClasses = 8 * (__builtin_ctzll(kMediumCacheMax) - __builtin_ctzll(kSmallMax));
// Bytes a bin may hold (its block limit is this / class size, at least 2).
inline constexpr size_t kMediumCacheBinBytes = 128 * 1024;
// Bytes all of a thread's medium bins may hold together.
inline constexpr size_t kMediumCacheThreadBytes = 1024 * 1024;

// Class of a request in (kSmallMax, kMediumCacheMax]: the smallest class at least as large.
constexpr size_t medium_cache_class(size_t requested) {
  const unsigned shift = 63u - static_cast<unsigned>(__builtin_clzll(requested - 1));  // 13 and up
  const size_t step = size_t{1} << (shift - 3);
  return (shift - 13) * 8 + (requested - 1 - (size_t{1} << shift)) / step;
}

// Block payload size of a class.
constexpr size_t medium_cache_class_size(size_t class_index) {
  const unsigned shift = 13 + static_cast<unsigned>(class_index / 8);
  return (size_t{1} << shift) + (class_index % 8 + 1) * (size_t{1} << (shift - 3));
}

// Bin a free block of `usable` bytes goes to: the largest class it can serve every request
// of, or kMediumCacheClasses when it is not cached (smaller than the first class, or more
// than one class step beyond the last one).
constexpr size_t medium_cache_bin_for_usable(size_t usable) {
  if (usable < medium_cache_class_size(0) || usable >= kMediumCacheMax + kMediumCacheMax / 8) {
    return kMediumCacheClasses;
  }
  const size_t above = medium_cache_class(usable + 1);
  return above == 0 ? 0 : above - 1;
}

static_assert(kSmallMax == 8192, "the class formula starts at 8 KiB (shift 13)");
static_assert((kMediumCacheMax & (kMediumCacheMax - 1)) == 0 && kMediumCacheMax > kSmallMax);
static_assert(medium_cache_class(kSmallMax + 1) == 0 && medium_cache_class(kMediumCacheMax) == kMediumCacheClasses - 1);
static_assert(medium_cache_class_size(kMediumCacheClasses - 1) == kMediumCacheMax);
static_assert(medium_cache_bin_for_usable(9216) == 0 && medium_cache_bin_for_usable(10239) == 0);
static_assert(medium_cache_bin_for_usable(kMediumCacheMax) == kMediumCacheClasses - 1);

// Most blocks a medium bin holds.
constexpr unsigned medium_cache_bin_limit(size_t class_index) {
  const size_t blocks = kMediumCacheBinBytes / medium_cache_class_size(class_index);
  return static_cast<unsigned>(blocks < 2 ? 2 : blocks);
}

struct MediumSegment;
struct CheckResult;
struct ThreadCache;

// malloc/calloc of `requested` bytes in (kSmallMax, kMediumCacheMax] at the default
// alignment: a cached block of its class, or a block carved at the class's size (a
// thread without an active cache gets an exact-size block from medium_alloc).
void* medium_cached_alloc(size_t requested, bool zero);
// free of the medium block p: kept in the calling thread's bin, or medium_free.
void medium_cached_free(MediumSegment* segment, void* p, const char* what);
// Empties every medium bin of `cache` (the calling thread's, or a dead thread's in a fork
// child) through medium_free.
void medium_cache_flush(ThreadCache& cache);
// Heap check of the calling thread's medium bins: every block cached as described above,
// counts and byte total right. 0 or a tm_check_code.
int medium_cache_check_current(CheckResult* result);
// The calling thread's cached medium blocks and their usable bytes per arena (tm_arena_stats).
void medium_cache_own_per_arena(size_t* blocks, size_t* bytes);

}  // namespace tmalloc
