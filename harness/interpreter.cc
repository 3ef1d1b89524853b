// The interpreter: runs a Program against a Backend and the shadow heap, checking every
// result. The first difference is reported with the trace position and the program aborts
// (or the report is returned, for property tests).
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "engine.h"
#include "tm_harness.h"

// The pattern loops run over every live byte: keep libFuzzer's coverage instrumentation
// (and its comparison tracing) out of them. It costs most of the time and adds only noise
// to the coverage feedback.
#if defined(__clang__)
#define TMH_NO_COVERAGE __attribute__((no_sanitize("coverage")))
// Pattern generation into the harness's own stack buffers: no sanitizer checks needed.
#define TMH_NO_CHECKS __attribute__((no_sanitize("coverage", "address", "memory", "thread")))
#else
#define TMH_NO_COVERAGE
#define TMH_NO_CHECKS
#endif

namespace tmh {

// ---- Fill pattern ----------------------------------------------------------------------------
//
// byte(seed, i) = A + 7*i + B*(i >> 8)  (mod 256), A = seed*31 + 1, B odd and seed-mixed.
// Adjacent bytes always differ (step 7), 256-byte chunks differ from each other (B odd),
// and blocks with different seeds differ almost everywhere.

namespace {

TMH_NO_COVERAGE inline uint8_t pat_a(uint32_t seed) { return static_cast<uint8_t>(seed * 31u + 1u); }
TMH_NO_COVERAGE inline uint8_t pat_b(uint32_t seed) { return static_cast<uint8_t>(((seed * 0x9E3779B1u) >> 24) | 1u); }

}  // namespace

TMH_NO_COVERAGE uint8_t pattern_byte(uint32_t seed, uint64_t i) {
  return static_cast<uint8_t>(pat_a(seed) + 7u * static_cast<unsigned>(i & 255) +
                              pat_b(seed) * static_cast<unsigned>((i >> 8) & 255));
}

namespace {

constexpr uint64_t kNone = UINT64_MAX;
constexpr uint64_t kFullPatternMax = uint64_t{1} << 20;  // blocks up to 1 MiB: every byte
constexpr uint64_t kEdge = 64 * 1024;                    // larger: head and tail windows ...
constexpr uint64_t kInteriorWindows = 64;                // ... plus 63 interior windows
constexpr uint64_t kNeighbourEdge = 4096;                // neighbour check after alloc/free

// Pattern source for a block: 256-byte chunk j is base[k] + B*j bytewise; the pattern
// repeats every kPeriod (64 KiB) bytes. Checks and fills compare / copy against a lazily
// generated table of one period (one memcmp per 64 KiB).
constexpr uint64_t kPeriod = 65536;

struct PatternTable {
  bool zero = true;
  uint32_t seed = 0;
  uint64_t valid = 0;  // bytes of buf generated for (zero, seed)
  alignas(64) uint8_t buf[kPeriod];
};

PatternTable& pattern_table() {
  static thread_local PatternTable t;
  return t;
}

struct Pattern {
  bool zero;
  uint32_t seed;
  alignas(8) uint8_t base[256];
  uint8_t b;

  TMH_NO_COVERAGE Pattern(bool z, uint32_t s) : zero(z), seed(s), b(pat_b(s)) {
    const uint8_t a = pat_a(s);
    for (unsigned k = 0; k < 256; ++k) base[k] = z ? 0 : static_cast<uint8_t>(a + 7u * k);
  }
  // Fills out[0..256) with chunk j.
  TMH_NO_CHECKS void chunk(uint64_t j, uint8_t* out) const {
    if (zero) {
      memset(out, 0, 256);
      return;
    }
    const uint8_t c = static_cast<uint8_t>(b * static_cast<unsigned>(j & 255));
    const uint64_t cc = 0x0101010101010101ull * c;
    for (unsigned w = 0; w < 32; ++w) {
      uint64_t x;
      memcpy(&x, base + 8 * w, 8);
      // Bytewise add without carries between bytes.
      const uint64_t sum =
          ((x & 0x7F7F7F7F7F7F7F7Full) + (cc & 0x7F7F7F7F7F7F7F7Full)) ^ ((x ^ cc) & 0x8080808080808080ull);
      memcpy(out + 8 * w, &sum, 8);
    }
  }
  TMH_NO_COVERAGE uint8_t at(uint64_t i) const { return zero ? 0 : pattern_byte(seed, i); }
  // One period of the pattern, valid for offsets below min(need, kPeriod).
  TMH_NO_CHECKS const uint8_t* table(uint64_t need) const {
    PatternTable& t = pattern_table();
    if (t.zero != zero || t.seed != seed) {
      t.zero = zero;
      t.seed = seed;
      t.valid = 0;
    }
    if (need > kPeriod) need = kPeriod;
    while (t.valid < need) {
      chunk(t.valid >> 8, t.buf + t.valid);
      t.valid += 256;
    }
    return t.buf;
  }
};

TMH_NO_COVERAGE void fill_range(uint8_t* p, uint64_t from, uint64_t to, const Pattern& pat) {
  const uint8_t* t = pat.table(to);
  for (uint64_t i = from; i < to;) {
    const uint64_t off = i & (kPeriod - 1);
    const uint64_t n = to - i < kPeriod - off ? to - i : kPeriod - off;
    memcpy(p + i, t + off, n);
    i += n;
  }
}

TMH_NO_COVERAGE uint64_t check_range(const uint8_t* p, uint64_t from, uint64_t to, const Pattern& pat) {
  const uint8_t* t = pat.table(to);
  for (uint64_t i = from; i < to;) {
    const uint64_t off = i & (kPeriod - 1);
    const uint64_t n = to - i < kPeriod - off ? to - i : kPeriod - off;
    if (memcmp(p + i, t + off, n) != 0) {
      for (uint64_t k = 0; k < n; ++k) {
        if (p[i + k] != t[off + k]) return i + k;
      }
    }
    i += n;
  }
  return kNone;
}

// Calls f(from, to) for each patterned window of a block of len bytes, clipped to [lo, hi).
// Blocks up to kFullPatternMax: every byte. Larger: 64 KiB head and tail plus 256 bytes at
// 63 evenly spaced interior points (bounded work and RSS for any size).
template <typename F>
void for_windows(uint64_t len, uint64_t lo, uint64_t hi, F&& f) {
  auto clip = [&](uint64_t a, uint64_t b) {
    if (a < lo) a = lo;
    if (b > hi) b = hi;
    if (a < b) f(a, b);
  };
  if (len <= kFullPatternMax) {
    clip(0, len);
    return;
  }
  clip(0, kEdge);
  const uint64_t step = (len / kInteriorWindows) & ~uint64_t{255};
  for (uint64_t k = 1; k < kInteriorWindows; ++k) {
    const uint64_t a = k * step;
    if (a >= kEdge && a + 256 <= len - kEdge) clip(a, a + 256);
  }
  clip(len - kEdge, len);
}

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

uint64_t min_align(uint64_t n) {
  if (n >= 16) return 16;
  if (n == 0) return 1;
  uint64_t a = 1;
  while (a * 2 <= n) a *= 2;
  return a;
}

std::string hex(uint64_t v) {
  char b[32];
  snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}
std::string ptr(const void* p) { return hex(reinterpret_cast<uintptr_t>(p)); }
std::string num(uint64_t v) { return v >= kImpossibleMin ? hex(v) : std::to_string(v); }

struct Failure {
  std::string what;
};

[[noreturn]] __attribute__((format(printf, 1, 2))) void fail(const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Failure{buf};
}

enum class Expect { kSucceed, kMayFail, kMustFail, kSkip };

// errno values a failure may report.
struct Allowed {
  int e[2];
  int n;
};
constexpr Allowed kENOMEM{{ENOMEM, 0}, 1};
constexpr Allowed kEINVAL{{EINVAL, 0}, 1};
constexpr Allowed kEither{{ENOMEM, EINVAL}, 2};

using detail::Block;

// What happened, for the trace in a failure report.
struct Record {
  size_t index = 0;
  uint64_t n = 0;  // resolved size (0 when none)
  const void* before = nullptr;
  const void* after = nullptr;
  int err = 0;
  const char* outcome = "";
  std::string note;  // multi-threaded runs: a thread op recorded in the ring (no heap op)
};

}  // namespace

// ---- Interpreter state -------------------------------------------------------------------------

struct Interpreter::Impl {
  Backend& be;
  const Options& opt;
  Counters& ctr;

  const Program* prog = nullptr;
  size_t cur = 0;
  bool in_final = false;
  Block slots[kSlots];
  std::map<uintptr_t, unsigned> by_addr;
  uint64_t live_count = 0, live_requested = 0, live_usable = 0, live_virtual = 0;
  HeapStats base;
  uint32_t next_seed = 1;
  uint64_t prev_size = 0;
  long oom_left = -1;
  bool oom_active = false;

  // Memory pools (v2 pool ops): the model's pool slots and the extra pools of heap_fill.
  // A block's owner is Block::pool (a pool slot index, -1 for none).
  struct PoolSlot {
    void* h = nullptr;  // live pool handle, nullptr: empty slot
    size_t birth_op = 0;
  };
  PoolSlot pools[kPoolSlots];
  std::vector<void*> extra_pools;

