// Small tier: blocks up to kSmallMax bytes in 64 KiB runs of one size class, carved from
// 4 MiB small segments. Each run tracks its blocks with 64-bit bitmap words (bit set =
// free); allocation takes the lowest free block with __builtin_ffsll from a hint word.
// Run metadata lives out of band in the segment header, so a block overflow cannot
// corrupt it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bitmap.h"
#include "config.h"
#include "segment.h"
#include "size_class.h"
#include "spinlock.h"

namespace tmalloc {

// Largest block size whose run records slack in single bytes.
inline constexpr size_t kByteSlackMaxBlock = 48;

struct RunDesc {
  RunDesc* next;  // on the class's partial list (runs with free blocks)
  RunDesc* prev;
  uint64_t reciprocal;  // offset / block_size == (offset * reciprocal) >> 32
  uint32_t block_size;
  uint32_t block_count;
  uint32_t free_count;
  uint32_t hint_word;  // no free bit below this word
  uint32_t watermark;  // blocks at or above this index were never handed out (zeroed)
  uint16_t class_index;
  uint8_t in_use;      // assigned to a class
  uint8_t on_partial;  // linked on the class's partial list
  uint64_t bitmap[kRunBitmapWords];
  // Slack (block_size - requested) of each live block: 8-bit entries for classes of at most
  // kByteSlackMaxBlock bytes (up to 4096 blocks), 16-bit entries otherwise (at most 1024
  // blocks). Keeps the requested-bytes statistic exact.
  uint8_t slack[4096];
};

struct SmallSegment : SegmentBase {
  SmallSegment* next;  // segment list: segments with free runs first
  SmallSegment* prev;
  uint64_t free_runs;   // bit i: run i is not assigned to any class
  uint64_t clean_runs;  // bit i: run i's memory is untouched since it was mapped (zero)
  RunDesc runs[kRunsPerSegment];
};

// Runs at the start of a segment occupied by its header.
inline constexpr size_t kSmallReservedRuns = (sizeof(SmallSegment) + kRunSize - 1) / kRunSize;
// Bit mask of the runs that can hold blocks.
inline constexpr uint64_t kSmallUsableRunsMask = ~uint64_t{0} << kSmallReservedRuns;

// Largest slack a run of this block size can record.
constexpr size_t slack_capacity(size_t block_size) { return block_size <= kByteSlackMaxBlock ? 255 : 65535; }

// Allocates a block of class `class_index` for `requested` bytes; zeroes the first
// `requested` bytes when `zero` (skipped for never-used memory). nullptr + ENOMEM on failure.
void* small_alloc(size_t class_index, size_t requested, bool zero);

// Frees p, which lies in `segment`; `what` names the operation for misuse reports.
void small_free(SmallSegment* segment, void* p, const char* what);

// Usable size of the live block p in `segment` (reports misuse otherwise).
size_t small_usable_size(SmallSegment* segment, const void* p, const char* what);

// Requested size recorded for the live block p.
size_t small_requested_size(SmallSegment* segment, const void* p, const char* what);

// Tries to resize the live block p in place to `requested` bytes; true on success.
bool small_resize_in_place(SmallSegment* segment, void* p, size_t requested);

// True when p points inside a block area of an assigned run.
bool small_owns(const SmallSegment* segment, const void* p);

// Smallest class >= max(size, 64) whose blocks are all aligned to `alignment`
// (class sizes that are multiples of it); kSmallClassCount when none.
size_t small_class_for_alignment(size_t size, size_t alignment);

// Counters for tm_stats (call with every class lock held, see small_lock_all).
struct SmallTotals {
  size_t live_blocks;
  size_t usable_bytes;
  size_t class_live[kSmallClassCount];
  size_t segments;
};
void small_totals(SmallTotals* out);

// Takes / releases every small-tier lock in the global order (classes, then segments).
void small_lock_all();
void small_unlock_all();

// Returns cached empty small segments to the OS.
void small_release_cached();

// Heap walk for tm_check_heap (locks must be held): returns 0 or a tm_check_code and
// describes the violation in `message`/`address`.
struct CheckResult;
int small_check(CheckResult* result);

}  // namespace tmalloc
