// tm_stats and tm_check_heap: consistent snapshots taken with every tier's locks held.
#include <cstring>

#include "check.h"
#include "large.h"
#include "medium.h"
#include "os.h"
#include "platform.h"
#include "small.h"
#include "stats.h"
#include "tinymalloc.h"

namespace tmalloc {

size_t small_requested_walk();

namespace {

// Takes every allocator lock in the global order: small classes, small segments,
// medium, large.
void lock_everything() {
  small_lock_all();
  medium_lock();
  large_lock();
}

// Releases what lock_everything took.
void unlock_everything() {
  large_unlock();
  medium_unlock();
  small_unlock_all();
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
  lock_everything();
  small_totals(&small);
  medium_totals(&medium);
  large_totals(&large);
  out->requested_bytes = stats_requested();
  unlock_everything();
  out->small_live_blocks = small.live_blocks;
  out->medium_live_blocks = medium.live_blocks;
  out->large_live_blocks = large.live_blocks;
  out->live_blocks = small.live_blocks + medium.live_blocks + large.live_blocks;
  out->usable_bytes = small.usable_bytes + medium.usable_bytes + large.usable_bytes;
  for (size_t c = 0; c < kSmallClassCount; ++c) out->class_live_blocks[c] = small.class_live[c];
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
  out->os_map_calls = os_map_calls();
  out->os_unmap_calls = os_unmap_calls();
  out->os_purge_calls = os_purge_calls();
}

TM_EXPORT void tm_stats_reset_peaks(void) {
  os_reset_peak();
  stats_reset_peak_requested();
}

TM_EXPORT int tm_check_heap_report(tm_check_report_t* report) {
  CheckResult result;
  size_t medium_requested = 0;
  size_t large_requested = 0;
  lock_everything();
  if (small_check(&result) == 0 && medium_check(&result, &medium_requested) == 0 &&
      large_check(&result, &large_requested) == 0) {
    const size_t walked = small_requested_walk() + medium_requested + large_requested;
    if (walked != stats_requested()) {
      result.fail(TM_CHECK_STATS, nullptr, "requested-bytes counter differs from the sum over live blocks");
    }
  }
  unlock_everything();
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
