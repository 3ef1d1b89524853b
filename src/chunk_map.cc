// Address map storage and registration (see chunk_map.h).
#include "chunk_map.h"

#include <sys/mman.h>

#include "os.h"

namespace tmalloc {

std::atomic<std::atomic<SegmentBase*>*> g_chunk_map{nullptr};

bool chunk_map_ensure() {
  if (g_chunk_map.load(std::memory_order_acquire) != nullptr) return true;
  // Any thread may race here; the loser unmaps its copy. Nothing allocates, so this is
  // safe from inside any hook that calls malloc.
  const size_t bytes = kChunkMapEntries * sizeof(std::atomic<SegmentBase*>);
  void* fresh = os_map_metadata(bytes);
  if (fresh == nullptr) return false;
  std::atomic<SegmentBase*>* expected = nullptr;
  // release: another thread that loads the table pointer sees the mapping.
  if (!g_chunk_map.compare_exchange_strong(expected, static_cast<std::atomic<SegmentBase*>*>(fresh),
                                           std::memory_order_release, std::memory_order_acquire)) {
    ::munmap(fresh, bytes);
  }
  return true;
}

void chunk_map_set(const void* start, size_t size, SegmentBase* owner) {
  std::atomic<SegmentBase*>* map = g_chunk_map.load(std::memory_order_acquire);
  const uintptr_t first = reinterpret_cast<uintptr_t>(start) >> kSegmentShift;
  const uintptr_t last = (reinterpret_cast<uintptr_t>(start) + size - 1) >> kSegmentShift;
  for (uintptr_t chunk = first; chunk <= last && chunk < kChunkMapEntries; ++chunk) {
    // release: a thread that finds this owner sees its initialised header.
    map[chunk].store(owner, std::memory_order_release);
  }
}

}  // namespace tmalloc
