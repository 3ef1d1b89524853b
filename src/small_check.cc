// Small tier: heap checks and walks of the arenas' segments, runs and classes (see small.h).
#include "small.h"

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "arena.h"
#include "check.h"
#include "chunk_map.h"
#include "free_block.h"
#include "heap_map.h"
#include "platform.h"
#include "sanitizer.h"
#include "small_arena.h"
#include "stats.h"
#include "tinymalloc.h"

namespace tmalloc {

TM_NO_COVERAGE int small_check_cached_block(CheckResult* result, const void* block, size_t class_index) {
  const SegmentBase* owner = chunk_owner(block);
  if (owner == nullptr || owner->kind != SegmentKind::kSmall)
    return result->fail(TM_CHECK_FREE_LINKS, block, "cached small block is not in a small segment");
  auto* segment = static_cast<SmallSegment*>(const_cast<SegmentBase*>(owner));
  const uintptr_t offset_in_segment = addr_of(block) - addr_of(segment);
  const size_t index_of_run = offset_in_segment >> kRunShift;
  const RunDesc* run = &segment->runs[index_of_run];
  const uint64_t offset = offset_in_segment & (kRunSize - 1);
  if (index_of_run < kSmallReservedRuns || !run_in_use(run) || run->class_index != class_index ||
      offset % run->block_size != 0 || offset / run->block_size >= run->block_count) {
    return result->fail(TM_CHECK_FREE_LINKS, block, "cached small block is not a block start of its class");
  }
  const size_t index = offset / run->block_size;
  if (bitmap_test(run->bitmap, index))
    return result->fail(TM_CHECK_RUN_BITMAP, block, "cached small block is also free in its run's bitmap");
  if (!free_block_has_key(block))
    return result->fail(TM_CHECK_FREE_LINKS, block, "cached small block lost its free-block key (written after free?)");
  if (small_tracks_requested() && get_slack(run, index) != run->block_size)
    return result->fail(TM_CHECK_STATS, block, "cached small block still records requested bytes");
  return 0;
}

namespace {

// Heap check of run i of `segment` on its own (its class lock and its arena's segments lock
// held): the descriptor against the segment's free-run bits and its class, the bitmap
// against the free count, the search hint, the partial-list flag and the recorded slack of
// the live blocks (of block `only` alone when it is not kAllBlocks). 0 or a tm_check_code.
constexpr size_t kAllBlocks = ~size_t{0};
TM_NO_COVERAGE int check_run(CheckResult* result, const SmallSegment* segment, size_t i, size_t only = kAllBlocks) {
  const RunDesc* run = &segment->runs[i];
  char* const base = run_base(const_cast<SmallSegment*>(segment), i);
  const bool assigned = ((segment->free_runs >> i) & 1u) == 0;
  if (descriptor_untouched(segment, i)) return 0;
  if (assigned != run_in_use(run))
    return result->fail(TM_CHECK_RUN_LIST, base, "run in-use flag disagrees with the segment's free-run bitmap");
  if (!assigned) return 0;
  if (run->class_index >= kSmallClassCount || run->block_size != class_size(run->class_index) ||
      run->block_count != blocks_per_run(run->class_index)) {
    return result->fail(TM_CHECK_RUN_BITMAP, base, "run descriptor has an inconsistent class, block size or count");
  }
  const size_t words = (run->block_count + 63) / 64;
  if (bitmap_count(run->bitmap, kRunBitmapWords) != run->free_count)
    return result->fail(TM_CHECK_RUN_BITMAP, base, "run bitmap's set bits differ from its free count");
  uint64_t past_end = 0;  // bits at or after block_count, word by word
  for (size_t w = run->block_count / 64; w < kRunBitmapWords; ++w) {
    const size_t first = w * 64;
    const uint64_t valid = run->block_count >= first + 64 ? ~uint64_t{0}
                           : run->block_count > first     ? (uint64_t{1} << (run->block_count - first)) - 1
                                                          : 0;
    past_end |= bitmap_load(&run->bitmap[w]) & ~valid;
  }
  if (past_end != 0) return result->fail(TM_CHECK_RUN_BITMAP, base, "run bitmap has a bit set past its last block");
  for (size_t w = 0; w < run->hint_word && w < words; ++w) {
    if (bitmap_load(&run->bitmap[w]) != 0)
      return result->fail(TM_CHECK_RUN_BITMAP, base, "run search hint skips a word with free blocks");
  }
  if ((run->free_count > 0) != (run->on_partial != 0))
    return result->fail(TM_CHECK_RUN_LIST, base, "run with free blocks is not on its class list (or a full run is)");
  // Live blocks only, a word of the inverted bitmap at a time.
  for (size_t w = only == kAllBlocks ? 0 : only / 64; w < words && (only == kAllBlocks || w == only / 64); ++w) {
    for (uint64_t live = ~bitmap_load(&run->bitmap[w]); live != 0; live &= live - 1) {
      const size_t b = w * 64 + static_cast<size_t>(__builtin_ctzll(live));
      if ((only == kAllBlocks || b == only) && b < run->block_count && get_slack(run, b) > run->block_size) {
        return result->fail(TM_CHECK_RUN_BITMAP, base + b * run->block_size,
                            "live block's recorded slack exceeds its size");
      }
    }
  }
  return 0;
}

// The part of small_check_around that runs with run i's class lock (when it is assigned) and
// the segments lock held; `offset`: where in the run the address lies.
TM_NO_COVERAGE int check_run_around(CheckResult* result, SmallSegment* segment, size_t i, SmallClass* cls,
                                    size_t offset) {
  const RunDesc* described = &segment->runs[i];
  const size_t only = cls != nullptr && described->block_size != 0 ? offset / described->block_size : kAllBlocks;
  const int code = check_run(result, segment, i, only);
  if (code != 0 || cls == nullptr) return code;
  const RunDesc* run = &segment->runs[i];
  if (run->on_partial != 0) {
    const bool linked_in = run->prev != nullptr ? run->prev->next == run : cls->partial == run;
    if (!linked_in || (run->next != nullptr && run->next->prev != run))
      return result->fail(TM_CHECK_RUN_LIST, run, "class partial list links around this run do not round-trip");
    if ((run->prev != nullptr && run->prev->class_index != run->class_index) ||
        (run->next != nullptr && run->next->class_index != run->class_index))
      return result->fail(TM_CHECK_RUN_LIST, run, "class partial list links this run to a run of another class");
  } else if (cls->partial == run) {
    return result->fail(TM_CHECK_RUN_LIST, run, "a full run heads its class partial list");
  }
  if (cls->runs == 0 || cls->handed_out < static_cast<size_t>(run->block_count - run->free_count))
    return result->fail(TM_CHECK_STATS, cls, "class counters are below what this run alone holds");
  // The class's remote-free list (its lock is held: nothing is popped meanwhile).
  size_t remote = 0;
  for (const void* block = cls->remote.load(std::memory_order_acquire); block != nullptr;
       block = free_block_next(block)) {
    if (++remote > cls->handed_out)
      return result->fail(TM_CHECK_FREE_LINKS, cls, "remote-free list is longer than the blocks handed out (cycle?)");
    const int block_code = small_check_cached_block(result, block, run->class_index);
    if (block_code != 0) return block_code;
    if (!free_link_plausible(free_block_link(block)))
      return result->fail(TM_CHECK_FREE_LINKS, block,
                          "remote-free link does not decode to a block (written after free?)");
  }
  return 0;
}

}  // namespace

TM_NO_COVERAGE int small_check_around(CheckResult* result, SmallSegment* segment, const void* p, size_t* class_of_run) {
  *class_of_run = kSmallClassCount;
  if (segment->magic != kSegmentMagic || segment->kind != SegmentKind::kSmall || segment->arena >= kArenaSlots)
    return result->fail(TM_CHECK_SEGMENT, segment, "small segment header has a bad magic, kind or arena");
  if (chunk_owner(segment) != segment)
    return result->fail(TM_CHECK_SEGMENT, segment, "address map entry does not name this small segment");
  const size_t i = (addr_of(p) - addr_of(segment)) >> kRunShift;
  if (i < kSmallReservedRuns) return 0;  // the segment header: nothing more to check
  SmallArena& arena = g_arenas[segment->arena];
  const RunDesc* run = &segment->runs[i];
  // The class lock comes before the segments lock; the run's class is read before its lock
  // is held, so it is read again under it (another thread may reassign the run meanwhile).
  for (int attempt = 0; attempt < 4; ++attempt) {
    const bool in_use = run_in_use(run);
    const size_t class_index = run->class_index;
    SmallClass* cls = in_use && class_index < kSmallClassCount ? &arena.classes[class_index] : nullptr;
    if (cls != nullptr) cls->lock.lock();
    arena.segments_lock.lock();
    const bool same = run_in_use(run) == in_use && (!in_use || run->class_index == class_index);
    const int code = same ? check_run_around(result, segment, i, in_use ? cls : nullptr,
                                             (addr_of(p) - addr_of(segment)) & (kRunSize - 1))
                          : 0;
    if (same && cls != nullptr) *class_of_run = class_index;
    arena.segments_lock.unlock();
    if (cls != nullptr) cls->lock.unlock();
    if (same) return code;
  }
  return 0;  // the run keeps changing hands: another thread is busy with it
}

TM_NO_COVERAGE int small_check(CheckResult* result, unsigned arenas) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    SmallArena& arena = g_arenas[a];
    size_t live_per_class[kSmallClassCount] = {};
    size_t runs_per_class[kSmallClassCount] = {};
    size_t partial_runs_per_class[kSmallClassCount] = {};
    size_t segments = 0;
    size_t empty_segments = 0;
    for (SmallSegment* segment = arena.segments; segment != nullptr; segment = segment->next) {
      ++segments;
      if (segments > arena.segment_count)
        return result->fail(TM_CHECK_SEGMENT, segment, "small segment list is longer than its count (cycle?)");
      if (segment->magic != kSegmentMagic || segment->kind != SegmentKind::kSmall || segment->arena != a) {
        return result->fail(TM_CHECK_SEGMENT, segment, "small segment header has a bad magic, kind or arena");
      }
      if (chunk_owner(segment) != segment)
        return result->fail(TM_CHECK_SEGMENT, segment, "address map entry does not name this small segment");
      if (segment->next != nullptr && segment->next->prev != segment) {
        return result->fail(TM_CHECK_SEGMENT, segment, "small segment list links do not round-trip");
      }
      if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) ++empty_segments;
      for (size_t i = kSmallReservedRuns; i < kRunsPerSegment; ++i) {
        const int code = check_run(result, segment, i);
        if (code != 0) return code;
        // check_run found the in-use flag equal to the free-run bit (or left an untouched
        // descriptor unread): a free run is skipped without faulting its descriptor in.
        if ((segment->free_runs >> i) & 1u) continue;
        const RunDesc* run = &segment->runs[i];
        live_per_class[run->class_index] += run->block_count - run->free_count;
        ++runs_per_class[run->class_index];
        if (run->on_partial != 0) ++partial_runs_per_class[run->class_index];
      }
    }
    if (segments != arena.segment_count)
      return result->fail(TM_CHECK_STATS, &arena.segment_count, "small segment count differs from the segment list");
    if (empty_segments != arena.empty_segments)
      return result->fail(TM_CHECK_STATS, &arena.empty_segments, "empty small segment count differs from the walk");
    for (size_t c = 0; c < kSmallClassCount; ++c) {
      const SmallClass& cls = arena.classes[c];
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
      if (cls.handed_out != live_per_class[c])
        return result->fail(TM_CHECK_STATS, &cls, "class handed-out counter differs from the run bitmaps");
      size_t remote = 0;
      for (const void* block = cls.remote.load(std::memory_order_acquire); block != nullptr;
           block = free_block_next(block)) {
        if (++remote > cls.handed_out)
          return result->fail(TM_CHECK_FREE_LINKS, &cls,
                              "remote-free list is longer than the blocks handed out (cycle?)");
        if (chunk_owner(block) == nullptr || static_cast<const SmallSegment*>(chunk_owner(block))->arena != a)
          return result->fail(TM_CHECK_FREE_LINKS, block, "remote-free list holds a block of another arena");
        const int code = small_check_cached_block(result, block, c);
        if (code != 0) return code;
        if (!free_link_plausible(free_block_link(block)))
          return result->fail(TM_CHECK_FREE_LINKS, block,
                              "remote-free link does not decode to a block (written after free?)");
      }
      if (cls.runs != runs_per_class[c])
        return result->fail(TM_CHECK_STATS, &cls, "class run counter differs from the segments");
    }
  }
  return 0;
}

