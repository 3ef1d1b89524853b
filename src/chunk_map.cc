// Address map storage and registration (see chunk_map.h).
#include "chunk_map.h"

#include <sys/mman.h>

#include "debug.h"
#include "os.h"

namespace tmalloc {

std::atomic<std::atomic<SegmentBase*>*> g_chunk_map{nullptr};
std::atomic<std::atomic<SegmentBase*>*> g_free_map{nullptr};

namespace {

// What g_free_map should be now (see free_map_refresh for the orders).
std::atomic<SegmentBase*>* wanted_free_map() {
  return g_debug_mode.load(std::memory_order_seq_cst) ? nullptr : g_chunk_map.load(std::memory_order_seq_cst);
}

}  // namespace

void free_map_refresh() {
  // A table creation and a mode change may race; whichever refresh stores last must store
  // what both inputs say by then. Each caller changed its input before calling, and checks
  // again after its store: seq_cst on all of these accesses (and on the mode's store) puts
  // them in one order, so a refresh that stored a stale value sees the newer input and
  // stores again. Only runs when the table is created or the mode changes.
  for (;;) {
    std::atomic<SegmentBase*>* wanted = wanted_free_map();
    g_free_map.store(wanted, std::memory_order_seq_cst);
    if (wanted == wanted_free_map()) return;
  }
}

bool chunk_map_ensure() {
  if (g_chunk_map.load(std::memory_order_acquire) != nullptr) return true;
  // Any thread may race here; the loser unmaps its copy. Nothing allocates, so this is
  // safe from inside any hook that calls malloc.
  const size_t bytes = kChunkMapEntries * sizeof(std::atomic<SegmentBase*>);
  void* fresh = os_map_metadata(bytes);
  if (fresh == nullptr) return false;
  std::atomic<SegmentBase*>* expected = nullptr;
  // release (seq_cst, for free_map_refresh): another thread that loads the table pointer sees
  // the mapping.
  if (!g_chunk_map.compare_exchange_strong(expected, static_cast<std::atomic<SegmentBase*>*>(fresh),
                                           std::memory_order_seq_cst, std::memory_order_acquire)) {
    ::munmap(fresh, bytes);
  }
  free_map_refresh();
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