  // Multi-threaded runs (ThreadEngine): OOM windows are phase-level (set by the runner),
  // the backend's live-bytes budget is shared by budget_divisor engines and also caps
  // large sane sizes, and in strict-overlap mode every block is claimed in a registry
  // shared by all threads. Off (single-thread Interpreter): the v1 behaviour.
  bool mt = false;
  unsigned budget_divisor = 1;
  unsigned engine_id = 0;
  detail::OverlapRegistry* registry = nullptr;
  std::string context;  // "thread 2, phase 3" in reports
  std::string where;    // set: the report is about a check outside a heap op ("at: <where>")

  static constexpr size_t kRing = 32;
  Record ring[kRing];
  size_t ring_n = 0;
  Record* rec = nullptr;
  std::string resolved;  // resolved operands of the current op

  Impl(Backend& b, const Options& o, Counters& c) : be(b), opt(o), ctr(c) {}

  // -- records --
  void begin_record(size_t index) {
    rec = &ring[ring_n++ % kRing];
    *rec = Record{};
    rec->index = index;
    resolved.clear();
  }
  void outcome(const char* what, const void* before = nullptr, const void* after = nullptr, int err = 0) {
    rec->outcome = what;
    rec->before = before;
    rec->after = after;
    rec->err = err;
  }

  std::string describe_block(unsigned s) const {
    const Block& b = slots[s];
    std::string d = "slot " + std::to_string(s) + " (" + ptr(b.p) + ", " + num(b.requested) +
                    " bytes requested, usable " + num(b.usable) + ", ";
    d += b.zeroed ? std::string("zero-filled") : "seed " + std::to_string(b.seed);
    d += ", from #" + std::to_string(b.birth_op) + " " + op_name(b.how);
    if (b.pool >= 0) d += ", in pool " + std::to_string(b.pool);
    d += ")";
    return d;
  }

  // -- content --
  std::string mismatch_detail(const Block& b, const uint8_t* p, uint64_t off, const Pattern& pat,
                              uint64_t limit) const {
    char buf[512];
    const uint64_t from = off & ~uint64_t{15};
    uint64_t to = from + 32;
    if (to > limit) to = limit;
    std::string found, want;
    for (uint64_t i = from; i < to; ++i) {
      char h[4];
      snprintf(h, sizeof h, "%02x", p[i]);
      found += h;
      snprintf(h, sizeof h, "%02x", pat.at(i));
      want += h;
      if ((i & 3) == 3) {
        found += ' ';
        want += ' ';
      }
    }
    uint64_t bad = 0;
    uint64_t last = off;
    for (uint64_t i = off; i < limit && i < off + 4096; ++i) {
      if (p[i] != pat.at(i)) {
        ++bad;
        last = i;
      }
    }
    snprintf(buf, sizeof buf,
             "differs at offset %" PRIu64 " (address %s): expected 0x%02x, found 0x%02x; %" PRIu64
             " of the next 4096 bytes differ (last at offset %" PRIu64
             ")\n"
             "      bytes %" PRIu64 "..%" PRIu64 ": %s\n      expected:    %s",
             off, ptr(p + off).c_str(), pat.at(off), p[off], bad, last, from, to - 1, found.c_str(), want.c_str());
    (void)b;
    return buf;
  }

  // Verifies the patterned bytes of slot s in [lo, hi) (against the block's own pattern).
  void verify_block(unsigned s, const char* when, uint64_t lo = 0, uint64_t hi = UINT64_MAX) {
    const Block& b = slots[s];
    if (!b.live) return;
    const Pattern pat(b.zeroed, b.seed);
    for_windows(b.fill_len, lo, hi, [&](uint64_t a, uint64_t z) {
      const uint64_t bad = check_range(b.p, a, z, pat);
      if (bad != kNone) {
        fail("content of %s changed (%s): %s", describe_block(s).c_str(), when,
             mismatch_detail(b, b.p, bad, pat, b.fill_len).c_str());
      }
    });
  }

  void verify_all(const char* when) {
    for (unsigned s = 0; s < kSlots; ++s) verify_block(s, when);
  }

  // Edges of the live blocks around [addr, addr + len) in address order.
  void verify_neighbours(uintptr_t addr, uint64_t len, const char* when) {
    auto it = by_addr.lower_bound(addr + (len ? len : 1));
    if (it != by_addr.end()) verify_block(it->second, when, 0, kNeighbourEdge);
    it = by_addr.lower_bound(addr);
    if (it != by_addr.begin()) {
      --it;
      const Block& b = slots[it->second];
      verify_block(it->second, when, b.fill_len > kNeighbourEdge ? b.fill_len - kNeighbourEdge : 0);
    }
  }

  void fill_block(Block& b, uint64_t from) {
    const Pattern pat(b.zeroed, b.seed);
    for_windows(b.fill_len, from, UINT64_MAX, [&](uint64_t a, uint64_t z) { fill_range(b.p, a, z, pat); });
  }

  // How far the harness may fill a block of n requested bytes with the given usable size.
  // The usable tail is the caller's by contract; but sanitizer allocators under the system
  // backend track zero-byte blocks as empty while reporting a nonzero usable size (TSan:
  // writes there are reported as use-after-free), so lenient backends keep those untouched.
  uint64_t tail_limit(uint64_t n, uint64_t usable) const { return n == 0 && !be.strict() ? 0 : usable; }

  // -- model bookkeeping --
  void check_overlap(const uint8_t* p, uint64_t extent, const char* what) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (a + extent < a) fail("%s returned %s whose usable range wraps the address space", what, ptr(p).c_str());
    auto it = by_addr.upper_bound(a);
    if (it != by_addr.end() && it->first < a + extent) {
      fail("%s returned %s (usable %s bytes) which overlaps live %s", what, ptr(p).c_str(), num(extent).c_str(),
           describe_block(it->second).c_str());
    }
    if (it != by_addr.begin()) {
      --it;
      const Block& o = slots[it->second];
      if (it->first + o.extent() > a) {
        fail("%s returned %s (usable %s bytes) which overlaps live %s", what, ptr(p).c_str(), num(extent).c_str(),
             describe_block(it->second).c_str());
      }
    }
  }

  // Adds slot s's block to the model (and, when `global`, claims it in the shared registry).
  void link(unsigned s, bool global = true) {
    Block& b = slots[s];
    if (global && registry != nullptr) {
      std::string other;
      if (!registry->claim(b.p, b.extent(), engine_id, &other)) {
        fail("%s (usable %s bytes, now in %s) overlaps a live block of another thread: %s", ptr(b.p).c_str(),
             num(b.extent()).c_str(), describe_block(s).c_str(), other.c_str());
      }
    }
    by_addr[reinterpret_cast<uintptr_t>(b.p)] = s;
    ++live_count;
    live_requested += b.requested;
    live_usable += b.usable;
    live_virtual += b.virt();
  }
  // Removes slot s's block from the model (and, when `global`, from the shared registry).
  void unlink(unsigned s, bool global = true) {
    Block& b = slots[s];
    if (global && registry != nullptr) registry->unclaim(b.p);
    by_addr.erase(reinterpret_cast<uintptr_t>(b.p));
    --live_count;
    live_requested -= b.requested;
    live_usable -= b.usable;
    live_virtual -= b.virt();
  }

  // A new block arrived in slot s: check alignment, usable size, overlap, ownership and
  // (calloc) zero contents, then fill it and add it to the model.
  void adopt(unsigned s, void* vp, uint64_t n, uint64_t align, OpKind how, bool zeroed, const char* what,
             int pool = -1) {
    uint8_t* p = static_cast<uint8_t*>(vp);
    const uint64_t need = align > min_align(n) ? align : min_align(n);
    if (reinterpret_cast<uintptr_t>(p) % need != 0) {
      fail("%s returned %s, which is not aligned to %s", what, ptr(p).c_str(), num(need).c_str());
    }
    const uint64_t usable = be.usable_size(p);
    if (usable < n) {
      fail("%s returned %s with usable size %s < %s bytes requested", what, ptr(p).c_str(), num(usable).c_str(),
           num(n).c_str());
    }
    check_overlap(p, usable > 0 ? usable : 1, what);
    if (be.has_owns()) {
      if (!be.owns(p)) fail("%s returned %s but owns() says the allocator does not own it", what, ptr(p).c_str());
      if (usable > 1 && !be.owns(p + usable - 1)) {
        fail("%s returned %s but owns() is false for its last usable byte %s", what, ptr(p).c_str(),
             ptr(p + usable - 1).c_str());
      }
    }
    Block& b = slots[s];
    b = Block{};
    b.p = p;
    b.live = true;
    b.requested = n;
    b.usable = usable;
    b.align = align;
    b.birth_op = cur;
    b.how = how;
    b.last_size = n;
    b.last_usable = usable;
    b.zeroed = zeroed;
    b.seed = zeroed ? 0 : next_seed++;
    b.pool = static_cast<int8_t>(pool);
    if (zeroed) {
      const Pattern zero(true, 0);
      b.fill_len = n;
      for_windows(n, 0, UINT64_MAX, [&](uint64_t a, uint64_t z) {
        const uint64_t bad = check_range(p, a, z, zero);
        if (bad != kNone) {
          fail("%s returned %s whose memory is not zeroed: %s", what, ptr(p).c_str(),
               mismatch_detail(b, p, bad, zero, n).c_str());
        }
      });
    }
    b.fill_len = prog->fill_usable() ? tail_limit(n, usable) : n;
    fill_block(b, zeroed ? n : 0);
    link(s);
    ++ctr.allocs;
    verify_neighbours(reinterpret_cast<uintptr_t>(p), b.extent(), "after a neighbouring allocation");
  }

