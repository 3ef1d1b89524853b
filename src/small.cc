// Small tier: size-class runs with bitmap allocation (see small.h).
#include "small.h"

#include <errno.h>

#include <cstring>

#include "check.h"
#include "chunk_map.h"
#include "error.h"
#include "os.h"
#include "plant.h"
#include "platform.h"
#include "sanitizer.h"
#include "stats.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

struct SmallClass {
  SpinLock lock;
  RunDesc* partial;  // runs with at least one free block; the head is allocated from
  size_t live_blocks;
  size_t runs;
};

// Zero-initialised, constexpr-constructible: no global constructor runs.
SmallClass g_classes[kSmallClassCount];

// Guards the segment list and run assignment. Lock order: a class lock, then this one.
SpinLock g_segments_lock;
SmallSegment* g_segments;  // segments with free runs come first
size_t g_segment_count;
size_t g_empty_segments;  // segments whose usable runs are all free

// First byte of run `index` in `segment`.
char* run_base(SmallSegment* segment, size_t index) { return reinterpret_cast<char*>(segment) + index * kRunSize; }

// Index of run `run` within its segment.
size_t run_index(const SmallSegment* segment, const RunDesc* run) { return static_cast<size_t>(run - segment->runs); }

// Segment containing the run descriptor `run`.
SmallSegment* segment_of(const RunDesc* run) {
  return reinterpret_cast<SmallSegment*>(reinterpret_cast<uintptr_t>(run) & ~(kSegmentSize - 1));
}

// Whether a run is assigned to a class. Read without the class lock by tm_owns and by
// free's first lookup, so it is accessed atomically: release on publish pairs with the
// acquire here, making the run's fields (written before) visible to the reader.
bool run_in_use(const RunDesc* run) { return __atomic_load_n(&run->in_use, __ATOMIC_ACQUIRE) != 0; }
void set_run_in_use(RunDesc* run, bool in_use) {
  __atomic_store_n(&run->in_use, static_cast<uint8_t>(in_use ? 1 : 0), __ATOMIC_RELEASE);
}

// Records the slack of block `index`.
void set_slack(RunDesc* run, size_t index, size_t slack) {
  if (run->block_size <= kByteSlackMaxBlock) {
    run->slack[index] = static_cast<uint8_t>(slack);
  } else {
    uint16_t value = static_cast<uint16_t>(slack);
    std::memcpy(&run->slack[index * 2], &value, sizeof value);
  }
}

// Slack recorded for block `index`.
size_t get_slack(const RunDesc* run, size_t index) {
  if (run->block_size <= kByteSlackMaxBlock) return run->slack[index];
  uint16_t value;
  std::memcpy(&value, &run->slack[index * 2], sizeof value);
  return value;
}

// Moves a segment to the front (it has free runs) or the back (it has none) of the list.
void segment_requeue(SmallSegment* segment) {
  // Unlink.
  if (segment->prev != nullptr) {
    segment->prev->next = segment->next;
  } else {
    g_segments = segment->next;
  }
  if (segment->next != nullptr) segment->next->prev = segment->prev;
  segment->next = segment->prev = nullptr;
  if ((segment->free_runs & kSmallUsableRunsMask) != 0 || g_segments == nullptr) {
    segment->next = g_segments;
    if (g_segments != nullptr) g_segments->prev = segment;
    g_segments = segment;
    return;
  }
  SmallSegment* tail = g_segments;
  while (tail->next != nullptr) tail = tail->next;
  tail->next = segment;
  segment->prev = tail;
}

// Maps and registers a new small segment (segments lock held).
SmallSegment* segment_create() {
  if (!chunk_map_ensure()) return nullptr;
  auto* segment = static_cast<SmallSegment*>(os_map_aligned(kSegmentSize, kSegmentSize));
  if (segment == nullptr) return nullptr;
  segment->magic = kSegmentMagic;
  segment->kind = SegmentKind::kSmall;
  segment->free_runs = kSmallUsableRunsMask;
  segment->clean_runs = kSmallUsableRunsMask;
  // Only the runs' memory is for blocks; under ASan it stays poisoned until handed out.
  poison(run_base(segment, kSmallReservedRuns), kSegmentSize - kSmallReservedRuns * kRunSize);
  chunk_map_set(segment, kSegmentSize, segment);
  segment->prev = nullptr;
  segment->next = g_segments;
  if (g_segments != nullptr) g_segments->prev = segment;
  g_segments = segment;
  ++g_segment_count;
  ++g_empty_segments;
  return segment;
}

