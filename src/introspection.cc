// tm_stats, tm_class_stats, tm_arena_stats and tm_check_heap: snapshots taken with every
// lock held (see fork.h for the order).
#include <cstring>

#include "arena.h"
#include "check.h"
#include "chunk_map.h"
#include "config.h"
#include "debug.h"
#include "fork.h"
#include "guarded.h"
#include "introspection.h"
#include "large.h"
#include "medium.h"
#include "medium_cache.h"
#include "os.h"
#include "platform.h"
#include "sanitizer.h"
#include "segment_pool.h"
#include "small.h"
#include "small_stats.h"
#include "stats.h"
#include "thread_cache.h"
#include "tinymalloc.h"

namespace tmalloc {

static_assert(TM_ARENA_SLOTS == kArenaSlots, "tinymalloc.h and config.h disagree on the arena slots");
static_assert(TM_SMALL_CLASS_COUNT == kSmallClassCount, "tinymalloc.h and size_class.h disagree on the classes");

namespace {

// Live small blocks per class: handed out by runs, minus those sitting in thread caches
// and remote-free lists. Exact when no other thread is running; a snapshot otherwise.
TM_NO_COVERAGE void small_live_per_class(const SmallTotals& small, const CacheTotals& caches, size_t* live) {
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const size_t idle = caches.cached[c] + small.remote[c];
    live[c] = small.handed_out[c] > idle ? small.handed_out[c] - idle : 0;
  }
}

// Blocks of the calling thread's cache per owning arena (blocks, usable bytes). Only the
// calling thread changes its own bins, so walking them is race-free; other threads' bins
// are not walked (their owners push and pop without a lock).
TM_NO_COVERAGE void own_cache_per_arena(size_t* blocks, size_t* bytes) {
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const CacheBin& bin = t_cache.bins[c];
    size_t walked = 0;
    const size_t count = bin.count.load(std::memory_order_relaxed);
    for (const void* block = bin.head; block != nullptr && walked < count; block = free_block_next(block)) {
      ++walked;
      const unsigned arena = reinterpret_cast<const SmallSegment*>(addr_of(block) & ~(kSegmentSize - 1))->arena;
      if (arena >= kMaxArenas) continue;  // pool blocks never enter a cache
      ++blocks[arena];
      bytes[arena] += class_size(c);
    }
  }
}

// One arena slot's row (its locks held); `own_blocks` / `own_bytes` (`own_medium_*`): the
// calling thread's cached small (medium) blocks of this arena.
TM_NO_COVERAGE void arena_row(unsigned arena, size_t own_blocks, size_t own_bytes, size_t own_medium_blocks,
                              size_t own_medium_bytes, tm_arena_stats_t* row) {
  SmallArenaSnapshot small;
  small_arena_snapshot(arena, &small);
  MediumTotals medium{};
  size_t medium_committed = 0;
  medium_arena_snapshot(arena, &medium, &medium_committed);
  std::memset(row, 0, sizeof *row);
  row->index = arena;
  size_t out_blocks = 0;  // out of runs and not in a remote-free list
  size_t out_bytes = 0;
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const size_t out = small.handed_out[c] > small.remote[c] ? small.handed_out[c] - small.remote[c] : 0;
    out_blocks += out;
    out_bytes += out * class_size(c);
    row->small_remote_blocks += small.remote[c];
  }
  row->small_live_blocks = out_blocks > own_blocks ? out_blocks - own_blocks : 0;
  row->small_usable_bytes = out_bytes > own_bytes ? out_bytes - own_bytes : 0;
  row->small_segments = small.segments;
  row->medium_segments = medium.segments;
  row->mapped_bytes = (small.segments + medium.segments) * kSegmentSize;
  row->committed_bytes = small.committed_bytes + medium_committed;
  // The calling thread's cached medium blocks are neither live nor free (other threads'
  // caches are not walked, as for small blocks).
  row->medium_live_blocks = medium.live_blocks > own_medium_blocks ? medium.live_blocks - own_medium_blocks : 0;
  row->medium_usable_bytes = medium.usable_bytes > own_medium_bytes ? medium.usable_bytes - own_medium_bytes : 0;
  row->medium_free_blocks = medium.free_blocks;
  row->medium_free_bytes = medium.free_bytes;
}

