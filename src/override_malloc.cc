// libc allocation names for libtinymalloc.so / libtinymalloc.a (LD_PRELOAD or -ltinymalloc).
// Never compiled into sanitizer builds: there the sanitizer owns these names.
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include "config.h"
#include "platform.h"
#include "tinymalloc.h"

extern "C" {

TM_EXPORT void* malloc(size_t size) { return tm_malloc(size); }
TM_EXPORT void free(void* ptr) { tm_free(ptr); }
TM_EXPORT void cfree(void* ptr) { tm_free(ptr); }
TM_EXPORT void* calloc(size_t nmemb, size_t size) { return tm_calloc(nmemb, size); }
TM_EXPORT void* realloc(void* ptr, size_t size) { return tm_realloc(ptr, size); }

TM_EXPORT void* reallocarray(void* ptr, size_t nmemb, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(nmemb, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return tm_realloc(ptr, total);
}

TM_EXPORT void* aligned_alloc(size_t alignment, size_t size) { return tm_aligned_alloc(alignment, size); }
TM_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) {
  return tm_posix_memalign(out, alignment, size);
}
// glibc's memalign rounds a non-power-of-two alignment up instead of failing.
TM_EXPORT void* memalign(size_t alignment, size_t size) {
  if (!tmalloc::is_power_of_two(alignment)) {
    size_t rounded = 1;
    while (rounded < alignment && rounded != 0) rounded <<= 1;
    alignment = rounded == 0 ? alignment : rounded;
  }
  return tm_aligned_alloc(alignment, size);
}
TM_EXPORT void* valloc(size_t size) { return tm_aligned_alloc(tmalloc::kPageSize, size); }
TM_EXPORT void* pvalloc(size_t size) {
  if (size > tmalloc::kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  return tm_aligned_alloc(tmalloc::kPageSize, tmalloc::align_up(size == 0 ? 1 : size, tmalloc::kPageSize));
}
TM_EXPORT size_t malloc_usable_size(void* ptr) { return tm_usable_size(ptr); }

}  // extern "C"
