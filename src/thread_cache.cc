// Thread caches: set-up, refill, flush, thread exit and the per-thread statistics
// registry (see thread_cache.h).
#include "thread_cache.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/auxv.h>

#include <cstring>

#include "arena.h"
#include "check.h"
#include "chunk_map.h"
#include "debug.h"
#include "fork.h"
#include "guarded.h"
#include "init_once.h"
#include "linked_list.h"
#include "options.h"
#include "os.h"
#include "plant.h"
#include "sanitizer.h"
#include "segment_pool.h"
#include "spinlock.h"
#include "stats.h"
#include "tinymalloc.h"
#include "trace.h"

namespace tmalloc {

constinit thread_local ThreadCache t_cache __attribute__((tls_model(TM_TLS_MODEL))){};

// Before the runtime picks a random key, a fixed odd constant (never a plausible pointer).
std::atomic<uintptr_t> g_free_key{0x9e3779b97f4a7c15u};

// Latched from the track_requested option by runtime_ensure (stats.h).
std::atomic<bool> g_track_requested{false};

namespace {

// Growth of a thread's requested counter between two samples of the global peak.
constexpr int64_t kPeakSampleBytes = TM_PEAK_SAMPLE_BYTES;

SpinLock g_registry_lock;
ThreadCache* g_registry;  // live caches (state kActive)
size_t g_registry_count;
// Requested bytes of threads without a live cache: exited threads and bypass threads.
std::atomic<int64_t> g_unregistered_requested{0};
std::atomic<int64_t> g_unregistered_peak_mark{0};
std::atomic<size_t> g_peak_requested{0};

// Set in a fork child that lost threads (see CacheTotals::inexact).
std::atomic<bool> g_counters_inexact{false};

pthread_key_t g_exit_key;
std::atomic<int> g_runtime_state{kInitNotStarted};  // see init_once.h
constinit thread_local bool t_initialising __attribute__((tls_model(TM_TLS_MODEL))) = false;

// Busy arena locks after which a thread moves to another arena.
constexpr uint32_t kContentionsToMove = 4;

// A new thread's bin limit (see cache_init).
constexpr uint32_t kInitialBinLimit = 8;

// Doubles a bin's limit up to the class's maximum; true when it grew.
bool grow_limit(uint32_t& limit, size_t class_index);

// The limit bin `class_index` of `cache` works to: the bin's own, or an exact thread's
// (whose bins read 0 so that every call takes the slow path).
uint32_t& working_limit(ThreadCache& cache, size_t class_index) {
  return cache.exact ? cache.exact_limits[class_index] : cache.bins[class_index].limit;
}

// A flushed, unregistered cache back to the state of a thread that has not allocated yet.
void clear_cache_fields(ThreadCache& cache);

// Most blocks a bin holds for class `class_index`.
uint32_t bin_limit(size_t class_index) {
  const size_t blocks = kCacheBinBytes / class_size(class_index);
  return static_cast<uint32_t>(blocks < 8 ? 8 : blocks > 256 ? 256 : blocks);
}

bool grow_limit(uint32_t& limit, size_t class_index) {
  const uint32_t max = bin_limit(class_index);
  if (limit >= max) return false;
  limit = limit * 2 < max ? limit * 2 : max;
  return true;
}

// Sum of requested bytes over live caches and unregistered threads (registry lock held).
TM_NO_COVERAGE int64_t requested_sum_locked() {
  int64_t total = g_unregistered_requested.load(std::memory_order_relaxed);
  for (ThreadCache* cache = g_registry; cache != nullptr; cache = cache->next) {
    total += cache->requested.load(std::memory_order_relaxed);
  }
  return total;
}

// Raises the sampled peak to `value`.
void raise_peak(size_t value) {
  size_t peak = g_peak_requested.load(std::memory_order_relaxed);
  while (value > peak && !g_peak_requested.compare_exchange_weak(peak, value, std::memory_order_relaxed)) {
  }
}

// Returns the `count` blocks listed from `head` (class `class_index`) to the heap, from
// the calling thread's current arena, by `route`.
void return_blocks(size_t class_index, void* head, size_t count, ReturnRoute route) {
  if (count == 0) return;
  small_return(class_index, head, count, current_arena(), route);
}

// Empties one bin that holds at most `bound` blocks. Walks the list rather than trusting
// the count, bounded in case a fork child sees a bin its thread was updating.
void flush_bin(CacheBin& bin, size_t class_index, size_t bound) {
  void* head = bin.head;
  size_t count = 0;
  for (void* block = head; block != nullptr && count <= bound; block = free_block_next(block)) ++count;
  bin.head = nullptr;
  bin.count.store(0, std::memory_order_relaxed);
  return_blocks(class_index, head, count, ReturnRoute::kRuns);
}

// Cuts a bin of a thread that did not survive a fork at its first block that is not intact
// (no key, or a link that decodes to no block): the thread may have been between the stores
// of a push or a pop when the fork copied its memory. Blocks from there on are left out (a
// popped block is live; a half-pushed one is lost to the child, whose counters are already
// marked inexact). At most `bound` + 1 blocks are walked.
void cut_torn_bin(CacheBin& bin, size_t bound) {
  void* block = bin.head;
  if (block != nullptr && !free_block_intact(block)) block = bin.head = nullptr;
  uint32_t kept = 0;
  while (block != nullptr && kept <= bound) {
    ++kept;
    void* next = free_block_next(block);  // block was found intact: no report
    if (next != nullptr && !free_block_intact(next)) {
      free_block_set_next(block, nullptr);
      break;
    }
    block = next;
  }
  bin.count.store(kept, std::memory_order_relaxed);
}

// Empties every bin of `cache` (thread exit, fork child, tm_release_cached), medium ones too.
void flush_all(ThreadCache& cache) {
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    flush_bin(cache.bins[c], c, bin_limit(c));  // exact threads' limits read 0: use the class bound
  }
  medium_cache_flush(cache);
}

// Unlinks a cache from the registry and folds its counter into the unregistered sum
// (registry lock held).
void unregister_locked(ThreadCache& cache) {
  list_unlink(g_registry, &cache, "thread-cache registry");
  cache.next = cache.prev = nullptr;
  --g_registry_count;
  g_unregistered_requested.fetch_add(cache.requested.load(std::memory_order_relaxed), std::memory_order_relaxed);
  cache.requested.store(0, std::memory_order_relaxed);
}

// Counts `cache`'s thread in arena `arena_plus1` - 1 (0: in none), out of the one it was in.
void occupy_arena(ThreadCache& cache, unsigned arena_plus1) {
  if (cache.occupied_plus1 == arena_plus1) return;
  if (cache.occupied_plus1 != 0) arena_occupant_leave(cache.occupied_plus1 - 1);
  if (arena_plus1 != 0) arena_occupant_enter(arena_plus1 - 1);
  cache.occupied_plus1 = arena_plus1;
}

// pthread key destructor: the thread is exiting. Later calls of this thread (other TLS
// destructors) take the locked paths.
void thread_exit(void* /*value*/) {
  ThreadCache& cache = t_cache;
  if (cache.state != CacheState::kActive) return;
  for (CacheBin& bin : cache.bins) bin.limit = 0;
  for (CacheBin& bin : cache.medium_bins) bin.limit = 0;
  cache.ticks = 1;  // every later malloc of this thread takes the slow path
  if (!TM_PLANT_IF(14)) flush_all(cache);
  occupy_arena(cache, 0);
  LockGuard guard(g_registry_lock);
  unregister_locked(cache);
  cache.state = CacheState::kBypass;
}

// Sets ticks to the full upkeep interval, or to the allocations left until the next sampled
// one when that is sooner (sample_rate), so that the fast path comes to the slow path then.
void restart_ticks(ThreadCache& cache) {
  uint32_t period = kTickInterval;
  if (g_sample_rate.load(std::memory_order_relaxed) != 0 && cache.sample_countdown < static_cast<int64_t>(period)) {
    period = cache.sample_countdown < 1 ? 1 : static_cast<uint32_t>(cache.sample_countdown);
  }
  cache.ticks = period;
  cache.tick_period = period;
}

// A countdown drawn under another sample_rate (tm_option_set changed it) is drawn again.
void redraw_if_rate_changed(ThreadCache& cache) {
  const uint32_t generation = g_sample_generation.load(std::memory_order_relaxed);
  if (cache.sample_generation == generation) return;
  cache.sample_generation = generation;
  if (cache.sample_state == 0) cache.sample_state = guarded_seed();
  cache.sample_countdown = guarded_next_interval(&cache.sample_state);
}

// ticks reached 0: the allocations of the period count toward the next sampled one, the heap
// gets its upkeep, and a new period starts.
void ticks_expired(ThreadCache& cache) {
  if (g_sample_rate.load(std::memory_order_relaxed) != 0) {
    redraw_if_rate_changed(cache);
    cache.sample_countdown -= cache.tick_period;
  }
  heap_maintain();
  restart_ticks(cache);
}

// The sampled allocation that is due now: a guarded block of the class's usable size, aligned
// like the class's blocks (what an aligned request that chose this class needs). nullptr when
// no slot is free (the caller allocates normally). The countdown starts over either way.
TM_NOINLINE void* sample_small(ThreadCache& cache, size_t class_index, size_t requested, const void* site) {
  cache.sample_countdown = guarded_next_interval(&cache.sample_state);
  if (cache.state == CacheState::kActive && !cache.exact) restart_ticks(cache);
  const size_t usable = class_size(class_index);
  const size_t alignment = usable & (~usable + 1);  // lowest set bit: the class's block alignment
  // A class aligned past a page may serve an aligned request a slot cannot place: not sampled.
  if (alignment > kPageSize) return nullptr;
  return guarded_alloc(requested, usable, alignment, class_index, site);
}

// Sets up the calling thread's cache (first malloc or free of the thread).
void cache_init(ThreadCache& cache) {
  // Calls made while setting up (pthread_setspecific may allocate) take the locked paths.
  cache.state = CacheState::kBypass;
  runtime_ensure();
  if (g_sample_rate.load(std::memory_order_relaxed) != 0) {
    cache.sample_state = guarded_seed();
    cache.sample_generation = g_sample_generation.load(std::memory_order_relaxed);
    // Minus the allocation that is setting the cache up (the slow path counts none for it).
    cache.sample_countdown = guarded_next_interval(&cache.sample_state) - 1;
  }
  if (option(OptionId::kThreadCache) == 0) return;
  {
    LockGuard guard(g_registry_lock);
    cache.prev = nullptr;
    cache.next = g_registry;
    if (g_registry != nullptr) g_registry->prev = &cache;
    g_registry = &cache;
    ++g_registry_count;
  }
  cache.peak_mark = 0;
  pthread_setspecific(g_exit_key, &cache);
  cache.exact = g_track_requested.load(std::memory_order_relaxed);
  // Slow start: a short-lived thread moves few blocks in and out of its cache; the limit
  // doubles with each refill or overflow up to bin_limit. A thread that tracks requested
  // bytes shows limits of 0 to the fast free path and keeps its own in exact_limits.
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const uint32_t initial = bin_limit(c) < kInitialBinLimit ? bin_limit(c) : kInitialBinLimit;
    cache.bins[c].limit = cache.exact ? 0 : initial;
    cache.exact_limits[c] = cache.exact ? initial : 0;
  }
  for (size_t c = 0; c < kMediumCacheClasses; ++c) cache.medium_bins[c].limit = medium_cache_bin_limit(c);
  cache.ticks = cache.exact ? 1 : kTickInterval;
  cache.tick_period = cache.ticks;
  if (!cache.exact) restart_ticks(cache);
  const unsigned arena = current_arena();
  cache.state = CacheState::kActive;
  occupy_arena(cache, arena + 1);
}

}  // namespace

