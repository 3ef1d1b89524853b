// Sanitizer annotations. Under ASan, user-visible memory that is not part of a live
// block's requested bytes is poisoned (free blocks, slack after the requested size,
// medium headers), so a caller's overflow or use-after-free inside tinymalloc's memory is
// reported by ASan. Without ASan these compile to nothing.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define TM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TM_ASAN 1
#endif
#endif

#if defined(TM_ASAN)
#include <sanitizer/asan_interface.h>
#include <sys/mman.h>

#include <cstdint>
// Functions that read and write allocator headers inside poisoned memory.
#define TM_NO_ASAN __attribute__((no_sanitize("address")))
#else
#define TM_NO_ASAN
#endif

// Heap walks (tm_check_heap) are not fuzzing guidance: keep libFuzzer's coverage and
// comparison tracing out of them, which also keeps a check after every op cheap.
#if defined(__clang__)
#define TM_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define TM_NO_COVERAGE
#endif

// For a function that calls through a function pointer. UBSan's function-type check of such a
// call needs the C++ UBSan runtime in every program that loads the library (the dlopen'ed
// global-dynamic build of the system tests has none), so these calls go without it.
#if defined(__clang__)
#define TM_NO_FUNCTION_CHECK __attribute__((no_sanitize("function")))
#else
#define TM_NO_FUNCTION_CHECK
#endif

namespace tmalloc {

// Marks [p, p + n) unaddressable for the program.
inline void poison(const void* p, size_t n) {
#if defined(TM_ASAN)
  if (n != 0) __asan_poison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}

// Marks [p, p + n) addressable.
inline void unpoison(const void* p, size_t n) {
#if defined(TM_ASAN)
  if (n != 0) __asan_unpoison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}

#if defined(TM_ASAN)
inline constexpr size_t kShadowPage = 4096;

// Where ASan keeps the shadow of an address (shadow = (address >> scale) + offset), and how
// much memory one shadow page describes.
struct ShadowGeometry {
  uintptr_t scale;
  uintptr_t offset;
  uintptr_t memory_per_page;
};

// The process's shadow geometry.
inline ShadowGeometry shadow_geometry() {
  size_t scale = 0;
  size_t offset = 0;
  __asan_get_shadow_mapping(&scale, &offset);
  return {scale, offset, uintptr_t{kShadowPage} << scale};
}
#endif

// Marks [p, p + n) addressable as unpoison does, for large ranges: the shadow pages the
// range covers entirely are returned to the OS (they read back as zero, "addressable")
// instead of being cleared, which costs one madvise rather than a memset of n/8 bytes, and
// takes the shadow of memory being unmapped out of RSS (ASan's shadow outlives munmap, and a
// later mapping at the same address must start addressable).
inline void unpoison_range(const void* p, size_t n) {
#if defined(TM_ASAN)
  if (n == 0) return;
  const ShadowGeometry shadow = shadow_geometry();
  const uintptr_t scale = shadow.scale;
  const uintptr_t offset = shadow.offset;
  const uintptr_t memory_per_page = shadow.memory_per_page;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t end = begin + n;
  const uintptr_t first = (begin + memory_per_page - 1) & ~(memory_per_page - 1);
  const uintptr_t last = end & ~(memory_per_page - 1);
  if (first >= last) {
    __asan_unpoison_memory_region(p, n);
    return;
  }
  if (begin < first) __asan_unpoison_memory_region(p, first - begin);
  if (last < end) __asan_unpoison_memory_region(reinterpret_cast<const void*>(last), end - last);
  ::madvise(reinterpret_cast<void*>((first >> scale) + offset), (last - first) >> scale, MADV_DONTNEED);
#else
  (void)p;
  (void)n;
#endif
}

}  // namespace tmalloc
