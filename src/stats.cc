// Cross-tier counters (see stats.h). Statistics only: relaxed atomics.
#include "stats.h"

namespace tmalloc {

namespace {
std::atomic<size_t> g_requested{0};
std::atomic<size_t> g_peak_requested{0};
}  // namespace

void stats_add_requested(size_t bytes) {
  const size_t now = g_requested.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  size_t peak = g_peak_requested.load(std::memory_order_relaxed);
  while (now > peak && !g_peak_requested.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void stats_sub_requested(size_t bytes) { g_requested.fetch_sub(bytes, std::memory_order_relaxed); }
size_t stats_requested() { return g_requested.load(std::memory_order_relaxed); }
size_t stats_peak_requested() { return g_peak_requested.load(std::memory_order_relaxed); }
void stats_reset_peak_requested() {
  g_peak_requested.store(g_requested.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

}  // namespace tmalloc
