// The public tm_* API: routes each request to the small, medium or large tier and
// implements realloc, calloc and the aligned variants on top of them.
#include <errno.h>

#include <cstring>

#include "api_internal.h"
#include "arena.h"
#include "check.h"
#include "chunk_map.h"
#include "config.h"
#include "debug.h"
#include "error.h"
#include "fast_path.h"
#include "guarded.h"
#include "large.h"
#include "medium.h"
#include "medium_cache.h"
#include "os.h"
#include "plant.h"
#include "platform.h"
#include "segment_pool.h"
#include "size_class.h"
#include "small.h"
#include "stats.h"
#include "thread_cache.h"
#include "tinymalloc.h"
#include "trace.h"

namespace tmalloc {

namespace {

// Allocates a block of a small class through the thread cache, zeroed when `zero`.
TM_ALWAYS_INLINE void* allocate_small(size_t class_index, size_t size, bool zero) {
  void* p = cache_alloc(class_index, size, __builtin_return_address(0));
  // Cached blocks may hold old data: calloc always clears what it hands out.
  if (zero && p != nullptr && !TM_PLANT_IF(7)) std::memset(p, 0, size);
  return p;
}

// With sample_rate: a guarded block for a medium-sized request when the calling thread's
// sampled allocation is due (zeroed when `zero`: a slot's pages may hold an earlier block's
// data), else nullptr.
TM_NOINLINE void* sample_medium(size_t size, size_t alignment, bool zero, const void* site) {
  if (!sample_due()) return nullptr;
  if (alignment < kMinBlock) alignment = kMinBlock;
  void* p = guarded_alloc(size, align_up(size, alignment), alignment, kSmallClassCount, site);
  if (p != nullptr && zero) std::memset(p, 0, size);
  return p;
}

// True when a medium-sized request may be sampled (sample_rate on and the size fits a slot).
TM_ALWAYS_INLINE bool may_sample(size_t size) {
  return TM_UNLIKELY(g_sample_rate.load(std::memory_order_relaxed) != 0) && size <= kGuardedMaxSize;
}

// Allocates `size` bytes at the default alignment, zeroed when `zero`.
TM_ALWAYS_INLINE void* allocate(size_t size, bool zero) {
  if (TM_LIKELY(size <= kSmallMax)) return allocate_small(size_to_class(size), size, zero);
  if (may_sample(size)) {
    void* sampled = sample_medium(size, kMinBlock, zero, __builtin_return_address(0));
    if (sampled != nullptr) return sampled;
  }
  if (size <= kMediumCacheMax) return medium_cached_alloc(size, zero);
  if (size <= kMediumMax) return medium_alloc(size, kBlockHeaderSize, zero);
  return large_alloc(size, kBlockHeaderSize, zero);
}

// Allocates `size` bytes aligned to the power of two `alignment`.
void* allocate_aligned(size_t alignment, size_t size) {
  if (alignment <= kMinBlock) return allocate(size, false);
  if (size > kMaxRequest || alignment > TM_MAX_ALIGNMENT) {
    errno = ENOMEM;
    return nullptr;
  }
  if (size <= kSmallMax) {
    const size_t class_index = small_class_for_alignment(size, alignment);
    if (class_index < kSmallClassCount) {
      // Planted bug 8 shifts a block that cannot be freed; keep it only for the medium path.
      return allocate_small(class_index, size, false);
    }
  }
  if (may_sample(size) && alignment <= kPageSize) {
    void* sampled = sample_medium(size, alignment, false, __builtin_return_address(0));
    if (sampled != nullptr) return sampled;
  }
  if (medium_fits(size, alignment)) return medium_alloc(size, alignment, false);
  return large_alloc(size, alignment, false);
}

// Reports a pointer the address map does not know: a large block freed before, or foreign.
[[noreturn]] TM_NOINLINE void report_unowned(const void* p, const char* what) {
  if (large_recently_freed(p)) {
    report_misuse(std::strcmp(what, "invalid free") == 0 ? "double free" : what, p, "large block already freed");
  }
  report_misuse(what, p, "pointer not owned by tinymalloc");
}

// Owner of p or a misuse report naming `what`.
TM_ALWAYS_INLINE SegmentBase* owner_or_report(const void* p, const char* what) {
  SegmentBase* owner = chunk_owner(p);
  if (TM_UNLIKELY(owner == nullptr)) report_unowned(p, what);
  return owner;
}

// Frees a medium or large block; preserves errno (munmap may set it), as glibc's contract
// for free requires. The small path never touches errno.
TM_NOINLINE void release_tiered(SegmentBase* owner, void* p, const char* what, const void* site) {
  const int saved_errno = errno;
  if (owner->kind == SegmentKind::kMedium) {
    medium_cached_free(static_cast<MediumSegment*>(owner), p, what);
  } else if (owner->kind == SegmentKind::kLarge) {
    large_free(static_cast<LargeHeader*>(owner), p, what);
  } else if (owner->kind == SegmentKind::kGuarded) {
    guarded_free(owner, p, site, what);
  } else {
    report_misuse("heap corruption", p, "address map names a segment of unknown kind");
  }
  heap_maintain();
  errno = saved_errno;
}

// Frees p; `what` names the operation for misuse reports, `site` the caller (recorded for a
// sampled block).
TM_ALWAYS_INLINE void release(void* p, const char* what, const void* site = nullptr) {
  SegmentBase* owner = owner_or_report(p, what);
  if (TM_LIKELY(owner->kind == SegmentKind::kSmall)) {
    cache_free(static_cast<SmallSegment*>(owner), p, what);
    return;
  }
  release_tiered(owner, p, what, site);
}

// Requested size of the live block p (what realloc must preserve).
size_t requested_size(SegmentBase* owner, const void* p) {
  switch (owner->kind) {
    case SegmentKind::kSmall:
      return small_requested_size(static_cast<SmallSegment*>(owner), p, "invalid realloc");
    case SegmentKind::kMedium:
      return medium_requested_size(static_cast<MediumSegment*>(owner), p, "invalid realloc");
    case SegmentKind::kLarge:
      return large_requested_size(static_cast<LargeHeader*>(owner), p, "invalid realloc");
    case SegmentKind::kGuarded:
      return guarded_requested_size(owner, p, "invalid realloc");
  }
  report_misuse("heap corruption", p, "address map names a segment of unknown kind");
}

// Usable size of the live block p (under ASan its slack becomes addressable, as for
// tm_usable_size).
size_t usable_size(SegmentBase* owner, const void* p, const char* what) {
  switch (owner->kind) {
    case SegmentKind::kSmall:
      return small_usable_size(static_cast<SmallSegment*>(owner), p, what);
    case SegmentKind::kMedium:
      return medium_usable_size(static_cast<MediumSegment*>(owner), p, what);
    case SegmentKind::kLarge:
      return large_usable_size(static_cast<LargeHeader*>(owner), p, what);
    case SegmentKind::kGuarded:
      return guarded_usable_size(owner, p, what);
  }
  report_misuse("heap corruption", p, "address map names a segment of unknown kind");
}

// realloc of a live block to a non-zero size.
void* reallocate(void* p, size_t size) {
  SegmentBase* owner = owner_or_report(p, "invalid realloc");
  if (size > kMaxRequest) {
    // Validate p all the same: a bad pointer is misuse even when the size is impossible.
    (void)requested_size(owner, p);
    errno = ENOMEM;
    return nullptr;
  }
  switch (owner->kind) {
    case SegmentKind::kSmall:
      if (size <= kSmallMax && small_resize_in_place(static_cast<SmallSegment*>(owner), p, size)) return p;
      break;
    case SegmentKind::kMedium:
      if (size > kSmallMax && medium_resize_in_place(static_cast<MediumSegment*>(owner), p, size)) return p;
      break;
    case SegmentKind::kLarge:
      if (size > kMediumMax) return large_resize(static_cast<LargeHeader*>(owner), p, size);
      break;
    case SegmentKind::kGuarded:
      break;  // a sampled block always moves
  }
  // Every usable byte survives the move, not only the requested ones: a program may write
  // all malloc_usable_size() bytes (glibc allows it) and then grow the block.
  const size_t old_size = usable_size(owner, p, "invalid realloc");
  void* fresh = allocate(size, false);
  if (fresh == nullptr) return nullptr;  // p stays valid and untouched
  std::memcpy(fresh, p, TM_PLANT_IF(5) ? size : (old_size < size ? old_size : size));
  release(p, "invalid realloc");
  return fresh;
}

// The routed calls (debug mode, trace mode): each is served by debug.cc and, while tracing,
// recorded (trace.h). An allocation is recorded after it returns and a free before it
// releases, so a trace never shows an address handed out again before the free of its
// previous block.
void* traced_malloc(size_t size, bool zero, const void* site) {
  void* p = debug_malloc(size, zero, site);
  trace_record(zero ? TraceOp::kCalloc : TraceOp::kMalloc, size, 0, nullptr, p);
  return p;
}

// aligned_alloc, posix_memalign, memalign and aligned new on the routed path.
void* traced_aligned_alloc(size_t alignment, size_t size, const void* site) {
  void* p = debug_aligned_alloc(alignment, size, site);
  trace_record(TraceOp::kAligned, size, alignment, nullptr, p);
  return p;
}

// free, sized free and delete on the routed path.
void traced_free(void* p, size_t expected_size, const void* site) {
  trace_record(TraceOp::kFree, 0, 0, p, nullptr);
  debug_free(p, expected_size, site);
}

// realloc of a block on the routed path (the old block may be reused by another thread
// before this is recorded: tools/tm-trace2corpus lets a new block replace a live one).
void* traced_realloc(void* p, size_t size, const void* site) {
  void* q = debug_realloc(p, size, site);
  trace_record(TraceOp::kRealloc, size, 0, p, q);
  return q;
}

}  // namespace

void* core_allocate(size_t size, bool zero) { return allocate(size, zero); }
void* core_allocate_aligned(size_t alignment, size_t size) { return allocate_aligned(alignment, size); }
void core_release(void* p, const char* what) { release(p, what); }
void* core_reallocate(void* p, size_t size) { return reallocate(p, size); }
size_t core_usable_size(const void* p, const char* what) { return usable_size(owner_or_report(p, what), p, what); }

void* allocate_for_new(size_t size, size_t alignment, const void* site) {
  if (TM_LIKELY(!debug_mode())) return alignment == 0 ? tm_malloc(size) : tm_aligned_alloc(alignment, size);
  if (size > kMaxRequest || alignment > TM_MAX_ALIGNMENT) {
    errno = ENOMEM;
    return nullptr;
  }
  return alignment == 0 ? traced_malloc(size, false, site) : traced_aligned_alloc(alignment, size, site);
}

void* malloc_slow(size_t size, const void* site) {
  if (TM_UNLIKELY(size > kMaxRequest)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (TM_UNLIKELY(debug_mode())) return traced_malloc(size, false, site);
  return allocate(size, false);
}

void free_slow(void* p, const void* site) {
  if (p == nullptr) return;
  if (TM_UNLIKELY(debug_mode())) return traced_free(p, kUnknownSize, site);
  // free preserves errno (glibc's contract for replacements): the small path never sets
  // it, the other paths save and restore it.
  release(p, "invalid free", site);
}

}  // namespace tmalloc

using namespace tmalloc;

extern "C" {

TM_EXPORT void* tm_malloc(size_t size) { return malloc_fast(size); }

TM_EXPORT void tm_free(void* ptr) { free_fast(ptr); }

TM_EXPORT void tm_free_sized(void* ptr, size_t size) {
  if (ptr == nullptr) return;
  if (TM_UNLIKELY(debug_mode())) return traced_free(ptr, size, __builtin_return_address(0));
  release(ptr, "invalid free");
}

TM_EXPORT void* tm_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total) || total > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  if (TM_UNLIKELY(debug_mode())) return traced_malloc(total, true, __builtin_return_address(0));
  return allocate(total, true);
}

