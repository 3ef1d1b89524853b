// Address map: one entry per 4 MiB chunk of the address space naming the segment (or large
// block) that owns it. Lookup of any pointer is O(1), and reading the entry of an address
// tinymalloc never mapped is safe (the table is zero-filled, never-touched pages read as 0).
#pragma once

#include <atomic>
#include <cstdint>

#include "config.h"
#include "platform.h"
#include "segment.h"

namespace tmalloc {

inline constexpr size_t kChunkMapEntries = size_t{1} << (kAddressBits - kSegmentShift);

// The table; nullptr until the first mapping registers (lazy, reentrancy-safe init).
extern TM_INTERNAL std::atomic<std::atomic<SegmentBase*>*> g_chunk_map;

// Owner of the chunk containing p, or nullptr.
inline SegmentBase* chunk_owner(const void* p) {
  const uintptr_t chunk = reinterpret_cast<uintptr_t>(p) >> kSegmentShift;
  // acquire: pairs with the release in chunk_map_ensure, the table's pages are mapped.
  std::atomic<SegmentBase*>* map = g_chunk_map.load(std::memory_order_acquire);
  if (map == nullptr || chunk >= kChunkMapEntries) return nullptr;
  // acquire: pairs with the release in chunk_map_set; the owner's header is initialised.
  return map[chunk].load(std::memory_order_acquire);
}

// The table as free's fast path sees it (fast_path.h): g_chunk_map while debug mode does not
// route the calls, nullptr while it does (and before the table exists). One null test then
// covers the table and the mode, and free(NULL) needs no test of its own (chunk 0 has no
// owner).
extern TM_INTERNAL std::atomic<std::atomic<SegmentBase*>*> g_free_map;

// Recomputes g_free_map from g_chunk_map and debug_mode(); called after either changes.
void free_map_refresh();

// Makes sure the table exists; false when it could not be mapped.
bool chunk_map_ensure();

// Points the entries of every chunk overlapping [start, start + size) at owner
// (nullptr to unregister).
void chunk_map_set(const void* start, size_t size, SegmentBase* owner);

}  // namespace tmalloc
