// Backends: tinymalloc (tm_*), the process's malloc (system) and a deliberately faulty
// reference allocator for the harness's own mutation tests.
#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "tinymalloc.h"
#include "tinymalloc_test.h"
#include "tm_harness.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TMH_HAS_ASAN 1
#endif
#endif
#ifndef TMH_HAS_ASAN
#define TMH_HAS_ASAN 0
#endif

namespace tmh {

// ---- tinymalloc --------------------------------------------------------------------------------

namespace {

class TmBackend final : public Backend {
 public:
  // Purges and sweeps follow the virtual clock, which only advance_time moves: an input's
  // outcome does not depend on how fast it ran.
  // TM_HARNESS_KEEP_HISTORY=1: no reset between inputs, so each input runs on the heap the
  // ones before it left (the pre-reset behaviour; tm_determinism's own self-check).
  // Mappings are recycled (tm_test_recycle_mappings): each input starts from a pristine
  // allocator that maps and unmaps the same megabytes again, and fresh pages (with their ASan
  // shadow) made page faults most of an input's cost. TM_HARNESS_FRESH_MAPPINGS=1: every
  // mapping comes from the kernel, as in a program.
  TmBackend() : keep_history_(env_flag("TM_HARNESS_KEEP_HISTORY")) {
    tm_test_clock_virtual(1);
    tm_test_recycle_mappings(env_flag("TM_HARNESS_FRESH_MAPPINGS") ? 0 : 1);
  }
  const char* name() const override { return "tm"; }
  void* malloc(size_t n) override { return tm_malloc(n); }
  void* calloc(size_t c, size_t n) override { return tm_calloc(c, n); }
  void* realloc(void* p, size_t n) override { return tm_realloc(p, n); }
  void free(void* p) override { tm_free(p); }
  void free_sized(void* p, size_t n) override { tm_free_sized(p, n); }
  void* aligned_alloc(size_t a, size_t n) override { return tm_aligned_alloc(a, n); }
  int posix_memalign(void** out, size_t a, size_t n) override { return tm_posix_memalign(out, a, n); }
  size_t usable_size(const void* p) override { return tm_usable_size(p); }
  void release_cached() override { tm_release_cached(); }

  bool strict() const override { return true; }
  bool has_heap_check() const override { return true; }
  int check_heap(std::string* message) override {
    tm_check_report_t r;
    memset(&r, 0, sizeof r);
    const int code = tm_check_heap_report(&r);
    if (code != 0 && message != nullptr) *message = describe(code, r);
    return code;
  }
  int check_introspection(std::string* message) override;
  bool has_heap_map() const override { return true; }
  bool heap_map(int fd, bool svg) override { return tm_heap_map(fd, svg ? TM_HEAP_MAP_SVG : TM_HEAP_MAP_TEXT) == 0; }
  int check_heap_around(const void* p, std::string* message) override {
    tm_check_report_t r;
    memset(&r, 0, sizeof r);
    const int code = tm_check_heap_around(p, &r);
    if (code != 0 && message != nullptr) *message = describe(code, r);
    return code;
  }
  int reset(std::string* message) override {
    if (keep_history_) return 0;
    const int code = tm_test_reset();
    if (code > 0 && message != nullptr) {
      tm_stats_t s;
      memset(&s, 0, sizeof s);
      tm_stats(&s);
      char buf[300];
      snprintf(buf, sizeof buf,
               "tm_test_reset: code %d: with every block freed and every mapping returned to the OS, the "
               "address-space or requested-bytes accounting did not come back to zero",
               code);
      *message = buf;
    }
    return code;
  }
  void thread_retire() override { tm_test_thread_exit(); }
  bool has_clock() const override { return true; }
  void advance_time(uint64_t ms) override { tm_test_clock_advance(ms); }
  bool has_stats() const override { return true; }
  void stats(HeapStats* out) override {
    tm_stats_t s;
    memset(&s, 0, sizeof s);
    tm_stats(&s);
    out->live_blocks = s.live_blocks;
    out->requested_exact = requested_exact();
    out->requested_bytes = s.requested_bytes;
    out->usable_bytes = s.usable_bytes;
    out->mapped_bytes = s.mapped_bytes;
    out->committed_bytes = s.committed_bytes;
    out->peak_mapped_bytes = s.peak_mapped_bytes;
    out->peak_requested_bytes = s.peak_requested_bytes;
    out->small_live_blocks = s.small_live_blocks;
    out->medium_live_blocks = s.medium_live_blocks;
    out->large_live_blocks = s.large_live_blocks;
    size_t sum = 0;
    for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) sum += s.class_live_blocks[c];
    out->class_live_sum = sum;
    out->medium_free_blocks = s.medium_free_blocks;
    out->medium_free_bytes = s.medium_free_bytes;
    out->medium_largest_free = s.medium_largest_free;
    out->medium_cached_blocks = s.medium_cached_blocks;
    out->map_calls = s.os_map_calls;
    out->unmap_calls = s.os_unmap_calls;
    out->purge_calls = s.os_purge_calls;
    out->pool_segments = s.pool_segments;
    out->debug_view = debug_mode_on();
    if (out->debug_view) tm_test_debug_totals(&out->debug_live_blocks, &out->debug_live_bytes, &out->debug_quarantined);
  }
  bool has_owns() const override { return true; }
  bool owns(const void* p) override { return tm_owns(p) != 0; }
  bool has_oom_injection() const override { return true; }
  void fail_os_after(long calls) override { tm_test_fail_os_after(calls); }