// Per-class figures over arenas [0, arenas) (their small locks held); `live` and `cached`
// come from the totals.
TM_NO_COVERAGE void class_rows(unsigned arenas, const size_t* live, const CacheTotals& caches, tm_class_stats_t* rows) {
  std::memset(rows, 0, sizeof(tm_class_stats_t) * kSmallClassCount);
  SmallArenaSnapshot small;
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    small_arena_snapshot(a, &small);
    for (size_t c = 0; c < kSmallClassCount; ++c) {
      rows[c].peak_blocks += small.peak[c];
      rows[c].remote_blocks += small.remote[c];
      rows[c].runs += small.runs[c];
    }
  }
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    rows[c].size = class_size(c);
    rows[c].live_blocks = live[c];
    rows[c].cached_blocks = caches.cached[c];
    rows[c].usable_bytes = live[c] * class_size(c);
    rows[c].run_bytes = rows[c].runs * kRunSize;
  }
}

// The class rows' live blocks again once sampled blocks are counted in `live` (tm_stats'
// class_live_blocks): the rows say the same. A sampled block never came out of a run, so
// the runs' peak may lag; the peak is never below the live count all the same.
void class_rows_add_sampled(const size_t* live, tm_class_stats_t* rows) {
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    rows[c].live_blocks = live[c];
    rows[c].usable_bytes = live[c] * class_size(c);
    if (rows[c].peak_blocks < live[c]) rows[c].peak_blocks = live[c];
  }
}

}  // namespace

// Every lock taken once, in the global order; see introspection.h.
TM_NO_COVERAGE size_t stats_snapshot(tm_stats_t* out, tm_class_stats_t* classes, tm_arena_stats_t* arena_rows,
                                     size_t max_arenas) {
  std::memset(out, 0, sizeof *out);
  SmallTotals small{};
  MediumTotals medium{};
  LargeTotals large{};
  CacheTotals caches{};
  size_t own_blocks[kMaxArenas] = {};
  size_t own_bytes[kMaxArenas] = {};
  size_t own_medium_blocks[kMaxArenas] = {};
  size_t own_medium_bytes[kMaxArenas] = {};
  if (arena_rows != nullptr && max_arenas > 0) {
    own_cache_per_arena(own_blocks, own_bytes);
    medium_cache_own_per_arena(own_medium_blocks, own_medium_bytes);
  }
  const unsigned arenas = heap_lock_all();
  small_totals(&small);
  medium_totals(&medium, arenas);
  large_totals(&large);
  registry_lock();
  cache_totals(&caches);
  registry_unlock();
  size_t class_live[kSmallClassCount];
  small_live_per_class(small, caches, class_live);
  if (classes != nullptr) class_rows(arenas, class_live, caches, classes);
  for (unsigned a = 0; arena_rows != nullptr && a < arenas && a < max_arenas; ++a) {
    const bool regular = a < kMaxArenas;
    arena_row(a, regular ? own_blocks[a] : 0, regular ? own_bytes[a] : 0, regular ? own_medium_blocks[a] : 0,
              regular ? own_medium_bytes[a] : 0, &arena_rows[a]);
  }
  heap_unlock_all(arenas);
  // Sampled blocks count in the tier of their size.
  GuardedTotals guarded;
  guarded_totals(class_live, &guarded);
  if (classes != nullptr) class_rows_add_sampled(class_live, classes);
  size_t small_live = 0;
  size_t small_usable = 0;
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    out->class_live_blocks[c] = class_live[c];
    small_live += class_live[c];
    small_usable += class_live[c] * class_size(c);
  }
  out->requested_bytes = caches.requested > 0 ? static_cast<size_t>(caches.requested) : 0;
  // Without track_requested the counters hold the medium and large tiers only: small
  // blocks count at their usable size.
  if (!small_tracks_requested()) out->requested_bytes += small_usable;
  out->small_live_blocks = small_live;
  // Cached medium blocks still read "used" in their headers (the arenas count them) but are
  // neither live nor free.
  const size_t medium_live =
      (medium.live_blocks > caches.medium_cached ? medium.live_blocks - caches.medium_cached : 0) + guarded.medium_live;
  const size_t medium_usable =
      (medium.usable_bytes > caches.medium_cached_bytes ? medium.usable_bytes - caches.medium_cached_bytes : 0) +
      (guarded.usable_bytes - guarded.small_usable_bytes);
  out->medium_live_blocks = medium_live;
  out->large_live_blocks = large.live_blocks;
  out->live_blocks = small_live + medium_live + large.live_blocks;
  out->usable_bytes = small_usable + medium_usable + large.usable_bytes;
  out->medium_free_blocks = medium.free_blocks;
  out->medium_free_bytes = medium.free_bytes;
  out->medium_largest_free = medium.largest_free;
  out->small_segments = small.segments;
  out->medium_segments = medium.segments;
  out->large_mappings = large.live_blocks;
  out->mapped_bytes = os_mapped_bytes();
  out->committed_bytes = os_committed_bytes();
  out->peak_mapped_bytes = os_peak_mapped_bytes();
  out->peak_requested_bytes = stats_peak_requested();
  if (out->peak_requested_bytes < out->requested_bytes) out->peak_requested_bytes = out->requested_bytes;
  out->os_map_calls = os_map_calls();
  out->os_unmap_calls = os_unmap_calls();
  out->os_purge_calls = os_purge_calls();
  out->arenas_used = arenas;
  out->thread_caches = caches.caches;
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    out->cached_blocks += caches.cached[c];
    out->remote_blocks += small.remote[c];
  }
  out->cached_blocks += caches.medium_cached;
  out->medium_cached_blocks = caches.medium_cached;
  out->medium_cached_bytes = caches.medium_cached_bytes;
  const PoolTotals pool = pool_totals();
  out->pool_segments = pool.segments;
  out->pool_purged_segments = pool.purged;
  return arenas;
}

}  // namespace tmalloc

