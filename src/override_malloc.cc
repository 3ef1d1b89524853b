// libc allocation names for libtinymalloc.so / libtinymalloc.a (LD_PRELOAD or -ltinymalloc).
// Never compiled into sanitizer builds: there the sanitizer owns these names.
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include "config.h"
#include "fast_path.h"
#include "platform.h"
#include "tinymalloc.h"

extern "C" {

// malloc and free run the fast paths themselves (fast_path.h): one call from the program.
TM_EXPORT void* malloc(size_t size) { return tmalloc::malloc_fast(size); }
TM_EXPORT void free(void* ptr) { tmalloc::free_fast(ptr); }
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

// Returns free memory to the OS: every cache, empty segment and pooled mapping. Returns 1
// when some memory was released, as glibc does.
TM_EXPORT int malloc_trim(size_t /*pad*/) {
  tm_stats_t before;
  tm_stats(&before);
  tm_release_cached();
  tm_stats_t after;
  tm_stats(&after);
  return after.committed_bytes < before.committed_bytes || after.mapped_bytes < before.mapped_bytes ? 1 : 0;
}

// glibc's mallinfo2 from tinymalloc's counters: arena = heap mappings (segments), hblks /
// hblkhd = large mappings, uordblks = usable bytes of live blocks, fordblks = the rest of
// the mapped memory, keepcost = pooled memory that can be released.
TM_EXPORT struct mallinfo2 mallinfo2(void) {
  tm_stats_t s;
  tm_stats(&s);
  struct mallinfo2 info = {};
  const size_t large_bytes =
      s.large_live_blocks == 0 ? 0 : s.mapped_bytes - (s.small_segments + s.medium_segments) * (size_t{4} << 20);
  info.arena = (s.small_segments + s.medium_segments) * (size_t{4} << 20);
  info.ordblks = s.medium_free_blocks;
  info.smblks = s.cached_blocks + s.remote_blocks;
  info.hblks = s.large_mappings;
  info.hblkhd = large_bytes < s.mapped_bytes ? large_bytes : 0;
  info.usmblks = s.peak_mapped_bytes;
  info.uordblks = s.usable_bytes;
  info.fordblks = s.mapped_bytes > s.usable_bytes ? s.mapped_bytes - s.usable_bytes : 0;
  info.keepcost = s.pool_segments * (size_t{4} << 20);
  return info;
}

// glibc's mallinfo (int fields, saturated).
TM_EXPORT struct mallinfo mallinfo(void) {
  const struct mallinfo2 wide = mallinfo2();
  auto narrow = [](size_t v) { return v > 0x7fffffff ? 0x7fffffff : static_cast<int>(v); };
  struct mallinfo info = {};
  info.arena = narrow(wide.arena);
  info.ordblks = narrow(wide.ordblks);
  info.smblks = narrow(wide.smblks);
  info.hblks = narrow(wide.hblks);
  info.hblkhd = narrow(wide.hblkhd);
  info.usmblks = narrow(wide.usmblks);
  info.uordblks = narrow(wide.uordblks);
  info.fordblks = narrow(wide.fordblks);
  info.keepcost = narrow(wide.keepcost);
  return info;
}

// glibc's malloc_stats: a summary on stderr.
TM_EXPORT void malloc_stats(void) { tm_stats_print(2, 0); }

}  // extern "C"
