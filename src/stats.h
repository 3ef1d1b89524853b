// Process-wide counters that span tiers: requested bytes in use and their peak.
#pragma once

#include <atomic>
#include <cstddef>

namespace tmalloc {

// Counts `bytes` more requested bytes in use and raises the peak.
void stats_add_requested(size_t bytes);
// Counts `bytes` fewer requested bytes in use.
void stats_sub_requested(size_t bytes);
// Current and peak requested bytes.
size_t stats_requested();
size_t stats_peak_requested();
// Sets the peak to the current value.
void stats_reset_peak_requested();

}  // namespace tmalloc