// Unregisters and unmaps an empty segment (segments lock held).
void segment_destroy(SmallSegment* segment) {
  if (segment->prev != nullptr) {
    segment->prev->next = segment->next;
  } else {
    g_segments = segment->next;
  }
  if (segment->next != nullptr) segment->next->prev = segment->prev;
  chunk_map_set(segment, kSegmentSize, nullptr);
  --g_segment_count;
  --g_empty_segments;
  unpoison(segment, kSegmentSize);
  os_unmap(segment, kSegmentSize);
}

// Takes a free run for class `class_index` and initialises it (class lock held).
RunDesc* run_acquire(size_t class_index) {
  LockGuard guard(g_segments_lock);
  SmallSegment* segment = g_segments;
  if (segment == nullptr || (segment->free_runs & kSmallUsableRunsMask) == 0) {
    segment = segment_create();
    if (segment == nullptr) return nullptr;
  }
  if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) --g_empty_segments;
  // Prefer clean runs: their blocks need no zeroing for calloc.
  const uint64_t candidates = segment->free_runs & kSmallUsableRunsMask;
  const uint64_t clean = candidates & segment->clean_runs;
  const size_t index = static_cast<size_t>(__builtin_ctzll(clean != 0 ? clean : candidates));
  segment->free_runs &= ~(uint64_t{1} << index);
  const bool was_clean = (segment->clean_runs >> index) & 1u;
  segment->clean_runs &= ~(uint64_t{1} << index);
  if ((segment->free_runs & kSmallUsableRunsMask) == 0) segment_requeue(segment);

  RunDesc* run = &segment->runs[index];
  run->next = run->prev = nullptr;
  run->block_size = static_cast<uint32_t>(class_size(class_index));
  run->block_count = blocks_per_run(class_index);
  run->free_count = run->block_count;
  run->reciprocal = class_reciprocal(class_index);
  run->hint_word = 0;
  run->watermark = was_clean ? 0 : run->block_count;
  run->class_index = static_cast<uint16_t>(class_index);
  set_run_in_use(run, true);
  run->on_partial = 0;
  bitmap_fill(run->bitmap, kRunBitmapWords, run->block_count);
  return run;
}

// Returns an empty run to its segment; releases the segment beyond the retention limit
// (class lock held).
void run_release(RunDesc* run) {
  LockGuard guard(g_segments_lock);
  SmallSegment* segment = segment_of(run);
  const size_t index = run_index(segment, run);
  set_run_in_use(run, false);
  const bool had_free_runs = (segment->free_runs & kSmallUsableRunsMask) != 0;
  segment->free_runs |= uint64_t{1} << index;
  if (!had_free_runs) segment_requeue(segment);
  if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) {
    ++g_empty_segments;
    if (g_empty_segments > kRetainedEmptySegments) segment_destroy(segment);
  }
}

// Links a run at the head of its class's partial list.
void partial_push(SmallClass& cls, RunDesc* run) {
  run->prev = nullptr;
  run->next = cls.partial;
  if (cls.partial != nullptr) cls.partial->prev = run;
  cls.partial = run;
  run->on_partial = 1;
}

// Unlinks a run from its class's partial list.
void partial_remove(SmallClass& cls, RunDesc* run) {
  if (run->prev != nullptr) {
    run->prev->next = run->next;
  } else {
    cls.partial = run->next;
  }
  if (run->next != nullptr) run->next->prev = run->prev;
  run->next = run->prev = nullptr;
  run->on_partial = 0;
}

// Where a pointer lands inside a small segment.
struct BlockRef {
  RunDesc* run;
  size_t index;
};

// Locates the block p starts, reporting misuse for pointers into metadata, unassigned runs
// or the middle of a block. The class lock of the run must be held by the caller after
// this returns (see lock_block).
BlockRef locate_block(SmallSegment* segment, const void* p, const char* what) {
  const uintptr_t offset_in_segment = addr_of(p) - addr_of(segment);
  const size_t index_of_run = offset_in_segment >> kRunShift;
  if (index_of_run < kSmallReservedRuns) report_misuse(what, p, "pointer into allocator metadata");
  RunDesc* run = &segment->runs[index_of_run];
  if (!run_in_use(run)) report_misuse(what, p, "pointer into an unused run: not a live block");
  const uint64_t offset = offset_in_segment & (kRunSize - 1);
  const size_t index = static_cast<size_t>((offset * run->reciprocal) >> 32);
  if (index * run->block_size != offset || index >= run->block_count) {
    TextBuffer detail;
    detail.str("inside a block: not its start; small block of ").dec(run->block_size).str(" bytes");
    report_misuse(what, p, detail);
  }
  return BlockRef{run, index};
}