  // Verifies and frees slot s's block: free(), or heap_free() of its pool with `heap_free`
  // (pool blocks go through plain free() too: tm_free accepts them).
  void release(unsigned s, const char* why, bool heap_free = false) {
    Block& b = slots[s];
    if (!b.live) return;
    verify_block(s, why);
    unlink(s);
    uint8_t* p = b.p;
    const uint64_t ext = b.extent();
    const int pool = b.pool;
    if (heap_free && pool >= 0) {
      be.heap_free(pools[pool].h, p);
    } else {
      be.free(p);
    }
    b.live = false;
    b.p = nullptr;
    ++ctr.frees;
    verify_neighbours(reinterpret_cast<uintptr_t>(p), ext, "after a neighbouring free");
    if (pool >= 0) check_pool_stats(static_cast<unsigned>(pool), heap_free ? "after heap_free" : "after free()");
  }

  // -- memory pools --
  void pool_totals(unsigned pi, uint64_t* n, uint64_t* usable) const {
    *n = *usable = 0;
    for (const Block& b : slots) {
      if (b.live && b.pool == static_cast<int>(pi)) {
        ++*n;
        *usable += b.usable;
      }
    }
  }

  // tm_heap_stats of pool slot pi against the model's blocks of that pool (exact).
  void check_pool_stats(unsigned pi, const char* when) {
    if (pools[pi].h == nullptr) return;
    PoolStats st;
    be.heap_stats(pools[pi].h, &st);
    uint64_t n, usable;
    pool_totals(pi, &n, &usable);
    if (st.live_blocks != n) {
      fail("heap_stats of pool %u %s: live_blocks is %zu; the model has %" PRIu64 " blocks in this pool", pi, when,
           st.live_blocks, n);
    }
    if (st.usable_bytes != usable) {
      fail("heap_stats of pool %u %s: usable_bytes is %zu; the model's sum of usable_size() over its %" PRIu64
           " blocks is %" PRIu64,
           pi, when, st.usable_bytes, n, usable);
    }
    if (st.large_blocks > st.live_blocks) {
      fail("heap_stats of pool %u %s: large_blocks %zu > live_blocks %zu", pi, when, st.large_blocks, st.live_blocks);
    }
    if (st.mapped_bytes < st.usable_bytes) {
      fail("heap_stats of pool %u %s: mapped_bytes %zu < usable_bytes %zu", pi, when, st.mapped_bytes, st.usable_bytes);
    }
  }

  bool handle_in_use(const void* h) const {
    for (const PoolSlot& ps : pools) {
      if (ps.h == h) return true;
    }
    for (const void* x : extra_pools) {
      if (x == h) return true;
    }
    return false;
  }

  // heap_create with its expectation: it must succeed while fewer than max_heaps() pools
  // are live (the backend's count) and fail with ENOMEM at the limit. Returns the handle or
  // nullptr (expected failure at the limit).
  void* create_heap(const char* what) {
    const unsigned live = be.heaps_live();
    const bool room = live < be.max_heaps();
    errno = 0;
    void* h = be.heap_create();
    const int err = errno;
    if (h == nullptr) {
      if (room) {
        fail("%s: heap_create returned NULL (errno %d: %s) with only %u of %u pools live; it must succeed", what, err,
             strerror(err), live, be.max_heaps());
      }
      if (err != ENOMEM) {
        fail("%s: heap_create at the limit of %u pools returned NULL with errno %d (%s); expected ENOMEM", what,
             be.max_heaps(), err, strerror(err));
      }
      ++ctr.pool_limit_hits;
      return nullptr;
    }
    if (!room) {
      fail("%s: heap_create returned %s with %u pools live already; the limit is %u", what, ptr(h).c_str(), live,
           be.max_heaps());
    }
    if (handle_in_use(h))
      fail("%s: heap_create returned %s, the handle of a pool that is still live", what, ptr(h).c_str());
    ++ctr.pool_creates;
    return h;
  }

  // Pool slot pi holds a live pool afterwards (created now when it was empty), or false:
  // the limit of live pools is reached (expected; the op is skipped and changes nothing).
  bool ensure_pool(unsigned pi) {
    if (pools[pi].h != nullptr) return true;
    void* h = create_heap("creating the op's pool");
    if (h == nullptr) {
      ++ctr.skipped;
      outcome("skipped (its pool slot is empty and the pool limit is reached: heap_create failed, as expected)");
      return false;
    }
    pools[pi].h = h;
    pools[pi].birth_op = cur;
    check_pool_stats(pi, "of a new pool");
    return true;
  }

  // Takes every block of pool slot pi out of the model (verified first): their slots become
  // empty. Returns how many.
  uint64_t drop_pool_blocks(unsigned pi, const char* why) {
    for (unsigned s = 0; s < kSlots; ++s) {
      if (slots[s].live && slots[s].pool == static_cast<int>(pi)) verify_block(s, why);
    }
    uint64_t n = 0;
    for (unsigned s = 0; s < kSlots; ++s) {
      Block& b = slots[s];
      if (!b.live || b.pool != static_cast<int>(pi)) continue;
      unlink(s);
      b.live = false;
      b.p = nullptr;
      ++n;
    }
    ctr.frees += n;
    ctr.pool_blocks_dropped += n;
    if (!resolved.empty()) resolved += "; ";
    resolved += std::to_string(n) + " block(s) of pool " + std::to_string(pi) + " dropped";
    return n;
  }

  void destroy_pool(unsigned pi, const char* why) {
    drop_pool_blocks(pi, why);
    void* h = pools[pi].h;
    pools[pi] = PoolSlot{};
    be.heap_destroy(h);
    ++ctr.pool_destroys;
    verify_all("after heap_destroy (blocks outside the pool must be intact)");
  }

  // -- expectations --
  Expect expect_size(uint64_t n, uint64_t extra_virtual) const {
    if (n >= kImpossibleMin) return Expect::kMustFail;
    if (mt_over_budget(n, extra_virtual, live_virtual)) return Expect::kSkip;
    if (n <= kSaneMax) return oom_active ? Expect::kMayFail : Expect::kSucceed;
    if (n > be.max_attempt_size()) return Expect::kSkip;
    if (live_virtual + n + extra_virtual > live_budget()) return Expect::kSkip;
    return Expect::kMayFail;
  }

  // Multi-threaded runs: a large sane block (> 1 MiB) is skipped when it would take this
  // engine's live bytes over its share of the backend's budget (bounded RSS with 8 threads;
  // under ASan large blocks cost shadow memory). Never in single-thread runs.
  bool mt_over_budget(uint64_t n, uint64_t extra_virtual, uint64_t others) const {
    if (!mt || n <= (uint64_t{1} << 20) || n > kSaneMax) return false;
    return others + n + extra_virtual > be.max_live_bytes() / budget_divisor;
  }
  uint64_t live_budget() const { return mt ? be.max_live_bytes() / budget_divisor : be.max_live_bytes(); }

  uint64_t resolve(const SizeExpr& s, unsigned own_slot) {
    uint64_t n;
    if (s.cat == SizeCat::kRelative) {
      const unsigned src = (s.args[0] & 128) ? own_slot : (s.args[0] & 63u);
      const Block& b = slots[src];
      const bool usable = (s.args[0] & 64) != 0;
      const uint64_t base = b.live ? (usable ? b.usable : b.requested) : (usable ? b.last_usable : b.last_size);
      n = add_size_delta(scale_size(base, s.param), kRelDeltas[s.args[1] % 32]);
    } else if (s.cat == SizeCat::kSameAsPrev) {
      n = add_size_delta(scale_size(prev_size, s.param), kRelDeltas[s.args[0] % 32]);
    } else {
      n = s.static_value();
    }
    prev_size = n;
    rec->n = n;
    if (s.is_dynamic()) resolved = s.describe() + " = " + num(n);
    return n;
  }

  void null_result(Expect e, int err, const char* what, uint64_t n, Allowed allowed) {
    if (e == Expect::kSucceed) {
      fail("%s returned NULL (errno %d: %s) for %s bytes, a size that must succeed", what, err, strerror(err),
           num(n).c_str());
    }
    bool ok = false;
    for (int i = 0; i < allowed.n; ++i) ok |= (allowed.e[i] == err);
    if (!ok) {
      std::string list;
      for (int i = 0; i < allowed.n; ++i) list += std::string(list.empty() ? "" : " or ") + strerrorname(allowed.e[i]);
      fail("%s returned NULL with errno %d (%s); expected %s", what, err, strerror(err), list.c_str());
    }
    if (e == Expect::kMustFail)
      ++ctr.expected_failures;
    else
      ++ctr.oom_failures;
    outcome(e == Expect::kMustFail ? "NULL (expected)" : "NULL (allowed)", nullptr, nullptr, err);
  }

  static const char* strerrorname(int e) {
    switch (e) {
      case ENOMEM:
        return "ENOMEM";
      case EINVAL:
        return "EINVAL";
      case 0:
        return "0";
      default:
        return "?";
    }
  }

  // -- ops --
  // Records an op whose size is neither sane nor impossible and over the backend's attempt
  // budget as skipped; true when it was.
  bool skipped_over_budget(Expect e) {
    if (e != Expect::kSkip) return false;
    ++ctr.skipped;
    outcome("skipped (size neither sane nor impossible, over the attempt budget)");
    return true;
  }

  void op_malloc(const Op& op) {
    const uint64_t n = resolve(op.size, op.slot);
    release(op.slot, "before its slot was reused");
    alloc_into(op.slot, n);
  }