// When the library is unloaded (dlclose of a global-dynamic build) or the process exits:
// deletes the thread-exit key, so a thread still running when the code goes away does not
// call thread_exit through it when it exits. At process exit, threads still running lose
// nothing that matters: their caches vanish with the process.
__attribute__((destructor)) void runtime_unload() {
  // acquire: pairs with the release in runtime_ensure; the key was created.
  if (g_runtime_state.load(std::memory_order_acquire) == kInitDone) pthread_key_delete(g_exit_key);
}

void runtime_ensure() {
  // acquire: pairs with the release below; the initialised options, key and arena count
  // are visible to every thread that sees the ready state.
  if (g_runtime_state.load(std::memory_order_acquire) == kInitDone) return;
  if (t_initialising) return;  // a call made by the initialisation itself
  if (init_claim_or_wait(g_runtime_state)) {
    t_initialising = true;
    options_init();
    options_snapshot_initial();
    // Before the routing is decided: a traced program's calls all take the routed path.
    if (const char* trace_path = options_trace_path(); trace_path != nullptr)
      trace_start(trace_path, static_cast<size_t>(option(OptionId::kTraceMaxMb)) << 20);
    // stats= at exit reports requested bytes, so it implies exact tracking too.
    g_track_requested.store(option(OptionId::kTrackRequested) != 0 || option(OptionId::kStats) != 0,
                            std::memory_order_relaxed);
    debug_update_mode();
    guarded_init();
    arena_init();
    // The kernel's 16 random bytes for this process, mixed with an address (ASLR).
    uintptr_t key = addr_of(&key) * 0x9e3779b97f4a7c15u;
    const auto* random_bytes = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM));
    if (random_bytes != nullptr) {
      uintptr_t random[2];  // the bytes need not be aligned
      std::memcpy(random, random_bytes, sizeof random);
      key ^= random[0] ^ (random[1] << 1);
    }
    g_free_key.store(key | 1, std::memory_order_relaxed);
    // A fork child that redoes an initialisation its parent's thread had begun may create
    // a second key (the first stays unused) and install the fork handlers twice (fork.cc
    // lets only the outermost pair act).
    pthread_key_create(&g_exit_key, thread_exit);
    fork_handlers_install();
    t_initialising = false;
    g_runtime_state.store(kInitDone, std::memory_order_release);
  }
}