  bool has_heaps() const override { return true; }
  unsigned heaps_live() const override { return live_heaps().load(std::memory_order_relaxed); }
  void* heap_create() override {
    tm_heap_t* h = tm_heap_create();
    if (h != nullptr) live_heaps().fetch_add(1, std::memory_order_relaxed);
    return h;
  }
  void* heap_malloc(void* h, size_t n) override { return tm_heap_malloc(static_cast<tm_heap_t*>(h), n); }
  void* heap_calloc(void* h, size_t c, size_t n) override { return tm_heap_calloc(static_cast<tm_heap_t*>(h), c, n); }
  void* heap_realloc(void* h, void* p, size_t n) override { return tm_heap_realloc(static_cast<tm_heap_t*>(h), p, n); }
  void heap_free(void* h, void* p) override { tm_heap_free(static_cast<tm_heap_t*>(h), p); }
  void heap_reset(void* h) override { tm_heap_reset(static_cast<tm_heap_t*>(h)); }
  void heap_destroy(void* h) override {
    tm_heap_destroy(static_cast<tm_heap_t*>(h));
    live_heaps().fetch_sub(1, std::memory_order_relaxed);
  }
  void heap_stats(void* h, PoolStats* out) override {
    tm_heap_stats_t s;
    memset(&s, 0, sizeof s);
    tm_heap_stats(static_cast<tm_heap_t*>(h), &s);
    out->live_blocks = s.live_blocks;
    out->usable_bytes = s.usable_bytes;
    out->segments = s.segments;
    out->large_blocks = s.large_blocks;
    out->mapped_bytes = s.mapped_bytes;
  }
  // Sizes above 64 MiB may fail; they are attempted up to 4 GiB + 1 page (past 32-bit
  // size arithmetic), with at most 16 GiB of such blocks live. Under ASan, tinymalloc
  // (un)poisons whole large mappings: the shadow pages it writes stay resident, 1/8 of the
  // size each, so the limits are 256 MiB and 1 GiB there (fuzzing under rss_limit_mb).
  // Debug mode fills every byte of a new and of a freed block (every page resident), so
  // there the limits are ASan's too, and no block above 16 MiB is attempted (four times the
  // largest block its quarantine holds, so blocks that skip it still run).
  uint64_t max_filled_size() const override { return debug_mode_on() ? uint64_t{16} << 20 : UINT64_MAX; }
#if defined(__SANITIZE_ADDRESS__) || TMH_HAS_ASAN
  uint64_t max_attempt_size() const override { return uint64_t{256} << 20; }
  uint64_t max_live_bytes() const override { return uint64_t{1} << 30; }
#else
  uint64_t max_attempt_size() const override {
    return debug_mode_on() ? uint64_t{256} << 20 : (uint64_t{4} << 30) + 4096;
  }
  uint64_t max_live_bytes() const override { return debug_mode_on() ? uint64_t{1} << 30 : uint64_t{16} << 30; }
#endif