// Takes the class lock of p's run and returns the block, re-validating under the lock.
BlockRef lock_block(SmallSegment* segment, const void* p, const char* what) {
  for (;;) {
    BlockRef ref = locate_block(segment, p, what);
    SmallClass& cls = g_classes[ref.run->class_index];
    cls.lock.lock();
    // The run cannot change class while it holds a live block; a changed run means p was
    // not live when we looked, so look again under the lock.
    if (run_in_use(ref.run) && &g_classes[ref.run->class_index] == &cls) {
      BlockRef again = locate_block(segment, p, what);
      if (again.run == ref.run && again.index == ref.index) return ref;
    }
    cls.lock.unlock();
  }
}

// Reports a double free of a block whose bit is already set (class lock held).
[[noreturn]] void report_double_free(const BlockRef& ref, const void* p, const char* what) {
  g_classes[ref.run->class_index].lock.unlock();
  TextBuffer detail;
  detail.str("small block of ").dec(ref.run->block_size).str(" bytes, class ").dec(ref.run->class_index);
  report_misuse(std::strcmp(what, "invalid free") == 0 ? "double free" : what, p, detail);
}

}  // namespace

void* small_alloc(size_t class_index, size_t requested, bool zero) {
  SmallClass& cls = g_classes[class_index];
  cls.lock.lock();
  RunDesc* run = cls.partial;
  if (TM_UNLIKELY(run == nullptr)) {
    run = run_acquire(class_index);
    if (run == nullptr) {
      cls.lock.unlock();
      errno = ENOMEM;
      return nullptr;
    }
    ++cls.runs;
    partial_push(cls, run);
  }
  size_t hint = run->hint_word;
  const size_t words = (run->block_count + 63) / 64;
  const size_t index = bitmap_find_first(run->bitmap, words, &hint);
  run->hint_word = static_cast<uint32_t>(hint);
  bitmap_clear(run->bitmap, TM_PLANT_IF(4) ? (index ^ 1) : index);
  --run->free_count;
  if (run->free_count == 0) partial_remove(cls, run);
  const bool fresh = index >= run->watermark;
  if (fresh) run->watermark = static_cast<uint32_t>(index + 1);
  set_slack(run, index, run->block_size - requested);
  ++cls.live_blocks;
  SmallSegment* segment = segment_of(run);
  char* block = run_base(segment, run_index(segment, run)) + index * run->block_size;
  // Under the lock, so a heap check (which holds every lock) sees block and counter agree.
  stats_add_requested(requested);
  cls.lock.unlock();

  unpoison(block, requested);
  if (zero && !fresh && !TM_PLANT_IF(7)) std::memset(block, 0, requested);
  return block;
}

void small_free(SmallSegment* segment, void* p, const char* what) {
  const BlockRef ref = lock_block(segment, p, what);
  RunDesc* run = ref.run;
  SmallClass& cls = g_classes[run->class_index];
  if (bitmap_test(run->bitmap, ref.index)) report_double_free(ref, p, what);
  const size_t requested = run->block_size - get_slack(run, ref.index);
  bitmap_set(run->bitmap, ref.index);
  if (ref.index / 64 < run->hint_word) run->hint_word = static_cast<uint32_t>(ref.index / 64);
  ++run->free_count;
  --cls.live_blocks;
  poison(p, run->block_size);
  if (run->free_count == 1) partial_push(cls, run);  // it was full
  if (run->free_count == run->block_count && !(cls.partial == run && run->next == nullptr)) {
    // Empty and not the class's only partial run (kept to avoid map/unmap thrash).
    partial_remove(cls, run);
    --cls.runs;
    run_release(run);
  }
  stats_sub_requested(requested);
  cls.lock.unlock();
}

size_t small_usable_size(SmallSegment* segment, const void* p, const char* what) {
  const BlockRef ref = lock_block(segment, p, what);
  if (bitmap_test(ref.run->bitmap, ref.index)) {
    g_classes[ref.run->class_index].lock.unlock();
    report_misuse(what, p, "block is free");
  }
  const size_t size = ref.run->block_size;
  g_classes[ref.run->class_index].lock.unlock();
  // The caller may now use every usable byte: make the slack addressable under ASan.
  unpoison(p, size);
  return TM_PLANT_IF(9) ? size + 16 : size;
}

size_t small_requested_size(SmallSegment* segment, const void* p, const char* what) {
  const BlockRef ref = lock_block(segment, p, what);
  if (bitmap_test(ref.run->bitmap, ref.index)) {
    g_classes[ref.run->class_index].lock.unlock();
    report_misuse(what, p, "block is free");
  }
  const size_t requested = ref.run->block_size - get_slack(ref.run, ref.index);
  g_classes[ref.run->class_index].lock.unlock();
  return requested;
}

