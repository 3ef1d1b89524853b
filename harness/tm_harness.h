// tinymalloc verification harness: one engine shared by the fuzz targets, the property
// tests and the tools.
//
//   Program  = a decoded sequence of operations (see harness/FORMAT.md for the byte format:
//              any byte string decodes, nothing is rejected as malformed).
//   Backend  = the allocator under test: "tm" (tinymalloc's tm_* API, with heap-check,
//              stats and ownership checks) or "system" (the process's malloc, so
//              LD_PRELOAD=other.so puts any allocator under the same checks).
//   Interpreter = runs a Program against a Backend and a shadow heap (the reference model),
//              checks every result, and reports the first difference with the trace position.
//
// No gtest / RapidCheck dependency: this library links into libFuzzer targets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "contract.h"

namespace tmh {

// ---- Format constants ------------------------------------------------------------------

inline constexpr uint8_t kFormatVersion = 1;       // header version the encoder writes for v1 programs
inline constexpr uint8_t kFormatVersionPools = 2;  // v2: memory-pool ops (FORMAT.md "Memory pool ops (v2)")
inline constexpr uint8_t kFormatVersionTime = 3;   // v3: advance_time (FORMAT.md "Virtual time (v3)")
inline constexpr size_t kSlots = 64;               // slot table size (slot byte % 64)
inline constexpr unsigned kCanonicalOpcodes = 16;  // v1 opcodes 0..15
inline constexpr unsigned kOpcodeSpace = 64;       // opcode byte & 63
// v2 (profiles that read it, see profile_max_version): opcodes 16..26 are the pool ops,
// 27..63 are aliases.
inline constexpr unsigned kPoolOpcodeFirst = 16;
inline constexpr unsigned kV2CanonicalOpcodes = 27;  // v2 canonical opcodes 0..26
// v3 (every op-program profile reads it): opcode 27 is advance_time, 28..63 are aliases.
inline constexpr unsigned kV3CanonicalOpcodes = 28;  // v3 canonical opcodes 0..27
inline constexpr unsigned kPoolSlots = 4;            // model pool slots (pool byte % 4)
inline constexpr unsigned kMaxPools = 64;            // live pools at most (tm_heap_create)
inline constexpr size_t kMaxOps = 1 << 16;           // decoding stops after this many ops

// Header flag bits (low nibble of the first byte).
inline constexpr uint8_t kFlagParanoid = 1;       // verify every live block after every op
inline constexpr uint8_t kFlagFillUsable = 2;     // fill every block up to its usable size
inline constexpr uint8_t kFlagEndOrderShift = 2;  // bits 2-3: order of the final frees
enum class EndOrder : uint8_t {
  kSlotAscending = 0,
  kSlotDescending = 1,
  kAddressAscending = 2,
  kAddressDescending = 3
};

// The slots to free at the end of an input, in `order`: every slot for the slot orders (empty
// ones are skipped by the caller), the live ones of `live_by_address` (ascending addresses)
// for the address orders.
std::vector<unsigned> end_order_slots(EndOrder order, const std::vector<unsigned>& live_by_address);

// Size outcome classes (see FORMAT.md "Expected outcomes").
inline constexpr uint64_t kSaneMax = uint64_t{64} << 20;       // <= 64 MiB: must succeed
inline constexpr uint64_t kImpossibleMin = uint64_t{1} << 47;  // >= 128 TiB: NULL + ENOMEM

// Decoding profiles: targets that bias the op / size mix. Canonical opcodes and size
// categories (the ones the encoder writes) decode the same in every profile; only the
// alias ranges (opcodes 16..63, size categories 16..31) differ.
// Versions: every profile reads v1 (nibble 0-1) and v3 (nibble 3-15: v2's ops plus
// advance_time); v2 (nibble 2) is read by kPools (target heap_pools) only, the other
// profiles read nibble 2 as v1, as they always did.
enum class Profile : uint8_t { kGeneral = 0, kRealloc, kSplitCoalesce, kAligned, kPools, kCount };
const char* profile_name(Profile p);
// Target or profile name -> profile ("heap_ops", "general", "realloc", "split_coalesce",
// "aligned", "heap_pools" / "pools"). Returns false for an unknown name.
bool profile_from_name(std::string_view name, Profile* out);
// Newest format version a profile decodes (3 for every op-program profile).
unsigned profile_max_version(Profile p);
// Version an input with this header byte decodes as in this profile: nibble 0-1 as v1,
// nibble 2 as v2 in kPools and as v1 elsewhere, nibble 3-15 as v3 (capped at
// profile_max_version).
unsigned effective_version(uint8_t header, Profile p);

enum class OpKind : uint8_t {
  kMalloc = 0,
  kCalloc = 1,
  kRealloc = 2,
  kFree = 3,
  kAlignedAlloc = 4,
  kPosixMemalign = 5,
  kUsableSize = 6,
  kCheckHeap = 7,
  kRefill = 8,
  kOomWindow = 9,
  kFreeRange = 10,
  kAllocRange = 11,
  kSwap = 12,
  kReleaseCached = 13,
  kTouchUsable = 14,
  kPeek = 15,
  // v2: memory pools (FORMAT.md "Memory pool ops (v2)").
  kHeapCreate = 16,
  kHeapMalloc = 17,
  kHeapCalloc = 18,
  kHeapRealloc = 19,
  kHeapFree = 20,
  kHeapReset = 21,
  kHeapDestroy = 22,
  kHeapStats = 23,
  kHeapAllocRange = 24,
  kHeapFill = 25,
  kHeapUnfill = 26,
  // v3: virtual time (FORMAT.md "Virtual time (v3)").
  kAdvanceTime = 27,
};
inline bool is_pool_op(OpKind k) {
  return static_cast<unsigned>(k) >= kPoolOpcodeFirst && static_cast<unsigned>(k) < kV2CanonicalOpcodes;
}
const char* op_name(OpKind k);

enum class SizeCat : uint8_t {
  kTiny = 0,         // 0..64
  kClass = 1,        // small class size +- delta
  kThreshold = 2,    // tier / geometry thresholds +- delta
  kPow2 = 3,         // 2^k +- delta, k <= 26
  kLogSmall = 4,     // log-uniform [16, 8192)
  kLogMedium = 5,    // log-uniform [8192, 512 KiB)
  kLogLarge = 6,     // log-uniform [512 KiB, 16 MiB)
  kLogAny = 7,       // log-uniform [1, 16 MiB)
  kMedium16 = 8,     // 8192 + 16*k (+- delta): exact medium payloads
  kRaw16 = 9,        // 16-bit little endian
  kRaw24 = 10,       // 24-bit little endian
  kHuge = 11,        // impossible sizes (SIZE_MAX, SIZE_MAX/2, > 2^47 ...)
  kBig = 12,         // 64 MiB .. 1 GiB+: may succeed or fail with ENOMEM
  kRelative = 13,    // (requested or usable size of a slot) * scale + delta; dynamic
  kRaw64 = 14,       // 64-bit little endian
  kSameAsPrev = 15,  // previous op's size * scale + delta; dynamic
};
const char* size_cat_name(SizeCat c);

// A size operand exactly as encoded: category, 3 parameter bits and argument bytes.
struct SizeExpr {
  SizeCat cat = SizeCat::kRaw64;
  uint8_t param = 0;  // selector >> 5
  uint8_t args[8] = {};

