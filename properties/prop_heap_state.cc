// State-machine property of the whole heap (rc::state) checked by the harness engine.
//
// Commands are heap ops (malloc, calloc, realloc grow / shrink / any, free, aligned_alloc,
// posix_memalign, usable_size, check_heap, medium-range allocations for split / coalesce,
// OOM windows) and memory-pool ops (format v2: heap_malloc, heap_realloc, heap_free,
// heap_reset, heap_destroy, heap_stats on two pools). Each command is a tmh::Op; the system under test is the op prefix
// run by the harness Interpreter (tmh::Interpreter, backend "tm", abort_on_failure = false), whose shadow heap is the
// reference model shared with the fuzz targets and tools: every result is checked (alignment, usable size, overlap,
// contents, calloc zeroing, errno, tm_check_heap, stats). The model here only tracks which slots are live (for
// preconditions and generation).
//
// The Interpreter has no incremental step API, so every 4th command (TM_PROP_CHECK_EVERY)
// and the end of the sequence run the program so far from a fresh heap in a forked child
// (prop_isolate.h): failing runs and allocator aborts cannot poison later runs, and shrinking
// stays sound. Programs are short (<= max_size commands).
//
// On failure RapidCheck shrinks the command sequence and prints it (one harness op per line),
// followed by the Interpreter's report and the whole program as a readable trace plus its
// encoded bytes (hex) for tools/tm-repro / corpus/regressions.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_heap_state --gtest_filter=HeapState.<Name>
//   RC_PARAMS="seed=<seed>" ./tm_prop_heap_state   (seed from "Using configuration: seed=...")
//   Save the printed hex as a harness input:  echo <hex> | xxd -r -p > case.bin; tools/tm-repro case.bin
//   TM_PROP_NO_FORK=1 runs every program in-process (for gdb).
//   TM_PROP_CHECK_EVERY=1 runs the program after every command (slower; same detection).
//   More / longer cases: RC_PARAMS="max_success=1000 max_size=200".
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <array>
#include <cstdlib>
#include <ostream>
#include <set>
#include <string>

#include "prop_common.h"
#include "prop_isolate.h"
#include "tm_harness.h"