bool small_resize_in_place(SmallSegment* segment, void* p, size_t requested) {
  const BlockRef ref = lock_block(segment, p, "invalid realloc");
  RunDesc* run = ref.run;
  if (bitmap_test(run->bitmap, ref.index)) report_double_free(ref, p, "invalid realloc");
  const size_t block_size = run->block_size;
  // In place while the request still fits and would not waste more than half the block.
  const bool fits = requested <= block_size && block_size - requested <= slack_capacity(block_size) &&
                    (requested * 2 > block_size || block_size <= 32);
  if (!fits) {
    g_classes[run->class_index].lock.unlock();
    return false;
  }
  const size_t old_requested = block_size - get_slack(run, ref.index);
  set_slack(run, ref.index, block_size - requested);
  stats_sub_requested(old_requested);
  stats_add_requested(requested);
  g_classes[run->class_index].lock.unlock();
  unpoison(p, requested);
  poison(static_cast<char*>(p) + requested, block_size - requested);
  return true;
}

bool small_owns(const SmallSegment* segment, const void* p) {
  const size_t index_of_run = (addr_of(p) - addr_of(segment)) >> kRunShift;
  if (index_of_run < kSmallReservedRuns) return false;
  const RunDesc* run = &segment->runs[index_of_run];
  // Ownership is a snapshot answer by nature: a run released concurrently may answer either way.
  if (!run_in_use(run)) return false;
  const uint64_t offset = addr_of(p) & (kRunSize - 1);
  return offset < uint64_t{run->block_count} * run->block_size;
}

size_t small_class_for_alignment(size_t size, size_t alignment) {
  const size_t start = size_to_class(size < 64 ? 64 : size);
  for (size_t c = start; c < kSmallClassCount; ++c) {
    if (class_size(c) % alignment == 0) return c;
  }
  return kSmallClassCount;
}

void small_lock_all() {
  for (SmallClass& cls : g_classes) cls.lock.lock();
  g_segments_lock.lock();
}

void small_unlock_all() {
  g_segments_lock.unlock();
  for (size_t i = kSmallClassCount; i-- > 0;) g_classes[i].lock.unlock();
}

void small_totals(SmallTotals* out) {
  out->live_blocks = 0;
  out->usable_bytes = 0;
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    out->class_live[c] = g_classes[c].live_blocks;
    out->live_blocks += g_classes[c].live_blocks;
    out->usable_bytes += g_classes[c].live_blocks * class_size(c);
  }
  out->segments = g_segment_count;
}

void small_release_cached() {
  small_lock_all();
  for (SmallSegment* segment = g_segments; segment != nullptr;) {
    SmallSegment* next = segment->next;
    if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) segment_destroy(segment);
    segment = next;
  }
  small_unlock_all();
}