  static SizeExpr exact(uint64_t n);  // shortest raw form
  static SizeExpr cls(unsigned class_index, unsigned delta_index = 0);
  static SizeExpr pow2(unsigned k, unsigned delta_index = 0);
  static SizeExpr threshold(unsigned index, unsigned delta_index = 0);
  static SizeExpr huge(unsigned index);
  // Size of slot `slot` (its usable size when `usable`), scaled, plus a delta from
  // kRelDeltas; own_slot: the base is the op's own slot.
  static SizeExpr relative(unsigned slot, bool usable, unsigned scale_index, unsigned delta_index,
                           bool own_slot = false);
  static SizeExpr same_as_prev(unsigned scale_index, unsigned delta_index);

  bool is_dynamic() const { return cat == SizeCat::kRelative || cat == SizeCat::kSameAsPrev; }
  // Value of a static size (undefined for dynamic ones).
  uint64_t static_value() const;
  // Human-readable: "8193" or "usable(slot 3)/2-256".
  std::string describe() const;
};

// Tables referenced by the format (FORMAT.md lists them).
extern const int64_t kSmallDeltas[8];
extern const int64_t kRelDeltas[32];
extern const uint64_t kThresholds[32];
extern const uint64_t kHugeSizes[16];
const char* scale_name(unsigned scale_index);  // "", "*2", "/2", "*3/2", ...
// Saturating size arithmetic of relative sizes (FORMAT.md): the value scaled by
// scale_index, and a base plus a signed delta clamped to [0, UINT64_MAX].
uint64_t scale_size(uint64_t v, unsigned scale_index);
uint64_t add_size_delta(uint64_t base, int64_t delta);

// Alignment operand: value table indexed by the byte (FORMAT.md).
uint64_t align_value(uint8_t a);
// Byte that encodes alignment value v, or -1 when v is not in the table.
int align_byte_for(uint64_t v);
// calloc count operand.
uint64_t count_value(uint8_t c);
// advance_time operand: milliseconds of step byte t (kTimeSteps[t % 32]).
extern const uint64_t kTimeSteps[32];
uint64_t time_step_ms(uint8_t t);

struct Op {
  OpKind kind = OpKind::kMalloc;
  uint8_t opcode = 0;   // byte as read (aliases keep their raw value for printing)
  uint8_t slot = 0;     // slot operand (already % kSlots)
  uint8_t slot2 = 0;    // swap: second slot
  uint8_t align = 0;    // aligned ops: alignment byte
  uint8_t count = 0;    // calloc: count byte; free/alloc range: count byte
  uint8_t arg = 0;      // oom window: param byte; free range: step byte; advance_time: step
  uint16_t offset = 0;  // peek
  uint8_t pool = 0;     // pool ops: model pool slot (already % kPoolSlots)
  SizeExpr size;
  uint32_t pos = 0;  // byte offset of the opcode in the input (decode only)