 private:
  // Whether tinymalloc tracks the requested bytes of small blocks (track_requested: read
  // once, when the allocator starts, so it never changes in a process).
  static bool requested_exact() {
    static const bool exact = [] {
      long value = 1;
      return tm_option_get("track_requested", &value) != 0 || value != 0;
    }();
    return exact;
  }
  // Whether debug mode routes the calls (options debug or leaks, TINYMALLOC_OPTIONS or
  // tm_option_set before the first allocation; tm_test_reset restores them per input).
  static bool debug_mode_on() {
    long debug = 0;
    long leaks = 0;
    return (tm_option_get("debug", &debug) == 0 && debug != 0) || (tm_option_get("leaks", &leaks) == 0 && leaks != 0);
  }
  static bool env_flag(const char* name) {
    const char* v = getenv(name);
    return v != nullptr && *v != '\0' && strcmp(v, "0") != 0;
  }
  const bool keep_history_;
  // "code 4 at 0x...: <message>" for a failed tm_check_heap_report / tm_check_heap_around.
  static std::string describe(int code, tm_check_report_t& r) {
    char buf[400];
    r.message[sizeof r.message - 1] = '\0';
    snprintf(buf, sizeof buf, "code %d at 0x%lx: %s", code, static_cast<unsigned long>(r.address), r.message);
    return buf;
  }
  // Pools created through tm backends and not destroyed, process-wide (tinymalloc's limit
  // is process-wide too).
  static std::atomic<unsigned>& live_heaps() {
    static std::atomic<unsigned> n{0};
    return n;
  }
};

// tm_class_stats and tm_arena_stats sum to tm_stats' totals (exact: one thread, and no other
// thread has a cache), each row is consistent in itself; tm_check_heap agrees with the
// report, the options enumerate, peaks reset, tm_stats_print writes both forms, and in debug
// mode the leak report counts what debug mode records.
int TmBackend::check_introspection(std::string* message) {
  tm_stats_t s;
  memset(&s, 0, sizeof s);
  tm_stats(&s);
  char buf[300];
  auto fail = [&](const char* fmt, auto... args) {
    snprintf(buf, sizeof buf, fmt, args...);
    *message = buf;
    return 1;
  };
  tm_class_stats_t classes[TM_SMALL_CLASS_COUNT];
  if (tm_class_stats(classes, TM_SMALL_CLASS_COUNT) != TM_SMALL_CLASS_COUNT) {
    return fail("tm_class_stats did not return TM_SMALL_CLASS_COUNT (%d)", TM_SMALL_CLASS_COUNT);
  }
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    const tm_class_stats_t& k = classes[c];
    if (k.size != tm_size_class_size(c) || k.live_blocks != s.class_live_blocks[c] || k.peak_blocks < k.live_blocks ||
        k.usable_bytes != k.live_blocks * k.size || k.run_bytes != k.runs * (size_t{64} << 10)) {
      return fail(
          "tm_class_stats class %zu: size %zu, live %zu (tm_stats %zu), peak %zu, usable %zu, runs %zu, "
          "run_bytes %zu",
          c, k.size, k.live_blocks, s.class_live_blocks[c], k.peak_blocks, k.usable_bytes, k.runs, k.run_bytes);
    }
  }
  static tm_arena_stats_t arenas[TM_ARENA_SLOTS];
  const size_t used = tm_arena_stats(arenas, TM_ARENA_SLOTS);
  if (used > TM_ARENA_SLOTS) return fail("tm_arena_stats: %zu slots in use, more than %d", used, TM_ARENA_SLOTS);
  size_t medium_live = 0, medium_free = 0, medium_free_bytes = 0, small_segments = 0, medium_segments = 0;
  for (size_t i = 0; i < used; ++i) {
    const tm_arena_stats_t& a = arenas[i];
    const size_t segments = a.small_segments + a.medium_segments;
    if (a.index != i || a.mapped_bytes != segments * (size_t{4} << 20) || a.committed_bytes > a.mapped_bytes) {
      return fail("tm_arena_stats slot %zu: index %zu, %zu + %zu segments, mapped %zu, committed %zu", i, a.index,
                  a.small_segments, a.medium_segments, a.mapped_bytes, a.committed_bytes);
    }
    medium_live += a.medium_live_blocks;
    medium_free += a.medium_free_blocks;
    medium_free_bytes += a.medium_free_bytes;
    small_segments += a.small_segments;
    medium_segments += a.medium_segments;
  }
  if (medium_free != s.medium_free_blocks || medium_free_bytes != s.medium_free_bytes ||
      small_segments != s.small_segments || medium_segments != s.medium_segments) {
    return fail(
        "tm_arena_stats sums: medium free %zu blocks / %zu bytes, %zu small and %zu medium segments; "
        "tm_stats: %zu / %zu, %zu and %zu",
        medium_free, medium_free_bytes, small_segments, medium_segments, s.medium_free_blocks, s.medium_free_bytes,
        s.small_segments, s.medium_segments);
  }
  if (medium_live > s.medium_live_blocks) {
    return fail("tm_arena_stats: %zu live medium blocks in arenas, tm_stats has %zu in all", medium_live,
                s.medium_live_blocks);
  }
  // The whole-heap check without a report says what the report did (the caller ran it).
  const int code = tm_check_heap();
  if (code != 0) return fail("tm_check_heap returned %d where tm_check_heap_report found nothing", code);
  // Every option enumerated can be read.
  unsigned options = 0;
  for (const char* name; (name = tm_option_name(options)) != nullptr; ++options) {
    long value;
    if (tm_option_get(name, &value) != 0) return fail("tm_option_get(\"%s\") failed for an enumerated option", name);
  }
  if (options == 0) return fail("tm_option_name(0) is NULL: no options enumerated");
  // Peaks reset to the current values (the checks after every op only need peak >= current).
  tm_stats_reset_peaks();
  memset(&s, 0, sizeof s);
  tm_stats(&s);
  if (s.peak_mapped_bytes != s.mapped_bytes) {
    return fail("after tm_stats_reset_peaks, peak_mapped_bytes %zu != mapped_bytes %zu", s.peak_mapped_bytes,
                s.mapped_bytes);
  }
  const int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return 0;  // no /dev/null (a sandbox): nothing to print into
  tm_stats_print(fd, 0);
  tm_stats_print(fd, 1);
  // Debug mode: the leak report lists every block it records as live.
  if (debug_mode_on()) {
    size_t live, bytes, quarantined;
    tm_test_debug_totals(&live, &bytes, &quarantined);
    const size_t reported = tm_leak_report(fd);
    if (reported != live) {
      close(fd);
      return fail("tm_leak_report listed %zu blocks; debug mode records %zu live", reported, live);
    }
  }
  close(fd);
  return 0;
}