TM_NO_COVERAGE int small_check(CheckResult* result) {
  size_t live_per_class[kSmallClassCount] = {};
  size_t runs_per_class[kSmallClassCount] = {};
  size_t partial_runs_per_class[kSmallClassCount] = {};
  size_t segments = 0;
  size_t empty_segments = 0;
  for (SmallSegment* segment = g_segments; segment != nullptr; segment = segment->next) {
    ++segments;
    if (segments > g_segment_count)
      return result->fail(TM_CHECK_SEGMENT, segment, "small segment list is longer than its count (cycle?)");
    if (segment->magic != kSegmentMagic || segment->kind != SegmentKind::kSmall) {
      return result->fail(TM_CHECK_SEGMENT, segment, "small segment header has a bad magic or kind");
    }
    if (chunk_owner(segment) != segment)
      return result->fail(TM_CHECK_SEGMENT, segment, "address map entry does not name this small segment");
    if (segment->next != nullptr && segment->next->prev != segment) {
      return result->fail(TM_CHECK_SEGMENT, segment, "small segment list links do not round-trip");
    }
    if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) ++empty_segments;
    for (size_t i = kSmallReservedRuns; i < kRunsPerSegment; ++i) {
      const RunDesc* run = &segment->runs[i];
      const bool assigned = ((segment->free_runs >> i) & 1u) == 0;
      if (assigned != run_in_use(run))
        return result->fail(TM_CHECK_RUN_LIST, run_base(segment, i),
                            "run in-use flag disagrees with the segment's free-run bitmap");
      if (!assigned) continue;
      if (run->class_index >= kSmallClassCount || run->block_size != class_size(run->class_index) ||
          run->block_count != blocks_per_run(run->class_index)) {
        return result->fail(TM_CHECK_RUN_BITMAP, run_base(segment, i),
                            "run descriptor has an inconsistent class, block size or count");
      }
      const size_t words = (run->block_count + 63) / 64;
      if (bitmap_count(run->bitmap, kRunBitmapWords) != run->free_count) {
        return result->fail(TM_CHECK_RUN_BITMAP, run_base(segment, i),
                            "run bitmap's set bits differ from its free count");
      }
      uint64_t past_end = 0;  // bits at or after block_count, word by word
      for (size_t w = run->block_count / 64; w < kRunBitmapWords; ++w) {
        const size_t first = w * 64;
        const uint64_t valid = run->block_count >= first + 64 ? ~uint64_t{0}
                               : run->block_count > first     ? (uint64_t{1} << (run->block_count - first)) - 1
                                                              : 0;
        past_end |= run->bitmap[w] & ~valid;
      }
      if (past_end != 0) {
        return result->fail(TM_CHECK_RUN_BITMAP, run_base(segment, i), "run bitmap has a bit set past its last block");
      }
      for (size_t w = 0; w < run->hint_word && w < words; ++w) {
        if (run->bitmap[w] != 0)
          return result->fail(TM_CHECK_RUN_BITMAP, run_base(segment, i),
                              "run search hint skips a word with free blocks");
      }
      if ((run->free_count > 0) != (run->on_partial != 0)) {
        return result->fail(TM_CHECK_RUN_LIST, run_base(segment, i),
                            "run with free blocks is not on its class list (or a full run is)");
      }
      // Live blocks only, a word of the inverted bitmap at a time.
      for (size_t w = 0; w < words; ++w) {
        for (uint64_t live = ~run->bitmap[w]; live != 0; live &= live - 1) {
          const size_t b = w * 64 + static_cast<size_t>(__builtin_ctzll(live));
          if (b < run->block_count && get_slack(run, b) > run->block_size) {
            return result->fail(TM_CHECK_RUN_BITMAP, run_base(segment, i) + b * run->block_size,
                                "live block's recorded slack exceeds its size");
          }
        }
      }
      live_per_class[run->class_index] += run->block_count - run->free_count;
      ++runs_per_class[run->class_index];
      if (run->on_partial != 0) ++partial_runs_per_class[run->class_index];
    }
  }
  if (segments != g_segment_count)
    return result->fail(TM_CHECK_STATS, &g_segment_count, "small segment count differs from the segment list");
  if (empty_segments != g_empty_segments)
    return result->fail(TM_CHECK_STATS, &g_empty_segments, "empty small segment count differs from the walk");
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const SmallClass& cls = g_classes[c];
    size_t on_list = 0;
    for (const RunDesc* run = cls.partial; run != nullptr; run = run->next) {
      ++on_list;
      if (on_list > partial_runs_per_class[c] || run->class_index != c || !run_in_use(run) || run->free_count == 0) {
        return result->fail(TM_CHECK_RUN_LIST, run,
                            "class partial list holds a run that is full, unassigned or of another class");
      }
      if (run->next != nullptr && run->next->prev != run)
        return result->fail(TM_CHECK_RUN_LIST, run, "class partial list links do not round-trip");
    }
    if (on_list != partial_runs_per_class[c])
      return result->fail(TM_CHECK_RUN_LIST, &cls, "a run with free blocks is missing from its class partial list");
    if (cls.live_blocks != live_per_class[c])
      return result->fail(TM_CHECK_STATS, &cls, "class live-block counter differs from the run bitmaps");
    if (cls.runs != runs_per_class[c])
      return result->fail(TM_CHECK_STATS, &cls, "class run counter differs from the segments");
  }
  return 0;
}

// Sum of requested bytes of live small blocks (locks held); used by the stats check.
TM_NO_COVERAGE size_t small_requested_walk() {
  size_t total = 0;
  for (SmallSegment* segment = g_segments; segment != nullptr; segment = segment->next) {
    for (size_t i = kSmallReservedRuns; i < kRunsPerSegment; ++i) {
      const RunDesc* run = &segment->runs[i];
      if (!run_in_use(run)) continue;
      const size_t words = (run->block_count + 63) / 64;
      for (size_t w = 0; w < words; ++w) {
        for (uint64_t live = ~run->bitmap[w]; live != 0; live &= live - 1) {
          const size_t b = w * 64 + static_cast<size_t>(__builtin_ctzll(live));
          if (b < run->block_count) total += run->block_size - get_slack(run, b);
        }
      }
    }
  }
  return total;
}

}  // namespace tmalloc
