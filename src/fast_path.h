// The malloc and free fast paths, inlined into every entry point that serves them (tm_malloc and
// tm_free in api.cc, malloc, free and operator delete in the override files), so that a
// program's call runs them with no call inside the library. Everything else (debug mode,
// medium and large blocks, an empty or full bin, every misuse report) is one tail call to the
// slow path, which starts over with the complete checks.
//
// free validates before it caches: the owner comes from the address map (any pointer can be
// looked up without a fault), it must be a small segment of an arena, the pointer must start
// a block of an assigned run, and that block must be neither free in its run's bitmap nor
// carrying the free-block key (in some cache or remote-free list). A pointer that fails any
// of these goes to the slow path, which reports it. malloc checks what it pops: the block
// must still carry its key and its encoded link must decode to a plausible block address
// (free_block.h), so a write after free into a cached block is reported, never followed.
// The instruction budget of one malloc(32)+free pair is checked by bench/check-fastpath (bench/fastpath-budget.txt).
#pragma once

#include <cstddef>

#include "bitmap.h"
#include "chunk_map.h"
#include "debug.h"
#include "free_block.h"
#include "platform.h"
#include "sanitizer.h"
#include "size_class.h"
#include "small.h"
#include "thread_cache.h"

namespace tmalloc {

// Everything tm_malloc does beyond a pop from the thread's bin (api.cc); `site` is the
// caller's return address (debug mode records it).
TM_NOINLINE void* malloc_slow(size_t size, const void* site);

// Everything tm_free does beyond a push onto the thread's bin, with every check and report
// (api.cc); `site` is the caller's return address (debug mode records it).
TM_NOINLINE void free_slow(void* p, const void* site);

// malloc: below g_fast_size_bound (small classes up to kSizeTableMax, and 0 in debug mode) a
// pop from the thread's bin. Always inlined: __builtin_return_address(0) is then the entry
// point's caller, the site debug mode records.
TM_ALWAYS_INLINE void* malloc_fast(size_t size) {
  if (TM_LIKELY(size < g_fast_size_bound.load(std::memory_order_relaxed))) {
    const size_t bin_offset = kBinOffsetTable.offset[(size + 15) / 16];
    ThreadCache& cache = this_thread_cache();
    CacheBin& bin = *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(&cache) + bin_offset);
    if (TM_LIKELY(bin.head != nullptr) && TM_LIKELY(--cache.ticks != 0)) return cache_pop(bin, size);
    return cache_alloc_slow(bin_offset / sizeof(CacheBin), size, __builtin_return_address(0));
  }
  return malloc_slow(size, __builtin_return_address(0));
}

// free: a push onto the thread's bin after the checks above, or the slow path (inlined like
// malloc_fast, for the same site).
TM_ALWAYS_INLINE void free_fast(void* p) {
  // acquire (both loads): pair with the releases that publish the table and the owner.
  std::atomic<SegmentBase*>* const map = g_free_map.load(std::memory_order_acquire);
  const uintptr_t chunk = addr_of(p) >> kSegmentShift;
  if (TM_UNLIKELY(map == nullptr || chunk >= kChunkMapEntries)) return free_slow(p, __builtin_return_address(0));
  SegmentBase* const owner = map[chunk].load(std::memory_order_acquire);
  if (TM_UNLIKELY(owner == nullptr || owner->kind != SegmentKind::kSmall))
    return free_slow(p, __builtin_return_address(0));
  auto* const segment = static_cast<SmallSegment*>(owner);
  const uintptr_t offset_in_segment = addr_of(p) - addr_of(segment);
  const RunDesc* run = &segment->runs[offset_in_segment >> kRunShift];
  // Opaque from here: the compiler otherwise re-derives the run's address from the segment
  // for the bitmap word (two more instructions).
  asm("" : "+r"(run));
  // A run that is not assigned has a block count of 0 (so do the header's runs).
  const RunDivision division = divide_run_offset(offset_in_segment & (kRunSize - 1), run->divider);
  if (TM_UNLIKELY(!division.exact || division.index >= run->block_count))
    return free_slow(p, __builtin_return_address(0));
  const uintptr_t key = free_key_for(p);
  if (TM_UNLIKELY(bitmap_test(run->bitmap, division.index) || free_block_key(p) == key))
    return free_slow(p, __builtin_return_address(0));
  ThreadCache& cache = this_thread_cache();
  CacheBin& bin = *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(&cache) + run->cache_bin_offset);
  // A full bin, an inactive cache, a thread that tracks requested bytes and the pool bin all
  // have count >= limit.
  const uint32_t count = bin.count.load(std::memory_order_relaxed);
  if (TM_UNLIKELY(count >= bin.limit)) return free_slow(p, __builtin_return_address(0));
  poison(p, run->block_size);
  free_block_write_key(p, bin.head, key);
  bin.head = p;
  bin.count.store(count + 1, std::memory_order_relaxed);
}

}  // namespace tmalloc
