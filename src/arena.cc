// Arena count and selection (see arena.h).
#include "arena.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "config.h"
#include "options.h"
#include "platform.h"
#include "spinlock.h"

namespace tmalloc {

namespace {

std::atomic<unsigned> g_cpu_count{0};  // 0 until arena_init: one arena
std::atomic<unsigned> g_arenas_used{1};
std::atomic<unsigned> g_next_thread_arena{0};
// Threads with an active cache counted in each arena (arena_select's choice for a new
// thread). Relaxed everywhere: the counts order nothing else, and a stale one costs at most
// a less even spread. Signed: a count left inconsistent by a fork in the middle of an update
// shows as -1 or +1, never as a huge value that would keep threads out of an arena.
std::atomic<int32_t> g_arena_occupants[kMaxArenas];
SpinLock g_activation_lock;
// Bit per arena slot: its structures have been touched (arena 0 always counts). Set under
// g_activation_lock before the slot is used; whole-heap walks, which hold that lock, skip the
// others (memory pools live in slots 64 and up, so arenas_used() alone would make them visit
// every slot below a pool).
constexpr unsigned kTouchedWords = (kArenaSlots + 63) / 64;
std::atomic<uint64_t> g_arena_touched[kTouchedWords] = {1};

// CPUs in this process's affinity mask, from the raw system call (glibc's CPU-count
// helpers may read /sys through allocating stdio).
unsigned affinity_cpu_count() {
  unsigned long mask[16] = {};  // 1024 CPUs
  const long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
  if (bytes <= 0) return 1;
  unsigned count = 0;
  for (long i = 0; i < bytes / static_cast<long>(sizeof mask[0]); ++i) {
    count += static_cast<unsigned>(__builtin_popcountl(mask[i]));
  }
  return count == 0 ? 1 : count;
}

// The arena in [0, count) with the fewest threads counted in it; the lowest index of those.
unsigned least_occupied_arena(unsigned count) {
  unsigned best = 0;
  int32_t best_occupants = g_arena_occupants[0].load(std::memory_order_relaxed);
  for (unsigned index = 1; index < count && best_occupants > 0; ++index) {
    const int32_t occupants = g_arena_occupants[index].load(std::memory_order_relaxed);
    if (occupants < best_occupants) {
      best = index;
      best_occupants = occupants;
    }
  }
  return best;
}

}  // namespace

unsigned arena_count() {
  const unsigned cpus = g_cpu_count.load(std::memory_order_relaxed);
  if (cpus == 0) return 1;
  // Read on every selection, so tm_option_set("arenas", n) applies to later choices.
  const long wanted = option(OptionId::kArenas);
  if (wanted <= 0) return cpus;
  return wanted > static_cast<long>(kMaxArenas) ? kMaxArenas : static_cast<unsigned>(wanted);
}

unsigned arena_select(unsigned previous, bool contended) {
  const unsigned count = arena_count();
  if (count == 1) return 0;
  if (option(OptionId::kArenaSelect) == kArenaSelectThread) {
    if (previous != 0) return contended ? previous % count : (previous - 1) % count;
    return g_next_thread_arena.fetch_add(1, std::memory_order_relaxed) % count;
  }
  if (previous == 0) return least_occupied_arena(count);
  // glibc reads the CPU number from the rseq area (no system call) where the kernel
  // supports it. The CPU can change right after: harmless, see arena.h.
  // A thread already in its CPU's arena stays there: the thread it contends with belongs
  // to another CPU and moves to that CPU's arena at its own next contention. Moving on
  // to the next arena instead sent two threads of two CPUs to the same arena whenever
  // both met contention at once (measured: churn with 2 threads was bimodal, 0.17 s or
  // 0.24 s, as the two threads kept meeting in one arena).
  const int cpu = sched_getcpu();
  return (cpu < 0 ? 0 : static_cast<unsigned>(cpu)) % count;
}

void arena_occupant_enter(unsigned index) { g_arena_occupants[index].fetch_add(1, std::memory_order_relaxed); }

void arena_occupant_leave(unsigned index) { g_arena_occupants[index].fetch_sub(1, std::memory_order_relaxed); }

int arena_occupants(unsigned index) { return g_arena_occupants[index].load(std::memory_order_relaxed); }

unsigned arenas_used() {
  // acquire: pairs with the release in arena_note_used; a walker that sees the count also
  // sees the arena's zero-initialised state (nothing else is published by it).
  return g_arenas_used.load(std::memory_order_acquire);
}

bool arena_touched(unsigned index) {
  // Relaxed: written under the activation lock, which every caller that relies on the answer
  // (whole-heap walks) holds; others only skip work for a slot that was never used.
  return ((g_arena_touched[index / 64].load(std::memory_order_relaxed) >> (index % 64)) & 1u) != 0;
}

void arena_note_used(unsigned index) {
  if (TM_LIKELY(arena_touched(index))) return;
  LockGuard guard(g_activation_lock);
  g_arena_touched[index / 64].fetch_or(uint64_t{1} << (index % 64), std::memory_order_relaxed);
  if (index >= g_arenas_used.load(std::memory_order_relaxed)) {
    g_arenas_used.store(index + 1, std::memory_order_release);
  }
}

void arena_reset_for_test() {
  LockGuard guard(g_activation_lock);
  g_arenas_used.store(1, std::memory_order_release);
  for (unsigned w = 0; w < kTouchedWords; ++w) g_arena_touched[w].store(w == 0 ? 1 : 0, std::memory_order_relaxed);
  g_next_thread_arena.store(0, std::memory_order_relaxed);
  for (auto& occupants : g_arena_occupants) occupants.store(0, std::memory_order_relaxed);
}

void arena_activation_lock() { g_activation_lock.lock(); }
void arena_activation_unlock() { g_activation_lock.unlock(); }

void arena_init() {
  const unsigned cpus = affinity_cpu_count();
  g_cpu_count.store(cpus > kMaxArenas ? kMaxArenas : cpus, std::memory_order_relaxed);
}

}  // namespace tmalloc
