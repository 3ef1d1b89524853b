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

}  // namespace tmalloc
