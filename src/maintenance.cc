// Periodic upkeep of free memory (see segment_pool.h: heap_maintain).
#include <atomic>

#include "medium.h"
#include "options.h"
#include "os.h"
#include "segment_pool.h"
#include "small.h"

namespace tmalloc {

namespace {

// When the last arena sweep ran (monotonic ms); one thread claims each sweep.
std::atomic<uint64_t> g_last_sweep_ms{0};

}  // namespace

void heap_maintain() {
  pool_maintain();
  const uint64_t now = os_monotonic_ms();
  uint64_t last = g_last_sweep_ms.load(std::memory_order_relaxed);
  // Every half delay: a sweep purges what the previous one already found free (two-phase
  // marks), so free memory goes back between half a delay and one delay after it was freed.
  if (now - last < static_cast<uint64_t>(option(OptionId::kPurgeDelayMs)) / 2) return;
  // Relaxed: the timestamp only rate-limits sweeps; the sweeps synchronise by locks.
  if (!g_last_sweep_ms.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  // Remote-free lists of arenas that no thread refills from any more would pin their runs.
  small_drain_remote();
  small_sweep_idle();
  medium_sweep_idle();
}

void heap_maintain_reset_for_test() { g_last_sweep_ms.store(0, std::memory_order_relaxed); }

}  // namespace tmalloc
