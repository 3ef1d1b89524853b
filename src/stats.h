// Process-wide counters that span tiers: requested bytes in use and their peak.
#pragma once

#include <atomic>
#include <cstddef>

#include "config.h"
#include "platform.h"

namespace tmalloc {

// The `track_requested` option, latched when the runtime initialises (runtime_ensure):
// small blocks of the regular arenas record their requested bytes only when it is set, so
// the default fast path does no per-block bookkeeping. Relaxed: written once before the
// runtime's ready state is published with release, read after an acquire of it.
extern TM_INTERNAL std::atomic<bool> g_track_requested;

// True when small blocks record their requested bytes in the requested-bytes counters (their
// slack is kept exact then too). Otherwise the counters hold the medium and large tiers
// only, and tm_stats counts small blocks at their usable size.
TM_ALWAYS_INLINE bool small_tracks_requested() { return g_track_requested.load(std::memory_order_relaxed); }

// Counts `bytes` more requested bytes in use and raises the peak.
void stats_add_requested(size_t bytes);
// Counts `bytes` fewer requested bytes in use.
void stats_sub_requested(size_t bytes);
// Peak requested bytes (the current figure: requested_total in thread_cache.h). The peak is
// sampled whenever a thread's counter has grown by 256 KiB since its last sample and at every
// tm_stats, so it can miss a short-lived excursion of less than that per thread.
size_t stats_peak_requested();
// Sets the peak to the current value.
void stats_reset_peak_requested();

}  // namespace tmalloc