// ---- emulated memory pools -------------------------------------------------------------------
//
// Backends without native pools emulate them over their own allocator: a set of blocks per
// pool, at most kMaxPools pools. heap_* allocate with the backend's malloc and record the
// block; heap_free / free / realloc of a pool block keep the sets exact (a plain realloc
// keeps the block in its pool); reset frees the pool's blocks one by one. Misuse (a block
// of another pool) aborts, as tinymalloc does. The faulty backend injects pool bugs here.

enum PoolFault {
  kPoolFaultNone = 0,
  kPoolFaultResetLeak,      // 2nd reset of a non-empty pool forgets one block (not freed, gone from the pool)
  kPoolFaultDestroyOther,   // 1st destroy while another pool holds a block frees one of those too
  kPoolFaultStatsOff,       // heap_stats of a non-empty pool: live_blocks + 1 from the 3rd such call on
  kPoolFaultReallocEscape,  // 1st heap_realloc that moves leaves the new block outside the pool
  kPoolFaultFreeStale,      // 3rd plain free of a pool block leaves it counted in its pool
};

class PooledBackend : public Backend {
 public:
  // The backend's allocator underneath (plain blocks).
  virtual void* raw_realloc(void* p, size_t n) = 0;
  virtual void raw_free(void* p) = 0;
  // kPoolFaultDestroyOther: the backend "frees" p behind the model's back (its memory stays
  // readable, so the harness reports a content change instead of crashing).
  virtual void raw_free_behind(void* p) { raw_free(p); }

  void free(void* p) final {
    if (p != nullptr && !owner_.empty()) {
      auto it = owner_.find(p);
      if (it != owner_.end()) {
        if (fault_ == kPoolFaultFreeStale && ++fault_count_ == 3) {
          owner_.erase(it);  // still in pools_[..].blocks: counted, and reset frees it again
        } else {
          pools_[it->second].blocks.erase(p);
          owner_.erase(it);
        }
      }
    }
    raw_free(p);
  }
  void* realloc(void* p, size_t n) final {
    const unsigned owner = p != nullptr ? forget(p) : kNoPool;
    void* q = raw_realloc(p, n);
    if (owner != kNoPool && n != 0) {
      // Moved or resized: still the pool's. Failed: the block is untouched and still in its
      // pool. (n == 0 freed it; a lenient malloc's new zero-size block is not a pool block.)
      remember(owner, q != nullptr ? q : p);
    }
    return q;
  }

  bool has_heaps() const override { return true; }
  unsigned heaps_live() const override { return live_; }
  void* heap_create() override {
    for (unsigned i = 0; i < kMaxPools; ++i) {
      if (pools_[i].live) continue;
      pools_[i].live = true;
      ++live_;
      return &pools_[i];
    }
    errno = ENOMEM;
    return nullptr;
  }
  void* heap_malloc(void* h, size_t n) override {
    const unsigned i = index_of(h, "heap_malloc");
    void* p = malloc(n);
    if (p != nullptr) remember(i, p);
    return p;
  }
  void* heap_calloc(void* h, size_t c, size_t n) override {
    const unsigned i = index_of(h, "heap_calloc");
    void* p = calloc(c, n);
    if (p != nullptr) remember(i, p);
    return p;
  }
  void* heap_realloc(void* h, void* p, size_t n) override {
    const unsigned i = index_of(h, "heap_realloc");
    if (p == nullptr) return heap_malloc(h, n);
    belongs_or_die(i, p, "heap_realloc");
    if (n == 0) {
      heap_free(h, p);
      return nullptr;
    }
    forget(p);
    void* q = raw_realloc(p, n);
    if (q == nullptr) {
      remember(i, p);
    } else if (!(fault_ == kPoolFaultReallocEscape && q != p && ++fault_count_ == 1)) {
      remember(i, q);
    }
    return q;
  }
  void heap_free(void* h, void* p) override {
    const unsigned i = index_of(h, "heap_free");
    if (p == nullptr) return;
    belongs_or_die(i, p, "heap_free");
    forget(p);
    raw_free(p);
  }
  void heap_reset(void* h) override { release_all(index_of(h, "heap_reset")); }
  void heap_destroy(void* h) override {
    const unsigned i = index_of(h, "heap_destroy");
    if (fault_ == kPoolFaultDestroyOther && fault_count_ == 0) {
      for (unsigned j = 0; j < kMaxPools; ++j) {
        if (j == i || pools_[j].blocks.empty()) continue;
        ++fault_count_;
        void* victim = *pools_[j].blocks.begin();
        forget(victim);
        raw_free_behind(victim);
        break;
      }
    }
    release_all(i);
    pools_[i].live = false;
    --live_;
  }
  void heap_stats(void* h, PoolStats* out) override {
    const Pool& pool = pools_[index_of(h, "heap_stats")];
    *out = PoolStats{};
    out->live_blocks = pool.blocks.size();
    for (void* p : pool.blocks) out->usable_bytes += usable_size(p);
    out->mapped_bytes = out->usable_bytes;  // no segments: the blocks are the pool's memory
    if (fault_ == kPoolFaultStatsOff && !pool.blocks.empty() && ++stats_calls_ >= 3) ++out->live_blocks;
  }

