// Per-arena, per-class counters of the small tier for tm_class_stats, tm_arena_stats and
// tm_stats_print (implemented in small.cc; gathered by introspection.cc).
//
// Peaks: each (arena, class) keeps the high-water mark of its `handed_out` count, raised
// where a run hands out a block (small_alloc and thread-cache refills, under the class lock).
// handed_out counts every block out of the class's runs: live blocks, blocks sitting in
// thread caches and blocks in the remote-free list. Cached blocks cannot be subtracted there
// (the caches are owned by their threads and change without the lock), so the peak is that
// of blocks out of runs, which is >= the peak of live blocks by at most the blocks then cached.
#pragma once

#include <cstddef>

#include "size_class.h"

namespace tmalloc {

// The small tier of one arena slot.
struct SmallArenaSnapshot {
  size_t handed_out[kSmallClassCount];  // blocks out of runs: live, cached or remote-freed
  size_t peak[kSmallClassCount];        // high-water mark of handed_out
  size_t remote[kSmallClassCount];      // of handed_out, blocks in the remote-free list
  size_t runs[kSmallClassCount];        // runs assigned to the class
  size_t segments;
  size_t committed_bytes;  // segments' bytes, less the run areas the idle sweep purged
};

// Fills *out for arena slot `arena` (call with its small locks held, see small_lock_all).
void small_arena_snapshot(unsigned arena, SmallArenaSnapshot* out);

// Sets the peak of every class of arenas [0, arenas) to its current handed_out count
// (takes each class lock in turn).
void small_reset_peaks(unsigned arenas);

}  // namespace tmalloc