namespace {

using tmh::Op;
using tmh::SizeExpr;

constexpr unsigned kHSlots = 10;                       // slot ids used (of the harness's 64): collisions on purpose
constexpr uint64_t kMaxKnownSize = uint64_t{8} << 20;  // realloc growth cap (keeps runs fast)

// ---- Model -----------------------------------------------------------------------------

enum class Live : uint8_t { kEmpty, kLive, kMaybe };  // kMaybe: an OOM window made it uncertain

struct SlotModel {
  Live live = Live::kEmpty;
  uint64_t size = 0;        // requested bytes, valid when kLive
  int pool = -1;            // pool that owns the block (or would, when kMaybe); -1: none
  bool pool_maybe = false;  // a plain realloc may have moved the block out of `pool`
};

constexpr unsigned kHPools = 2;  // pool slots used (of the harness's 4)

struct HeapModel {
  std::array<SlotModel, kHSlots> slots{};
  unsigned oom_left = 0;  // ops left in an open OOM window (allocations may fail)
};

struct HeapSut {
  tmh::Program program;
  size_t validated = 0;                 // ops already judged by a run
  tmh::Interpreter::Counters counters;  // of the last run (the whole program so far)
  std::set<std::string> events;         // paths observed (split, coalesce, in-place realloc, ...)
};

// How often a command runs the program so far (TM_PROP_CHECK_EVERY, default 4). The
// Interpreter checks every op of a run and names the first failing one, and the property
// runs the whole program once more at the end, so a larger period loses no detection; it
// only divides the cost of replaying prefixes (no incremental step API).
size_t check_every() {
  static const size_t every = [] {
    const char* e = std::getenv("TM_PROP_CHECK_EVERY");
    const long v = e != nullptr ? std::atol(e) : 4;
    return static_cast<size_t>(v >= 1 ? v : 1);
  }();
  return every;
}

// The backend the state machine checks: tm, or TM_HARNESS_BACKEND (e.g. system, to check the
// process's malloc; tools/tm-check-allocator runs it under LD_PRELOAD=other.so).
const char* backend_name() {
  const char* e = std::getenv("TM_HARNESS_BACKEND");
  return e != nullptr && *e ? e : "tm";
}

// Runs the program so far from a fresh heap (forked child) and fails the case with the
// Interpreter's report, the readable trace and the encoded bytes when it is rejected.
void validate(HeapSut& sut) {
  const size_t n = sut.program.ops.size();
  if (n == 0 || sut.validated == n) return;
  const tmprop::RunOutcome r = tmprop::run_program_isolated(backend_name(), sut.program, sut.validated, n);
  sut.events.insert(r.events.begin(), r.events.end());
  sut.validated = n;
  sut.counters = r.counters;
  if (r.ok) return;
  std::string hex;
  static const char* const digits = "0123456789abcdef";
  for (uint8_t b : tmh::encode(sut.program)) {
    hex += digits[b >> 4];
    hex += digits[b & 15];
  }
  const std::string where = r.crashed        ? "the run crashed (allocator abort or signal)"
                            : r.op_index < n ? "the harness Interpreter rejected op #" + std::to_string(r.op_index)
                                             : "the harness Interpreter rejected the final verification / frees";
  RC_FAIL(where + ":\n" + r.message + "\nprogram:\n" + tmh::format_program(sut.program, tmh::Profile::kGeneral) +
          "encoded (hex): " + hex + "\n");
}

// An allocation into slot s of n bytes (n known, or unknown for dynamic sizes).
// A plain allocation (the slot's block was freed first): no pool.
void model_alloc(HeapModel& m, unsigned s, bool known, uint64_t n, bool may_fail) {
  SlotModel& slot = m.slots[s];
  slot.pool = -1;
  slot.pool_maybe = false;
  if (!known || may_fail || m.oom_left > 0 || n > tmh::kSaneMax) {
    slot.live = Live::kMaybe;
  } else {
    slot.live = Live::kLive;
    slot.size = n;
  }
}

// After a plain realloc of slot s (model as it was before: `before`): a pool block may have
// left its pool (tm_realloc allocates outside pools), so its pool becomes uncertain.
void model_plain_realloc_pool(HeapModel& m, unsigned s, const SlotModel& before) {
  SlotModel& slot = m.slots[s];
  if (slot.live == Live::kEmpty) return;
  if (before.live != Live::kEmpty && before.pool >= 0) {
    slot.pool = before.pool;
    slot.pool_maybe = true;
  } else {
    slot.pool = -1;
    slot.pool_maybe = false;
  }
}

// After every op: the OOM window counts down (the window op itself re-arms it).
void model_tick(HeapModel& m, const Op& op) {
  if (op.kind == tmh::OpKind::kOomWindow) {
    m.oom_left = op.oom_span();
  } else if (m.oom_left > 0) {
    --m.oom_left;
  }
}

// ---- Generators ------------------------------------------------------------------------

rc::Gen<unsigned> any_slot() { return rc::gen::inRange<unsigned>(0, kHSlots); }

// A non-empty slot of the model (discards the command when every slot is empty).
unsigned pick_nonempty(const HeapModel& m) {
  std::vector<unsigned> ids;
  for (unsigned s = 0; s < kHSlots; ++s) {
    if (m.slots[s].live != Live::kEmpty) ids.push_back(s);
  }
  RC_PRE(!ids.empty());
  return *rc::gen::elementOf(ids);
}

// Sizes over every tier, in the harness's own size forms (printed as such in traces).
rc::Gen<SizeExpr> any_size_expr() {
  return rc::gen::weightedOneOf<SizeExpr>({
      {4, rc::gen::map(tmprop::request_size(size_t{1} << 20), [](size_t n) { return SizeExpr::exact(n); })},
      {2, rc::gen::apply([](unsigned c, unsigned d) { return SizeExpr::cls(c, d); },
                         rc::gen::inRange<unsigned>(0, tmalloc::kSmallClassCount), rc::gen::inRange<unsigned>(0, 8))},
      {1, rc::gen::apply([](unsigned i, unsigned d) { return SizeExpr::threshold(i, d); },
                         rc::gen::inRange<unsigned>(0, 32), rc::gen::inRange<unsigned>(0, 8))},
      {1, rc::gen::apply([](unsigned k, unsigned d) { return SizeExpr::pow2(k, d); }, rc::gen::inRange<unsigned>(0, 22),
                         rc::gen::inRange<unsigned>(0, 8))},
  });
}

// Medium-tier sizes: several such blocks side by side split one free region; freeing them in
// various orders coalesces neighbours.
rc::Gen<SizeExpr> medium_size_expr() {
  return rc::gen::map(tmprop::medium_size(), [](size_t n) { return SizeExpr::exact(n); });
}

// (scale index, kRelDeltas index) pairs that grow / shrink a block.
const std::vector<std::pair<unsigned, unsigned>> kGrow = {{0, 5}, {0, 18}, {0, 24}, {0, 30}, {0, 28},
                                                          {1, 0}, {3, 0},  {7, 0},  {0, 1}};
const std::vector<std::pair<unsigned, unsigned>> kShrink = {{2, 0},  {4, 0},  {6, 0},  {0, 6},
                                                            {0, 19}, {0, 25}, {0, 31}, {0, 2}};

// ---- Commands --------------------------------------------------------------------------

struct HCmd : rc::state::Command<HeapModel, HeapSut> {
  Op op;