// Records `requested` bytes for the block just popped by an exact thread: its slack in the
// run descriptor and the thread's counter.
void record_requested(ThreadCache& cache, void* block, size_t requested) {
  const BlockRef ref = block_ref(block);
  set_slack(ref.run, ref.index, ref.run->block_size - requested);
  thread_requested_add(cache, static_cast<int64_t>(requested));
}

void* cache_alloc_slow(size_t class_index, size_t requested, const void* site) {
  ThreadCache& cache = t_cache;
  if (cache.state == CacheState::kUnset) cache_init(cache);
  if (cache.state != CacheState::kActive) {
    if (TM_UNLIKELY(g_sample_rate.load(std::memory_order_relaxed) != 0) && --cache.sample_countdown <= 0) {
      void* sampled = sample_small(cache, class_index, requested, site);
      if (sampled != nullptr) return sampled;
    }
    return small_alloc(current_arena(), class_index, requested, false);
  }
  // Upkeep: every kTickInterval cached allocations (ticks reached 0), and for an exact
  // thread (ticks is 1 on entry) once per kTickInterval allocations counted in exact_ticks.
  if (cache.exact) {
    cache.ticks = 1;
    cache_tick(cache);
    if (g_sample_rate.load(std::memory_order_relaxed) != 0) {
      redraw_if_rate_changed(cache);
      --cache.sample_countdown;
    }
  } else if (cache.ticks == 0) {
    ticks_expired(cache);
  } else if (g_sample_rate.load(std::memory_order_relaxed) != 0 && --cache.ticks == 0) {
    // An empty bin brought this allocation here before the fast path counted it.
    ticks_expired(cache);
  }
  // A sampled allocation is due (the countdown is only ever lowered with sampling on).
  if (TM_UNLIKELY(cache.sample_countdown <= 0) && g_sample_rate.load(std::memory_order_relaxed) != 0) {
    void* sampled = sample_small(cache, class_index, requested, site);
    if (sampled != nullptr) return sampled;
  }
  CacheBin& bin = cache.bins[class_index];
  if (bin.head == nullptr) {
    heap_maintain();
    bool contended = false;
    uint32_t& limit = working_limit(cache, class_index);
    grow_limit(limit, class_index);
    const uint32_t batch = limit / 2;
    const size_t got = small_refill(current_arena(), class_index, &bin.head, batch, &contended);
    if (contended) note_arena_contention();
    if (got == 0) return nullptr;  // errno = ENOMEM
    bin.count.store(static_cast<uint32_t>(got), std::memory_order_relaxed);
  }
  void* block = cache_pop(bin, requested);
  if (cache.exact) record_requested(cache, block, requested);
  return block;
}

