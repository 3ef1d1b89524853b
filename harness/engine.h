// Internal to the harness library: the per-thread unit of the multi-threaded interpreter
// (harness/mt_interpreter.cc). A ThreadEngine is the single-thread Interpreter's slot table
// and shadow model (harness/interpreter.cc), stepped one op at a time by a worker thread,
// without the global checks (tm_stats, per-op tm_check_heap) that are meaningful only while
// no other thread runs; the multi-threaded runner does those at phase boundaries. Blocks can
// be taken out of one engine and put into another (cross-thread handoffs). Not public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tm_harness.h"

namespace tmh::detail {

// One block of the shadow heap: where it is, what was requested, and its fill pattern.
struct Block {
  uint8_t* p = nullptr;
  bool live = false;
  bool zeroed = false;
  uint64_t requested = 0;
  uint64_t usable = 0;
  uint64_t fill_len = 0;
  uint64_t align = 0;
  uint32_t seed = 0;
  uint64_t last_size = 0;  // kept after free (relative sizes)
  uint64_t last_usable = 0;
  size_t birth_op = 0;
  OpKind how = OpKind::kMalloc;
  int8_t pool = -1;  // model pool slot that owns the block (v2 pool ops), -1: none
  // A waived deviation (contract.h) left this block overlapping another one: writes to
  // either change the other, so its contents are no longer checked (a consequence, not a
  // second deviation). unindexed: another live block starts at the same address, so this
  // one is not in the model's address map.
  bool tainted = false;
  bool unindexed = false;

  uint64_t extent() const { return usable > 0 ? usable : 1; }
  uint64_t virt() const { return requested + (align > 4096 ? align : 0); }
};

// Verifies the patterned bytes of a block that no engine holds (a block in a mailbox);
// returns "" or what differs.
std::string verify_detached(const Block& b);
// "0x7f.. (100 bytes requested, usable 112, seed 7)" for reports.
std::string describe_detached(const Block& b);

// Shared by the engines of one multi-threaded run in strict-overlap mode: every live block
// of every thread, so an allocation is checked against the blocks other threads hold.
class OverlapRegistry {
 public:
  virtual ~OverlapRegistry() = default;
  // Registers [p, p + extent) (`requested` bytes of it requested) for engine `owner`; false
  // when it overlaps a registered block: *other describes that block, *shares_requested
  // tells whether their requested bytes overlap (else only a usable tail does).
  virtual bool claim(const void* p, uint64_t extent, uint64_t requested, unsigned owner, std::string* other,
                     bool* shares_requested) = 0;
  // Unregisters the block at p (before it is freed or reallocated).
  virtual void unclaim(const void* p) = 0;
};

class ThreadEngine {
 public:
  // `program` holds this thread's heap ops (canonical kinds); its header supplies the
  // flags (fill-usable). `id` names the thread in reports; seeds start at (id + 1) << 24.
  // `budget_divisor`: the backend's live-bytes budget is shared by that many engines.
  ThreadEngine(Backend& backend, const Options& options, const Program& program, unsigned id, unsigned budget_divisor,
               OverlapRegistry* registry);
  ~ThreadEngine();
  ThreadEngine(const ThreadEngine&) = delete;
  ThreadEngine& operator=(const ThreadEngine&) = delete;

  // Runs heap op `index` of the program with every per-op check of the single-thread
  // interpreter except tm_stats. `context` prefixes the report ("thread 2, phase 3").
  // Returns false and sets *report (the full failure report) when a check failed.
  bool step(size_t index, const std::string& context, std::string* report);
  // Verifies every live block (sampled as during a run, or every byte); false + report on a
  // difference.
  bool verify_all(const char* when, const std::string& context, std::string* report, bool every_byte = false);
  // Records a non-heap event (thread op) in the recent-ops ring printed by reports.
  void note(size_t index, const std::string& text);
  // A failure report for a problem the caller found (phase-end checks, handoffs).
  std::string report(const std::string& context, const std::string& what);

  // Phase-level OOM window: allocations may fail with ENOMEM while it is on.
  void set_oom(bool on);

  bool live(unsigned slot) const;
  // Takes the block out of slot s (verified first); the slot becomes empty. The block
  // stays live (and registered). Returns false + report when verification failed.
  bool take(unsigned slot, Block* out, const char* why, const std::string& context, std::string* report);
  // Puts a live block into empty slot s (verified first).
  bool put(unsigned slot, const Block& b, const char* why, const std::string& context, std::string* report);
  // Verifies and frees the block in slot s (no-op for an empty slot).
  bool release(unsigned slot, const char* why, const std::string& context, std::string* report);
  // Blocks of this engine: (address, usable extent, slot).
  struct LiveBlock {
    uintptr_t addr;
    uint64_t extent;
    uint64_t requested;  // at least 1
    unsigned slot;
  };
  std::vector<LiveBlock> live_blocks() const;
  std::string describe(unsigned slot) const;
  // Model totals of this engine's live blocks.
  uint64_t live_count() const;
  uint64_t live_requested() const;
  uint64_t live_usable() const;
  uint64_t live_virtual() const;
  // Those outside memory pools (what tinymalloc's debug mode records).
  uint64_t routed_count() const;
  uint64_t routed_requested() const;
  const Interpreter::Counters& counters() const;
  // This thread's ops, one line each, when the run is traced (Options::trace).
  const std::string& trace() const;
  // Forgets every block without freeing it (after a failure: the heap may be corrupt).
  void forget_all(bool free_them);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace tmh::detail