 protected:
  void set_pool_fault(PoolFault f) { fault_ = f; }
  // Frees every block of every pool (backend destruction).
  void release_all_pools() {
    for (unsigned i = 0; i < kMaxPools; ++i) release_all(i);
  }

 private:
  static constexpr unsigned kNoPool = UINT_MAX;
  struct Pool {
    bool live = false;
    std::set<void*> blocks;  // ordered: the faults pick the same block on every run
  };

  unsigned index_of(void* h, const char* what) const {
    const Pool* p = static_cast<const Pool*>(h);
    if (p < pools_ || p >= pools_ + kMaxPools || !p->live) {
      fprintf(stderr, "tm_harness: emulated pools: %s of an invalid pool handle %p\n", what, h);
      abort();
    }
    return static_cast<unsigned>(p - pools_);
  }
  void belongs_or_die(unsigned i, void* p, const char* what) const {
    if (pools_[i].blocks.count(p) == 0) {
      fprintf(stderr, "tm_harness: emulated pools: %s of %p, which is not a block of pool %u\n", what, p, i);
      abort();
    }
  }
  void remember(unsigned i, void* p) {
    pools_[i].blocks.insert(p);
    owner_[p] = i;
  }
  // Takes p out of its pool; returns the pool or kNoPool.
  unsigned forget(void* p) {
    auto it = owner_.find(p);
    if (it == owner_.end()) return kNoPool;
    const unsigned i = it->second;
    pools_[i].blocks.erase(p);
    owner_.erase(it);
    return i;
  }
  void release_all(unsigned i) {
    std::vector<void*> blocks(pools_[i].blocks.begin(), pools_[i].blocks.end());
    pools_[i].blocks.clear();
    const bool leak = fault_ == kPoolFaultResetLeak && !blocks.empty() && ++fault_count_ == 2;
    for (size_t k = 0; k < blocks.size(); ++k) {
      owner_.erase(blocks[k]);
      if (leak && k == 0) continue;  // forgotten: neither freed nor in the pool any more
      raw_free(blocks[k]);
    }
  }

  Pool pools_[kMaxPools];
  std::unordered_map<void*, unsigned> owner_;
  unsigned live_ = 0;
  PoolFault fault_ = kPoolFaultNone;
  unsigned fault_count_ = 0;
  unsigned stats_calls_ = 0;
};

// ---- system malloc -----------------------------------------------------------------------------

class SystemBackend final : public PooledBackend {
 public:
  ~SystemBackend() override { release_all_pools(); }
  const char* name() const override { return "system"; }
  void* malloc(size_t n) override { return ::malloc(n); }
  void* calloc(size_t c, size_t n) override { return ::calloc(c, n); }
  void* raw_realloc(void* p, size_t n) override { return ::realloc(p, n); }
  void raw_free(void* p) override { ::free(p); }
  void* aligned_alloc(size_t a, size_t n) override { return ::aligned_alloc(a, n); }
  int posix_memalign(void** out, size_t a, size_t n) override { return ::posix_memalign(out, a, n); }
  size_t usable_size(const void* p) override { return malloc_usable_size(const_cast<void*>(p)); }
  void release_cached() override { malloc_trim(0); }
  // Sanitizer allocators poison whole chunks (shadow memsets proportional to the size) and
  // libFuzzer's malloc limit (rss_limit_mb) applies to the system malloc: "may fail" sizes
  // are attempted up to 256 MiB, with at most 1 GiB of them live.
  uint64_t max_attempt_size() const override { return uint64_t{256} << 20; }
  uint64_t max_live_bytes() const override { return uint64_t{1} << 30; }
  // Sanitizer allocators poison the alignment padding too: 1 GiB alignments cost 128 MiB of
  // shadow each. Alignments above 4 MiB are skipped for the system backend.
  uint64_t max_attempt_alignment() const override { return uint64_t{4} << 20; }
};