// The work of cache_free_slow (errno is saved around it).
void cache_free_slow_body(SmallSegment* segment, void* p, const BlockRef& ref, const char* what);

void cache_free_slow(SmallSegment* segment, void* p, const char* what) {
  // free preserves errno; the OS calls a flush can lead to (munmap, madvise) may set it.
  const int saved_errno = errno;
  // Located again here (p was validated): the fast path then need not keep the run and
  // index alive across its checks, which spares it a saved register.
  cache_free_slow_body(segment, p, block_ref(p), what);
  errno = saved_errno;
}

void cache_free_slow_body(SmallSegment* segment, void* p, const BlockRef& ref, const char* what) {
  ThreadCache& cache = t_cache;
  const bool first_call = cache.state == CacheState::kUnset;
  if (first_call) cache_init(cache);
  if (cache.state != CacheState::kActive) {
    small_free(segment, p, what);
    return;
  }
  // A memory pool's block goes straight back to its pool (a reset must find no block of
  // the pool in any cache).
  if (segment->arena >= kMaxArenas) {
    small_free(segment, p, what);
    return;
  }
  const size_t class_index = ref.run->class_index;
  const size_t block_size = ref.run->block_size;
  if (cache.exact) {
    thread_requested_sub(cache, static_cast<int64_t>(block_size - get_slack(ref.run, ref.index)));
    set_slack(ref.run, ref.index, block_size);  // cached blocks count 0 requested bytes
  }
  if (first_call) {
    // A thread that frees before it ever allocated frees memory another thread handed it.
    // Cached here, the block would be this thread's next allocation, on a cache line the
    // other thread is likely still using (passive false sharing); it goes to its arena's
    // remote-free list instead, where refills reach it after their fresh blocks.
    small_defer_free(segment, p);
    return;
  }
  // Blocks of other arenas (freed by another thread than the one that allocated them, or
  // after this thread changed arenas) are cached like the thread's own and reused here:
  // measured on 16 cores, sending them back to their arenas instead raised the peak RSS of
  // larson and churn by 30-40% (the freeing thread then takes fresh blocks while the
  // returned ones wait for their arena's next refill). They go back when the bin overflows.
  CacheBin& bin = cache.bins[class_index];
  uint32_t& limit = working_limit(cache, class_index);
  uint32_t count = bin.count.load(std::memory_order_relaxed);
  if (count >= limit && !grow_limit(limit, class_index)) {
    // Full: the most recent half goes back to the heap (one lock for the batch).
    const uint32_t give = count - limit / 2;
    void* head = bin.head;
    void* last = head;
    for (uint32_t i = 1; i < give; ++i) last = free_block_next(last);
    bin.head = free_block_next(last);
    free_block_set_next(last, nullptr);
    count -= give;
    bin.count.store(count, std::memory_order_relaxed);
    return_blocks(ref.run->class_index, head, give, ReturnRoute::kRemoteLists);
  }
  poison(p, block_size);
  free_block_write(p, bin.head);
  bin.head = p;
  bin.count.store(count + 1, std::memory_order_relaxed);
}