  // The op's effect on the model (slot liveness), then the OOM window countdown.
  virtual void effect(HeapModel& m) const = 0;
  void apply(HeapModel& m) const override {
    effect(m);
    model_tick(m, op);
  }

  void run(const HeapModel&, HeapSut& sut) const override {
    sut.program.ops.push_back(op);
    if (sut.program.ops.size() % check_every() == 0) validate(sut);
  }

  void show(std::ostream& os) const override {
    std::string s = tmh::format_op(op, 0);
    os << (s.rfind("#0 ", 0) == 0 ? s.substr(3) : s);
  }
};

struct Malloc : HCmd {
  Malloc() { op = Op::malloc(*any_slot(), *any_size_expr()); }
  void effect(HeapModel& m) const override { model_alloc(m, op.slot, true, op.size.static_value(), false); }
};

struct MallocMedium : HCmd {
  MallocMedium() { op = Op::malloc(*any_slot(), *medium_size_expr()); }
  void effect(HeapModel& m) const override { model_alloc(m, op.slot, true, op.size.static_value(), false); }
};

struct Calloc : HCmd {
  Calloc() {
    const uint8_t count = *rc::gen::inRange<uint8_t>(0, 9);  // count byte 0..8 = count 0..8
    const size_t n = *rc::gen::weightedOneOf<size_t>(
        {{3, rc::gen::inRange<size_t>(0, 2048)}, {1, rc::gen::inRange<size_t>(2048, 65536)}});
    op = Op::calloc(*any_slot(), count, SizeExpr::exact(n));
  }
  void effect(HeapModel& m) const override {
    model_alloc(m, op.slot, true, tmh::count_value(op.count) * op.size.static_value(), false);
  }
};

// realloc of a live block to a size relative to its own: grows or shrinks it (medium blocks
// grow into a free neighbour or shrink in place).
struct ReallocRelative : HCmd {
  explicit ReallocRelative(const HeapModel& m, bool grow) {
    const unsigned s = pick_nonempty(m);
    const auto sd = *rc::gen::elementOf(grow ? kGrow : kShrink);
    op = Op::realloc(s, SizeExpr::relative(s, false, sd.first, sd.second, true));
  }
  // The size it resolves to when the model knows the slot's size.
  bool known_target(const HeapModel& m, uint64_t* n) const {
    const SlotModel& slot = m.slots[op.slot];
    if (slot.live != Live::kLive) return false;
    *n = tmh::add_size_delta(tmh::scale_size(slot.size, op.size.param), tmh::kRelDeltas[op.size.args[1] % 32]);
    return true;
  }
  void checkPreconditions(const HeapModel& m) const override {
    RC_PRE(m.slots[op.slot].live != Live::kEmpty);
    uint64_t n;
    if (known_target(m, &n)) RC_PRE(n <= kMaxKnownSize);
  }
  void effect(HeapModel& m) const override {
    const SlotModel before = m.slots[op.slot];
    uint64_t n;
    if (!known_target(m, &n)) {
      m.slots[op.slot].live = Live::kMaybe;
    } else if (n == 0) {
      m.slots[op.slot] = SlotModel{};  // realloc(p, 0) frees
    } else {
      model_alloc(m, op.slot, true, n, false);
    }
    model_plain_realloc_pool(m, op.slot, before);
  }
};
struct ReallocGrow : ReallocRelative {
  explicit ReallocGrow(const HeapModel& m) : ReallocRelative(m, true) {}
};
struct ReallocShrink : ReallocRelative {
  explicit ReallocShrink(const HeapModel& m) : ReallocRelative(m, false) {}
};

// realloc to an unrelated size (moves across tiers; realloc(NULL, n) on an empty slot).
struct ReallocAny : HCmd {
  ReallocAny() { op = Op::realloc(*any_slot(), *any_size_expr()); }
  void effect(HeapModel& m) const override {
    const SlotModel before = m.slots[op.slot];
    const uint64_t n = op.size.static_value();
    if (n == 0 && m.slots[op.slot].live == Live::kLive) {
      m.slots[op.slot] = SlotModel{};
    } else if (n == 0) {
      m.slots[op.slot].live = Live::kMaybe;  // realloc(NULL, 0) = malloc(0); maybe-live: either
    } else {
      model_alloc(m, op.slot, true, n, m.slots[op.slot].live == Live::kMaybe);
    }
    model_plain_realloc_pool(m, op.slot, before);
  }
};

struct Free : HCmd {
  explicit Free(const HeapModel& m) { op = Op::free(pick_nonempty(m)); }
  void checkPreconditions(const HeapModel& m) const override { RC_PRE(m.slots[op.slot].live != Live::kEmpty); }
  void effect(HeapModel& m) const override { m.slots[op.slot] = SlotModel{}; }
};

struct Aligned : HCmd {
  bool posix = false;
  explicit Aligned(bool is_posix) : posix(is_posix) {
    const uint64_t align = uint64_t{1} << *rc::gen::weightedOneOf<unsigned>({{4, rc::gen::inRange<unsigned>(0, 13)},
                                                                             {2, rc::gen::inRange<unsigned>(13, 17)},
                                                                             {1, rc::gen::inRange<unsigned>(17, 23)}});
    const SizeExpr size = *rc::gen::weightedOneOf<SizeExpr>({{3, any_size_expr()}, {1, medium_size_expr()}});
    op = posix ? Op::posix_memalign(*any_slot(), align, size) : Op::aligned_alloc(*any_slot(), align, size);
  }
  void effect(HeapModel& m) const override {
    const uint64_t align = tmh::align_value(op.align);
    const uint64_t n = op.size.static_value();
    if (posix && align < sizeof(void*)) {
      m.slots[op.slot] = SlotModel{};  // EINVAL (the slot was released first)
      return;
    }
    model_alloc(m, op.slot, true, n, n == 0);  // size 0 may give NULL or a unique block
  }
};
struct AlignedAlloc : Aligned {
  AlignedAlloc() : Aligned(false) {}
};
struct PosixMemalign : Aligned {
  PosixMemalign() : Aligned(true) {}
};

struct UsableSize : HCmd {
  explicit UsableSize(const HeapModel& m) { op = Op::usable_size(pick_nonempty(m)); }
  void checkPreconditions(const HeapModel& m) const override { RC_PRE(m.slots[op.slot].live != Live::kEmpty); }
  void effect(HeapModel&) const override {}
};

struct CheckHeap : HCmd {
  CheckHeap() { op = Op::check_heap(); }
  void effect(HeapModel&) const override {}
};

// Sizes no allocator can satisfy (>= 2^47, SIZE_MAX ...): NULL + ENOMEM. malloc releases the
// slot first; a failed realloc must leave the block untouched.
struct Impossible : HCmd {
  Impossible() {
    const SizeExpr n = SizeExpr::huge(*rc::gen::inRange<unsigned>(0, 16));
    op = *rc::gen::arbitrary<bool>() ? Op::malloc(*any_slot(), n) : Op::realloc(*any_slot(), n);
  }
  void effect(HeapModel& m) const override {
    const bool must_fail = op.size.static_value() >= tmh::kImpossibleMin;
    SlotModel& slot = m.slots[op.slot];
    if (op.kind == tmh::OpKind::kMalloc) {
      if (must_fail) {
        slot = SlotModel{};
      } else {
        slot.live = Live::kMaybe;
      }
    } else if (!must_fail) {
      slot.live = Live::kMaybe;
    } else if (slot.live == Live::kEmpty) {
      slot = SlotModel{};  // realloc(NULL, huge) = malloc(huge): NULL
    }                      // else: realloc failed, block unchanged
  }
};

// OS maps fail after k more successes for the next `span` ops: allocations in the window may
// fail with ENOMEM (never crash, never corrupt), realloc failures leave the block intact.
struct OomWindow : HCmd {
  OomWindow() { op = Op::oom_window(*rc::gen::inRange<unsigned>(0, 3), *rc::gen::inRange<unsigned>(1, 6)); }
  void effect(HeapModel&) const override {}
};

// ---- Memory-pool commands (format v2) -------------------------------------------------------

rc::Gen<unsigned> any_pool() { return rc::gen::inRange<unsigned>(0, kHPools); }

// A slot whose block certainly belongs to a pool (discards the command when there is none).
unsigned pick_pool_block(const HeapModel& m) {
  std::vector<unsigned> ids;
  for (unsigned s = 0; s < kHSlots; ++s) {
    if (m.slots[s].live == Live::kLive && m.slots[s].pool >= 0 && !m.slots[s].pool_maybe) ids.push_back(s);
  }
  RC_PRE(!ids.empty());
  return *rc::gen::elementOf(ids);
}
bool certain_pool_block(const HeapModel& m, unsigned s, unsigned pool) {
  const SlotModel& slot = m.slots[s];
  return slot.live == Live::kLive && slot.pool == static_cast<int>(pool) && !slot.pool_maybe;
}

// heap_malloc from a pool (created on first use): the slot's block is freed first.
struct HeapMalloc : HCmd {
  HeapMalloc() {
    op = Op::heap_malloc(*any_pool(), *any_slot(),
                         *rc::gen::weightedOneOf<SizeExpr>({{3, any_size_expr()}, {1, medium_size_expr()}}));
  }
  void effect(HeapModel& m) const override {
    model_alloc(m, op.slot, true, op.size.static_value(), false);
    m.slots[op.slot].pool = op.pool;
  }
};

// heap_realloc of a block of its own pool, to a size relative to its own (the block stays in
// the pool: in place, or moved within the pool).
struct HeapRealloc : HCmd {
  explicit HeapRealloc(const HeapModel& m) {
    const unsigned s = pick_pool_block(m);
    const auto sd = *rc::gen::elementOf(*rc::gen::arbitrary<bool>() ? kGrow : kShrink);
    op = Op::heap_realloc(static_cast<unsigned>(m.slots[s].pool), s,
                          SizeExpr::relative(s, false, sd.first, sd.second, true));
  }
  uint64_t target(const HeapModel& m) const {
    return tmh::add_size_delta(tmh::scale_size(m.slots[op.slot].size, op.size.param),
                               tmh::kRelDeltas[op.size.args[1] % 32]);
  }
  void checkPreconditions(const HeapModel& m) const override {
    RC_PRE(certain_pool_block(m, op.slot, op.pool));
    RC_PRE(target(m) <= kMaxKnownSize);
  }
  void effect(HeapModel& m) const override {
    const uint64_t n = target(m);
    if (n == 0) {
      m.slots[op.slot] = SlotModel{};  // heap_realloc(pool, p, 0) frees
      return;
    }
    model_alloc(m, op.slot, true, n, false);
    m.slots[op.slot].pool = op.pool;
  }
};

struct HeapFree : HCmd {
  explicit HeapFree(const HeapModel& m) {
    const unsigned s = pick_pool_block(m);
    op = Op::heap_free(static_cast<unsigned>(m.slots[s].pool), s);
  }
  void checkPreconditions(const HeapModel& m) const override { RC_PRE(certain_pool_block(m, op.slot, op.pool)); }
  void effect(HeapModel& m) const override { m.slots[op.slot] = SlotModel{}; }
};

// heap_reset / heap_destroy: every block of the pool is gone (a block that a plain realloc
// may have moved out of it: maybe).
struct HeapRelease : HCmd {
  explicit HeapRelease(bool destroy) { op = destroy ? Op::heap_destroy(*any_pool()) : Op::heap_reset(*any_pool()); }
  void effect(HeapModel& m) const override {
    for (SlotModel& slot : m.slots) {
      if (slot.live == Live::kEmpty || slot.pool != static_cast<int>(op.pool)) continue;
      if (slot.pool_maybe) {
        slot.live = Live::kMaybe;
      } else {
        slot = SlotModel{};
      }
    }
  }
};
struct HeapReset : HeapRelease {
  HeapReset() : HeapRelease(false) {}
};
struct HeapDestroy : HeapRelease {
  HeapDestroy() : HeapRelease(true) {}
};

struct HeapStats : HCmd {
  HeapStats() { op = Op::heap_stats(*any_pool()); }
  void effect(HeapModel&) const override {}
};

// ---- The property ------------------------------------------------------------------------

// Program header flags: paranoid (verify every block after every op), fill-usable (fill each
// block up to its usable size) and the order of the final frees.
struct ProgramFlags {
  bool paranoid = false;
  bool fill_usable = false;
  uint8_t end_order = 0;
  uint8_t header() const {
    return static_cast<uint8_t>((tmh::kFormatVersion << 4) | (paranoid ? tmh::kFlagParanoid : 0) |
                                (fill_usable ? tmh::kFlagFillUsable : 0) | (end_order << tmh::kFlagEndOrderShift));
  }
};

void showValue(const ProgramFlags& f, std::ostream& os) {
  static const char* const orders[4] = {"slot-ascending", "slot-descending", "address-ascending", "address-descending"};
  os << "program flags:" << (f.paranoid ? " paranoid" : "") << (f.fill_usable ? " fill-usable" : "") << " final-frees "
     << orders[f.end_order & 3];
}

// fill-usable writes the slack between the requested and the usable size: fine under ASan too,
// since tm_usable_size makes every usable byte addressable.
rc::Gen<ProgramFlags> gen_flags() {
  return rc::gen::build<ProgramFlags>(
      rc::gen::set(&ProgramFlags::paranoid, rc::gen::weightedElement<bool>({{1, true}, {3, false}})),
      rc::gen::set(&ProgramFlags::fill_usable, rc::gen::arbitrary<bool>()),
      rc::gen::set(&ProgramFlags::end_order, rc::gen::inRange<uint8_t>(0, 4)));
}

RC_GTEST_PROP(HeapState, MatchesHarnessShadowHeap, ()) {
  HeapModel initial;
  HeapSut sut;
  sut.program.header = (*gen_flags()).header();
  rc::state::check(
      initial, sut,
      rc::state::gen::execOneOfWithArgs<Malloc, Malloc, MallocMedium, MallocMedium, MallocMedium, Calloc, ReallocGrow,
                                        ReallocGrow, ReallocShrink, ReallocShrink, ReallocAny, Free, Free, Free, Free,
                                        AlignedAlloc, PosixMemalign, UsableSize, CheckHeap, Impossible, OomWindow,
                                        OomWindow, HeapMalloc, HeapMalloc, HeapMalloc, HeapRealloc, HeapRealloc,
                                        HeapFree, HeapReset, HeapDestroy, HeapStats>());
  validate(sut);  // the ops after the last periodic run, and the final frees
  // Which allocator paths the case reached (distribution printed on success).
  auto saw = [&](const char* e) { return sut.events.count(e) != 0; };
  bool in_place = false;
  for (const std::string& e : sut.events) in_place = in_place || e.rfind("realloc in place", 0) == 0;
  RC_CLASSIFY(saw("medium alloc split a free block"), "split");
  RC_CLASSIFY(saw("medium free coalesced"), "coalesce");
  RC_CLASSIFY(saw("medium free coalesced with both neighbours"), "coalesce both sides");
  RC_CLASSIFY(saw("medium free cached"), "medium free cached");
  RC_CLASSIFY(saw("medium alloc reused a cached block"), "medium cached block reused");
  RC_CLASSIFY(saw("medium cache release coalesced"), "cached blocks coalesced on release");
  RC_CLASSIFY(in_place, "in-place realloc");
  RC_CLASSIFY(saw("realloc in place (medium, grow)"), "medium in-place grow");
  RC_CLASSIFY(saw("realloc in place (medium, shrink or same)"), "medium in-place shrink");
  RC_CLASSIFY(sut.counters.oom_failures > 0, "allocation failed inside an OOM window");
  RC_CLASSIFY(sut.counters.pool_blocks_dropped > 0, "a pool reset / destroy released blocks");
}

// One fixed check that the observation machinery itself works (so a silent "0%" above cannot
// hide a broken classifier): a medium malloc splits the fresh segment, shrinking and growing a
// medium block is done in place, a free of up to 64 KiB goes to the thread's medium cache and
// a malloc of its class takes it back, tm_release_cached coalesces the cached blocks, and a
// free above the cached sizes coalesces at once.
TEST(HeapState, ObserverSeesSplitCoalesceCacheAndInPlace) {
  tmh::Program p;
  p.ops.push_back(Op::malloc(0, SizeExpr::exact(20000)));
  p.ops.push_back(Op::malloc(1, SizeExpr::exact(20000)));
  p.ops.push_back(Op::realloc(0, SizeExpr::exact(12000)));
  // Grows into the tail the shrink freed, leaving part of it free (the grown block keeps an
  // eighth of headroom).
  p.ops.push_back(Op::realloc(0, SizeExpr::exact(14000)));
  p.ops.push_back(Op::free(0));                             // cached (usable 15750: class 15360)
  p.ops.push_back(Op::malloc(2, SizeExpr::exact(15000)));   // class 15360: the cached block
  p.ops.push_back(Op::free(2));                             // cached again
  p.ops.push_back(Op::free(1));                             // cached
  p.ops.push_back(Op::release_cached());                    // both leave the cache and merge
  p.ops.push_back(Op::malloc(3, SizeExpr::exact(100000)));  // above the cached sizes
  p.ops.push_back(Op::free(3));                             // coalesces at once
  std::set<std::string> seen;
  for (size_t i = 0; i < p.ops.size(); ++i) {
    const tmprop::RunOutcome r = tmprop::run_program_isolated("tm", p, i, i + 1);
    ASSERT_TRUE(r.ok) << r.message;
    seen.insert(r.events.begin(), r.events.end());
  }
  std::string all;
  for (const std::string& e : seen) all += "\n  " + e;
  EXPECT_TRUE(seen.count("medium alloc split a free block")) << all;
  EXPECT_TRUE(seen.count("realloc in place (medium, shrink or same)")) << all;
  EXPECT_TRUE(seen.count("realloc in place (medium, grow)")) << all;
  EXPECT_TRUE(seen.count("medium free cached")) << all;
  EXPECT_TRUE(seen.count("medium alloc reused a cached block")) << all;
  EXPECT_TRUE(seen.count("medium cache release coalesced")) << all;
  EXPECT_TRUE(seen.count("medium free coalesced")) << all;
}

}  // namespace