using namespace tmalloc;

extern "C" {

// The totals (see tinymalloc.h).
TM_EXPORT void tm_stats(tm_stats_t* out) {
  if (out == nullptr) return;
  stats_snapshot(out, nullptr, nullptr, 0);
}

// The per-class rows from one snapshot (see tinymalloc.h).
TM_EXPORT size_t tm_class_stats(tm_class_stats_t* out, size_t max) {
  tm_stats_t totals;
  tm_class_stats_t classes[kSmallClassCount];
  stats_snapshot(&totals, classes, nullptr, 0);
  for (size_t c = 0; out != nullptr && c < kSmallClassCount && c < max; ++c) out[c] = classes[c];
  return kSmallClassCount;
}

// The per-arena rows from one snapshot (see tinymalloc.h).
TM_EXPORT size_t tm_arena_stats(tm_arena_stats_t* out, size_t max) {
  tm_stats_t totals;
  return stats_snapshot(&totals, nullptr, out, out != nullptr ? max : 0);
}

// Re-arms every high-water mark at its current value.
TM_EXPORT void tm_stats_reset_peaks(void) {
  os_reset_peak();
  stats_reset_peak_requested();
  // Each class lock is taken on its own: a snapshot in between sees some classes reset.
  small_reset_peaks(arenas_used());
}

}  // extern "C"

namespace {

// Copies a check's outcome into the caller's report (when not NULL).
void write_report(const CheckResult& result, tm_check_report_t* report) {
  if (report == nullptr) return;
  report->code = result.code;
  report->address = result.address;
  const char* text = result.code == 0 ? "heap is consistent" : result.message.c_str();
  const size_t length = std::strlen(text) < sizeof report->message - 1 ? std::strlen(text) : sizeof report->message - 1;
  std::memcpy(report->message, text, length);
  report->message[length] = '\0';
}

}  // namespace

