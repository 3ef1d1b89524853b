// Cross-tier counters (see stats.h): the requested-bytes counter lives in the threads'
// caches (thread_cache.cc), so adding to it is a thread-local store, never an atomic
// read-modify-write on a shared line.
#include "stats.h"

#include "thread_cache.h"

namespace tmalloc {

void stats_add_requested(size_t bytes) { requested_add(static_cast<int64_t>(bytes)); }
void stats_sub_requested(size_t bytes) { requested_add(-static_cast<int64_t>(bytes)); }
size_t stats_peak_requested() { return requested_peak(); }
void stats_reset_peak_requested() { requested_reset_peak(); }

}  // namespace tmalloc
