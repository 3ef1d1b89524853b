// Internal to the harness library: the single-thread interpreter's state (Interpreter::Impl)
// and the helpers its parts share. Not public API. The Impl's member functions live in
//   interpreter.cc  running a program: records, exec, OOM windows, final frees, reports;
//   shadow.cc       the shadow heap: contents, overlap, bookkeeping, heap and stats checks;
//   heap_ops.cc     the malloc-family ops and their expected outcomes;
//   pool_ops.cc     the memory-pool ops (format v2);
// and engine.cc steps one Impl per thread for the multi-threaded interpreter.
#pragma once

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "contract.h"
#include "engine.h"
#include "pattern.h"
#include "tm_harness.h"

namespace tmh {

namespace detail {

inline bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// The alignment any block of n bytes must have: 16, or the largest power of two <= n.
inline uint64_t min_align(uint64_t n) {
  if (n >= 16) return 16;
  if (n == 0) return 1;
  uint64_t a = 1;
  while (a * 2 <= n) a *= 2;
  return a;
}

// Numbers and pointers in reports.
inline std::string hex(uint64_t v) {
  char b[32];
  snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}
inline std::string ptr(const void* p) { return hex(reinterpret_cast<uintptr_t>(p)); }
inline std::string num(uint64_t v) { return v >= kImpossibleMin ? hex(v) : std::to_string(v); }

// A failed check: thrown by Impl::deviate() (an enforced contract clause) or fail(), caught
// by the runner, which builds the report.
struct Failure {
  std::string what;
};

// Throws a Failure with the printf-formatted description (a harness-level failure that no
// contract clause names; the allocator's deviations go through Impl::deviate).
[[noreturn]] inline __attribute__((format(printf, 1, 2))) void fail(const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Failure{buf};
}

// What an allocation must do (FORMAT.md "Expected outcomes").
enum class Expect { kSucceed, kMayFail, kMustFail, kSkip };

// errno values a failure may report.
struct Allowed {
  int e[2];
  int n;
};
inline constexpr Allowed kENOMEM{{ENOMEM, 0}, 1};
inline constexpr Allowed kEINVAL{{EINVAL, 0}, 1};
inline constexpr Allowed kEither{{ENOMEM, EINVAL}, 2};

// What happened, for the trace in a failure report.
struct Record {
  size_t index = 0;
  uint64_t n = 0;  // resolved size (0 when none)
  const void* before = nullptr;
  const void* after = nullptr;
  int err = 0;
  const char* outcome = "";
  std::string note;  // multi-threaded runs: a thread op recorded in the ring (no heap op)
  // A realloc between two sizes above tinymalloc's medium tier: mremap grows the mapping in
  // place only when the kernel has nothing mapped after it, which the allocator does not
  // decide; traces (Options::trace) say "resized" for either outcome.
  bool placed_by_kernel = false;
};

}  // namespace detail

using detail::Allowed;
using detail::Block;
using detail::Coverage;
using detail::Expect;
using detail::fail;
using detail::Failure;
using detail::for_windows;
using detail::hex;
using detail::is_pow2;
using detail::kEdge;
using detail::kEINVAL;
using detail::kEither;
using detail::kENOMEM;
using detail::kFullPatternMax;
using detail::kNeighbourEdge;
using detail::kNotFound;
using detail::kPeekWindow;
using detail::min_align;
using detail::num;
using detail::Pattern;
using detail::ptr;
using detail::Record;

// ---- Interpreter state -------------------------------------------------------------------------

struct Interpreter::Impl {
  Backend& be;
  const Options& opt;
  Counters& ctr;