unsigned choose_arena(bool contended) {
  runtime_ensure();  // the arena count needs the options and the CPU count
  ThreadCache& cache = t_cache;
  const unsigned arena = arena_select(cache.arena_plus1, contended);
  cache.arena_plus1 = arena + 1;
  if (cache.state == CacheState::kActive) occupy_arena(cache, arena + 1);
  return arena;
}

void note_arena_contention() {
  ThreadCache& cache = t_cache;
  if (++cache.contentions < kContentionsToMove) return;
  cache.contentions = 0;
  choose_arena(true);
}

void sample_peak_requested() {
  ThreadCache& cache = t_cache;
  int64_t total;
  {
    LockGuard guard(g_registry_lock);
    total = requested_sum_locked();
  }
  if (total > 0) raise_peak(static_cast<size_t>(total));
  cache.peak_mark = cache.requested.load(std::memory_order_relaxed) + kPeakSampleBytes;
}

void cache_tick(ThreadCache& cache) {
  if (cache.exact) {
    if (++cache.exact_ticks >= kTickInterval) {
      cache.exact_ticks = 0;
      heap_maintain();
    }
  } else if (--cache.ticks == 0) {
    ticks_expired(cache);
  }
}

void sample_rate_changed() {
  ThreadCache& cache = t_cache;
  if (cache.state != CacheState::kActive || cache.exact || cache.ticks == 0) return;
  // The allocations already counted in this period still count: the period ends now.
  cache.tick_period -= cache.ticks - 1;
  cache.ticks = 1;
}