  // malloc(n) into slot s, or heap_malloc from pool slot `pool` (live) when pool >= 0.
  void alloc_into(unsigned s, uint64_t n, int pool = -1) {
    char what[96];
    if (pool >= 0) {
      snprintf(what, sizeof what, "heap_malloc(pool %d, %s)", pool, num(n).c_str());
    } else {
      snprintf(what, sizeof what, "malloc(%s)", num(n).c_str());
    }
    Expect e = expect_size(n, 0);
    if (skipped_over_budget(e)) return;
    errno = 0;
    void* p = pool >= 0 ? be.heap_malloc(pools[pool].h, n) : be.malloc(n);
    const int err = errno;
    if (p == nullptr) {
      if (n == 0 && !be.strict() && e == Expect::kSucceed) {
        outcome("NULL (malloc(0), allowed for the system backend)");
        return;
      }
      null_result(e, err, what, n, kENOMEM);
      return;
    }
    if (e == Expect::kMustFail) fail("%s returned %s; a size >= 2^47 must fail with ENOMEM", what, ptr(p).c_str());
    adopt(s, p, n, 0, pool >= 0 ? OpKind::kHeapMalloc : OpKind::kMalloc, false, what, pool);
    outcome("ok", nullptr, p);
  }

  void op_calloc(const Op& op) {
    const uint64_t size = resolve(op.size, op.slot);
    release(op.slot, "before its slot was reused");
    calloc_into(op, size, -1);
  }

  // calloc (or heap_calloc from pool slot `pool`, live) into op.slot, released already.
  void calloc_into(const Op& op, uint64_t size, int pool) {
    const uint64_t count = count_value(op.count);
    char what[128];
    if (pool >= 0) {
      snprintf(what, sizeof what, "heap_calloc(pool %d, %s, %s)", pool, num(count).c_str(), num(size).c_str());
    } else {
      snprintf(what, sizeof what, "calloc(%s, %s)", num(count).c_str(), num(size).c_str());
    }
    uint64_t total;
    const bool overflow = __builtin_mul_overflow(count, size, &total);
    resolved += (resolved.empty() ? "" : "; ") + std::string(overflow ? "count*size overflows" : "total " + num(total));
    const Expect e = overflow ? Expect::kMustFail : expect_size(total, 0);
    if (skipped_over_budget(e)) return;
    errno = 0;
    void* p = pool >= 0 ? be.heap_calloc(pools[pool].h, count, size) : be.calloc(count, size);
    const int err = errno;
    if (p == nullptr) {
      if (total == 0 && !be.strict() && e == Expect::kSucceed) {
        outcome("NULL (zero-size calloc, allowed for the system backend)");
        return;
      }
      null_result(e, err, what, overflow ? UINT64_MAX : total, kENOMEM);
      return;
    }
    if (e == Expect::kMustFail) {
      fail("%s returned %s; %s must fail with ENOMEM", what, ptr(p).c_str(),
           overflow ? "an overflowing count*size" : "a total >= 2^47");
    }
    adopt(op.slot, p, total, 0, pool >= 0 ? OpKind::kHeapCalloc : OpKind::kCalloc, true, what, pool);
    outcome("ok", nullptr, p);
  }

  void op_realloc(const Op& op) {
    const uint64_t n = resolve(op.size, op.slot);
    realloc_slot(op.slot, n, -1);
  }

  // realloc(slot's block or NULL, n); with pool >= 0 heap_realloc of that (live) pool slot,
  // whose block the slot holds (or is empty). A plain realloc of a pool block may move it
  // out of its pool (tm_realloc): the pool's heap_stats live_blocks before and after the
  // call tell (unchanged: still in the pool; one less: moved out).
  void realloc_slot(unsigned slot, uint64_t n, int pool) {
    Block& b = slots[slot];
    void* const heap = pool >= 0 ? pools[pool].h : nullptr;
    auto call = [&](void* old, size_t size) {
      return pool >= 0 ? be.heap_realloc(heap, old, size) : be.realloc(old, size);
    };
    const char* fn = pool >= 0 ? "heap_realloc" : "realloc";
    char pool_arg[24] = "";
    if (pool >= 0) snprintf(pool_arg, sizeof pool_arg, "pool %d, ", pool);
    char what[160];
    if (!b.live) {
      snprintf(what, sizeof what, "%s(%sNULL, %s)", fn, pool_arg, num(n).c_str());
      const Expect e = expect_size(n, 0);
      if (skipped_over_budget(e)) return;
      errno = 0;
      void* p = call(nullptr, n);
      const int err = errno;
      if (p == nullptr) {
        if (n == 0 && !be.strict() && e == Expect::kSucceed) {
          outcome("NULL (realloc(NULL, 0), allowed for the system backend)");
          return;
        }
        null_result(e, err, what, n, kENOMEM);
        return;
      }
      if (e == Expect::kMustFail) fail("%s returned %s; a size >= 2^47 must fail with ENOMEM", what, ptr(p).c_str());
      adopt(slot, p, n, 0, pool >= 0 ? OpKind::kHeapRealloc : OpKind::kRealloc, false, what, pool);
      outcome("ok (as malloc)", nullptr, p);
      return;
    }

    snprintf(what, sizeof what, "%s(%s%s, %s)", fn, pool_arg, ptr(b.p).c_str(), num(n).c_str());
    verify_block(slot, "before realloc");
    ++ctr.reallocs;
    uint8_t* const old = b.p;
    const int old_pool = b.pool;  // == pool for heap_realloc
    if (n == 0) {
      unlink(slot);
      void* p = call(old, 0);
      b.live = false;
      b.p = nullptr;
      if (p == nullptr) {
        ++ctr.frees;
        outcome("freed (NULL)", old, nullptr);
        if (old_pool >= 0) check_pool_stats(static_cast<unsigned>(old_pool), "after a realloc to 0 freed a pool block");
        return;
      }
      if (be.strict() || pool >= 0) {
        fail("%s returned %s; realloc(p, 0) must free p and return NULL", what, ptr(p).c_str());
      }
      adopt(slot, p, 0, 0, OpKind::kRealloc, false, what);
      outcome("ok (new zero-size block)", old, p);
      return;
    }

    const uint64_t others = live_virtual - b.virt();
    Expect e;
    if (n >= kImpossibleMin)
      e = Expect::kMustFail;
    else if (mt_over_budget(n, 0, others))
      e = Expect::kSkip;
    else if (n <= kSaneMax)
      e = oom_active ? Expect::kMayFail : Expect::kSucceed;
    else if (n > be.max_attempt_size() || others + n > live_budget())
      e = Expect::kSkip;
    else
      e = Expect::kMayFail;
    if (skipped_over_budget(e)) return;

    // A plain realloc of a pool block: the pool's count before the call.
    PoolStats pool_before;
    if (pool < 0 && old_pool >= 0) be.heap_stats(pools[old_pool].h, &pool_before);

    // Strict-overlap mode: the old block leaves the shared registry before the call (once
    // realloc has freed it, another thread may be handed its memory).
    if (registry != nullptr) registry->unclaim(old);
    errno = 0;
    void* vp = call(old, n);
    const int err = errno;
    if (vp == nullptr) {
      if (registry != nullptr) {
        std::string other;
        if (!registry->claim(old, b.extent(), engine_id, &other)) {
          fail("after the failed %s, the old block overlaps a block another thread got meanwhile: %s", what,
               other.c_str());
        }
      }
      null_result(e, err, what, n, kENOMEM);
      // The old block must be untouched and still live.
      verify_block(slot, "after a failed realloc, which must leave the block untouched");
      const uint64_t u = be.usable_size(old);
      if (u != b.usable) {
        fail("after the failed %s, usable_size(old block) is %s, was %s", what, num(u).c_str(), num(b.usable).c_str());
      }
      return;
    }
    if (e == Expect::kMustFail) fail("%s returned %s; a size >= 2^47 must fail with ENOMEM", what, ptr(vp).c_str());

    uint8_t* p = static_cast<uint8_t*>(vp);
    const uint64_t keep = b.requested < n ? b.requested : n;
    const Pattern pat(b.zeroed, b.seed);
    // The first min(old, new) bytes must have moved with the block.
    for_windows(b.fill_len, 0, keep, [&](uint64_t a, uint64_t z) {
      const uint64_t bad = check_range(p, a, z, pat);
      if (bad != kNone) {
        fail("%s -> %s did not keep the first %s bytes of %s: %s", what, ptr(p).c_str(), num(keep).c_str(),
             describe_block(slot).c_str(), mismatch_detail(b, p, bad, pat, keep).c_str());
      }
    });
    const Block prev = b;
    unlink(slot, /*global=*/false);  // the registry dropped it before the call
    b.live = false;
    const bool in_place = p == old;
    if (in_place) ++ctr.realloc_in_place;

    // Register the block again (alignment, usable, overlap, owns).
    const uint64_t need = min_align(n);
    if (reinterpret_cast<uintptr_t>(p) % need != 0) {
      fail("%s returned %s, which is not aligned to %s", what, ptr(p).c_str(), num(need).c_str());
    }
    const uint64_t usable = be.usable_size(p);
    if (usable < n) {
      fail("%s returned %s with usable size %s < %s bytes requested", what, ptr(p).c_str(), num(usable).c_str(),
           num(n).c_str());
    }
    check_overlap(p, usable > 0 ? usable : 1, what);
    if (be.has_owns() && (!be.owns(p) || (usable > 1 && !be.owns(p + usable - 1)))) {
      fail("%s returned %s but owns() is false for the block or its last usable byte", what, ptr(p).c_str());
    }
    b.p = p;
    b.live = true;
    b.requested = n;
    b.usable = usable;
    b.align = 0;
    b.last_size = n;
    b.last_usable = usable;
    b.fill_len = prog->fill_usable() ? tail_limit(n, usable) : n;
    if (pool < 0 && old_pool >= 0) {
      // Which pool owns the block now: the pool's count says.
      PoolStats after;
      be.heap_stats(pools[old_pool].h, &after);
      if (after.live_blocks == pool_before.live_blocks) {
        resolved += std::string(resolved.empty() ? "" : "; ") + "still in pool " + std::to_string(old_pool);
      } else if (after.live_blocks + 1 == pool_before.live_blocks) {
        b.pool = -1;
        resolved += std::string(resolved.empty() ? "" : "; ") + "moved out of pool " + std::to_string(old_pool);
      } else {
        fail("%s -> %s: heap_stats live_blocks of pool %d went from %zu to %zu across a realloc of one of its blocks",
             what, ptr(p).c_str(), old_pool, pool_before.live_blocks, after.live_blocks);
      }
    }
    if (prev.zeroed) {
      // Zero-filled block: the copied prefix was zero; continue with a fresh pattern.
      b.zeroed = false;
      b.seed = next_seed++;
      fill_block(b, 0);
    } else if (b.fill_len <= kFullPatternMax && prev.fill_len <= kFullPatternMax) {
      fill_block(b, keep);
    } else {
      fill_block(b, 0);
    }
    link(slot);
    verify_neighbours(reinterpret_cast<uintptr_t>(p), b.extent(), "after a neighbouring realloc");
    outcome(in_place ? "ok (in place)" : "ok (moved)", old, p);
    if (old_pool >= 0) check_pool_stats(static_cast<unsigned>(old_pool), "after a realloc of one of its blocks");
  }