  const Program* prog = nullptr;
  size_t cur = 0;
  bool in_final = false;
  uint64_t check_heap_ops = 0;  // check_heap ops run in this input (the heap map's schedule)
  Block slots[kSlots];
  std::map<uintptr_t, unsigned> by_addr;
  unsigned unindexed_blocks = 0;  // live blocks not in by_addr (Block::unindexed)
  uint64_t live_count = 0, live_requested = 0, live_usable = 0, live_virtual = 0;
  // The live blocks outside memory pools and their requested bytes: what tinymalloc's debug
  // mode records (HeapStats::debug_view).
  uint64_t routed_count = 0, routed_requested = 0;
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

  // Addresses the current op handed out or released (adopt, release, realloc): the scoped
  // heap checks after the op look there. whole_heap: the op changed more than that (a pool
  // reset or destroy), so the whole heap is checked after it.
  std::vector<const void*> touched;
  bool whole_heap = false;
  // The allocator's counters after the previous op (check_stats): a change of purge_calls
  // means the upkeep ran during the op.
  HeapStats last;

  // The contract this run enforces (contract.h): the backend's own profile unless
  // TM_HARNESS_CONTRACT names another, minus TM_HARNESS_WAIVE.
  Contract contract;
  // The clause of the deviation being reported (kCount: none), for report().
  Clause failed_clause = Clause::kCount;

  Impl(Backend& b, const Options& o, Counters& c)
      : be(b),
        opt(o),
        ctr(c),
        contract(contract_from_env(b.strict() ? ContractProfile::kTinymalloc : ContractProfile::kGlibc)) {}

