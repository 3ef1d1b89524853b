// tm_stats and tm_check_heap: snapshots taken with every lock held (see fork.h for the order).
#include <cstring>

#include "check.h"
#include "fork.h"
#include "large.h"
#include "medium.h"
#include "os.h"
#include "platform.h"
#include "segment_pool.h"
#include "small.h"
#include "stats.h"
#include "thread_cache.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

// Live small blocks per class: handed out by runs, minus those sitting in thread caches
// and remote-free lists. Exact when no other thread is running; a snapshot otherwise.
void small_live_per_class(const SmallTotals& small, const CacheTotals& caches, size_t* live) {
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const size_t idle = caches.cached[c] + small.remote[c];
    live[c] = small.handed_out[c] > idle ? small.handed_out[c] - idle : 0;
  }
}

}  // namespace

}  // namespace tmalloc

using namespace tmalloc;

extern "C" {

TM_EXPORT void tm_stats(tm_stats_t* out) {
  if (out == nullptr) return;
  std::memset(out, 0, sizeof *out);
  SmallTotals small{};
  MediumTotals medium{};
  LargeTotals large{};
  CacheTotals caches{};
  const unsigned arenas = heap_lock_all();
  small_totals(&small);
  medium_totals(&medium, arenas);
  large_totals(&large);
  registry_lock();
  cache_totals(&caches);
  registry_unlock();
  heap_unlock_all(arenas);
  size_t class_live[kSmallClassCount];
  small_live_per_class(small, caches, class_live);
  size_t small_live = 0;
  size_t small_usable = 0;
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    out->class_live_blocks[c] = class_live[c];
    small_live += class_live[c];
    small_usable += class_live[c] * class_size(c);
  }
  out->requested_bytes = caches.requested > 0 ? static_cast<size_t>(caches.requested) : 0;
  out->small_live_blocks = small_live;
  out->medium_live_blocks = medium.live_blocks;
  out->large_live_blocks = large.live_blocks;
  out->live_blocks = small_live + medium.live_blocks + large.live_blocks;
  out->usable_bytes = small_usable + medium.usable_bytes + large.usable_bytes;
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
  const PoolTotals pool = pool_totals();
  out->pool_segments = pool.segments;
  out->pool_purged_segments = pool.purged;
}

TM_EXPORT void tm_stats_reset_peaks(void) {
  os_reset_peak();
  stats_reset_peak_requested();
}

TM_EXPORT int tm_check_heap_report(tm_check_report_t* report) {
  CheckResult result;
  size_t medium_requested = 0;
  size_t large_requested = 0;
  const unsigned arenas = heap_lock_all();
  if (small_check(&result, arenas) == 0 && medium_check(&result, arenas, &medium_requested) == 0 &&
      large_check(&result, &large_requested) == 0 && cache_check_current(&result) == 0) {
    registry_lock();
    CacheTotals caches{};
    cache_totals(&caches);
    registry_unlock();
    // The per-thread counters are exact only while no other thread with a cache can be
    // allocating (and not in a fork child that lost threads mid-operation); otherwise the
    // structural checks above still ran.
    if (caches.other_threads == 0 && !caches.inexact) {
      const size_t walked = small_requested_walk(arenas) + medium_requested + large_requested;
      if (static_cast<int64_t>(walked) != caches.requested) {
        result.fail(TM_CHECK_STATS, nullptr, "requested-bytes counter differs from the sum over live blocks");
      }
    }
  }
  heap_unlock_all(arenas);
  if (report != nullptr) {
    report->code = result.code;
    report->address = result.address;
    const char* text = result.code == 0 ? "heap is consistent" : result.message.c_str();
    const size_t length =
        std::strlen(text) < sizeof report->message - 1 ? std::strlen(text) : sizeof report->message - 1;
    std::memcpy(report->message, text, length);
    report->message[length] = '\0';
  }
  return result.code;
}

TM_EXPORT int tm_check_heap(void) { return tm_check_heap_report(nullptr); }

}  // extern "C"