  void op_free(const Op& op) {
    if (!slots[op.slot].live) {
      be.free(nullptr);
      outcome("free(NULL)");
      return;
    }
    const void* p = slots[op.slot].p;
    release(op.slot, "before free");
    outcome("freed", p);
  }

  void op_aligned(const Op& op, bool posix) {
    const uint64_t al = align_value(op.align);
    const uint64_t n = resolve(op.size, op.slot);
    release(op.slot, "before its slot was reused");
    char what[128];
    snprintf(what, sizeof what, "%s(%s, %s)", posix ? "posix_memalign" : "aligned_alloc", num(al).c_str(),
             num(n).c_str());
    const bool pow2 = is_pow2(al);
    const bool too_big = pow2 && al > (uint64_t{1} << 30);
    if (pow2 && al > be.max_attempt_alignment() && !(be.strict() && too_big)) {
      ++ctr.skipped;
      outcome("skipped (alignment over the attempt limit of this backend)");
      return;
    }
    const bool bad_posix = posix && (!pow2 || al % sizeof(void*) != 0);
    // Validity per the contract: invalid alignments fail with EINVAL (posix_memalign:
    // always, it is POSIX; aligned_alloc: strict backends only).
    Expect e;
    Allowed allowed = kENOMEM;
    bool lenient_any = false;  // system backend: success or failure both fine
    if (bad_posix || (!posix && !pow2)) {
      e = Expect::kMustFail;
      allowed = kEINVAL;
      if (!posix && !be.strict()) lenient_any = true;
    } else if (too_big) {
      e = Expect::kMustFail;
      allowed = kEither;
      if (!be.strict()) {
        if (al > be.max_attempt_size()) {
          ++ctr.skipped;
          outcome("skipped (alignment over the attempt budget for this backend)");
          return;
        }
        lenient_any = true;
      }
    } else {
      e = expect_size(n, al);
      if (!be.strict() && !posix) {
        // Lenient aligned_alloc: C11 lets an implementation reject sizes that are not a
        // multiple of the alignment (sanitizer allocators do, with EINVAL).
        allowed = kEither;
        if (n % al != 0 && e != Expect::kMustFail) lenient_any = true;
      } else if (e == Expect::kMustFail && !be.strict()) {
        allowed = kEither;
      }
    }
    if (skipped_over_budget(e)) return;
    const bool zero_ok = n == 0 && e == Expect::kSucceed;  // size 0: NULL or a unique block

    void* p = nullptr;
    int err;
    if (posix) {
      void* const sentinel = reinterpret_cast<void*>(uintptr_t{0x5e471ae1});
      void* out = sentinel;
      const int rc = be.posix_memalign(&out, al, n);
      err = rc;
      if (rc != 0) {
        if (out != sentinel && !(out == nullptr && !be.strict())) {
          fail("%s returned %d but wrote %s to *memptr; it must be left untouched on failure", what, rc,
               ptr(out).c_str());
        }
        if (lenient_any) {
          outcome("failed (allowed for the system backend)", nullptr, nullptr, rc);
          return;
        }
        null_result(e, rc, what, n, allowed);
        return;
      }
      if (out == sentinel) fail("%s returned 0 but did not write *memptr", what);
      p = out;
      if (p == nullptr) {
        if (zero_ok) {
          outcome("ok (NULL for size 0)");
          return;
        }
        fail("%s returned 0 with *memptr = NULL", what);
      }
    } else {
      errno = 0;
      p = be.aligned_alloc(al, n);
      err = errno;
      if (p == nullptr) {
        if (zero_ok || lenient_any) {
          outcome("NULL (allowed)", nullptr, nullptr, err);
          return;
        }
        null_result(e, err, what, n, allowed);
        return;
      }
    }
    if (e == Expect::kMustFail && !lenient_any) {
      fail("%s succeeded with %s; it must fail with %s", what, ptr(p).c_str(),
           allowed.n == 1 && allowed.e[0] == EINVAL ? "EINVAL" : "ENOMEM/EINVAL");
    }
    adopt(op.slot, p, n, pow2 ? al : 0, posix ? OpKind::kPosixMemalign : OpKind::kAlignedAlloc, false, what);
    outcome("ok", nullptr, p);
  }

  void op_usable(const Op& op) {
    const Block& b = slots[op.slot];
    if (!b.live) {
      const size_t u = be.usable_size(nullptr);
      if (be.strict() && u != 0) fail("usable_size(NULL) returned %zu, expected 0", u);
      outcome("usable_size(NULL) = 0");
      return;
    }
    const uint64_t u = be.usable_size(b.p);
    if (u != b.usable) {
      fail("usable_size(%s) is now %s but was %s when %s was allocated", ptr(b.p).c_str(), num(u).c_str(),
           num(b.usable).c_str(), describe_block(op.slot).c_str());
    }
    outcome("ok");
  }

  // -- pool ops (v2) --
  bool skip_without_heaps() {
    if (be.has_heaps()) return false;
    ++ctr.skipped;
    outcome("skipped (backend has no memory pools)");
    return true;
  }

  void op_heap_create(const Op& op) {
    if (skip_without_heaps()) return;
    if (pools[op.pool].h != nullptr) destroy_pool(op.pool, "before heap_create replaced its pool");
    void* h = create_heap("heap_create");
    if (h == nullptr) {
      outcome("NULL (pool limit reached, expected)", nullptr, nullptr, ENOMEM);
      return;
    }
    pools[op.pool].h = h;
    pools[op.pool].birth_op = cur;
    check_pool_stats(op.pool, "of a new pool");
    outcome("ok", nullptr, h);
  }

  void op_heap_malloc(const Op& op) {
    if (skip_without_heaps()) return;
    const uint64_t n = resolve(op.size, op.slot);
    if (!ensure_pool(op.pool)) return;
    release(op.slot, "before its slot was reused");
    alloc_into(op.slot, n, op.pool);
    check_pool_stats(op.pool, "after heap_malloc");
  }

  void op_heap_calloc(const Op& op) {
    if (skip_without_heaps()) return;
    const uint64_t size = resolve(op.size, op.slot);
    if (!ensure_pool(op.pool)) return;
    release(op.slot, "before its slot was reused");
    calloc_into(op, size, op.pool);
    check_pool_stats(op.pool, "after heap_calloc");
  }

  // The slot's block must be in this pool (or the slot empty): anything else would be
  // misuse (tinymalloc aborts), so the op is skipped.
  bool skip_foreign_block(const Op& op) {
    const Block& b = slots[op.slot];
    if (!b.live || b.pool == static_cast<int>(op.pool)) return false;
    ++ctr.skipped;
    outcome(b.pool < 0 ? "skipped (the slot's block is not a pool block)"
                       : "skipped (the slot's block belongs to another pool)");
    return true;
  }

  void op_heap_realloc(const Op& op) {
    if (skip_without_heaps()) return;
    const uint64_t n = resolve(op.size, op.slot);
    if (skip_foreign_block(op)) return;
    if (!ensure_pool(op.pool)) return;
    realloc_slot(op.slot, n, op.pool);
    check_pool_stats(op.pool, "after heap_realloc");
  }

  void op_heap_free(const Op& op) {
    if (skip_without_heaps() || skip_foreign_block(op)) return;
    if (pools[op.pool].h == nullptr) {
      outcome("empty pool slot");
      return;
    }
    if (!slots[op.slot].live) {
      be.heap_free(pools[op.pool].h, nullptr);
      outcome("heap_free(NULL)");
      return;
    }
    const void* p = slots[op.slot].p;
    release(op.slot, "before heap_free", /*heap_free=*/true);
    outcome("freed", p);
  }

