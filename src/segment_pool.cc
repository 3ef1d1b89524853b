// Global segment pool with delayed purging (see segment_pool.h).
#include "segment_pool.h"

#include <atomic>

#include "config.h"
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
};

SpinLock g_pool_lock;
PoolEntry g_entries[kPoolCapacity];  // oldest first
size_t g_count;
size_t g_dirty_bytes;  // bytes of unpurged entries
// Copy of g_count for the lock-free "anything to purge?" peek of pool_maintain.
std::atomic<size_t> g_count_hint{0};

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
  // ASan shadow outlives munmap: a later mapping at this address must start clean.
  unpoison(entry.address, entry.size);
  // Unmapping a purged range must not subtract its committed bytes twice.
  if (entry.purged) os_note_recommitted(entry.size);
  os_unmap(entry.address, entry.size);
}

}  // namespace

PooledSegment pool_take(size_t size, size_t alignment) {
  PooledSegment taken{nullptr, false};
  if (g_count_hint.load(std::memory_order_relaxed) == 0) return taken;  // a stale peek only misses reuse
  lock_for_migration();
  size_t best = g_count;
  for (size_t i = g_count; i-- > 0;) {  // newest first: equal sizes prefer the hot one
    const PoolEntry& entry = g_entries[i];
    if (entry.size < size || addr_of(entry.address) % alignment != 0) continue;
    if (best == g_count || entry.size < g_entries[best].size) best = i;
    if (entry.size == size) break;
  }
  PoolEntry entry{};
  if (best < g_count) entry = remove_entry(best);
  g_count_hint.store(g_count, std::memory_order_relaxed);
  unlock_for_migration();
  if (entry.address == nullptr) return taken;
  unpoison(entry.address, size);
  if (entry.size > size) {
    // Only the head is needed; the tail goes back to the OS (the start stays aligned).
    PoolEntry tail{static_cast<char*>(entry.address) + size, entry.size - size, 0, entry.purged};
    unmap_entry(tail);
  }
  taken.address = entry.address;
  taken.purged = entry.purged;
  // A purged mapping is written again by its new owner: count it as committed.
  if (taken.purged) os_note_recommitted(size);
  return taken;
}

void pool_give(void* mapping, size_t size) {
  // Under ASan a pooled mapping is unaddressable: a use after free is reported.
  poison(mapping, size);
  const uint64_t now = os_monotonic_ms();
  const size_t capacity = static_cast<size_t>(option(OptionId::kPoolSegments));
  PoolEntry evicted{};
  lock_for_migration();
  if (capacity == 0) {
    evicted = PoolEntry{mapping, size, now, false};
  } else {
    // Full: the oldest entry leaves (it is the coldest).
    if (g_count >= capacity || g_count >= kPoolCapacity) evicted = remove_entry(0);
    g_entries[g_count++] = PoolEntry{mapping, size, now, false};
    g_dirty_bytes += size;
  }
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

PoolTotals pool_totals() {
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
void pool_reset_lock_in_child() { g_pool_lock.reset(); }

}  // namespace tmalloc
