// Multi-threaded op programs (fuzz target heap_mt, harness/FORMAT.md "Multi-threaded
// programs"): 2 to 8 threads run their own op sub-streams on their own slot tables
// concurrently, in phases; thread ops hand blocks between threads (at phase boundaries or
// through lock-protected mailboxes during a phase) and make threads exit. The shadow heap
// of the single-thread interpreter checks every op in its thread; after every phase, with
// the workers parked, the main thread checks every block's contents, overlaps between all
// live blocks, tm_check_heap and the tm_stats deltas; at the end every worker has exited
// (joined) before the final frees and the leak check.
//
// Real threads (std::thread). Like tm_harness.h: no gtest / RapidCheck dependency.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "thread_pool.h"
#include "tm_harness.h"

namespace tmh {

inline constexpr uint8_t kMtFormatVersion = 2;  // version nibble the heap_mt encoder writes
inline constexpr unsigned kMtMinThreads = 2;
inline constexpr unsigned kMtMaxThreads = 8;
inline constexpr size_t kMtMaxPhases = 64;  // later barriers are ignored
inline constexpr size_t kMtMaxExits = 64;   // later exit ops are ignored (thread start-up cost)
inline constexpr unsigned kMtSendRangeMax = 16;

// Config byte (the second input byte).
inline constexpr uint8_t kMtConfigStrictOverlap = 8;  // bit 3
inline constexpr uint8_t kMtConfigOwnersFree = 16;    // bit 4
inline constexpr unsigned kMtConfigArenaShift = 5;    // bits 5-6: arena mode (MtArenaMode)
inline constexpr uint8_t kMtConfigEagerPurge = 128;   // bit 7: purge_delay_ms=0 for the run

// How the threads of a run spread over tinymalloc's arenas (tm backend; set with
// tm_option_set for the run and restored after it).
enum class MtArenaMode : uint8_t {
  kDefault = 0,    // the process's options (one arena per CPU, picked by CPU)
  kPerThread = 1,  // arena_select=thread, arenas = thread count: every thread its own arena
  kShared = 2,     // arenas=1: every thread in one arena (lock contention)
  kTwo = 3,        // arena_select=thread, arenas=2: threads alternate between two arenas
};

enum class MtKind : uint8_t {
  kHeap = 0,   // a heap op (opcodes 0-31, 48-63), run by the current thread
  kThread,     // 32 t: the following ops go to thread t
  kBarrier,    // 33: end of the phase
  kGive,       // 34 s t d: at the phase end, the current thread's slot s moves to thread t's slot d
  kSend,       // 35 s t: during the phase, slot s's block goes into thread t's mailbox
  kRecv,       // 36 d: the oldest block of the current thread's mailbox goes into slot d
  kDrain,      // 37: the current thread verifies and frees every block of its mailbox
  kExit,       // 38: the current thread's OS thread exits; a new one runs its later ops
  kYield,      // 39 k: sched_yield or a short busy spin (interleaving noise)
  kSendRange,  // 40 s c t: send of slots s .. s + c % 16 to thread t
  kMigrate,    // 41 t: at the phase end, every block of the current thread moves to thread t
  kNext,       // 42: the following ops go to the next thread
};
const char* mt_kind_name(MtKind k);

struct MtOp {
  MtKind kind = MtKind::kHeap;
  Op op;               // kHeap: the heap op (canonical kind)
  uint8_t opcode = 0;  // byte as read (aliases keep their raw value for printing)
  uint8_t thread = 0;  // thread operand, already reduced modulo the thread count
  uint8_t slot = 0;    // slot operand (% 64)
  uint8_t slot2 = 0;   // give: destination slot
  uint8_t arg = 0;     // yield: spin byte; send_range: count byte
  uint32_t pos = 0;    // byte offset of the opcode in the input (decode only)