TM_EXPORT void* tm_realloc(void* ptr, size_t size) {
  if (TM_UNLIKELY(debug_mode())) {
    if (ptr == nullptr)
      return size > kMaxRequest ? (errno = ENOMEM, nullptr) : traced_malloc(size, false, __builtin_return_address(0));
    return traced_realloc(ptr, size, __builtin_return_address(0));
  }
  if (ptr == nullptr) return tm_malloc(size);
  if (size == 0) {
    release(ptr, "invalid realloc");
    return nullptr;
  }
  return reallocate(ptr, size);
}

TM_EXPORT void* tm_aligned_alloc(size_t alignment, size_t size) {
  if (!is_power_of_two(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  if (TM_UNLIKELY(debug_mode())) {
    if (size > kMaxRequest || alignment > TM_MAX_ALIGNMENT) return errno = ENOMEM, nullptr;
    return traced_aligned_alloc(alignment, size, __builtin_return_address(0));
  }
  return allocate_aligned(alignment, size);
}

TM_EXPORT int tm_posix_memalign(void** out, size_t alignment, size_t size) {
  if (!is_power_of_two(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  const int saved_errno = errno;
  void* p = TM_UNLIKELY(debug_mode()) ? (size > kMaxRequest || alignment > TM_MAX_ALIGNMENT
                                             ? nullptr
                                             : traced_aligned_alloc(alignment, size, __builtin_return_address(0)))
                                      : allocate_aligned(alignment, size);
  errno = saved_errno;
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

TM_EXPORT size_t tm_usable_size(const void* ptr) {
  if (ptr == nullptr) return 0;
  if (TM_UNLIKELY(debug_mode())) return debug_usable_size(ptr);
  return usable_size(owner_or_report(ptr, "invalid usable_size"), ptr, "invalid usable_size");
}

TM_EXPORT int tm_owns(const void* ptr) {
  const SegmentBase* owner = chunk_owner(ptr);
  if (owner == nullptr) return 0;
  switch (owner->kind) {
    case SegmentKind::kSmall:
      return small_owns(static_cast<const SmallSegment*>(owner), ptr) ? 1 : 0;
    case SegmentKind::kMedium:
      return medium_owns(static_cast<const MediumSegment*>(owner), ptr) ? 1 : 0;
    case SegmentKind::kLarge:
      return large_owns(static_cast<const LargeHeader*>(owner), ptr) ? 1 : 0;
    case SegmentKind::kGuarded:
      return guarded_owns(owner, ptr) ? 1 : 0;
  }
  return 0;
}

TM_EXPORT void* tinymalloc(size_t size) { return tm_malloc(size); }
TM_EXPORT void tinyfree(void* ptr) { tm_free(ptr); }

TM_EXPORT size_t tm_small_max(void) { return kSmallMax; }
TM_EXPORT size_t tm_medium_max(void) { return kMediumMax; }
TM_EXPORT size_t tm_size_class_size(size_t class_index) {
  return class_index < kSmallClassCount ? class_size(class_index) : 0;
}
TM_EXPORT size_t tm_size_to_class(size_t size) { return size <= kSmallMax ? size_to_class(size) : kSmallClassCount; }

TM_EXPORT void tm_release_cached(void) {
  debug_flush_quarantine();
  cache_flush_current();
  small_release_cached();
  medium_release_cached();
  pool_release_all();
}

}  // extern "C"