  // Convenience constructors for generators and properties.
  static Op malloc(unsigned slot, SizeExpr s);
  static Op calloc(unsigned slot, uint8_t count_byte, SizeExpr s);
  static Op realloc(unsigned slot, SizeExpr s);
  static Op free(unsigned slot);
  static Op aligned_alloc(unsigned slot, uint64_t alignment, SizeExpr s);
  static Op posix_memalign(unsigned slot, uint64_t alignment, SizeExpr s);
  static Op usable_size(unsigned slot);
  static Op check_heap();
  static Op refill(unsigned slot);
  static Op oom_window(unsigned successful_maps, unsigned span);
  static Op free_range(unsigned first, unsigned count, unsigned step, bool reverse);
  static Op alloc_range(unsigned first, unsigned count, SizeExpr s);
  static Op swap(unsigned a, unsigned b);
  static Op release_cached();
  static Op touch_usable(unsigned slot);
  static Op peek(unsigned slot, uint16_t offset);
  // v2 pool ops (a program holding one is encoded with a v2 header).
  static Op heap_create(unsigned pool);
  static Op heap_malloc(unsigned pool, unsigned slot, SizeExpr s);
  static Op heap_calloc(unsigned pool, unsigned slot, uint8_t count_byte, SizeExpr s);
  static Op heap_realloc(unsigned pool, unsigned slot, SizeExpr s);
  static Op heap_free(unsigned pool, unsigned slot);
  static Op heap_reset(unsigned pool);
  static Op heap_destroy(unsigned pool);
  static Op heap_stats(unsigned pool);
  static Op heap_alloc_range(unsigned pool, unsigned first, unsigned count, SizeExpr s);
  static Op heap_fill();
  static Op heap_unfill();
  // v3: advance the virtual clock by kTimeSteps[step % 32] milliseconds.
  static Op advance_time(unsigned step);