bool sample_due() {
  ThreadCache& cache = t_cache;
  if (cache.state == CacheState::kUnset) cache_init(cache);
  redraw_if_rate_changed(cache);
  if (--cache.sample_countdown > 0) return false;
  cache.sample_countdown = guarded_next_interval(&cache.sample_state);
  if (cache.state == CacheState::kActive && !cache.exact) restart_ticks(cache);
  return true;
}

void requested_add(int64_t delta) {
  ThreadCache& cache = t_cache;
  if (cache.state == CacheState::kUnset) cache_init(cache);
  if (cache.state == CacheState::kActive) {
    if (delta >= 0) {
      thread_requested_add(cache, delta);
    } else {
      thread_requested_sub(cache, -delta);
    }
    return;
  }
  const int64_t now = g_unregistered_requested.fetch_add(delta, std::memory_order_relaxed) + delta;
  if (now > g_unregistered_peak_mark.load(std::memory_order_relaxed)) {
    g_unregistered_peak_mark.store(now + kPeakSampleBytes, std::memory_order_relaxed);
    int64_t total;
    {
      LockGuard guard(g_registry_lock);
      total = requested_sum_locked();
    }
    if (total > 0) raise_peak(static_cast<size_t>(total));
  }
}

TM_NO_COVERAGE void cache_totals(CacheTotals* out) {
  std::memset(out, 0, sizeof *out);
  for (ThreadCache* cache = g_registry; cache != nullptr; cache = cache->next) {
    ++out->caches;
    for (size_t c = 0; c < kSmallClassCount; ++c) {
      out->cached[c] += cache->bins[c].count.load(std::memory_order_relaxed);
    }
    for (const CacheBin& bin : cache->medium_bins) out->medium_cached += bin.count.load(std::memory_order_relaxed);
    out->medium_cached_bytes += cache->medium_bytes.load(std::memory_order_relaxed);
    if (cache != &t_cache) ++out->other_threads;
  }
  out->requested = requested_sum_locked();
  out->inexact = g_counters_inexact.load(std::memory_order_relaxed);
  if (out->requested > 0) raise_peak(static_cast<size_t>(out->requested));
}