  void op_heap_reset(const Op& op) {
    if (skip_without_heaps()) return;
    if (pools[op.pool].h == nullptr) {
      outcome("empty pool slot");
      return;
    }
    drop_pool_blocks(op.pool, "before heap_reset");
    be.heap_reset(pools[op.pool].h);
    ++ctr.pool_resets;
    check_pool_stats(op.pool, "after heap_reset");
    verify_all("after heap_reset (blocks outside the pool must be intact)");
    outcome("ok");
  }

  void op_heap_destroy(const Op& op) {
    if (skip_without_heaps()) return;
    if (pools[op.pool].h == nullptr) {
      outcome("empty pool slot");
      return;
    }
    destroy_pool(op.pool, "before heap_destroy");
    outcome("ok");
  }

  void op_heap_stats(const Op& op) {
    if (skip_without_heaps()) return;
    if (pools[op.pool].h == nullptr) {
      outcome("empty pool slot");
      return;
    }
    check_pool_stats(op.pool, "at heap_stats");
    outcome("ok");
  }

  void op_heap_alloc_range(const Op& op) {
    if (skip_without_heaps()) return;
    const uint64_t n = resolve(op.size, op.slot);
    if (!ensure_pool(op.pool)) return;
    for (unsigned i = 0; i < op.range_count(); ++i) {
      const unsigned s = range_slot(op, i);
      release(s, "before its slot was reused");
      alloc_into(s, n, op.pool);
    }
    check_pool_stats(op.pool, "after heap_alloc_range");
    if (*rec->outcome == '\0') outcome("ok");
  }

  // Creates pools until heap_create fails: exactly max_heaps() - heaps_live() must succeed
  // and the next one fail with ENOMEM. The pools stay live until heap_unfill or the end.
  void op_heap_fill() {
    if (skip_without_heaps()) return;
    const size_t before = extra_pools.size();
    for (unsigned guard = 0; guard <= be.max_heaps(); ++guard) {
      void* h = create_heap("heap_fill");
      if (h == nullptr) break;
      extra_pools.push_back(h);
    }
    resolved =
        std::to_string(extra_pools.size() - before) + " pool(s) created, " + std::to_string(be.heaps_live()) + " live";
    outcome("ok (pool limit reached)");
  }

  void op_heap_unfill() {
    if (skip_without_heaps()) return;
    resolved = std::to_string(extra_pools.size()) + " pool(s) destroyed";
    for (void* h : extra_pools) {
      be.heap_destroy(h);
      ++ctr.pool_destroys;
    }
    extra_pools.clear();
    outcome("ok");
  }

  void check_all_pools(const char* when) {
    for (unsigned pi = 0; pi < kPoolSlots; ++pi) check_pool_stats(pi, when);
  }

  void check_foreign_owns() {
    if (!be.has_owns()) return;
    int local = 0;
    if (be.owns(nullptr)) fail("owns(NULL) is true");
    if (be.owns(&local)) fail("owns(%s) is true for a stack address", ptr(&local).c_str());
    if (be.owns(this)) fail("owns(%s) is true for a harness object in the system heap", ptr(this).c_str());
    if (be.owns(reinterpret_cast<const void*>(&fail))) fail("owns() is true for a code address");
  }

  void check_heap(const char* when) {
    if (!be.has_heap_check()) return;
    std::string msg;
    const int code = be.check_heap(&msg);
    if (code != 0) fail("heap check failed %s: %s", when, msg.c_str());
  }

  void check_stats(const char* when) {
    if (!be.has_stats()) return;
    HeapStats s;
    be.stats(&s);
    auto diff = [](size_t now, size_t b) { return static_cast<uint64_t>(now - b); };
    if (diff(s.live_blocks, base.live_blocks) != live_count) {
      fail("stats %s: live_blocks is %zu (baseline %zu, so %" PRId64 " blocks of this run); the model has %" PRIu64
           " live blocks",
           when, s.live_blocks, base.live_blocks, static_cast<int64_t>(diff(s.live_blocks, base.live_blocks)),
           live_count);
    }
    if (s.requested_exact && diff(s.requested_bytes, base.requested_bytes) != live_requested) {
      fail("stats %s: requested_bytes is %zu (baseline %zu, so %" PRId64 " bytes of this run); the model has %" PRIu64,
           when, s.requested_bytes, base.requested_bytes,
           static_cast<int64_t>(diff(s.requested_bytes, base.requested_bytes)), live_requested);
    }
    if (diff(s.usable_bytes, base.usable_bytes) != live_usable) {
      fail("stats %s: usable_bytes is %zu (baseline %zu, so %" PRId64
           " bytes of this run); the model's sum of usable_size() is %" PRIu64,
           when, s.usable_bytes, base.usable_bytes, static_cast<int64_t>(diff(s.usable_bytes, base.usable_bytes)),
           live_usable);
    }
    // Self-consistency of the snapshot (tinymalloc.h field definitions).
    if (s.small_live_blocks + s.medium_live_blocks + s.large_live_blocks != s.live_blocks) {
      fail("stats %s: small %zu + medium %zu + large %zu live blocks != live_blocks %zu", when, s.small_live_blocks,
           s.medium_live_blocks, s.large_live_blocks, s.live_blocks);
    }
    if (s.class_live_sum != s.small_live_blocks) {
      fail("stats %s: sum of class_live_blocks %zu != small_live_blocks %zu", when, s.class_live_sum,
           s.small_live_blocks);
    }
    if (s.usable_bytes < s.requested_bytes) {
      fail("stats %s: usable_bytes %zu < requested_bytes %zu", when, s.usable_bytes, s.requested_bytes);
    }
    if (s.peak_requested_bytes < s.requested_bytes) {
      fail("stats %s: peak_requested_bytes %zu < requested_bytes %zu", when, s.peak_requested_bytes, s.requested_bytes);
    }
    if (s.peak_mapped_bytes < s.mapped_bytes) {
      fail("stats %s: peak_mapped_bytes %zu < mapped_bytes %zu", when, s.peak_mapped_bytes, s.mapped_bytes);
    }
    if (s.committed_bytes > s.mapped_bytes) {
      fail("stats %s: committed_bytes %zu > mapped_bytes %zu", when, s.committed_bytes, s.mapped_bytes);
    }
    if (s.medium_largest_free > s.medium_free_bytes || (s.medium_free_blocks == 0) != (s.medium_free_bytes == 0)) {
      fail("stats %s: medium free space inconsistent: %zu blocks, %zu bytes, largest %zu", when, s.medium_free_blocks,
           s.medium_free_bytes, s.medium_largest_free);
    }
  }

  void close_oom_window(const char* when) {
    if (!oom_active) return;
    be.fail_os_after(-1);
    oom_active = false;
    oom_left = -1;
    check_heap(when);
    verify_all(when);
  }

  void exec(const Op& op) {
    switch (op.kind) {
      case OpKind::kMalloc:
        op_malloc(op);
        break;
      case OpKind::kCalloc:
        op_calloc(op);
        break;
      case OpKind::kRealloc:
        op_realloc(op);
        break;
      case OpKind::kFree:
        op_free(op);
        break;
      case OpKind::kAlignedAlloc:
        op_aligned(op, false);
        break;
      case OpKind::kPosixMemalign:
        op_aligned(op, true);
        break;
      case OpKind::kUsableSize:
        op_usable(op);
        break;
      case OpKind::kCheckHeap:
        verify_all("at check_heap");
        check_heap("at check_heap");
        check_foreign_owns();
        check_all_pools("at check_heap");
        outcome("ok");
        break;
      case OpKind::kRefill: {
        Block& b = slots[op.slot];
        if (!b.live) {
          outcome("empty slot");
          break;
        }
        verify_block(op.slot, "before refill");
        b.zeroed = false;
        b.seed = next_seed++;
        fill_block(b, 0);
        outcome("ok");
        break;
      }
      case OpKind::kOomWindow:
        if (mt) {
          outcome("phase-level in heap_mt (armed by the runner for the whole phase)");
          break;
        }
        if (!be.has_oom_injection()) {
          outcome("no-op (backend has no failure injection)");
          break;
        }
        be.fail_os_after(static_cast<long>(op.oom_successes()));
        oom_active = true;
        oom_left = static_cast<long>(op.oom_span());
        outcome("armed");
        return;  // the window starts with the next op
      case OpKind::kFreeRange:
        for (unsigned i = 0; i < op.range_count(); ++i) release(range_slot(op, i), "before free (free_range)");
        outcome("ok");
        break;
      case OpKind::kAllocRange: {
        const uint64_t n = resolve(op.size, op.slot);
        for (unsigned i = 0; i < op.range_count(); ++i) {
          const unsigned s = range_slot(op, i);
          release(s, "before its slot was reused");
          alloc_into(s, n);
        }
        if (*rec->outcome == '\0') outcome("ok");
        break;
      }
      case OpKind::kSwap: {
        if (op.slot == op.slot2) {
          outcome("no-op");
          break;
        }
        std::swap(slots[op.slot], slots[op.slot2]);
        if (slots[op.slot].live) by_addr[reinterpret_cast<uintptr_t>(slots[op.slot].p)] = op.slot;
        if (slots[op.slot2].live) by_addr[reinterpret_cast<uintptr_t>(slots[op.slot2].p)] = op.slot2;
        outcome("ok");
        break;
      }
      case OpKind::kReleaseCached:
        be.release_cached();
        check_heap("after release_cached");
        verify_all("after release_cached");
        outcome("ok");
        break;
      case OpKind::kTouchUsable: {
        Block& b = slots[op.slot];
        if (!b.live) {
          outcome("empty slot");
          break;
        }
        verify_block(op.slot, "before touch_usable");
        const uint64_t old_len = b.fill_len;
        b.fill_len = tail_limit(b.requested, b.usable);
        fill_block(b, old_len <= kFullPatternMax && b.fill_len <= kFullPatternMax ? old_len : 0);
        verify_neighbours(reinterpret_cast<uintptr_t>(b.p), b.extent(), "after writing a neighbour's usable tail");
        outcome("ok");
        break;
      }
      case OpKind::kPeek: {
        Block& b = slots[op.slot];
        if (!b.live || b.fill_len == 0) {
          outcome("empty slot");
          break;
        }
        const uint64_t window = b.fill_len < kEdge ? b.fill_len : kEdge;
        const uint64_t off = op.offset % window;
        const Pattern pat(b.zeroed, b.seed);
        if (opt.self_test_poke) {
          b.p[off] = static_cast<uint8_t>(~b.p[off]);  // the model is not told
          outcome("POKED (self-test)");
          break;
        }
        if (b.p[off] != pat.at(off)) {
          fail("content of %s changed: %s", describe_block(op.slot).c_str(),
               mismatch_detail(b, b.p, off, pat, b.fill_len).c_str());
        }
        outcome("ok");
        break;
      }
      case OpKind::kHeapCreate:
        op_heap_create(op);
        break;
      case OpKind::kHeapMalloc:
        op_heap_malloc(op);
        break;
      case OpKind::kHeapCalloc:
        op_heap_calloc(op);
        break;
      case OpKind::kHeapRealloc:
        op_heap_realloc(op);
        break;
      case OpKind::kHeapFree:
        op_heap_free(op);
        break;
      case OpKind::kHeapReset:
        op_heap_reset(op);
        break;
      case OpKind::kHeapDestroy:
        op_heap_destroy(op);
        break;
      case OpKind::kHeapStats:
        op_heap_stats(op);
        break;
      case OpKind::kHeapAllocRange:
        op_heap_alloc_range(op);
        break;
      case OpKind::kHeapFill:
        op_heap_fill();
        break;
      case OpKind::kHeapUnfill:
        op_heap_unfill();
        break;
    }
    if (!mt && oom_active && op.kind != OpKind::kOomWindow && --oom_left <= 0) {
      close_oom_window("when the OOM window closed");
    }
  }