// ---- faulty reference allocator ------------------------------------------------------------------
//
// One mmap per block: [page-aligned mapping | ... | header 16 B | payload]. Correct unless a
// fault mode is selected; each fault fires on the third qualifying call, so a program has
// to reach it. Used only by the harness self-test (TM_HARNESS_BACKEND=faulty:<mode>).

enum FaultMode {
  kFaultNone = 0,
  kFaultOverlap,             // 3rd malloc returns a pointer inside a live block
  kFaultMisaligned,          // 3rd malloc (>= 16 B) returns a pointer 8 bytes off
  kFaultReallocCopy,         // realloc that moves drops the last byte of the copied prefix
  kFaultCallocDirty,         // 3rd calloc leaves a nonzero byte
  kFaultUsableShort,         // usable_size reports requested - 1 for the 3rd block
  kFaultStatsLeak,           // 3rd free does not update the live counters
  kFaultReallocFailClobber,  // failing realloc overwrites the old block's first byte
  kFaultErrno,               // impossible malloc returns NULL with errno EINVAL
  kFaultHugeSucceeds,        // malloc(SIZE_MAX-ish) wraps and returns a small block
  kFaultHeapCheck,           // check_heap reports a violation from the 3rd call on
  kFaultFreeStomps,          // 3rd free writes one byte into another live block
  kFaultZeroNull,            // malloc(0) returns NULL
  kFaultAlignedEinval,       // aligned_alloc rejects sizes that are not a multiple of alignment
  // Memory pools (emulated, PooledBackend): see PoolFault.
  kFaultPoolResetLeak,      // 2nd reset of a non-empty pool forgets one block (leak in the stats)
  kFaultPoolDestroyOther,   // destroy frees a block of another pool too (its memory is reused)
  kFaultPoolStatsOff,       // heap_stats live_blocks off by one
  kFaultPoolReallocEscape,  // heap_realloc that moves leaves the new block outside the pool
  kFaultPoolFreeStale,      // free() of a pool block leaves it counted in its pool
  kFaultModeCount
};

const char* const kFaultNames[kFaultModeCount] = {"none",
                                                  "overlap",
                                                  "misaligned",
                                                  "realloc-copy",
                                                  "calloc-dirty",
                                                  "usable-short",
                                                  "stats-leak",
                                                  "realloc-fail-clobber",
                                                  "errno",
                                                  "huge-succeeds",
                                                  "heap-check",
                                                  "free-stomps",
                                                  "zero-null",
                                                  "aligned-einval",
                                                  "pool-reset-leak",
                                                  "pool-destroy-other",
                                                  "pool-stats-off",
                                                  "pool-realloc-escape",
                                                  "pool-free-stale"};

class FaultyBackend final : public PooledBackend {
 public:
  explicit FaultyBackend(int mode) : mode_(mode), name_(std::string("faulty:") + kFaultNames[mode]) {
    switch (mode) {
      case kFaultPoolResetLeak:
        set_pool_fault(kPoolFaultResetLeak);
        break;
      case kFaultPoolDestroyOther:
        set_pool_fault(kPoolFaultDestroyOther);
        break;
      case kFaultPoolStatsOff:
        set_pool_fault(kPoolFaultStatsOff);
        break;
      case kFaultPoolReallocEscape:
        set_pool_fault(kPoolFaultReallocEscape);
        break;
      case kFaultPoolFreeStale:
        set_pool_fault(kPoolFaultFreeStale);
        break;
      default:
        break;
    }
  }
  ~FaultyBackend() override {
    release_all_pools();
    while (!blocks_.empty()) release(blocks_.begin()->first);
    for (auto& [map, len] : zombies_) munmap(map, len);
  }
  const char* name() const override { return name_.c_str(); }