size_t requested_total() {
  LockGuard guard(g_registry_lock);
  const int64_t total = requested_sum_locked();
  return total > 0 ? static_cast<size_t>(total) : 0;
}

size_t requested_peak() {
  const size_t now = requested_total();
  raise_peak(now);
  return g_peak_requested.load(std::memory_order_relaxed);
}

void requested_reset_peak() {
  g_peak_requested.store(requested_total(), std::memory_order_relaxed);
  ThreadCache& cache = t_cache;
  cache.peak_mark = cache.requested.load(std::memory_order_relaxed) + kPeakSampleBytes;
}

void cache_ensure_current() {
  ThreadCache& cache = t_cache;
  if (cache.state == CacheState::kUnset) cache_init(cache);
}

bool cache_active_current() { return t_cache.state == CacheState::kActive; }

void cache_flush_current() {
  ThreadCache& cache = t_cache;
  if (cache.state == CacheState::kActive) flush_all(cache);
}

namespace {

// Heap check of one bin of class `class_index` that may hold up to `limit` blocks.
TM_NO_COVERAGE int check_bin(CheckResult* result, const CacheBin& bin, size_t class_index, uint32_t limit) {
  const uint32_t count = bin.count.load(std::memory_order_relaxed);
  size_t walked = 0;
  for (const void* block = bin.head; block != nullptr; block = free_block_next(block)) {
    if (++walked > count) return result->fail(TM_CHECK_FREE_LINKS, block, "thread cache bin is longer than its count");
    const int code = small_check_cached_block(result, block, class_index);
    if (code != 0) return code;
    if (!free_link_plausible(free_block_link(block)))
      return result->fail(TM_CHECK_FREE_LINKS, block,
                          "thread cache link does not decode to a block (written after free?)");
  }
  if (walked != count) return result->fail(TM_CHECK_FREE_LINKS, &bin, "thread cache bin is shorter than its count");
  if (count > limit) return result->fail(TM_CHECK_FREE_LINKS, &bin, "thread cache bin holds more than its limit");
  return 0;
}

}  // namespace

TM_NO_COVERAGE int cache_check_current(CheckResult* result) {
  ThreadCache& cache = t_cache;
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const int code = check_bin(result, cache.bins[c], c, working_limit(cache, c));
    if (code != 0) return code;
  }
  return medium_cache_check_current(result);
}

bool cache_others_active() {
  LockGuard guard(g_registry_lock);
  for (ThreadCache* cache = g_registry; cache != nullptr; cache = cache->next) {
    if (cache != &t_cache) return true;
  }
  return false;
}

bool cache_reset_for_test() {
  ThreadCache& cache = t_cache;
  bool balanced;
  {
    LockGuard guard(g_registry_lock);
    if (cache.state == CacheState::kActive) unregister_locked(cache);
    // With no block live, what every thread allocated minus what every thread freed is 0.
    balanced = g_registry == nullptr && (g_unregistered_requested.load(std::memory_order_relaxed) == 0 ||
                                         g_counters_inexact.load(std::memory_order_relaxed));
    g_registry = nullptr;
    g_registry_count = 0;
    g_unregistered_requested.store(0, std::memory_order_relaxed);
    g_unregistered_peak_mark.store(0, std::memory_order_relaxed);
    g_peak_requested.store(0, std::memory_order_relaxed);
    g_counters_inexact.store(false, std::memory_order_relaxed);
  }
  clear_cache_fields(cache);
  return balanced;
}