  // A check of clause c found that the allocator deviated (printf description). When the run
  // enforces c this throws the Failure that ends the input. Otherwise it returns (after
  // recording the deviation when c is waived; a clause outside the profile is no deviation
  // at all), and the caller puts the model back in step with what the allocator did, so the
  // rest of the input is still checked.
  void deviate(Clause c, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

  // -- records --
  void begin_record(size_t index);
  void outcome(const char* what, const void* before = nullptr, const void* after = nullptr, int err = 0);

  std::string describe_block(unsigned s) const;

  // -- content --
  std::string mismatch_detail(const Block& b, const uint8_t* p, uint64_t off, const Pattern& pat, uint64_t limit) const;

  // Verifies the patterned bytes of slot s in [lo, hi) (against the block's own pattern).
  // Coverage::kSampled: see pattern.h (what the checks during an input use, unless the
  // options ask for every byte: routine()).
  // A difference is a deviation of `clause` (content; realloc-fail-keeps after a failed
  // realloc); waived, the block gets its pattern back. Tainted blocks are not checked.
  void verify_block(unsigned s, const char* when, uint64_t lo = 0, uint64_t hi = UINT64_MAX,
                    Coverage coverage = Coverage::kEvery, Clause clause = Clause::kContent);

  // Verifies every live block (see verify_block for the coverage).
  void verify_all(const char* when, Coverage coverage = Coverage::kEvery);
  // The coverage of content checks during an input: sampled, every byte with the paranoid
  // option (TM_HARNESS_PARANOID=1).
  Coverage routine() const { return opt.paranoid ? Coverage::kEvery : Coverage::kSampled; }

  // Edges of the live blocks around [addr, addr + len) in address order.
  void verify_neighbours(uintptr_t addr, uint64_t len, const char* when);

  void fill_block(Block& b, uint64_t from);

  // How far the harness may fill a block of n requested bytes with the given usable size.
  // The usable tail is the caller's by contract; but sanitizer allocators under the system
  // backend track zero-byte blocks as empty while reporting a nonzero usable size (TSan:
  // writes there are reported as use-after-free), so lenient backends keep those untouched.
  uint64_t tail_limit(uint64_t n, uint64_t usable) const { return n == 0 && !be.strict() ? 0 : usable; }

  // -- model bookkeeping --
  // [p, p + extent) (a new block's usable range, `requested` of it requested) against every
  // live block: an overlap of requested bytes is a no-overlap deviation, of usable tails
  // only a usable-size one. Waived, both blocks are tainted (*tainted for the new one).
  void check_overlap(const uint8_t* p, uint64_t extent, uint64_t requested, const char* what, bool* tainted);
  // Checks a block the backend returned for n bytes: aligned to `need`, usable size >= n, no
  // overlap with a live block, owned (first and last usable byte). Returns the usable size
  // (n when a waived deviation said less); *tainted: it overlaps a live block (waived).
  uint64_t check_returned(const uint8_t* p, uint64_t n, uint64_t need, const char* what, bool* tainted);

  // Adds slot s's block to the model (and, when `global`, claims it in the shared registry).
  void link(unsigned s, bool global = true);
  // Removes slot s's block from the model (and, when `global`, from the shared registry).
  void unlink(unsigned s, bool global = true);

  // A new block arrived in slot s: check alignment, usable size, overlap, ownership and
  // (calloc) zero contents, then fill it and add it to the model.
  void adopt(unsigned s, void* vp, uint64_t n, uint64_t align, OpKind how, bool zeroed, const char* what,
             int pool = -1);

  // Verifies and frees slot s's block: free(), or heap_free() of its pool with `heap_free`
  // (pool blocks go through plain free() too: tm_free accepts them).
  void release(unsigned s, const char* why, bool heap_free = false);

  // -- memory pools --
  void pool_totals(unsigned pi, uint64_t* n, uint64_t* usable) const;

  // tm_heap_stats of pool slot pi against the model's blocks of that pool (exact).
  void check_pool_stats(unsigned pi, const char* when);

  bool handle_in_use(const void* h) const;

  // heap_create with its expectation: it must succeed while fewer than max_heaps() pools
  // are live (the backend's count) and fail with ENOMEM at the limit. Returns the handle or
  // nullptr (expected failure at the limit).
  void* create_heap(const char* what);

  // Pool slot pi holds a live pool afterwards (created now when it was empty), or false:
  // the limit of live pools is reached (expected; the op is skipped and changes nothing).
  bool ensure_pool(unsigned pi);

  // Takes every block of pool slot pi out of the model (verified first): their slots become
  // empty. Returns how many.
  uint64_t drop_pool_blocks(unsigned pi, const char* why);

  void destroy_pool(unsigned pi, const char* why);

  // -- expectations --
  Expect expect_size(uint64_t n, uint64_t extra_virtual) const;

  // Multi-threaded runs: a large sane block (> 1 MiB) is skipped when it would take this
  // engine's live bytes over its share of the backend's budget (bounded RSS with 8 threads;
  // under ASan large blocks cost shadow memory). Never in single-thread runs.
  bool mt_over_budget(uint64_t n, uint64_t extra_virtual, uint64_t others) const;
  // A backend that fills every byte of its blocks (Backend::max_filled_size: tinymalloc's
  // debug mode) gets no block above that size, and none that would take the live blocks
  // (`others`) past max_live_bytes: bounded RSS and time. Sizes that must fail still run.
  bool over_fill_budget(uint64_t n, uint64_t extra_virtual, uint64_t others) const;
  uint64_t live_budget() const { return mt ? be.max_live_bytes() / budget_divisor : be.max_live_bytes(); }

  uint64_t resolve(const SizeExpr& s, unsigned own_slot);

  void null_result(Expect e, int err, const char* what, uint64_t n, Allowed allowed);

  static const char* strerrorname(int e);
  // A request that must fail returned p: an impossible-fails deviation; waived, p is left
  // alone (no block of that size exists, so the pointer is not one to free or write).
  void impossible_block(void* p, const char* what);
  // Slot s's usable size becomes u (>= its requested size): a waived usable-size deviation.
  void set_usable(unsigned s, uint64_t u);

  // -- ops --
  // Records an op whose size is neither sane nor impossible and over the backend's attempt
  // budget as skipped; true when it was.
  bool skipped_over_budget(Expect e);

  void op_malloc(const Op& op);

  // malloc(n) into slot s, or heap_malloc from pool slot `pool` (live) when pool >= 0.
  void alloc_into(unsigned s, uint64_t n, int pool = -1);

  void op_calloc(const Op& op);

  // calloc (or heap_calloc from pool slot `pool`, live) into op.slot, released already.
  void calloc_into(const Op& op, uint64_t size, int pool);

  void op_realloc(const Op& op);

  // realloc(slot's block or NULL, n); with pool >= 0 heap_realloc of that (live) pool slot,
  // whose block the slot holds (or is empty). A plain realloc of a pool block may move it
  // out of its pool (tm_realloc): the pool's heap_stats live_blocks before and after the
  // call tell (unchanged: still in the pool; one less: moved out).
  void realloc_slot(unsigned slot, uint64_t n, int pool);

  void op_free(const Op& op);

  void op_aligned(const Op& op, bool posix);

  void op_usable(const Op& op);

  // -- pool ops (v2) --
  bool skip_without_heaps();

  void op_heap_create(const Op& op);

  void op_heap_malloc(const Op& op);

  void op_heap_calloc(const Op& op);

  // The slot's block must be in this pool (or the slot empty): anything else would be
  // misuse (tinymalloc aborts), so the op is skipped.
  bool skip_foreign_block(const Op& op);

  void op_heap_realloc(const Op& op);

  void op_heap_free(const Op& op);

  void op_heap_reset(const Op& op);

  void op_heap_destroy(const Op& op);

  void op_heap_stats(const Op& op);

  void op_heap_alloc_range(const Op& op);

  // Creates pools until heap_create fails: exactly max_heaps() - heaps_live() must succeed
  // and the next one fail with ENOMEM. The pools stay live until heap_unfill or the end.
  void op_heap_fill();

  void op_heap_unfill();

  void check_all_pools(const char* when);

  void check_foreign_owns();

  // The whole-heap check (tm_check_heap); fails with `when` in the report.
  void check_heap(const char* when);
  // At a check_heap op: the backend's heap map (tm_heap_map, text or SVG by turns) drawn into
  // /dev/null. It walks every segment, run, block and mapping of the live heap, so it must
  // succeed in any state a program can reach (and, under ASan, read nothing it should not).
  void draw_heap_map();
  // At a check_heap op of a single-thread run: the backend's per-class and per-arena tables
  // against its statistics (Backend::check_introspection).
  void check_introspection();
  // The scoped heap check around every address the op touched.
  void check_touched();
  // tm_stats against the model (live blocks, requested and usable bytes since the start of
  // the input) and the snapshot's own consistency; keeps the snapshot in `last`.
  void check_stats(const char* when);
  // Its debug-mode part (HeapStats::debug_view): debug mode's records against the model's
  // blocks outside pools, and the core's live blocks against those plus the quarantine.
  void check_debug_stats(const char* when);
  // Everything checked after op i: the stats, then the whole heap and every block's
  // contents when due (whole_heap_due), otherwise the scoped checks of what it touched.
  void check_after_op(size_t i);
  // Whether the whole heap is checked after op i (0-based) without a reason of its own:
  // after ops 1, 2, 4, 8, ... (O(log n) times in n ops), or as the options ask.
  bool whole_heap_due(size_t i) const;
  // Appends op i's outcome to opt.trace (placement-independent, see Options::trace).
  void trace_op(size_t i);

  void close_oom_window(const char* when);

  void exec(const Op& op);
  // v3: moves the backend's virtual clock forward (no-op for backends without one).
  void op_advance_time(const Op& op);

  // -- final --
  // The end of an input: every block verified and freed in the header's order, the heap
  // checked, the leak check against the stats of the start, then the allocator reset.
  void final_frees();
  // The model back to empty for a new input (after the backend's reset).
  void reset();

  std::string report(const std::string& what) const;

  void print_verbose(double ms) const;
};

}  // namespace tmh