  // -- final --
  void final_frees() {
    in_final = true;
    close_oom_window("at the end of the input");
    verify_all("at the end of the input");
    check_heap("at the end of the input, before the final frees");
    // Pools first: heap_fill's extra pools, then every live pool slot with its blocks.
    for (void* h : extra_pools) be.heap_destroy(h);
    extra_pools.clear();
    for (unsigned pi = 0; pi < kPoolSlots; ++pi) {
      if (pools[pi].h == nullptr) continue;
      check_pool_stats(pi, "at the end of the input");
      destroy_pool(pi, "at the final heap_destroy");
    }
    if (be.has_heaps()) check_heap("after the final heap_destroy of every pool");
    std::vector<unsigned> order;
    switch (prog->end_order()) {
      case EndOrder::kSlotAscending:
        for (unsigned s = 0; s < kSlots; ++s) order.push_back(s);
        break;
      case EndOrder::kSlotDescending:
        for (unsigned s = kSlots; s-- > 0;) order.push_back(s);
        break;
      case EndOrder::kAddressAscending:
        for (auto& [a, s] : by_addr) order.push_back(s);
        break;
      case EndOrder::kAddressDescending:
        for (auto it = by_addr.rbegin(); it != by_addr.rend(); ++it) order.push_back(it->second);
        break;
    }
    for (unsigned s : order) release(s, "at the final free");
    check_heap("after the final frees");
    if (be.has_stats()) {
      HeapStats s;
      be.stats(&s);
      if (s.live_blocks != base.live_blocks || s.requested_bytes != base.requested_bytes ||
          s.usable_bytes != base.usable_bytes) {
        fail(
            "leak: after freeing every block, stats say live_blocks %zu, requested_bytes %zu, usable_bytes %zu; "
            "at the start of the input they were %zu, %zu, %zu",
            s.live_blocks, s.requested_bytes, s.usable_bytes, base.live_blocks, base.requested_bytes,
            base.usable_bytes);
      }
    }
    check_stats("after the final frees");
  }

  void reset() {
    for (auto& b : slots) b = Block{};
    by_addr.clear();
    live_count = live_requested = live_usable = live_virtual = 0;
    next_seed = 1;
    prev_size = 0;
    oom_left = -1;
    oom_active = false;
    ring_n = 0;
    in_final = false;
    for (auto& ps : pools) ps = PoolSlot{};
    extra_pools.clear();
    if (be.has_stats()) be.stats(&base);
  }

  std::string report(const std::string& what) const {
    std::string r;
    char buf[512];
    const size_t total = prog->ops.size();
    snprintf(buf, sizeof buf, "\n==== tinymalloc harness: FAILURE (target %s, backend %s, profile %s) ====\n",
             opt.target.c_str(), be.name(), profile_name(opt.profile));
    r += buf;
    if (!context.empty()) r += "thread: " + context + " (op numbers below count this thread's heap ops)\n";
    if (!where.empty()) {
      r += "at: " + where + "\n";
    } else if (in_final) {
      snprintf(buf, sizeof buf, "at: end of input, after op #%zu of %zu (final verification and frees)\n",
               total ? total - 1 : 0, total);
      r += buf;
    } else {
      const Op& op = prog->ops[cur];
      snprintf(buf, sizeof buf, "at: op #%zu of %zu (input offset %u): %s\n", cur, total, op.pos,
               format_op(op, cur).c_str());
      r += buf;
      if (!resolved.empty()) r += "    resolved: " + resolved + "\n";
    }
    r += "what: " + what + "\n";
    if (be.has_heap_check()) {
      std::string msg;
      const int code = be.check_heap(&msg);
      r += code == 0 ? std::string("heap check now: ok\n") : "heap check now: " + msg + "\n";
    }
    r += "recent ops (oldest first):\n";
    const size_t first = ring_n > kRing ? ring_n - kRing : 0;
    for (size_t i = first; i < ring_n; ++i) {
      const Record& rc = ring[i % kRing];
      if (!rc.note.empty()) {
        r += "  " + rc.note + "\n";
        continue;
      }
      std::string line = "  " + format_op(prog->ops[rc.index], rc.index);
      if (rc.outcome && *rc.outcome) {
        line += "  => ";
        line += rc.outcome;
        if (rc.before) line += " " + ptr(rc.before);
        if (rc.after) line += std::string(rc.before ? " -> " : " ") + ptr(rc.after);
        if (rc.err) line += " errno " + std::to_string(rc.err);
      }
      if (!in_final && where.empty() && rc.index == cur && i + 1 == ring_n) line += "   <== FAILED HERE";
      r += line + "\n";
    }
    unsigned shown = 0;
    std::string live;
    for (auto& [a, s] : by_addr) {
      if (shown++ < 12) live += "  " + describe_block(s) + "\n";
    }
    snprintf(buf, sizeof buf, "live blocks in the model (%" PRIu64 ", by address%s):\n", live_count,
             live_count > 12 ? ", first 12" : "");
    r += buf + live;
    std::string pl;
    for (unsigned pi = 0; pi < kPoolSlots; ++pi) {
      if (pools[pi].h == nullptr) continue;
      uint64_t n, usable;
      pool_totals(pi, &n, &usable);
      snprintf(buf, sizeof buf, "  pool %u: %s, created at #%zu, %" PRIu64 " blocks, %" PRIu64 " usable bytes\n", pi,
               ptr(pools[pi].h).c_str(), pools[pi].birth_op, n, usable);
      pl += buf;
    }
    if (!pl.empty() || !extra_pools.empty()) {
      snprintf(buf, sizeof buf, "live pools in the model (+ %zu extra pools of heap_fill):\n", extra_pools.size());
      r += buf + pl;
    }
    snprintf(buf, sizeof buf,
             "reproduce: tools/tm-repro <input file> --target %s   (prints the full trace and replays it)\n"
             "====\n",
             opt.target.c_str());
    r += buf;
    return r;
  }

  void print_verbose(double ms) const {
    if (!opt.verbose) return;
    const Record& rc = *rec;
    std::string line = context.empty() ? std::string() : "[" + context + "] ";
    line += format_op(prog->ops[rc.index], rc.index);
    if (!resolved.empty()) line += "  {" + resolved + "}";
    line += "  => ";
    line += rc.outcome;
    if (rc.before) line += " " + ptr(rc.before);
    if (rc.after) line += std::string(rc.before ? " -> " : " ") + ptr(rc.after);
    if (ms >= 1.0) line += "  (" + std::to_string(static_cast<long>(ms)) + " ms)";
    fprintf(opt.out, "%s\n", line.c_str());
  }
};

// ---- Interpreter -----------------------------------------------------------------------------------

Interpreter::Interpreter(Backend& backend, Options options)
    : backend_(backend), options_(std::move(options)), impl_(std::make_unique<Impl>(backend_, options_, counters_)) {}

Interpreter::~Interpreter() = default;

