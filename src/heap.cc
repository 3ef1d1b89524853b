// Memory pools (tm_heap_*): each pool is a private arena in slots [kMaxArenas, kArenaSlots)
// of the arena tables, so its blocks live in segments of their own. Destroying or resetting
// a pool hands all of its segments (and its large blocks' mappings) back at once, without
// visiting blocks one by one. Pool blocks never enter thread caches: every pool operation
// takes the pool's own locks, and free() of a pool block goes straight back to the pool.
#include <errno.h>

#include <atomic>
#include <cstring>

#include "arena.h"
#include "chunk_map.h"
#include "config.h"
#include "error.h"
#include "heap.h"
#include "large.h"
#include "medium.h"
#include "platform.h"
#include "size_class.h"
#include "small.h"
#include "spinlock.h"
#include "stats.h"
#include "thread_cache.h"
#include "tinymalloc.h"

// The opaque handle: one entry of the pool table.
struct tm_heap_s {
  std::atomic<uint32_t> in_use{0};  // 1 while created (slot ownership, under g_heaps_lock)
  uint32_t slot = 0;                // arena slot: kMaxArenas + index
};

namespace tmalloc {

namespace {

// constinit: zero-initialised at load time (an uninitialised member made g++ zero the table
// in a global constructor).
constinit SpinLock g_heaps_lock;
constinit tm_heap_s g_heaps[kMaxHeaps]{};

// Validates a handle: it must be an entry of the table that is in use.
tm_heap_s* checked_heap(tm_heap_t* heap, const char* what) {
  const uintptr_t first = addr_of(&g_heaps[0]);
  const uintptr_t at = addr_of(heap);
  if (at < first || at >= first + sizeof g_heaps || (at - first) % sizeof(tm_heap_s) != 0 ||
      heap->in_use.load(std::memory_order_acquire) == 0) {
    report_misuse(what, heap, "not a memory pool created by tm_heap_create (or destroyed)");
  }
  return heap;
}

// The large-tier tag of a pool (slot + 1, never 0).
uint32_t large_tag(const tm_heap_s* heap) { return heap->slot + 1; }

// Arena slot that owns p, or kArenaSlots for a large block (whose pool tag is in *tag).
unsigned owner_slot(const void* p, uint32_t* tag, const char* what) {
  const SegmentBase* owner = chunk_owner(p);
  if (owner == nullptr) report_misuse(what, p, "pointer not owned by tinymalloc");
  switch (owner->kind) {
    case SegmentKind::kSmall:
      return static_cast<const SmallSegment*>(owner)->arena;
    case SegmentKind::kMedium:
      return static_cast<const MediumSegment*>(owner)->arena;
    case SegmentKind::kLarge:
      *tag = static_cast<const LargeHeader*>(owner)->pool;
      return kArenaSlots;
    case SegmentKind::kGuarded:
      report_misuse(what, p, "a sampled block of the main heap (sample_rate), not a pool's block");
  }
  report_misuse("heap corruption", p, "address map names a segment of unknown kind");
}

// Reports p unless it is a block of `heap`.
void check_belongs(tm_heap_s* heap, const void* p, const char* what) {
  uint32_t tag = 0;
  const unsigned slot = owner_slot(p, &tag, what);
  const bool ours = slot == kArenaSlots ? tag == large_tag(heap) : slot == heap->slot;
  if (!ours) report_misuse(what, p, "block does not belong to this memory pool");
}

// Allocates from the pool's arena slot.
void* heap_allocate(tm_heap_s* heap, size_t size, bool zero) {
  if (size > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  if (size <= kSmallMax) return small_alloc(heap->slot, size_to_class(size), size, zero);
  if (size <= kMediumMax) return medium_alloc_in(heap->slot, size, kBlockHeaderSize, zero);
  return large_alloc(size, kBlockHeaderSize, zero, large_tag(heap));
}

// Releases everything the pool holds (its statistics included).
void heap_release_all(tm_heap_s* heap) {
  const size_t requested = small_reset_arena(heap->slot) + medium_reset_arena(heap->slot);
  stats_sub_requested(requested);
  large_release_pool(large_tag(heap));
}

}  // namespace

bool heaps_none_live() {
  LockGuard guard(g_heaps_lock);
  for (const tm_heap_s& heap : g_heaps) {
    if (heap.in_use.load(std::memory_order_relaxed) != 0) return false;
  }
  return true;
}

void heaps_reset_for_test() {
  g_heaps_lock.reset();
  for (tm_heap_s& heap : g_heaps) heap.slot = 0;
}

}  // namespace tmalloc

using namespace tmalloc;

extern "C" {

TM_EXPORT tm_heap_t* tm_heap_create(void) {
  runtime_ensure();
  LockGuard guard(g_heaps_lock);
  for (tm_heap_s& heap : g_heaps) {
    if (heap.in_use.load(std::memory_order_relaxed) != 0) continue;
    heap.slot = kMaxArenas + static_cast<uint32_t>(&heap - g_heaps);
    arena_note_used(heap.slot);
    // release: a thread that validates the handle (acquire) sees the slot.
    heap.in_use.store(1, std::memory_order_release);
    return &heap;
  }
  errno = ENOMEM;
  return nullptr;
}

TM_EXPORT void* tm_heap_malloc(tm_heap_t* heap, size_t size) {
  return heap_allocate(checked_heap(heap, "invalid heap"), size, false);
}

TM_EXPORT void* tm_heap_calloc(tm_heap_t* heap, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return heap_allocate(checked_heap(heap, "invalid heap"), total, true);
}

TM_EXPORT void tm_heap_free(tm_heap_t* heap, void* ptr) {
  tm_heap_s* checked = checked_heap(heap, "invalid heap");
  if (ptr == nullptr) return;
  check_belongs(checked, ptr, "invalid free");
  tm_free(ptr);  // pool blocks never enter a thread cache (see thread_cache.h)
}

TM_EXPORT void* tm_heap_realloc(tm_heap_t* heap, void* ptr, size_t size) {
  tm_heap_s* checked = checked_heap(heap, "invalid heap");
  if (ptr == nullptr) return heap_allocate(checked, size, false);
  check_belongs(checked, ptr, "invalid realloc");
  if (size == 0) {
    tm_free(ptr);
    return nullptr;
  }
  // In place when the tier allows it (the block stays in the pool's segments).
  SegmentBase* owner = chunk_owner(ptr);
  switch (owner->kind) {
    case SegmentKind::kSmall:
      if (size <= kSmallMax && small_resize_in_place(static_cast<SmallSegment*>(owner), ptr, size)) return ptr;
      break;
    case SegmentKind::kMedium:
      if (size > kSmallMax && size <= kMediumMax &&
          medium_resize_in_place(static_cast<MediumSegment*>(owner), ptr, size)) {
        return ptr;
      }
      break;
    case SegmentKind::kLarge:
      if (size > kMediumMax) return large_resize(static_cast<LargeHeader*>(owner), ptr, size);
      break;
    case SegmentKind::kGuarded:
      break;  // never a pool's block (check_belongs reported it)
  }
  const size_t old_usable = tm_usable_size(ptr);
  void* fresh = heap_allocate(checked, size, false);
  if (fresh == nullptr) return nullptr;
  std::memcpy(fresh, ptr, old_usable < size ? old_usable : size);
  tm_free(ptr);
  return fresh;
}

TM_EXPORT void tm_heap_reset(tm_heap_t* heap) { heap_release_all(checked_heap(heap, "invalid heap")); }

TM_EXPORT void tm_heap_destroy(tm_heap_t* heap) {
  tm_heap_s* checked = checked_heap(heap, "invalid heap");
  heap_release_all(checked);
  LockGuard guard(g_heaps_lock);
  checked->in_use.store(0, std::memory_order_relaxed);
}

TM_EXPORT void tm_heap_stats(tm_heap_t* heap, tm_heap_stats_t* out) {
  tm_heap_s* checked = checked_heap(heap, "invalid heap");
  if (out == nullptr) return;
  SmallArenaTotals small{};
  small_arena_totals(checked->slot, &small);
  MediumTotals medium{};
  medium_arena_totals(checked->slot, &medium);
  size_t large_blocks = 0;
  size_t large_usable = 0;
  size_t large_mapped = 0;
  large_pool_totals(large_tag(checked), &large_blocks, &large_usable, &large_mapped);
  std::memset(out, 0, sizeof *out);
  out->live_blocks = small.live_blocks + medium.live_blocks + large_blocks;
  out->usable_bytes = small.usable_bytes + medium.usable_bytes + large_usable;
  out->segments = small.segments + medium.segments;
  out->mapped_bytes = out->segments * kSegmentSize + large_mapped;
  out->large_blocks = large_blocks;
}

}  // extern "C"
