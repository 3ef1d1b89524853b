// Process-wide counters that span tiers: requested bytes in use and their peak.
#pragma once

#include <atomic>
#include <cstddef>

namespace tmalloc {

// Counts `bytes` more requested bytes in use and raises the peak.
void stats_add_requested(size_t bytes);
// Counts `bytes` fewer requested bytes in use.
void stats_sub_requested(size_t bytes);
// Current and peak requested bytes. The peak is sampled whenever a thread's counter has
// grown by 256 KiB since its last sample and at every tm_stats, so it can miss a
// short-lived excursion of less than that per thread.
size_t stats_requested();
size_t stats_peak_requested();
// Sets the peak to the current value.
void stats_reset_peak_requested();

}  // namespace tmalloc