extern "C" {

TM_EXPORT int tm_check_heap_around(const void* ptr, tm_check_report_t* report) {
  CheckResult result;
  SegmentBase* owner = chunk_owner(ptr);
  if (owner != nullptr) {
    if (owner->magic != kSegmentMagic) {
      result.fail(TM_CHECK_SEGMENT, owner, "address map entry names memory without a segment header");
    } else if (owner->kind == SegmentKind::kSmall) {
      size_t class_index = kSmallClassCount;
      if (small_check_around(&result, static_cast<SmallSegment*>(owner), ptr, &class_index) == 0 &&
          class_index < kSmallClassCount) {
        cache_check_current_class(&result, class_index);
      }
    } else if (owner->kind == SegmentKind::kMedium) {
      medium_check_around(&result, static_cast<MediumSegment*>(owner), ptr);
    } else if (owner->kind == SegmentKind::kLarge) {
      large_check_around(&result, static_cast<LargeHeader*>(owner), ptr);
    } else if (owner->kind == SegmentKind::kGuarded) {
      // A sampled block's slot: its pages guard it; there are no tags to check.
    } else {
      result.fail(TM_CHECK_SEGMENT, owner, "address map entry names a segment of unknown kind");
    }
  }
  write_report(result, report);
  return result.code;
}

TM_EXPORT int tm_check_heap_report(tm_check_report_t* report) {
  CheckResult result;
  size_t medium_requested = 0;
  size_t large_requested = 0;
  // Before anything is walked: a transit under way now or begun later (os.h) leaves the
  // counters and the walk apart for a while, and is seen by the second stamp below.
  const uint64_t transit_before = os_transit_stamp();
  // Debug blocks first: their locks come before the core's (debug.cc never holds one while it
  // calls the core).
  debug_check_blocks(&result);
  // Read before the heap locks: the sampled-block lock is taken first or alone (fork.cc). The
  // sum is compared only when no other thread has a cache, so nothing changes it meanwhile.
  const size_t sampled_requested = guarded_requested();
  OsBytes walked_os;
  guarded_os_bytes(&walked_os);
  const unsigned arenas = heap_lock_all();
  // The pool lock: its mappings are counted with the segments (the global order, fork.cc).
  pool_lock();
  // The registry lock too, for the whole walk: no thread sets up or gives up a cache while the
  // blocks are counted, so "no other thread has a cache" below holds for the whole walk.
  registry_lock();
  if (result.code == 0 && small_check(&result, arenas) == 0 && medium_check(&result, arenas, &medium_requested) == 0 &&
      large_check(&result, &large_requested) == 0 && cache_check_current(&result) == 0) {
    CacheTotals caches{};
    cache_totals(&caches);
    // The per-thread counters are exact only while no other thread with a cache can be
    // allocating (and not in a fork child that lost threads mid-operation); otherwise the
    // structural checks above still ran. A thread without a cache may still be moving a large
    // block, a pooled mapping or a sampled block (a transit, os.h): the same then.
    if (caches.other_threads == 0 && !caches.inexact) {
      const size_t walked = small_requested_walk(arenas) + medium_requested + large_requested + sampled_requested;
      // Address-space accounting: what the OS counters say is mapped and committed must be
      // exactly the segments, large blocks' mappings, pooled mappings and sampled-block region
      // the walk found.
      small_os_bytes(arenas, &walked_os);
      medium_os_bytes(arenas, &walked_os);
      large_os_bytes(&walked_os);
      pool_os_bytes(&walked_os);
      const size_t mapped = os_mapped_bytes();
      const size_t committed = os_committed_bytes();
      // After the counters (their acquire reads carry any transit that changed them). When a
      // transit overlapped the walk there is nothing exact to compare.
      if (os_transit_quiet(transit_before, os_transit_stamp())) {
        if (static_cast<int64_t>(walked) != caches.requested) {
          result.fail(TM_CHECK_STATS, nullptr, "requested-bytes counter differs from the sum over live blocks");
        } else if (mapped != walked_os.mapped) {
          TextBuffer what;
          what.str("mapped-bytes counter (").dec(mapped).str(") differs from the mappings walked (");
          result.fail(TM_CHECK_STATS, nullptr, what.dec(walked_os.mapped).str(")").c_str());
        } else if (committed != walked_os.committed) {
          TextBuffer what;
          what.str("committed-bytes counter (").dec(committed).str(") differs from the mappings walked (");
          result.fail(TM_CHECK_STATS, nullptr, what.dec(walked_os.committed).str(")").c_str());
        }
      }
    }
  }
  registry_unlock();
  pool_unlock();
  heap_unlock_all(arenas);
  write_report(result, report);
  return result.code;
}

TM_EXPORT int tm_check_heap(void) { return tm_check_heap_report(nullptr); }

}  // extern "C"
