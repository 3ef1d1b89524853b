// Global segment pool with delayed purging (see segment_pool.h).
#include "segment_pool.h"

#include <errno.h>

#include <atomic>

#include "check.h"
#include "config.h"
#include "heap_map.h"
#include "options.h"
#include "os.h"
#include "plant.h"
#include "platform.h"
#include "sanitizer.h"
#include "spinlock.h"

namespace tmalloc {

namespace {

// Most entries the pool can hold (the `pool_segments` option is capped at this).
constexpr size_t kPoolCapacity = 4096;

// Unpurged bytes the pool may hold before it purges its oldest entries early.
constexpr size_t kMaxDirtyBytes = size_t{512} << 20;

struct PoolEntry {
  void* address;
  size_t size;
  uint64_t pooled_at_ms;  // monotonic time it entered the pool
  bool purged;
  // Not a gather source again: os_move_pages refused it once, or most of its pages were not
  // resident (pages do not become resident while pooled).
  bool unmovable;
  bool clean_interior;  // under ASan, poisoned only in its first and last kPooledPoisonEdge
};

// Most entries one gather moves into a new mapping.
constexpr size_t kMaxGather = 8;

// A gather source with fewer than 1/kSparseSourceRatio of its bytes resident is not moved.
constexpr size_t kSparseSourceRatio = 4;

SpinLock g_pool_lock;
PoolEntry g_entries[kPoolCapacity];  // oldest first
size_t g_count;
size_t g_dirty_bytes;  // bytes of unpurged entries
// Copy of g_count for the lock-free "anything to purge?" peek of pool_maintain.
std::atomic<size_t> g_count_hint{0};

// Under ASan a pooled mapping is poisoned in its first and last kPooledPoisonEdge bytes (all
// of it when it is smaller), where a stale header or a neighbour's overrun would touch it:
// poisoning all of it writes 1/8 of its size in shadow, page faults included, for every
// segment and large block that goes back to the pool (a 4 MiB segment: 512 KiB). An access
// deeper inside a freed large block or a pooled segment reads stale or zero memory without
// an ASan report. 32 KiB of memory is one page of shadow: a segment or a large block's mapping
// starts on a segment boundary, so its head edge's shadow is exactly one page, and a large
// block's tail edge shares a shadow page with its slack, poisoned already (64 KiB edges
// faulted in two to three more shadow pages per freed large block: 8% of split_coalesce's
// page faults).
constexpr size_t kPooledPoisonEdge = 32 * 1024;

// Makes the first `size` bytes of a pooled entry addressable for its new owner. A segment's
// shadow may hold anything (its free blocks were poisoned): all of it is cleared, the whole
// shadow pages dropped (unpoison_range). An entry with a clean interior (a large block's
// mapping: only its edges are poisoned) has just its edges cleared, in place: dropping the
// shadow pages would make the next poisoning of those edges fault them in again, which was a
// quarter of the page faults of a fuzzer churning large blocks.
void unpoison_taken(const PoolEntry& entry, size_t size) {
  if (!entry.clean_interior || entry.size <= 2 * kPooledPoisonEdge) {
    if (entry.clean_interior) {
      unpoison(entry.address, size);  // all of it was poisoned, and is small
    } else {
      unpoison_range(entry.address, size);
    }
    return;
  }
  char* const begin = static_cast<char*>(entry.address);
  unpoison(begin, size < kPooledPoisonEdge ? size : kPooledPoisonEdge);
  char* const tail_edge = begin + entry.size - kPooledPoisonEdge;
  if (begin + size > tail_edge) unpoison(tail_edge, static_cast<size_t>(begin + size - tail_edge));
}

// Poisons a mapping entering the pool (see kPooledPoisonEdge).
void poison_pooled(void* mapping, size_t size) {
  if (size <= 2 * kPooledPoisonEdge) {
    poison(mapping, size);
    return;
  }
  poison(mapping, kPooledPoisonEdge);
  poison(static_cast<char*>(mapping) + size - kPooledPoisonEdge, kPooledPoisonEdge);
}

// Takes the pool lock, except in planted bug 13 (the migration path without its lock).
void lock_for_migration() {
  if (!TM_PLANT_IF(13)) g_pool_lock.lock();
}
void unlock_for_migration() {
  if (!TM_PLANT_IF(13)) g_pool_lock.unlock();
}

// Purges entries pooled for at least the delay, and the oldest ones while the unpurged
// bytes exceed kMaxDirtyBytes (pool lock held). Entries are in pooling order, so the scan
// stops at the first young one.
void purge_expired(uint64_t now) {
  const uint64_t delay = static_cast<uint64_t>(option(OptionId::kPurgeDelayMs));
  for (size_t i = 0; i < g_count; ++i) {
    PoolEntry& entry = g_entries[i];
    if (now - entry.pooled_at_ms < delay && g_dirty_bytes <= kMaxDirtyBytes) break;
    if (!entry.purged) {
      os_purge(entry.address, entry.size);
      entry.purged = true;
      g_dirty_bytes -= entry.size;
    }
  }
}

// Removes entry `index`, keeping the pooling order (pool lock held).
PoolEntry remove_entry(size_t index) {
  const PoolEntry entry = g_entries[index];
  for (size_t i = index + 1; i < g_count; ++i) g_entries[i - 1] = g_entries[i];
  --g_count;
  if (!entry.purged) g_dirty_bytes -= entry.size;
  return entry;
}

// Unmaps a mapping that left the pool.
void unmap_entry(const PoolEntry& entry) {
  // Unmapping a purged range must not subtract its committed bytes twice.
  if (entry.purged) os_note_recommitted(entry.size);
  // A purged entry reads as zero (nothing writes a pooled mapping): recycling need not read
  // its pages again (at every input's end, pool_release_all gives back what inputs pooled).
  if (entry.purged) {
    os_unmap_zeroed(entry.address, entry.size);
  } else {
    os_unmap(entry.address, entry.size);
  }
}

// Adds an entry in pooling order (pool lock held; a new mapping goes last, a fragment by
// the age of its pages). Returns the oldest entry, evicted to make room when the pool is
// full, for the caller to unmap after unlocking (or an entry with a null address).
PoolEntry insert_entry(const PoolEntry& entry) {
  const size_t capacity = static_cast<size_t>(option(OptionId::kPoolSegments));
  if (capacity == 0) return entry;
  PoolEntry evicted{};
  if (g_count >= capacity || g_count >= kPoolCapacity) {
    // Full: the oldest leaves, which may be the entry itself.
    if (g_count > 0 && entry.pooled_at_ms < g_entries[0].pooled_at_ms) return entry;
    evicted = remove_entry(0);
  }
  size_t at = g_count;
  while (at > 0 && g_entries[at - 1].pooled_at_ms > entry.pooled_at_ms) {
    g_entries[at] = g_entries[at - 1];
    --at;
  }
  g_entries[at] = entry;
  ++g_count;
  if (!entry.purged) g_dirty_bytes += entry.size;
  return evicted;
}

// Index of the smallest aligned entry of at least `size` bytes, newest first among equal
// sizes; g_count when none (pool lock held).
size_t best_fit(size_t size, size_t alignment) {
  size_t best = g_count;
  for (size_t i = g_count; i-- > 0;) {
    const PoolEntry& entry = g_entries[i];
    if (entry.size < size || addr_of(entry.address) % alignment != 0) continue;
    if (best == g_count || entry.size < g_entries[best].size) best = i;
    if (entry.size == size) break;
  }
  return best;
}

// Takes the head of entry `index` for a block of `size` bytes (pool lock held): a
// segment-aligned rest of at least a segment stays in place (same age and purge state).
// What the block does not need of the head is left in `entry.size - size`.
PoolEntry take_head(size_t index, size_t size) {
  PoolEntry& found = g_entries[index];
  const size_t keep_from = align_up(size, kSegmentSize);
  if (found.size <= keep_from || found.size - keep_from < kSegmentSize) return remove_entry(index);
  // The head's end lies in the entry's interior: a clean interior's poison stays in the
  // head's first edge and in the rest's last one.
  const PoolEntry head{found.address, keep_from,       found.pooled_at_ms,
                       found.purged,  found.unmovable, found.clean_interior};
  found.address = static_cast<char*>(found.address) + keep_from;
  found.size -= keep_from;
  if (!found.purged) g_dirty_bytes -= keep_from;
  return head;
}

// Removes up to kMaxGather unpurged movable entries, largest first, whose bytes add up to
// at most `size` (the last one may be split: its rest stays pooled as a fragment) into
// `sources` (pool lock held). Returns how many.
size_t take_gather_sources(size_t size, PoolEntry* sources) {
  size_t taken = 0;
  size_t wanted = size;
  while (taken < kMaxGather && wanted > 0) {
    size_t largest = g_count;
    for (size_t i = 0; i < g_count; ++i) {
      const PoolEntry& entry = g_entries[i];
      if (entry.purged || entry.unmovable) continue;
      if (largest == g_count || entry.size > g_entries[largest].size) largest = i;
    }
    if (largest == g_count) break;
    PoolEntry& entry = g_entries[largest];
    if (entry.size > wanted) {
      sources[taken] = PoolEntry{entry.address, wanted, entry.pooled_at_ms, false, false, false};
      entry.address = static_cast<char*>(entry.address) + wanted;
      entry.size -= wanted;
      g_dirty_bytes -= wanted;
    } else {
      sources[taken] = remove_entry(largest);
    }
    wanted -= sources[taken++].size;
  }
  return taken;
}

// Whether the pool holds an entry gather could move (pool lock held).
bool has_gather_source() {
  for (size_t i = 0; i < g_count; ++i)
    if (!g_entries[i].purged && !g_entries[i].unmovable) return true;
  return false;
}

// Builds a `size`-byte mapping aligned to `alignment` from the pool's unpurged entries:
// a fresh mapping with their resident pages moved to its front. Nothing when the pool
// has no unpurged entry or the OS refuses the mapping; a refused mapping leaves the pool as
// it was (the sources are taken only once the mapping exists: taking them first split an
// entry into pieces and released and re-faulted their ASan shadow at every refused map,
// which under an injected map failure was most of the fuzzers' time on such inputs).
PooledSegment gather(size_t size, size_t alignment) {
  PooledSegment taken{nullptr, false, 0};
  lock_for_migration();
  const bool any_source = has_gather_source();
  unlock_for_migration();
  if (!any_source) return taken;
  const int saved_errno = errno;
  char* mapping = static_cast<char*>(os_map_aligned(size, alignment));
  if (mapping == nullptr) {
    errno = saved_errno;  // the caller maps fresh memory itself and reports its own failure
    return taken;
  }
  PoolEntry sources[kMaxGather];
  lock_for_migration();
  const size_t count = take_gather_sources(size, sources);
  g_count_hint.store(g_count, std::memory_order_relaxed);
  unlock_for_migration();
  size_t moved = 0;
  for (size_t i = 0; i < count; ++i) {
    PoolEntry& source = sources[i];
    // Moving pages saves the faults of the resident ones and costs a kernel call that splits
    // and joins mappings: a source mostly not resident (a block its owner barely touched)
    // is cheaper left where it is, and the new mapping faults those few pages in fresh.
    const bool sparse = os_resident_bytes(source.address, source.size, source.size / kSparseSourceRatio) <
                        source.size / kSparseSourceRatio;
    if (!sparse) {
      // Pooled memory is poisoned under ASan, and shadow does not move with the pages: the
      // source range stops being mapped, so its shadow is released (poisoned again below if
      // the move fails).
      unpoison_range(source.address, source.size);
      if (os_move_pages(source.address, source.size, mapping + moved)) {
        moved += source.size;
        continue;
      }
      poison_pooled(source.address, source.size);
    }
    // Sparse, or refused by the kernel: never a gather source again.
    source.unmovable = true;
    lock_for_migration();
    const PoolEntry evicted = insert_entry(source);
    g_count_hint.store(g_count, std::memory_order_relaxed);
    unlock_for_migration();
    if (evicted.address != nullptr) unmap_entry(evicted);
  }
  // Another thread took the sources between the peek and the take: the mapping is fresh
  // memory for the caller all the same.
  taken.address = mapping;
  taken.dirty_bytes = moved;  // the moved pages hold old data, the rest is fresh
  return taken;
}

}  // namespace

PooledSegment pool_take(size_t size, size_t alignment, PoolGrow grow) {
  PooledSegment taken{nullptr, false, 0};
  if (g_count_hint.load(std::memory_order_relaxed) == 0) return taken;  // a stale peek only misses reuse
  // Evicted entries, cut-off tails and gathered sources leave the pool before they are
  // unmapped or moved, outside the lock.
  const OsTransit transit;
  lock_for_migration();
  // Every entry starts on a segment boundary; a stricter alignment would make reuse depend
  // on where the kernel happened to place a mapping, so the outcome of a program (reused or
  // fresh memory, the OS calls) would too. Such rare requests map fresh memory (or gather).
  const size_t best = alignment <= kSegmentSize ? best_fit(size, alignment) : g_count;
  PoolEntry entry{};
  PoolEntry fragment{};
  PoolEntry evicted{};
  if (best < g_count) {
    entry = take_head(best, size);
    if (entry.size > size && grow == PoolGrow::kYes && !entry.purged) {
      // The unaligned rest of the head stays pooled as a gather source, as old as its pages.
      // A clean interior stays clean: the fragment's poison lies in the head's edges.
      fragment = PoolEntry{static_cast<char*>(entry.address) + size,
                           entry.size - size,
                           entry.pooled_at_ms,
                           false,
                           entry.unmovable,
                           entry.clean_interior};
      evicted = insert_entry(fragment);
    }
  }
  g_count_hint.store(g_count, std::memory_order_relaxed);
  unlock_for_migration();
  if (evicted.address != nullptr) unmap_entry(evicted);
  if (entry.address == nullptr) return grow == PoolGrow::kYes ? gather(size, alignment) : taken;
  unpoison_taken(entry, size);  // before the fragment is cut off: the edges are the head's
  if (fragment.address != nullptr) entry.size = size;
  if (entry.size > size) {
    // Only the head is needed; the rest goes back to the OS (the start stays aligned).
    unmap_entry(PoolEntry{static_cast<char*>(entry.address) + size, entry.size - size, 0, entry.purged, false, false});
  }
  taken.address = entry.address;
  taken.purged = entry.purged;
  taken.dirty_bytes = entry.purged ? 0 : size;
  // A purged mapping is written again by its new owner: count it as committed.
  if (taken.purged) os_note_recommitted(size);
  return taken;
}

void pool_os_bytes(OsBytes* out) {
  for (size_t i = 0; i < g_count; ++i) {
    out->mapped += g_entries[i].size;
    if (!g_entries[i].purged) out->committed += g_entries[i].size;
  }
}

void pool_map(HeapMap& map) {
  for (size_t i = 0; i < g_count; ++i)
    map.pooled(addr_of(g_entries[i].address), g_entries[i].size, g_entries[i].purged);
}

void pool_give(void* mapping, size_t size, PoolShadow shadow) {
  // Under ASan a pooled mapping is unaddressable: a use after free is reported.
  poison_pooled(mapping, size);
  const OsTransit transit;  // an evicted entry is unmapped after the lock
  const uint64_t now = os_monotonic_ms();
  lock_for_migration();
  // Full: the oldest entry leaves (it is the coldest).
  const PoolEntry evicted =
      insert_entry(PoolEntry{mapping, size, now, false, false, shadow == PoolShadow::kCleanInterior});
  purge_expired(now);
  g_count_hint.store(g_count, std::memory_order_relaxed);
  unlock_for_migration();
  if (evicted.address != nullptr) unmap_entry(evicted);
}

void pool_maintain() {
  if (g_count_hint.load(std::memory_order_relaxed) == 0) return;  // a stale peek only delays a purge
  lock_for_migration();
  purge_expired(os_monotonic_ms());
  unlock_for_migration();
}

void pool_release_all() {
  const OsTransit transit;  // each entry is unmapped after it left the pool
  for (;;) {
    lock_for_migration();
    if (g_count == 0) {
      unlock_for_migration();
      return;
    }
    const PoolEntry entry = remove_entry(g_count - 1);
    g_count_hint.store(g_count, std::memory_order_relaxed);
    unlock_for_migration();
    unmap_entry(entry);
  }
}

bool pool_reset_for_test() {
  pool_release_all();
  LockGuard guard(g_pool_lock);
  const bool balanced = g_count == 0 && g_dirty_bytes == 0;
  g_count = 0;
  g_dirty_bytes = 0;
  g_count_hint.store(0, std::memory_order_relaxed);
  return balanced;
}

TM_NO_COVERAGE PoolTotals pool_totals() {
  LockGuard guard(g_pool_lock);
  PoolTotals totals{g_count, 0, 0};
  for (size_t i = 0; i < g_count; ++i) {
    totals.purged += g_entries[i].purged ? 1 : 0;
    totals.bytes += g_entries[i].size;
  }
  return totals;
}

void pool_lock() { g_pool_lock.lock(); }
void pool_unlock() { g_pool_lock.unlock(); }

}  // namespace tmalloc