  static MtOp heap(const Op& op);
  static MtOp select(unsigned thread);
  static MtOp barrier();
  static MtOp give(unsigned slot, unsigned thread, unsigned dest_slot);
  static MtOp send(unsigned slot, unsigned thread);
  static MtOp recv(unsigned slot);
  static MtOp drain();
  static MtOp exit();
  static MtOp yield(uint8_t arg);
  static MtOp send_range(unsigned first, unsigned count, unsigned thread);
  static MtOp migrate(unsigned thread);
  static MtOp next();

  unsigned range_count() const { return 1u + arg % kMtSendRangeMax; }
};

struct MtProgram {
  uint8_t header = kMtFormatVersion << 4;  // v1 flags in bits 3-0
  uint8_t config = 0;                      // thread count and run mode
  std::vector<MtOp> ops;
  size_t input_size = 0;

  unsigned threads() const { return kMtMinThreads + (config & 7u) % 7u; }
  bool strict_overlap() const { return (config & kMtConfigStrictOverlap) != 0; }
  bool owners_free() const { return (config & kMtConfigOwnersFree) != 0; }
  MtArenaMode arena_mode() const { return static_cast<MtArenaMode>((config >> kMtConfigArenaShift) & 3); }
  bool eager_purge() const { return (config & kMtConfigEagerPurge) != 0; }
  bool paranoid() const { return (header & kFlagParanoid) != 0; }
  bool fill_usable() const { return (header & kFlagFillUsable) != 0; }
  EndOrder end_order() const { return static_cast<EndOrder>((header >> kFlagEndOrderShift) & 3); }
  // Config byte for a thread count (2..8), the two mode bits and the arena mode.
  static uint8_t make_config(unsigned threads, bool strict_overlap, bool owners_free,
                             MtArenaMode arenas = MtArenaMode::kDefault);
};

// Decodes any byte string (never fails).
MtProgram decode_mt(const uint8_t* data, size_t size);
// Canonical encoding (decode_mt(encode_mt(p)) == p for canonical ops).
std::vector<uint8_t> encode_mt(const MtProgram& p);
void encode_mt_op(const MtOp& op, std::vector<uint8_t>& out);
// "#7 [t1] send slot 3 -> thread 2", heap ops as format_op prints them.
std::string format_mt_op(const MtOp& op, size_t index, unsigned thread);
// Whole trace: a header line, then one line per op with its thread and phase.
std::string format_mt_program(const MtProgram& p);

class MtInterpreter {
 public:
  // Options as for the single-thread Interpreter (profile and heap_check_every are not
  // used: heap checks run at phase ends and at check_heap / release_cached ops).
  MtInterpreter(Backend& backend, Options options);
  ~MtInterpreter();
  MtInterpreter(const MtInterpreter&) = delete;
  MtInterpreter& operator=(const MtInterpreter&) = delete;

  Result run(const MtProgram& program);
  Result run_bytes(const uint8_t* data, size_t size) { return run(decode_mt(data, size)); }
  // Serial mode: the threads of a phase run one after another (still each on its own OS
  // thread), so a failing input replays deterministically (TM_HARNESS_MT_SERIAL=1).
  void set_serial(bool serial) { serial_ = serial; }

  struct Counters {
    size_t phases = 0;           // phases run (empty ones are skipped)
    size_t os_threads = 0;       // worker threads started
    size_t exits = 0;            // exit ops executed (threads replaced)
    size_t handoffs = 0;         // blocks moved by give / migrate at phase ends
    size_t sent = 0;             // blocks sent to mailboxes
    size_t received = 0;         // blocks received from mailboxes
    size_t drained = 0;          // blocks freed from mailboxes by their receiver
    size_t foreign_frees = 0;    // frees of blocks by the main thread after the workers exited
    Interpreter::Counters heap;  // summed over the threads
  };
  const Counters& counters() const { return counters_; }

 private:
  Backend& backend_;
  Options options_;
  bool serial_ = false;
  Counters counters_;
  ThreadPool pool_;  // worker OS threads, reused from one run to the next
};

// TM_HARNESS_MT_SERIAL=1.
bool mt_serial_from_env();

}  // namespace tmh