  // Decoded helpers.
  unsigned oom_successes() const { return arg & 7u; }
  unsigned oom_span() const { return 1u + (arg >> 3); }
  unsigned range_count() const { return 1u + count % 64u; }
  unsigned range_step() const { return 1u + (arg & 15u); }
  bool range_reverse() const { return (arg & 16u) != 0; }
  uint64_t time_ms() const { return time_step_ms(arg); }
};

// Slot of the i-th element of a free_range (first + i*step, or - when reversed) or
// alloc_range / heap_alloc_range (first + i), modulo kSlots.
unsigned range_slot(const Op& op, unsigned i);

struct Program {
  uint8_t header = kFormatVersion << 4;
  std::vector<Op> ops;
  size_t input_size = 0;            // bytes decoded (0 for built programs)
  uint8_t format = kFormatVersion;  // version the ops were decoded with (decode sets it)

  uint8_t version() const { return static_cast<uint8_t>(header >> 4); }
  bool uses_pools() const {
    for (const Op& op : ops) {
      if (is_pool_op(op.kind)) return true;
    }
    return false;
  }
  bool uses_time() const {
    for (const Op& op : ops) {
      if (op.kind == OpKind::kAdvanceTime) return true;
    }
    return false;
  }
  // Format version the encoder writes for this program: 3 with advance_time, 2 with pool
  // ops, else 1 (or the header's own version when that is higher).
  unsigned encoded_version() const;
  uint8_t flags() const { return static_cast<uint8_t>(header & 15); }
  bool paranoid() const { return (header & kFlagParanoid) != 0; }
  bool fill_usable() const { return (header & kFlagFillUsable) != 0; }
  EndOrder end_order() const { return static_cast<EndOrder>((header >> kFlagEndOrderShift) & 3); }
};

// Decodes any byte string (never fails).
Program decode(const uint8_t* data, size_t size, Profile profile = Profile::kGeneral);
// Reads the operands of one op whose kind is already set in *op, starting at data[pos]
// (bytes past the end read as 0, as in decode); returns the position after them. The
// building block of decode, also used by the heap_mt decoder (harness/tm_harness_mt.h).
size_t decode_operands(const uint8_t* data, size_t size, size_t pos, Profile profile, Op* op);
// Encodes a program in canonical form (decode(encode(p)) == p for canonical ops). A program
// with advance_time gets version 3 in its header, one with pool ops version 2 (when the
// header says less); it decodes back to the same program in the profiles that read that
// version (v3: all, v2: kPools).
std::vector<uint8_t> encode(const Program& p);
void encode_op(const Op& op, std::vector<uint8_t>& out);
// "#3 realloc slot 5 -> 8193 bytes".
std::string format_op(const Op& op, size_t index);
// Whole trace, one line per op, with a header line.
std::string format_program(const Program& p, Profile profile);

// ---- Backends ----------------------------------------------------------------------------

// The counters of tm_stats that the harness checks (a copy, so this header does not need
// tinymalloc.h).
struct HeapStats {
  size_t live_blocks = 0;
  // Exact sum of the requested sizes only when requested_exact (tinymalloc: the
  // track_requested option, which the harness turns on unless TINYMALLOC_OPTIONS names it;
  // without it small blocks count at their usable size, and the model cannot compare).
  bool requested_exact = true;
  size_t requested_bytes = 0;
  size_t usable_bytes = 0;
  size_t mapped_bytes = 0;
  size_t committed_bytes = 0;
  size_t peak_mapped_bytes = 0;
  size_t peak_requested_bytes = 0;
  size_t small_live_blocks = 0;
  size_t medium_live_blocks = 0;
  size_t large_live_blocks = 0;
  size_t class_live_sum = 0;
  size_t medium_free_blocks = 0;
  size_t medium_free_bytes = 0;
  size_t medium_largest_free = 0;
  // Medium blocks in thread caches (tinymalloc's medium_cache): neither live nor free.
  size_t medium_cached_blocks = 0;
  // Calls into the OS (tinymalloc: tm_stats os_*_calls). A change of purge_calls across an
  // op means the upkeep returned memory somewhere in the heap: the interpreter then checks
  // the whole heap, not only what the op touched.
  size_t map_calls = 0;
  size_t unmap_calls = 0;
  size_t purge_calls = 0;
  size_t pool_segments = 0;
  // Debug mode (tinymalloc option debug): every block the program allocates with the malloc
  // family is a core block with canaries, and freed ones stay live in the quarantine, so
  // live_blocks, requested_bytes and usable_bytes above count what the core holds. The model
  // then compares its blocks outside pools with what debug mode records as live (exact:
  // count and requested bytes), and live_blocks with its blocks plus the quarantine.
  bool debug_view = false;
  size_t debug_live_blocks = 0;
  size_t debug_live_bytes = 0;
  size_t debug_quarantined = 0;
};

// Counters of one memory pool (tm_heap_stats_t).
struct PoolStats {
  size_t live_blocks = 0;
  size_t usable_bytes = 0;
  size_t segments = 0;
  size_t large_blocks = 0;
  size_t mapped_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  virtual void* malloc(size_t n) = 0;
  virtual void* calloc(size_t count, size_t n) = 0;
  virtual void* realloc(void* p, size_t n) = 0;
  virtual void free(void* p) = 0;
  // A free that names the block's requested size (C23 free_sized, C++ sized delete; tm:
  // tm_free_sized, which debug mode checks against the size it recorded). Plain free where
  // the allocator has none.
  virtual void free_sized(void* p, size_t n) {
    (void)n;
    free(p);
  }
  virtual void* aligned_alloc(size_t alignment, size_t n) = 0;
  virtual int posix_memalign(void** out, size_t alignment, size_t n) = 0;
  virtual size_t usable_size(const void* p) = 0;
  virtual void release_cached() {}
  // A worker thread is done with the allocator until a later input hands it new work (the
  // multi-threaded interpreter reuses its OS threads across inputs): what the allocator does
  // when a thread exits, leaving the thread as one that has not allocated (tm:
  // tm_test_thread_exit). Other allocators have no such entry; their thread state persists.
  virtual void thread_retire() {}