TM_NO_COVERAGE void small_os_bytes(unsigned arenas, OsBytes* out) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (const SmallSegment* segment = g_arenas[a].segments; segment != nullptr; segment = segment->next) {
      out->mapped += kSegmentSize;
      // As the idle sweep left it: an empty segment's run area, or single free runs, purged.
      out->committed += segment->purged != 0 ? kSmallReservedRuns * kRunSize : kSegmentSize;
      out->committed -= static_cast<size_t>(__builtin_popcountll(segment->purged_runs)) * kRunSize;
    }
  }
}

TM_NO_COVERAGE void small_map(HeapMap& map, unsigned arenas) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (const SmallSegment* segment = g_arenas[a].segments; segment != nullptr; segment = segment->next) {
      map.small_segment(a, addr_of(segment));
      for (size_t i = 0; i < kRunsPerSegment; ++i) {
        if (i < kSmallReservedRuns) {
          map.run(MapRun::kMetadata, 0, 0, 0, 0);
        } else if ((segment->free_runs >> i) & 1u) {
          // Untouched runs are never read (their descriptors' pages may not be faulted in).
          const bool purged = segment->purged != 0 || ((segment->purged_runs >> i) & 1u) != 0;
          map.run(purged ? MapRun::kPurged : MapRun::kFree, 0, 0, 0, 0);
        } else {
          const RunDesc* run = &segment->runs[i];
          map.run(MapRun::kInUse, run->class_index, run->block_size, run->block_count - run->free_count,
                  run->block_count);
        }
      }
      map.end_row();
    }
  }
}

TM_NO_COVERAGE size_t small_requested_walk(unsigned arenas) {
  size_t total = 0;
  if (!small_tracks_requested()) return 0;  // the counters hold no small blocks
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (SmallSegment* segment = g_arenas[a].segments; segment != nullptr; segment = segment->next) {
      for (size_t i = kSmallReservedRuns; i < kRunsPerSegment; ++i) {
        if (descriptor_untouched(segment, i)) continue;  // not in use; reading it would fault its page in
        const RunDesc* run = &segment->runs[i];
        if (!run_in_use(run)) continue;
        const size_t words = (run->block_count + 63) / 64;
        for (size_t w = 0; w < words; ++w) {
          for (uint64_t live = ~bitmap_load(&run->bitmap[w]); live != 0; live &= live - 1) {
            const size_t b = w * 64 + static_cast<size_t>(__builtin_ctzll(live));
            if (b < run->block_count) total += run->block_size - get_slack(run, b);
          }
        }
      }
    }
  }
  return total;
}

}  // namespace tmalloc