Result Interpreter::run(const Program& program) {
  Impl& m = *impl_;
  counters_ = Counters{};
  m.prog = &program;
  m.reset();
  Result res;
  try {
    const unsigned every = options_.verify_every ? options_.verify_every : 16;
    for (size_t i = 0; i < program.ops.size(); ++i) {
      m.cur = i;
      m.begin_record(i);
      const auto t0 = options_.verbose ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      m.exec(program.ops[i]);
      ++counters_.ops;
      const OpKind k = program.ops[i].kind;
      const unsigned hc = options_.heap_check_every ? options_.heap_check_every : 1;
      if (k != OpKind::kSwap && k != OpKind::kPeek && k != OpKind::kUsableSize && (i + 1) % hc == 0) {
        m.check_heap(hc == 1 ? "after this op" : "at a periodic heap check");  // read-only ops cannot break it
      }
      m.check_stats("after this op");
      if (program.paranoid() || (i + 1) % every == 0) m.verify_all("at a periodic full verification");
      if (options_.verbose) {
        m.print_verbose(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    }
    m.final_frees();
  } catch (Failure& f) {
    if (m.oom_active) backend_.fail_os_after(-1);
    m.oom_active = false;
    res.ok = false;
    res.op_index = m.in_final ? program.ops.size() : m.cur;
    res.message = m.report(f.what);
    if (options_.abort_on_failure) {
      fputs(res.message.c_str(), options_.out);
      fflush(options_.out);
      abort();
    }
    if (options_.free_after_failure) {
      // Plain blocks first (an emulated pool forgets a block freed with free()), then the
      // pools with their blocks.
      for (unsigned s = 0; s < kSlots; ++s) {
        Block& b = m.slots[s];
        if (b.live && b.pool < 0) backend_.free(b.p);
        if (b.pool < 0) b.live = false;
      }
      for (auto& ps : m.pools) {
        if (ps.h != nullptr) backend_.heap_destroy(ps.h);
        ps = Impl::PoolSlot{};
      }
      for (void* h : m.extra_pools) backend_.heap_destroy(h);
      m.extra_pools.clear();
      for (auto& b : m.slots) b.live = false;
      m.by_addr.clear();
    }
  }
  m.prog = nullptr;
  return res;
}

Options options_from_env(Profile profile, std::string_view target) {
  Options o;
  o.profile = profile;
  o.target = std::string(target);
  const char* st = getenv("TM_HARNESS_SELFTEST");
  if (st != nullptr && strcmp(st, "poke") == 0) o.self_test_poke = true;
  const char* v = getenv("TM_HARNESS_VERBOSE");
  if (v != nullptr && *v && strcmp(v, "0") != 0) o.verbose = true;
  if (const char* h = getenv("TM_HARNESS_HEAP_CHECK_EVERY")) {
    const long n = strtol(h, nullptr, 10);
    if (n > 0) o.heap_check_every = static_cast<unsigned>(n);
  }
  if (const char* f = getenv("TM_HARNESS_VERIFY_EVERY")) {
    const long n = strtol(f, nullptr, 10);
    if (n > 0) o.verify_every = static_cast<unsigned>(n);
  }
  return o;
}

// ---- ThreadEngine (harness/engine.h): one thread of a multi-threaded run ---------------------

namespace detail {

std::string verify_detached(const Block& b) {
  if (!b.live) return "";
  const Pattern pat(b.zeroed, b.seed);
  std::string err;
  for_windows(b.fill_len, 0, UINT64_MAX, [&](uint64_t a, uint64_t z) {
    if (!err.empty()) return;
    const uint64_t bad = check_range(b.p, a, z, pat);
    if (bad != kNone) {
      char buf[160];
      snprintf(buf, sizeof buf, "differs at offset %" PRIu64 " (address %s): expected 0x%02x, found 0x%02x", bad,
               ptr(b.p + bad).c_str(), pat.at(bad), b.p[bad]);
      err = buf;
    }
  });
  return err;
}

std::string describe_detached(const Block& b) {
  std::string d = ptr(b.p) + " (" + num(b.requested) + " bytes requested, usable " + num(b.usable) + ", ";
  d += b.zeroed ? std::string("zero-filled") : "seed " + std::to_string(b.seed);
  d += ", from " + std::string(op_name(b.how)) + ")";
  return d;
}

namespace {

constexpr const char* kHandoffWhere =
    "a thread op (send, receive, drain), a handoff at a phase end or a final free: the last of the recent ops";

}  // namespace

struct ThreadEngine::State {
  Options opt;
  Interpreter::Counters ctr;
  Program prog;
  Interpreter::Impl impl;
  unsigned own_ops = 0;  // ops run, for the periodic full verification

  State(Backend& be, const Options& o, const Program& p) : opt(o), prog(p), impl(be, opt, ctr) {}

  // A report about a check outside a heap op.
  std::string report_at(const std::string& context, const std::string& what, const char* where) {
    impl.context = context;
    impl.where = where;
    std::string r = impl.report(what);
    impl.where.clear();
    return r;
  }
};

ThreadEngine::ThreadEngine(Backend& backend, const Options& options, const Program& program, unsigned id,
                           unsigned budget_divisor, OverlapRegistry* registry)
    : s_(std::make_unique<State>(backend, options, program)) {
  Interpreter::Impl& m = s_->impl;
  m.prog = &s_->prog;
  m.mt = true;
  m.engine_id = id;
  m.budget_divisor = budget_divisor ? budget_divisor : 1;
  m.registry = registry;
  m.next_seed = (id + 1) << 24;
}

ThreadEngine::~ThreadEngine() = default;

bool ThreadEngine::step(size_t index, const std::string& context, std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  try {
    m.cur = index;
    m.begin_record(index);
    const bool verbose = s_->opt.verbose;
    const auto t0 = verbose ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    m.exec(s_->prog.ops[index]);
    ++s_->ctr.ops;
    const unsigned every = s_->opt.verify_every ? s_->opt.verify_every : 16;
    if (s_->prog.paranoid() || ++s_->own_ops % every == 0) m.verify_all("at a periodic full verification");
    if (verbose)
      m.print_verbose(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    return true;
  } catch (Failure& f) {
    *report = m.report(f.what);
    return false;
  }
}

bool ThreadEngine::verify_all(const char* when, const std::string& context, std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  try {
    m.verify_all(when);
    return true;
  } catch (Failure& f) {
    *report = this->report(context, f.what);
    return false;
  }
}

void ThreadEngine::note(size_t index, const std::string& text) {
  Interpreter::Impl& m = s_->impl;
  m.begin_record(index);
  m.rec->note = text;
  m.rec->outcome = "";
  if (s_->opt.verbose) fprintf(s_->opt.out, "[%s] %s\n", m.context.c_str(), text.c_str());
}

std::string ThreadEngine::report(const std::string& context, const std::string& what) {
  return s_->report_at(context, what, "a phase boundary of the multi-threaded run (checks by the main thread)");
}

void ThreadEngine::set_oom(bool on) {
  s_->impl.oom_active = on;
  s_->impl.oom_left = on ? LONG_MAX : -1;
}

bool ThreadEngine::live(unsigned slot) const { return s_->impl.slots[slot % kSlots].live; }

bool ThreadEngine::take(unsigned slot, Block* out, const char* why, const std::string& context, std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  slot %= kSlots;
  try {
    m.verify_block(slot, why);
    *out = m.slots[slot];
    m.unlink(slot, /*global=*/false);  // still live: it moves to another thread
    m.slots[slot].live = false;
    m.slots[slot].p = nullptr;
    return true;
  } catch (Failure& f) {
    *report = s_->report_at(context, f.what, kHandoffWhere);
    return false;
  }
}

bool ThreadEngine::put(unsigned slot, const Block& b, const char* why, const std::string& context,
                       std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  slot %= kSlots;
  try {
    m.check_overlap(b.p, b.extent(), why);
    m.slots[slot] = b;
    m.link(slot, /*global=*/false);
    m.verify_block(slot, why);
    return true;
  } catch (Failure& f) {
    *report = s_->report_at(context, f.what, kHandoffWhere);
    return false;
  }
}

bool ThreadEngine::release(unsigned slot, const char* why, const std::string& context, std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  try {
    m.release(slot % kSlots, why);
    return true;
  } catch (Failure& f) {
    *report = s_->report_at(context, f.what, kHandoffWhere);
    return false;
  }
}

std::vector<ThreadEngine::LiveBlock> ThreadEngine::live_blocks() const {
  std::vector<LiveBlock> v;
  for (const auto& [a, s] : s_->impl.by_addr) v.push_back({a, s_->impl.slots[s].extent(), s});
  return v;
}

std::string ThreadEngine::describe(unsigned slot) const { return s_->impl.describe_block(slot % kSlots); }
uint64_t ThreadEngine::live_count() const { return s_->impl.live_count; }
uint64_t ThreadEngine::live_requested() const { return s_->impl.live_requested; }
uint64_t ThreadEngine::live_usable() const { return s_->impl.live_usable; }
uint64_t ThreadEngine::live_virtual() const { return s_->impl.live_virtual; }
const Interpreter::Counters& ThreadEngine::counters() const { return s_->ctr; }

void ThreadEngine::forget_all(bool free_them) {
  Interpreter::Impl& m = s_->impl;
  for (unsigned s = 0; s < kSlots; ++s) {
    Block& b = m.slots[s];
    if (!b.live) continue;
    if (m.registry != nullptr) m.registry->unclaim(b.p);
    if (free_them) m.be.free(b.p);
    b.live = false;
    b.p = nullptr;
  }
  m.by_addr.clear();
  m.live_count = m.live_requested = m.live_usable = m.live_virtual = 0;
}

}  // namespace detail

}  // namespace tmh