  // True: the tinymalloc contract applies exactly (malloc(0) non-NULL, realloc(p,0) frees
  // and returns NULL, aligned_alloc/posix_memalign EINVAL rules). False: the lenient
  // POSIX/C rules any malloc satisfies.
  virtual bool strict() const { return false; }
  // Capabilities.
  virtual bool has_heap_check() const { return false; }
  // 0 when consistent; otherwise a nonzero code and *message describes the violation.
  virtual int check_heap(std::string* message) {
    (void)message;
    return 0;
  }
  // Writes a picture of the heap to fd (tm: tm_heap_map), SVG or text; false when the
  // backend has none. A failure report attaches one when TM_HARNESS_HEAPMAP=path is set.
  // The allocator's other views of its heap checked against its statistics (tm: the per-class
  // and per-arena tables against tm_stats, tm_check_heap, the option names, a peak reset,
  // tm_stats_print in both forms, debug mode's leak report): 0 when they agree, otherwise
  // nonzero with *message set. Only where the calling thread is the only one
  // with a cache (the single-thread interpreter's check_heap op).
  virtual int check_introspection(std::string* message) {
    (void)message;
    return 0;
  }
  virtual bool has_heap_map() const { return false; }
  virtual bool heap_map(int fd, bool svg) {
    (void)fd;
    (void)svg;
    return false;
  }
  // The same for the part of the heap around p only (tm: tm_check_heap_around), in time
  // independent of the heap's size: what the interpreter runs after an op on the addresses
  // the op touched. A backend with a heap check but no scoped one gets the whole check.
  virtual int check_heap_around(const void* p, std::string* message) {
    (void)p;
    return check_heap(message);
  }
  // Between inputs: puts the allocator back into the state of a process that has not
  // allocated (tm: tm_test_reset), so an input means the same thing whatever ran before it.
  // Returns 0 when done (or nothing to do); -1 when it could not be done (blocks still live,
  // e.g. left by a failed property run: the next run is then not pristine, which is no
  // error of the allocator); a positive code with *message set when the allocator found an
  // inconsistency while resetting (tm: address-space accounting that did not return to
  // zero with every mapping gone).
  virtual int reset(std::string* message) {
    (void)message;
    return 0;
  }
  // Virtual time (format v3 advance_time): the tm backend drives the clock tinymalloc's
  // purge and sweep decisions read (tinymalloc_test.h); other backends have none.
  virtual bool has_clock() const { return false; }
  virtual void advance_time(uint64_t ms) { (void)ms; }
  virtual bool has_stats() const { return false; }
  virtual void stats(HeapStats* out) { *out = HeapStats{}; }
  virtual bool has_owns() const { return false; }
  virtual bool owns(const void* p) {
    (void)p;
    return false;
  }
  virtual bool has_oom_injection() const { return false; }
  virtual void fail_os_after(long calls) { (void)calls; }
  // Largest size in (kSaneMax, kImpossibleMin) that is attempted at all, and the most
  // live bytes such attempts may hold (address-space / RSS guard; see FORMAT.md).
  virtual uint64_t max_attempt_size() const { return uint64_t{1} << 30; }
  virtual uint64_t max_live_bytes() const { return uint64_t{4} << 30; }
  // Largest size attempted at all, sizes that must succeed included (they are skipped above
  // it): UINT64_MAX, except where the allocator fills every byte of every block (tinymalloc's
  // debug mode: new blocks 0xAB, freed ones 0xDF, every page resident), whose RSS and time
  // would otherwise grow with the 64 MiB blocks the format allows.
  virtual uint64_t max_filled_size() const { return UINT64_MAX; }
  // Largest alignment attempted (larger valid ones are skipped; strict backends still get
  // the > TM_MAX_ALIGNMENT requests that must fail).
  virtual uint64_t max_attempt_alignment() const { return uint64_t{1} << 30; }

