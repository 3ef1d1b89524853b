// Global pool of free mappings (empty 4 MiB segments, freed large blocks' mappings and
// the unaligned fragments left when a large block takes the head of a larger entry),
// shared by every arena and tier. An arena that holds more empty segments than the
// `arena_retain` option moves them here, and the large tier puts freed mappings here; any
// arena and the large tier take from here before asking the OS. This is how memory
// migrates between arenas, and why churning large blocks does not pay page faults again.
// A pooled mapping's memory is returned to the OS (madvise) once it has been in the pool
// for `purge_delay_ms`; beyond `pool_segments` entries the oldest is unmapped. Every
// pooled mapping starts on a segment boundary.
#pragma once

#include <cstddef>

namespace tmalloc {

struct OsBytes;

// A mapping taken from the pool.
struct PooledSegment {
  void* address;       // nullptr when nothing fits
  bool purged;         // true: every byte reads as zero (the pages went back to the OS)
  size_t dirty_bytes;  // bytes from the start that may hold old data (0 when purged)
};

// How pool_take may serve a request no single entry is large enough for.
enum class PoolGrow : bool {
  kNo,   // report nothing found
  kYes,  // gather: move the pages of unpurged entries into a fresh mapping of `size` bytes
};

// Takes a pooled mapping of exactly `size` bytes (a page multiple) starting at a multiple
// of `alignment`: the smallest entry that is large enough, among equal sizes the most
// recently pooled (the most likely to be hot). Entries serve alignments up to a segment
// only: whether an entry is aligned more strictly depends on where the kernel put it. Of a larger entry, the
// segment-aligned part of its tail that is at least a segment long stays pooled in place; the rest of the tail is
// unmapped, or with PoolGrow::kYes kept as an unaligned fragment while unpurged. With PoolGrow::kYes and no entry large
// enough, the largest unpurged entries and fragments are moved (os_move_pages) to the front of a fresh mapping:
// churning large blocks of varying sizes then reuses resident pages instead of faulting fresh ones in.
PooledSegment pool_take(size_t size, size_t alignment, PoolGrow grow = PoolGrow::kNo);

// What the caller knows of a mapping's ASan shadow when it pools it (no effect without ASan).
enum class PoolShadow : bool {
  kAny,           // anything may be poisoned (a segment's free blocks and headers)
  kCleanInterior  // poisoned at most in its first and last page (a large block's slack)
};

// Adds a free mapping (unregistered from the address map, segment-aligned) to the pool,
// unmapping the oldest entry when the pool is full. Purges entries older than the delay.
void pool_give(void* mapping, size_t size, PoolShadow shadow = PoolShadow::kAny);

// Unmaps every entry now (tm_release_cached, malloc_trim, tm_test_reset).
void pool_release_all();

// tm_test_reset: unmaps every entry; returns whether the pool's unpurged-bytes count came back
// to zero with them (it starts from zero again either way).
bool pool_reset_for_test();

// Purges entries older than the purge delay (called from slow paths).
void pool_maintain();

// Periodic upkeep, from slow paths and every kTickInterval cached allocations of a thread:
// purges pool entries past the delay, and every half purge delay sweeps the arenas for
// retained empty segments and large free medium blocks that stayed so since the previous
// sweep (their memory goes back to the OS), and drains the remote-free lists.
void heap_maintain();

// tm_test_reset: the next heap_maintain counts time from 0 again, as in a new process.
void heap_maintain_reset_for_test();

// Entries in the pool, how many of them are purged, and their bytes (stats).
struct PoolTotals {
  size_t segments;
  size_t purged;
  size_t bytes;
};
PoolTotals pool_totals();

// Lock order: the pool lock comes after every arena and tier lock. Fork handlers take and
// release it (see fork.cc).
// Adds the pooled mappings to *out (pool lock held): purged ones count as mapped only.
void pool_os_bytes(OsBytes* out);
// Takes / releases the pool lock around a whole walk (tm_check_heap) or a fork (fork.cc).
void pool_lock();
void pool_unlock();

}  // namespace tmalloc
