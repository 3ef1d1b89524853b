// Per-thread caches of small blocks: the lock-free fast path.
//
// Each thread owns one bin per small class: a singly linked list of free blocks (links in
// the blocks, see free_block.h) with a count and a limit. malloc pops from the bin and
// free pushes onto it; neither takes a lock or does an atomic read-modify-write. An empty
// bin is refilled with a batch from the thread's arena (small_refill, one lock for the
// batch); a full bin returns half of its blocks to their runs (small_return), which sends
// blocks of other arenas to those arenas' remote-free lists when their locks are busy.
// Bins are bounded (kCacheBinBytes per class, 8..256 blocks), so a thread caches at most
// a few MiB, and they are flushed when the thread exits (a pthread key destructor) and in
// a fork child for the threads that did not survive the fork.
//
// Statistics: the requested-bytes counter is per thread (relaxed loads and stores by the
// owner, summed by readers), so tm_stats is exact whenever the other threads are quiescent.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "free_block.h"
#include "medium_cache.h"
#include "platform.h"
#include "sanitizer.h"
#include "size_class.h"
#include "small.h"
#include "tinymalloc.h"

#ifndef TM_TLS_MODEL
#define TM_TLS_MODEL "initial-exec"
#endif

namespace tmalloc {

// Cached allocations between two heap_maintain calls of a thread: time-based upkeep (the
// purge delay) happens even in a program that only ever hits the fast path. The slow path's
// share of a malloc(32)+free pair is about 150/kTickInterval instructions (bench/check-fastpath:
// 2.3 here, 0.6 at 256), but a program that allocates rarely returns memory that much later:
// at 256, bench's mem_release (one allocation per 10 ms after the burst) settled 1.7-1.8 s
// after its last free instead of 1.1-1.2 s.
inline constexpr uint32_t kTickInterval = 64;

// Bytes a bin may hold before half of it is returned (limit = clamp(this / size, 8, 256)).
inline constexpr size_t kCacheBinBytes = 64 * 1024;

struct CacheBin {
  void* head;
  // Written only by the owner thread (relaxed load + store, no read-modify-write), read by
  // tm_stats from other threads.
  std::atomic<uint32_t> count;
  uint32_t limit;  // 0 while the cache is not active: every operation takes the slow path
};

enum class CacheState : uint32_t {
  kUnset = 0,   // the thread has not allocated yet
  kActive = 1,  // bins in use
  kBypass = 2,  // no cache: thread_cache=0, a reentrant call during set-up, or exited
};

// Index of the pool bin: never holds a block, its limit stays 0, so free's fast path sends
// the blocks of memory pools' runs (RunDesc::cache_bin_offset) to the slow path.
inline constexpr size_t kPoolBin = kSmallClassCount;

struct ThreadCache {
  CacheBin bins[kSmallClassCount + 1];  // one per class, then the pool bin
  // Net requested bytes allocated minus freed by this thread (a block freed by another
  // thread makes one positive and the other negative; the sum over threads is exact).
  std::atomic<int64_t> requested;
  // Above this requested value the thread samples the global sum for the peak statistic.
  int64_t peak_mark;
  CacheState state;
  // Cached allocations left until the next heap_maintain call (segment_pool.h). A thread
  // that tracks requested bytes keeps it at 1, so every malloc takes the slow path.
  uint32_t ticks;
  // What ticks was last set to: the allocations one expiry of ticks stands for.
  uint32_t tick_period;
  // With sample_rate (guarded.h): allocations left until the next sampled one (ticks is
  // never set past it, so the fast path reaches the slow path in time), and the thread's
  // generator of sampling intervals.
  int64_t sample_countdown;
  uint64_t sample_state;
  uint32_t sample_generation;  // g_sample_generation the countdown was drawn under
  // True when the thread records requested bytes per block (the track_requested option):
  // every operation goes through the out-of-line paths (bin limits are 0 and ticks stays
  // at 1), which do the same bin operations plus the bookkeeping. The fast paths are thus
  // free of it when the option is off, at no cost in instructions.
  bool exact;
  // An exact thread's allocations since its last heap_maintain call.
  uint32_t exact_ticks;
  // An exact thread's bin limits (its bins show 0 to the fast paths): they start small and
  // double like the bins' own, so a thread that allocates a few blocks of many classes, as a
  // harness input does, does not carve and touch a full bin of blocks for each class.
  uint32_t exact_limits[kSmallClassCount];
  // Arena locks found busy since the thread last changed arenas (note_arena_contention).
  uint32_t contentions;
  // The thread's arena + 1 (0 = not chosen yet); chosen again when its lock is contended.
  unsigned arena_plus1;
  // The arena + 1 this thread is counted in (arena_occupant_enter; 0 = none): the arena
  // of an active cache, until the thread exits.
  unsigned occupied_plus1;
  // Registry of live caches (the registry lock guards these links).
  ThreadCache* next;
  ThreadCache* prev;
  // Medium blocks (medium_cache.h): one bin per class (limit 0 while the cache is not
  // active), and the usable bytes they hold together (owner's relaxed store, read by
  // tm_stats like the counts).
  CacheBin medium_bins[kMediumCacheClasses];
  std::atomic<size_t> medium_bytes;
};

// Byte offset of bins[bin] in ThreadCache (RunDesc::cache_bin_offset).
constexpr uint16_t cache_bin_offset(size_t bin) {
  return static_cast<uint16_t>(offsetof(ThreadCache, bins) + bin * sizeof(CacheBin));
}
static_assert(offsetof(ThreadCache, bins) + (kPoolBin + 1) * sizeof(CacheBin) <= UINT16_MAX);

// For malloc's fast path: the byte offset in ThreadCache of the bin of each size up to
// kSizeTableMax, indexed like kSizeTable by (size + 15) / 16 (one load gives the bin; the
// class index, offset / sizeof(CacheBin), is needed only on the slow path).
inline constexpr auto kBinOffsetTable = [] {
  struct Table {
    uint16_t offset[kSizeTableMax / 16 + 1];
  } table{};
  for (size_t i = 0; i <= kSizeTableMax / 16; ++i) table.offset[i] = cache_bin_offset(kSizeTable.class_index[i]);
  return table;
}();
static_assert(offsetof(ThreadCache, bins) == 0, "the slow path derives the class from a bin offset");

// The calling thread's cache (zero-initialised TLS: no constructor, no TLS wrapper).
// constinit on the declaration too: other files access it directly, without a TLS wrapper.
extern constinit thread_local ThreadCache t_cache __attribute__((tls_model(TM_TLS_MODEL)));

// The calling thread's cache as a plain pointer: computed once (the compiler otherwise
// re-derives the TLS address for each field it touches on the fast paths).
TM_ALWAYS_INLINE ThreadCache& this_thread_cache() {
  ThreadCache* cache = &t_cache;
  asm("" : "+r"(cache));
  return *cache;
}

// Picks the calling thread's arena again (its lock was contended, or none is chosen yet).
TM_NOINLINE unsigned choose_arena(bool contended);

// Records that the calling thread found one of its arena's locks busy. Repeated contention
// moves it to another arena for its next operations; one busy lock (a preempted holder, a
// thread that just started) is no reason to leave the runs and blocks it has been using.
TM_NOINLINE void note_arena_contention();

// The calling thread's arena for its next slow-path operation.
TM_ALWAYS_INLINE unsigned current_arena() {
  const unsigned plus1 = t_cache.arena_plus1;
  return TM_LIKELY(plus1 != 0) ? plus1 - 1 : choose_arena(false);
}

// Slow paths (thread_cache.cc).
TM_NOINLINE void* cache_alloc_slow(size_t class_index, size_t requested, const void* site);
TM_NOINLINE void cache_free_slow(SmallSegment* segment, void* p, const char* what);
TM_NOINLINE void sample_peak_requested();

// Adds `delta` requested bytes to the counter of the calling thread (its cache is active).
// The global peak is sampled when the counter rises TM_PEAK_SAMPLE_BYTES above its value
// at the last sample (tm_stats_reset_peaks re-arms the calling thread), so a peak is missed
// by less than that step per thread.
TM_ALWAYS_INLINE void thread_requested_add(ThreadCache& cache, int64_t delta) {
  const int64_t now = cache.requested.load(std::memory_order_relaxed) + delta;
  cache.requested.store(now, std::memory_order_relaxed);
  if (TM_UNLIKELY(now > cache.peak_mark)) sample_peak_requested();
}

// Same for a decrease (never a new peak).
TM_ALWAYS_INLINE void thread_requested_sub(ThreadCache& cache, int64_t bytes) {
  cache.requested.store(cache.requested.load(std::memory_order_relaxed) - bytes, std::memory_order_relaxed);
}

// Hands out the first block of a non-empty bin: unlink it and clear its free-block key.
// No bookkeeping beyond the bin: requested bytes are recorded only by threads that track
// them, which never get here (see ThreadCache::exact).
TM_ALWAYS_INLINE void* cache_pop(CacheBin& bin, size_t requested) {
  void* block = bin.head;
  // The link and the key are checked before the link becomes the head (a tail call reports).
  const uintptr_t link = free_block_checked_link(block);
  if (TM_UNLIKELY(!free_link_plausible(link))) return report_corrupted_free_link(block);
  bin.head = reinterpret_cast<void*>(link);
  bin.count.store(bin.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  free_block_clear_key(block);
  unpoison(block, requested);
  return block;
}

// malloc of a small class: pops from the thread's bin, or takes the slow path (empty bin,
// upkeep due, no cache yet, or a thread that tracks requested bytes: its ticks stay at 1).
TM_ALWAYS_INLINE void* cache_alloc(size_t class_index, size_t requested, const void* site) {
  ThreadCache& cache = this_thread_cache();
  CacheBin& bin = cache.bins[class_index];
  if (TM_LIKELY(bin.head != nullptr) && TM_LIKELY(--cache.ticks != 0)) return cache_pop(bin, requested);
  return cache_alloc_slow(class_index, requested, site);
}

// free of the small block p in `segment`: validates it without locks, then pushes it onto
// the thread's bin. The slow path takes the rest: a full bin, a block of a memory pool
// (its arena index is kMaxArenas or more), a thread without an active cache and threads
// that track requested bytes (their limits are 0). Blocks of other arenas are cached like
// the thread's own (see cache_free_slow_body): a consumer thread in another arena than
// its producer frees at full speed (measured: xmalloc with 2 threads in 2 arenas, 0.56 s
// when every such free took the slow path, as fast as in 1 arena now).
TM_ALWAYS_INLINE void cache_free(SmallSegment* segment, void* p, const char* what) {
  const BlockRef ref = small_locate(segment, p, what);
  const size_t class_index = ref.run->class_index;  // read once: the run's line is at hand now
  const uintptr_t key = free_key_for(p);
  // Already free in its run, or carrying the free key (in some cache or remote list).
  if (TM_UNLIKELY(bitmap_test(ref.run->bitmap, ref.index) || free_block_key(p) == key)) {
    report_small_double_free(ref, p, what);
  }
  ThreadCache& cache = this_thread_cache();
  CacheBin& bin = cache.bins[class_index];
  const uint32_t count = bin.count.load(std::memory_order_relaxed);
  if (TM_UNLIKELY(segment->arena >= kMaxArenas || count >= bin.limit)) {
    return cache_free_slow(segment, p, what);
  }
  poison(p, ref.run->block_size);
  free_block_write_key(p, bin.head, key);
  bin.head = p;
  bin.count.store(count + 1, std::memory_order_relaxed);
}

// Every live cache's counts per class and the requested-bytes sum over all threads
// (registry lock held by the caller). `other_threads`: live caches besides the caller's.
struct CacheTotals {
  // True in a fork child whose parent had other threads: one of them may have been halfway
  // through a lock-free fast path (a block popped but its counter not yet updated), so the
  // requested-bytes total can be off by that block for the rest of the child's life.
  bool inexact;
  size_t caches;
  size_t cached[kSmallClassCount];
  // Medium blocks in the caches and their usable bytes.
  size_t medium_cached;
  size_t medium_cached_bytes;
  int64_t requested;  // exited threads included
  size_t other_threads;
};
void cache_totals(CacheTotals* out);

// Upkeep of an allocation served from a cache: heap_maintain once per kTickInterval of
// them (for an exact thread, whose ticks stay at 1, counted in exact_ticks). The cache is
// active, so ticks is at least 1 (the small fast path resets it on the slow path at 0).
void cache_tick(ThreadCache& cache);

// With sample_rate: counts one allocation outside the small classes toward the calling
// thread's next sampled one; true when it is due (the caller tries guarded_alloc).
TM_NOINLINE bool sample_due();

// The sample rate changed (tm_option_set): the calling thread's next small allocation takes
// the slow path, which draws its countdown under the new rate. Other threads do so at their
// next upkeep tick (within 64 allocations).
void sample_rate_changed();

// Adds `delta` requested bytes for the calling thread in any state (tiers' slow paths).
void requested_add(int64_t delta);
// Requested bytes over all threads (exited ones included); takes the registry lock.
size_t requested_total();
// Peak of requested_total as sampled, and its reset.
size_t requested_peak();
void requested_reset_peak();

// Sets up the calling thread's cache if this is its first call (outside any allocator lock:
// the set-up may allocate), and whether it is active (not bypassed).
void cache_ensure_current();
bool cache_active_current();

// Returns every block of the calling thread's cache to the heap (tm_release_cached).
void cache_flush_current();

// Heap check of the calling thread's cache: every cached block valid; 0 or a code.
struct CheckResult;
int cache_check_current(CheckResult* result);
// The scoped version for the calling thread's bin of one class: its first blocks and count.
int cache_check_current_class(CheckResult* result, size_t class_index);

// Runtime initialisation: options, arenas, the free-block key, the thread-exit key and
// the fork handlers. Idempotent and reentrancy-safe; returns at once after the first time.
void runtime_ensure();

// tm_test_reset: whether a thread other than the caller has an active cache; and the reset
// of the caller's cache (flushed first) and of the cross-thread counters to the state of a
// process that has not allocated. Returns whether the requested-bytes counters of all
// threads summed to zero before they were cleared (they must, with no block live).
bool cache_others_active();
bool cache_reset_for_test();
// tm_test_thread_exit: what the calling thread's exit does to its cache (flush, leave its arena,
// fold its counters), then the cache of a thread that has not allocated yet. Nothing for a
// thread without a cache to retire (thread_cache=0, or it is exiting).
void cache_retire_current_for_test();

// Fork support (fork.cc): the registry lock, and the child's clean-up of the caches of
// threads that do not exist in the child.
void registry_lock();
void registry_unlock();
void cache_forget_other_threads_in_child();

}  // namespace tmalloc