  // Memory pools (tm_heap_*). The tm backend uses tinymalloc's pools; the system and faulty
  // backends emulate them (a list of blocks per pool over their malloc/free: reset frees the
  // pool's blocks one by one), with the same limit of kMaxPools live pools. A backend
  // without pools (has_heaps() false) makes the interpreter skip every pool op. Handles are
  // opaque. The interpreter never passes a block of another pool (or a non-pool block) to
  // heap_free / heap_realloc: that is misuse (tinymalloc aborts).
  virtual bool has_heaps() const { return false; }
  virtual unsigned max_heaps() const { return kMaxPools; }
  // Pools live in this backend now (tm: created through any tm backend of this process and
  // not destroyed; the harness assumes it is the process's only pool user).
  virtual unsigned heaps_live() const { return 0; }
  virtual void* heap_create() { return nullptr; }  // NULL + ENOMEM beyond max_heaps()
  virtual void* heap_malloc(void* heap, size_t n) {
    (void)heap;
    (void)n;
    return nullptr;
  }
  virtual void* heap_calloc(void* heap, size_t count, size_t n) {
    (void)heap;
    (void)count;
    (void)n;
    return nullptr;
  }
  // tm_heap_realloc: the block stays in the pool; (heap, p, 0) frees p and returns NULL.
  virtual void* heap_realloc(void* heap, void* p, size_t n) {
    (void)heap;
    (void)p;
    (void)n;
    return nullptr;
  }
  virtual void heap_free(void* heap, void* p) {
    (void)heap;
    (void)p;
  }
  virtual void heap_reset(void* heap) { (void)heap; }
  virtual void heap_destroy(void* heap) { (void)heap; }
  virtual void heap_stats(void* heap, PoolStats* out) {
    (void)heap;
    *out = PoolStats{};
  }
};

std::unique_ptr<Backend> make_tm_backend();
std::unique_ptr<Backend> make_system_backend();
// Harness self-test backend: a correct arena allocator that injects one deliberate bug
// (mode 1..N, see faulty_mode_name) so tests can prove that every check fires.
std::unique_ptr<Backend> make_faulty_backend(int mode);
int faulty_mode_count();
const char* faulty_mode_name(int mode);
// "tm", "system" or "faulty:<mode>"; nullptr for an unknown name.
std::unique_ptr<Backend> make_backend(std::string_view name);
// TM_HARNESS_BACKEND (default "tm"); exits with a message for an unknown value.
std::unique_ptr<Backend> backend_from_env();

// ---- Interpreter -------------------------------------------------------------------------

namespace detail {
class ThreadEngine;  // harness/engine.h: one thread of a multi-threaded run
}

struct Options {
  bool abort_on_failure = true;  // print the report and abort(); else return it
  // Without abort: after a failure, free the blocks still live in the model (best effort,
  // no checks). Off by default: on a corrupt heap the allocator may abort in free() and the
  // returned report would be lost; turn it on for backends that cannot be corrupted (system,
  // faulty) when leak checkers must stay quiet.
  bool free_after_failure = false;
  bool self_test_poke = false;  // peek ops corrupt the block instead (TM_HARNESS_SELFTEST=poke)
  bool verbose = false;         // print every op as it runs (tm-repro -v)
  // After every op the interpreter checks what the op touched (the blocks it returned or
  // released and their neighbours' contents, a scoped heap check around each of them, the
  // stats deltas). The whole heap (tm_check_heap and the contents of every live block) is
  // checked after ops 1, 2, 4, 8, ... (O(log n) times in an n-op input), at check_heap ops,
  // when an OOM window closes, after release_cached, after an op during which the allocator
  // purged memory, and at the end of every input. These settings add whole-heap checks:
  bool paranoid = false;          // after every op (TM_HARNESS_PARANOID=1; the old default)
  unsigned verify_every = 0;      // contents of every live block every N ops (0: log schedule)
  unsigned heap_check_every = 0;  // tm_check_heap every N ops (0: log schedule)
  // When set, run() appends the outcome of every op to it, one line each, in a form that
  // does not depend on where the OS placed mappings (addresses relative to their 4 MiB
  // segment) plus the allocator's OS counters: what the determinism check compares.
  std::string* trace = nullptr;
  Profile profile = Profile::kGeneral;
  std::string target = "heap_ops";
  FILE* out = stderr;
};
// Options from the environment: TM_HARNESS_SELFTEST=poke, TM_HARNESS_VERBOSE=1,
// TM_HARNESS_PARANOID=1, TM_HARNESS_HEAP_CHECK_EVERY=N, TM_HARNESS_VERIFY_EVERY=N.
Options options_from_env(Profile profile, std::string_view target);

struct Result {
  bool ok = true;
  size_t op_index = 0;  // failing op (ops.size() for the final leak check)
  std::string message;  // the full report
};

class Interpreter {
 public:
  Interpreter(Backend& backend, Options options);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  Result run(const Program& program);
  // Decodes and runs an input; a waived deviation (contract.h) keeps a copy of it.
  Result run_bytes(const uint8_t* data, size_t size) {
    set_current_input(data, size);
    Result r = run(decode(data, size, options_.profile));
    set_current_input(nullptr, 0);
    return r;
  }
  // Ops executed by the last run (for statistics in properties).
  struct Counters {
    size_t ops = 0, allocs = 0, frees = 0, reallocs = 0, realloc_in_place = 0, expected_failures = 0, oom_failures = 0,
           skipped = 0;
    size_t pool_creates = 0, pool_resets = 0, pool_destroys = 0, pool_blocks_dropped = 0, pool_limit_hits = 0;
  };
  const Counters& counters() const { return counters_; }

 private:
  friend class detail::ThreadEngine;  // runs the same Impl, one per thread
  struct Impl;
  Backend& backend_;
  Options options_;
  Counters counters_;
  std::unique_ptr<Impl> impl_;
};

// Fill pattern of the shadow heap: byte i of a block with seed s (never constant).
uint8_t pattern_byte(uint32_t seed, uint64_t i);

}  // namespace tmh
