// Small tier: the arenas' classes and segment lists, shared by small.cc and small_check.cc.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "config.h"
#include "sanitizer.h"
#include "small.h"
#include "spinlock.h"

namespace tmalloc {

// Each class on its own cache lines: threads of one arena refill different classes at once.
struct alignas(kCacheLineSize) SmallClass {
  SpinLock lock;
  RunDesc* partial;   // runs with at least one free block; the head is allocated from
  size_t handed_out;  // blocks whose bitmap bit is clear: live, cached or remote-freed
  // High-water mark of handed_out since start or tm_stats_reset_peaks (small_stats.h).
  size_t peak;
  size_t runs;
  // Remote-free list: blocks returned while this lock was busy. Any thread pushes
  // (lock-free); only a holder of `lock` takes the whole list at once, so a node is never
  // popped while a pusher reads it (no ABA).
  std::atomic<void*> remote;
  // Threads in small_return or the upkeep's drain of the remote list that are about to take,
  // hold or have just released `lock` (raised before the attempt, lowered after the unlock,
  // so the count covers the whole time the lock is theirs). A refill that finds the lock busy
  // while it is non-zero does not count that as contention: a consumer thread handing blocks
  // back must not drive the producers of this arena away. Only a hint (relaxed): a misread
  // moves a thread to another arena once too often or too rarely.
  std::atomic<uint32_t> returners;
  // True when the last holder of `lock` was a returner (written under the lock). A refill
  // that found the lock busy reads it once it holds the lock: the returner it waited for
  // may have lowered `returners` between the refill's failed try and its read of the count.
  bool returned_last;
};

// Arenas on separate cache lines: their threads never share one.
struct alignas(kCacheLineSize) SmallArena {
  SmallClass classes[kSmallClassCount];
  // Guards the segment list and run assignment. Lock order: a class lock, then this one.
  SpinLock segments_lock;
  SmallSegment* segments;  // segments with free runs come first
  size_t segment_count;
  size_t empty_segments;  // segments whose usable runs are all free
};

// One per arena slot, defined in small.cc. Zero-initialised, constexpr-constructible: no
// global constructor runs.
extern constinit SmallArena g_arenas[kArenaSlots];

// First byte of run `index` in `segment`.
inline char* run_base(SmallSegment* segment, size_t index) {
  return reinterpret_cast<char*>(segment) + index * kRunSize;
}

// Whether run i is free and its memory untouched since the segment was mapped: then its
// descriptor is one nothing ever wrote (it reads as zero, not in use), and reading it would
// only fault its page in (heap checks and walks skip it). Not fuzzing guidance: no coverage.
TM_NO_COVERAGE inline bool descriptor_untouched(const SmallSegment* segment, size_t i) {
  const uint64_t untouched =
      segment->free_runs & (segment->purged == 0 ? segment->clean_runs & ~segment->purged_runs : 0);
  return ((untouched >> i) & 1u) != 0;
}

}  // namespace tmalloc