  void* malloc(size_t n) override {
    if (mode_ == kFaultZeroNull && n == 0) return nullptr;
    if (mode_ == kFaultHugeSucceeds && n >= (uint64_t{1} << 47) && ++count_ == 1) {
      return alloc(n & 0xFFFF, 16, false);  // "size + header" wrapped around
    }
    if (n >= (uint64_t{1} << 40)) {
      errno = mode_ == kFaultErrno ? EINVAL : ENOMEM;
      return nullptr;
    }
    void* p = alloc(n, 16, false);
    if (p == nullptr) return nullptr;
    if (mode_ == kFaultOverlap && last_ != nullptr && blocks_.count(last_) && ++count_ == 3) {
      // Hand out the middle of the previous block instead.
      release(p);
      char* q = static_cast<char*>(last_) + 16;
      overlap_[q] = (n + 15) & ~size_t{15};
      return q;
    }
    if (mode_ == kFaultMisaligned && n >= 16 && ++count_ == 3) {
      release(p);
      p = alloc(n + 8, 16, false);
      shift_[static_cast<char*>(p) + 8] = p;
      return static_cast<char*>(p) + 8;
    }
    last_ = p;
    return p;
  }
  void* calloc(size_t c, size_t n) override {
    size_t total;
    if (__builtin_mul_overflow(c, n, &total) || total >= (uint64_t{1} << 40)) {
      errno = ENOMEM;
      return nullptr;
    }
    void* p = alloc(total, 16, true);
    if (p != nullptr && mode_ == kFaultCallocDirty && total > 0 && ++count_ == 3) {
      static_cast<uint8_t*>(p)[total - 1] = 0xA5;
    }
    return p;
  }
  void* raw_realloc(void* p, size_t n) override {
    if (p == nullptr) return malloc(n);
    if (n == 0) {
      raw_free(p);
      return nullptr;
    }
    Header* h = header(p);
    if (h == nullptr) return nullptr;
    if (n >= (uint64_t{1} << 40)) {
      if (mode_ == kFaultReallocFailClobber) static_cast<uint8_t*>(p)[0] ^= 0x5A;
      errno = ENOMEM;
      return nullptr;
    }
    void* q = alloc(n, 16, false);
    if (q == nullptr) return nullptr;
    size_t m = h->requested < n ? h->requested : n;
    if (mode_ == kFaultReallocCopy && m > 0 && ++count_ >= 3) --m;
    memcpy(q, p, m);
    raw_free(p);
    return q;
  }
  // kPoolFaultDestroyOther: p is "freed" (counters and bookkeeping) and its memory reused
  // (its first bytes overwritten), but stays mapped so that the harness can see it.
  void raw_free_behind(void* p) override {
    Header* h = header(p);
    if (h == nullptr) return;
    memset(p, 0xDD, h->requested < 64 ? h->requested : 64);
    --live_blocks_;
    requested_ -= h->requested;
    usable_ -= h->usable;
    zombies_[h->map] = h->map_len;
    mappings_.erase(h->map);
    if (last_ == p) last_ = nullptr;
    blocks_.erase(p);
    delete h;
  }
  void raw_free(void* p) override {
    if (p == nullptr) return;
    auto s = shift_.find(p);
    if (s != shift_.end()) {
      void* real = s->second;
      shift_.erase(s);
      release(real);
      return;
    }
    if (overlap_.erase(p)) return;  // the overlapping pointer handed out by kFaultOverlap
    Header* h = header(p);
    if (h == nullptr) return;
    if (mode_ == kFaultFreeStomps && ++count_ == 3) {
      for (auto& [ptr, hdr] : blocks_) {
        if (ptr != p && hdr->requested > 0) {
          static_cast<uint8_t*>(ptr)[hdr->requested / 2] ^= 0x10;
          break;
        }
      }
    }
    const bool leak = mode_ == kFaultStatsLeak && ++count_ == 3;
    release(p, leak);
  }
  void* aligned_alloc(size_t a, size_t n) override {
    if (a == 0 || (a & (a - 1)) != 0) {
      errno = EINVAL;
      return nullptr;
    }
    if (a > (size_t{1} << 30)) {
      errno = EINVAL;
      return nullptr;
    }
    if (mode_ == kFaultAlignedEinval && n % a != 0) {
      errno = EINVAL;
      return nullptr;
    }
    if (n >= (uint64_t{1} << 40)) {
      errno = ENOMEM;
      return nullptr;
    }
    return alloc(n, a < 16 ? 16 : a, false);
  }
  int posix_memalign(void** out, size_t a, size_t n) override {
    if (a == 0 || (a & (a - 1)) != 0 || a % sizeof(void*) != 0 || a > (size_t{1} << 30)) return EINVAL;
    if (n >= (uint64_t{1} << 40)) return ENOMEM;
    void* p = alloc(n, a < 16 ? 16 : a, false);
    if (p == nullptr) return ENOMEM;
    *out = p;
    return 0;
  }
  size_t usable_size(const void* p) override {
    if (p == nullptr) return 0;
    auto s = shift_.find(const_cast<void*>(p));
    if (s != shift_.end()) return header(s->second)->usable - 8;
    auto o = overlap_.find(const_cast<void*>(p));
    if (o != overlap_.end()) return o->second;  // kFaultOverlap's interior pointer
    Header* h = header(const_cast<void*>(p));
    if (h == nullptr) return 0;
    if (mode_ == kFaultUsableShort && h->requested > 0 && h->serial == 3) return h->requested - 1;
    return h->usable;
  }

