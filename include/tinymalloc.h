/*
 * tinymalloc: a general-purpose memory allocator with a C ABI.
 *
 * This header is valid C11 and C++. Every function here is thread-safe.
 *
 * Error conventions:
 *   - Out of memory (or a size no allocator could satisfy): NULL with errno = ENOMEM.
 *   - Bad alignment for tm_aligned_alloc / tm_posix_memalign: EINVAL (POSIX rules).
 *   - Misuse (double free, pointer tinymalloc does not own, pointer into the middle of a
 *     block, corrupted metadata) is reported on stderr as
 *       tinymalloc: <what> at 0x<addr> (<detail>)
 *     and the process aborts (SIGABRT). tinymalloc never continues with a corrupted heap.
 */
#ifndef TINYMALLOC_H
#define TINYMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TM_VERSION_MAJOR 0
#define TM_VERSION_MINOR 2
#define TM_VERSION_PATCH 0

/* Number of small size classes (16 B .. 8 KiB); see README "Size classes". */
#define TM_SMALL_CLASS_COUNT 56

/* ---- Allocation ---------------------------------------------------------------------- */

/* Allocates size bytes (size 0 gives a unique minimal block). NULL + ENOMEM on failure. */
void *tm_malloc(size_t size);
/* Frees a block from any tm_* allocation function. tm_free(NULL) does nothing. */
void tm_free(void *ptr);
/* Allocates count*size zeroed bytes; NULL + ENOMEM when the product overflows. */
void *tm_calloc(size_t count, size_t size);
/* glibc semantics: tm_realloc(NULL, n) = tm_malloc(n); tm_realloc(p, 0) frees p and returns
 * NULL; on failure returns NULL + ENOMEM and leaves p untouched and valid. */
void *tm_realloc(void *ptr, size_t size);
/* C11 aligned_alloc: alignment must be a power of two (any multiple of size is accepted,
 * as glibc does); otherwise NULL + EINVAL. Alignments up to TM_MAX_ALIGNMENT. */
void *tm_aligned_alloc(size_t alignment, size_t size);
/* POSIX posix_memalign: returns 0, EINVAL (alignment not a power of two multiple of
 * sizeof(void*)) or ENOMEM; *out is written only on success. */
int tm_posix_memalign(void **out, size_t alignment, size_t size);
/* Usable size of a live block (>= the size requested). tm_usable_size(NULL) is 0. */
size_t tm_usable_size(const void *ptr);
/* Nonzero when ptr points into a live or free block of tinymalloc's heap, in O(1) and
 * without ever faulting on foreign pointers. */
int tm_owns(const void *ptr);

/* Largest alignment tm_aligned_alloc / tm_posix_memalign accept (1 GiB). */
#define TM_MAX_ALIGNMENT ((size_t)1 << 30)

/* The original names from the project's origin. */
void *tinymalloc(size_t size);
void tinyfree(void *ptr);

/* ---- Introspection ------------------------------------------------------------------- */

typedef struct tm_stats_s {
  /* Blocks handed out and not yet freed, over all tiers. */
  size_t live_blocks;
  /* Sum of the sizes requested for the live blocks (calloc: count*size). */
  size_t requested_bytes;
  /* Sum of tm_usable_size() of the live blocks. */
  size_t usable_bytes;
  /* Address space currently mapped from the OS (segments, large blocks, metadata). */
  size_t mapped_bytes;
  /* Of mapped_bytes, what is not known to have been returned with madvise. */
  size_t committed_bytes;
  /* High-water marks since start (or tm_stats_reset_peaks). */
  size_t peak_mapped_bytes;
  size_t peak_requested_bytes;
  /* Per tier. */
  size_t small_live_blocks;
  size_t medium_live_blocks;
  size_t large_live_blocks;
  /* Live blocks per small size class (index = class, see tm_size_class_size). */
  size_t class_live_blocks[TM_SMALL_CLASS_COUNT];
  /* Medium tier free space: count of free blocks, their bytes, the largest one. */
  size_t medium_free_blocks;
  size_t medium_free_bytes;
  size_t medium_largest_free;
  /* Segments held (small runs, medium regions) and large mappings. */
  size_t small_segments;
  size_t medium_segments;
  size_t large_mappings;
  /* Calls into the OS layer: maps, unmaps, purges (madvise). */
  size_t os_map_calls;
  size_t os_unmap_calls;
  size_t os_purge_calls;
} tm_stats_t;

/* Fills *out with a consistent snapshot of the allocator's counters. */
void tm_stats(tm_stats_t *out);
/* Sets the peak counters to the current values. */
void tm_stats_reset_peaks(void);

/* Codes returned by tm_check_heap. */
enum tm_check_code {
  TM_CHECK_OK = 0,
  TM_CHECK_SEGMENT = 1,      /* segment header or address map entry is wrong */
  TM_CHECK_RUN_BITMAP = 2,   /* a run's bitmap disagrees with its free count */
  TM_CHECK_RUN_LIST = 3,     /* a run is on the wrong class list */
  TM_CHECK_BOUNDARY_TAG = 4, /* a medium block's size / prev_size do not round-trip */
  TM_CHECK_UNCOALESCED = 5,  /* two adjacent free medium blocks */
  TM_CHECK_FIT_INDEX = 6,    /* the best-fit index does not hold exactly the free blocks */
  TM_CHECK_FREE_LINKS = 7,   /* a free block's list links are corrupted */
  TM_CHECK_LARGE = 8,        /* a large block's header is corrupted */
  TM_CHECK_STATS = 9         /* counters disagree with what the walk found */
};

typedef struct tm_check_report_s {
  int code;          /* enum tm_check_code */
  uintptr_t address; /* address of the first violation (0 when code is TM_CHECK_OK) */
  char message[256]; /* human-readable description of the first violation */
} tm_check_report_t;

/* Walks every segment and verifies every invariant. Returns TM_CHECK_OK (0) or the code of
 * the first violation. Never aborts. */
int tm_check_heap(void);
/* Like tm_check_heap, and describes the first violation in *report (may be NULL). */
int tm_check_heap_report(tm_check_report_t *report);

/* ---- Size classes -------------------------------------------------------------------- */

/* Largest size served from size-class runs (8 KiB). */
size_t tm_small_max(void);
/* Largest size served from the best-fit medium tier; larger sizes are mmapped directly. */
size_t tm_medium_max(void);
/* Block size of small class index (0 .. TM_SMALL_CLASS_COUNT-1); 0 for a bad index. */
size_t tm_size_class_size(size_t class_index);
/* Class index for a small size (<= tm_small_max()); TM_SMALL_CLASS_COUNT when larger. */
size_t tm_size_to_class(size_t size);

/* ---- Testing hooks ------------------------------------------------------------------- */

/* Makes the OS layer fail (as if mmap/mremap returned ENOMEM) after `calls` more successful
 * map requests; a negative value switches failure injection off. For tests and fuzzing. */
void tm_test_fail_os_after(long calls);
/* Returns cached empty segments to the OS now (what the hysteresis would do later). */
void tm_release_cached(void);

#ifdef __cplusplus
}
#endif

#endif /* TINYMALLOC_H */