void cache_retire_current_for_test() {
  ThreadCache& cache = t_cache;
  if (cache.state == CacheState::kBypass) return;  // set up with thread_cache=0, or exited
  // What the pthread key destructor does when the thread exits, then the cache as new.
  thread_exit(&cache);
  clear_cache_fields(cache);
}

namespace {

// Puts a cache (already flushed and unregistered) in the state of a thread that has not
// allocated yet: its next call sets it up again (registers it, chooses its arena, starts the
// bins at their initial limits).
void clear_cache_fields(ThreadCache& cache) {
  for (CacheBin& bin : cache.bins) {
    bin.head = nullptr;
    bin.count.store(0, std::memory_order_relaxed);
    bin.limit = 0;
  }
  for (CacheBin& bin : cache.medium_bins) {
    bin.head = nullptr;
    bin.count.store(0, std::memory_order_relaxed);
    bin.limit = 0;
  }
  cache.medium_bytes.store(0, std::memory_order_relaxed);
  cache.requested.store(0, std::memory_order_relaxed);
  cache.peak_mark = 0;
  cache.state = CacheState::kUnset;
  cache.ticks = 0;
  cache.tick_period = 0;
  cache.sample_countdown = 0;
  cache.sample_state = 0;
  cache.sample_generation = 0;
  cache.exact = false;
  cache.exact_ticks = 0;
  for (uint32_t& limit : cache.exact_limits) limit = 0;
  cache.contentions = 0;
  cache.arena_plus1 = 0;
  cache.occupied_plus1 = 0;  // left by thread_exit, or arena_reset_for_test clears every count
  cache.next = cache.prev = nullptr;
}

}  // namespace

TM_NO_COVERAGE int cache_check_current_class(CheckResult* result, size_t class_index) {
  // The blocks a free or malloc just pushed or popped are at the bin's head: the first few
  // are validated (the whole bin at every full heap check), and the count against the limit.
  constexpr size_t kScopedBlocks = 8;
  ThreadCache& cache = t_cache;
  const CacheBin& bin = cache.bins[class_index];
  const uint32_t limit = working_limit(cache, class_index);
  if (bin.count.load(std::memory_order_relaxed) > limit)
    return result->fail(TM_CHECK_FREE_LINKS, &bin, "thread cache bin holds more than its limit");
  size_t walked = 0;
  for (const void* block = bin.head; block != nullptr && walked < kScopedBlocks; block = free_block_next(block)) {
    ++walked;
    const int code = small_check_cached_block(result, block, class_index);
    if (code != 0) return code;
    if (!free_link_plausible(free_block_link(block)))
      return result->fail(TM_CHECK_FREE_LINKS, block,
                          "thread cache link does not decode to a block (written after free?)");
  }
  return 0;
}

void registry_lock() { g_registry_lock.lock(); }
void registry_unlock() { g_registry_lock.unlock(); }

void cache_forget_other_threads_in_child() {
  // Only this thread exists now. The other threads' caches are still mapped (the child is
  // a copy), so their blocks go back to the heap instead of leaking.
  for (;;) {
    ThreadCache* other = nullptr;
    {
      LockGuard guard(g_registry_lock);
      for (ThreadCache* cache = g_registry; cache != nullptr; cache = cache->next) {
        if (cache != &t_cache) {
          other = cache;
          break;
        }
      }
      if (other == nullptr) return;
      g_counters_inexact.store(true, std::memory_order_relaxed);
      unregister_locked(*other);
      other->state = CacheState::kBypass;
      occupy_arena(*other, 0);
    }
    for (size_t c = 0; c < kSmallClassCount; ++c) cut_torn_bin(other->bins[c], bin_limit(c));
    for (size_t c = 0; c < kMediumCacheClasses; ++c) cut_torn_bin(other->medium_bins[c], medium_cache_bin_limit(c));
    flush_all(*other);
  }
}

}  // namespace tmalloc