  bool strict() const override { return true; }
  bool has_heap_check() const override { return true; }
  int check_heap(std::string* message) override {
    for (auto& [ptr, hdr] : blocks_) {
      if (hdr->magic != kMagic) {
        if (message) *message = "faulty backend: bad header magic";
        return 4;
      }
    }
    if (mode_ == kFaultHeapCheck && ++checks_ >= 3) {
      if (message) *message = "faulty backend: deliberate heap-check failure";
      return 1;
    }
    return 0;
  }
  bool has_stats() const override { return true; }
  void stats(HeapStats* out) override {
    *out = HeapStats{};
    out->live_blocks = live_blocks_;
    out->requested_bytes = requested_;
    out->usable_bytes = usable_;
    out->mapped_bytes = mapped_;
    out->committed_bytes = mapped_;
    out->peak_mapped_bytes = peak_mapped_;
    out->peak_requested_bytes = peak_requested_;
    out->large_live_blocks = live_blocks_;
  }
  bool has_owns() const override { return true; }
  bool owns(const void* p) override {
    const char* c = static_cast<const char*>(p);
    auto it = mappings_.upper_bound(const_cast<char*>(c));
    if (it == mappings_.begin()) return false;
    --it;
    return c >= it->first && c < it->first + it->second;
  }
  uint64_t max_attempt_size() const override { return uint64_t{1} << 30; }
  uint64_t max_live_bytes() const override { return uint64_t{4} << 30; }

 private:
  static constexpr uint64_t kMagic = 0x7e57a11c;
  struct Header {
    uint32_t magic;
    uint32_t serial;
    uint64_t requested;
    uint64_t usable;
    char* map;
    size_t map_len;
  };

  Header* header(void* p) {
    auto it = blocks_.find(p);
    return it == blocks_.end() ? nullptr : it->second;
  }

  void* alloc(size_t n, size_t align, bool zero) {
    (void)zero;  // fresh anonymous mappings are zero
    const size_t page = 4096;
    const size_t front = align > page ? align : page;
    const size_t len = front + ((n + page - 1) & ~(page - 1)) + align;
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      errno = ENOMEM;
      return nullptr;
    }
    char* base = static_cast<char*>(m);
    uintptr_t user = reinterpret_cast<uintptr_t>(base) + front;
    user = (user + align - 1) & ~(uintptr_t{align} - 1);
    Header* h = new Header{static_cast<uint32_t>(kMagic), ++serial_, n, ((n + 15) & ~size_t{15}), base, len};
    if (h->usable == 0) h->usable = 16;
    void* p = reinterpret_cast<void*>(user);
    blocks_[p] = h;
    mappings_[base] = len;
    ++live_blocks_;
    requested_ += n;
    usable_ += h->usable;
    mapped_ += len;
    if (mapped_ > peak_mapped_) peak_mapped_ = mapped_;
    if (requested_ > peak_requested_) peak_requested_ = requested_;
    return p;
  }

  void release(void* p, bool leak_counters = false) {
    auto it = blocks_.find(p);
    if (it == blocks_.end()) return;
    Header* h = it->second;
    if (!leak_counters) {
      --live_blocks_;
      requested_ -= h->requested;
      usable_ -= h->usable;
    }
    mapped_ -= h->map_len;
    mappings_.erase(h->map);
    munmap(h->map, h->map_len);
    if (last_ == p) last_ = nullptr;
    blocks_.erase(it);
    delete h;
  }

  int mode_;
  std::string name_;
  unsigned count_ = 0;
  unsigned checks_ = 0;
  uint32_t serial_ = 0;
  void* last_ = nullptr;
  std::map<void*, Header*> blocks_;
  std::map<void*, void*> shift_;
  std::map<void*, size_t> overlap_;
  std::map<char*, size_t> mappings_;
  std::map<char*, size_t> zombies_;  // mappings of blocks raw_free_behind "freed"
  size_t live_blocks_ = 0, requested_ = 0, usable_ = 0, mapped_ = 0, peak_mapped_ = 0, peak_requested_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_tm_backend() { return std::make_unique<TmBackend>(); }
std::unique_ptr<Backend> make_system_backend() { return std::make_unique<SystemBackend>(); }
std::unique_ptr<Backend> make_faulty_backend(int mode) {
  if (mode < 0 || mode >= kFaultModeCount) return nullptr;
  return std::make_unique<FaultyBackend>(mode);
}
int faulty_mode_count() { return kFaultModeCount; }
const char* faulty_mode_name(int mode) { return mode >= 0 && mode < kFaultModeCount ? kFaultNames[mode] : "?"; }

std::unique_ptr<Backend> make_backend(std::string_view name) {
  if (name.empty() || name == "tm") return make_tm_backend();
  if (name == "system") return make_system_backend();
  if (name.substr(0, 7) == "faulty:") {
    const std::string_view m = name.substr(7);
    for (int i = 0; i < kFaultModeCount; ++i) {
      if (m == kFaultNames[i] || m == std::to_string(i)) return make_faulty_backend(i);
    }
  }
  return nullptr;
}

std::unique_ptr<Backend> backend_from_env() {
  const char* e = getenv("TM_HARNESS_BACKEND");
  auto b = make_backend(e ? e : "tm");
  if (!b) {
    fprintf(stderr, "tm_harness: unknown TM_HARNESS_BACKEND='%s' (use tm, system or faulty:<mode>)\n", e);
    exit(2);
  }
  return b;
}

}  // namespace tmh
