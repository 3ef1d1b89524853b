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
/* tm_free for a caller that knows the block's size (C++ sized delete, C23 free_sized). In
 * debug mode a size other than the one requested is reported as a mismatched sized delete. */
void tm_free_sized(void *ptr, size_t size);
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
  /* Sum of the sizes requested for the live blocks (calloc: count*size). Exact for small
   * blocks only with the track_requested option (or stats=); by default small blocks count
   * at their usable size here, which keeps bookkeeping off the malloc/free fast path. */
  size_t requested_bytes;
  /* Sum of tm_usable_size() of the live blocks. */
  size_t usable_bytes;
  /* Address space currently mapped from the OS (segments, large blocks, metadata). */
  size_t mapped_bytes;
  /* Of mapped_bytes, what is not known to have been returned with madvise. */
  size_t committed_bytes;
  /* High-water marks since start (or tm_stats_reset_peaks). peak_requested_bytes is
   * sampled (threads count requested bytes locally, without atomic read-modify-writes):
   * it may be below the true peak by less than TM_PEAK_SAMPLE_BYTES per thread, and it is
   * never below the current requested_bytes. */
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
  /* Concurrency: arenas touched so far, threads with a live cache, blocks sitting in those
   * caches (small ones, and medium ones up to 64 KiB: counted neither live nor free) and
   * small blocks in arenas' remote-free lists (free, not yet back in their runs). */
  size_t arenas_used;
  size_t thread_caches;
  size_t cached_blocks;
  size_t remote_blocks;
  /* Free mappings in the global pool (shared by every arena: empty segments, freed large
   * blocks' mappings and their fragments), and how many of them have had their memory
   * returned to the OS after the purge delay. */
  size_t pool_segments;
  size_t pool_purged_segments;
  /* Of cached_blocks, the medium blocks (up to 64 KiB, option medium_cache) and their usable
   * bytes: neither live nor free; coalesced when they leave the cache (tm_release_cached
   * empties the calling thread's). */
  size_t medium_cached_blocks;
  size_t medium_cached_bytes;
} tm_stats_t;

/* Granularity of the peak_requested_bytes sampling, per thread. */
#define TM_PEAK_SAMPLE_BYTES ((size_t)256 * 1024)

/* Fills *out with a snapshot of the allocator's counters: exact while no other thread is
 * allocating or freeing (each thread's cache and counters are its own); otherwise each
 * counter is a recent value, off by at most what other threads did meanwhile. */
void tm_stats(tm_stats_t *out);
/* Sets the peak counters to the current values (tm_class_stats_t peak_blocks included). */
void tm_stats_reset_peaks(void);
/* Writes the statistics to file descriptor fd, from one snapshot, as a readable table
 * (json == 0): the totals, then a row per small class that ever had blocks (live or peak
 * > 0; see tm_class_stats_t) and a row per arena slot that holds segments or blocks (see
 * tm_arena_stats_t), each with its fragmentation ratio; or as one JSON object (json != 0)
 * with every tm_stats_t field, class_live_blocks as an array, "classes" (one object per
 * small class: class, size, live, peak, cached, remote, usable, runs, run_bytes,
 * fragmentation = run_bytes / usable or null) and "arenas" (one object per arena slot that
 * holds segments or blocks: arena, pool (true/false), small_segments, medium_segments,
 * mapped, committed, small_live, small_usable, small_remote, medium_live, medium_usable,
 * medium_free_blocks, medium_free_bytes, fragmentation = committed / (small_usable +
 * medium_usable) or null). Never allocates. */
void tm_stats_print(int fd, int json);

/* Counters of one small size class, over all arenas and memory pools. */
typedef struct tm_class_stats_s {
  size_t size;        /* block size (tm_size_class_size of the index) */
  size_t live_blocks; /* as tm_stats_t class_live_blocks */
  /* High-water mark, since start or tm_stats_reset_peaks, of the class's blocks out of its
   * runs: live blocks plus blocks sitting free in thread caches and remote-free lists (the
   * caches change without a lock, so they cannot be subtracted when a block leaves a run).
   * Each arena keeps its own exact mark; this is their sum, so with several arenas in use it
   * can exceed the peak of the total (the arenas need not have peaked at the same time).
   * With one arena it is exact. Never below live_blocks. */
  size_t peak_blocks;
  size_t cached_blocks; /* free blocks of the class in thread caches */
  size_t remote_blocks; /* free blocks of the class in arenas' remote-free lists */
  size_t usable_bytes;  /* live_blocks * size */
  size_t runs;          /* 64 KiB runs assigned to the class */
  size_t run_bytes;     /* runs * 64 KiB: memory the class holds (run_bytes / usable_bytes
                         * is the class's fragmentation) */
} tm_class_stats_t;

/* Fills out[i] for class i < min(max, TM_SMALL_CLASS_COUNT) from one snapshot (taken as
 * tm_stats takes it) and returns TM_SMALL_CLASS_COUNT. out may be NULL when max is 0. */
size_t tm_class_stats(tm_class_stats_t *out, size_t max);

/* Arena slots: 64 arenas (0..63), then one per memory pool (64..127). */
#define TM_ARENA_SLOTS 128

/* Counters of one arena slot (an arena, or a memory pool when index >= 64). Large blocks
 * (above tm_medium_max()) and the global pool's empty segments belong to no arena. */
typedef struct tm_arena_stats_s {
  size_t index;           /* arena slot */
  size_t small_segments;  /* 4 MiB segments of small runs */
  size_t medium_segments; /* 4 MiB segments of medium blocks */
  size_t mapped_bytes;    /* (small_segments + medium_segments) * 4 MiB */
  size_t committed_bytes; /* of mapped_bytes, what the idle sweep has not purged */
  /* Live small blocks of this arena and their usable bytes: blocks out of its runs, less
   * those in its remote-free lists and in the calling thread's cache. Blocks in other
   * threads' caches cannot be attributed to an arena without racing with their owners and
   * count here as live; so the sum over arenas equals tm_stats_t small_live_blocks whenever
   * no other thread has a cache (e.g. after the other threads exited). */
  size_t small_live_blocks;
  size_t small_usable_bytes;
  size_t small_remote_blocks; /* free blocks in the arena's remote-free lists */
  size_t medium_live_blocks;
  size_t medium_usable_bytes;
  size_t medium_free_blocks;
  size_t medium_free_bytes;
} tm_arena_stats_t;

/* Fills out[i] for arena slot i < min(max, n) from one snapshot (taken as tm_stats takes
 * it) and returns n, the number of slots in use (tm_stats_t arenas_used; a memory pool
 * counts its slot and every slot below it). Slots in range that were never touched read as
 * zeros. out may be NULL when max is 0. */
size_t tm_arena_stats(tm_arena_stats_t *out, size_t max);

/* Leak report. Debug mode (option debug=1; leaks=1 implies it) records every block with its
 * allocation site. Writes to fd the recorded blocks not freed yet, grouped by allocation
 * site, largest total first:
 *   tinymalloc: leak report: <N> blocks, <B> bytes in <S> allocation sites
 *   tinymalloc:   <bytes> bytes in <count> blocks allocated at 0x<addr> <symbol>+0x<off> (<object>)
 * (at most 50 site lines, then "tinymalloc:   ... and <K> more sites"; a site shows as
 * "0x<addr> (<object>+0x<off>)" or "0x<addr>" when dladdr finds no symbol or no object).
 * Returns N: 0 when every recorded block was freed or debug mode never ran. Blocks are not
 * scanned for pointers: a block still reachable from a global counts too. Never allocates.
 * With leaks=1 the same report goes to stderr at exit when N > 0, and a non-zero
 * leak_exitcode then becomes the exit status. */
size_t tm_leak_report(int fd);

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
  TM_CHECK_STATS = 9,        /* counters disagree with what the walk found */
  TM_CHECK_DEBUG_BLOCK = 10  /* debug mode: a live block's canary or a quarantined block's fill
                                was overwritten (heap overflow, underflow, write after free) */
};

typedef struct tm_check_report_s {
  int code;          /* enum tm_check_code */
  uintptr_t address; /* address of the first violation (0 when code is TM_CHECK_OK) */
  char message[256]; /* human-readable description of the first violation */
} tm_check_report_t;

/* Walks every segment and verifies every invariant; in debug mode also the canaries of every
 * live block and the fill of every quarantined one. Returns TM_CHECK_OK (0) or the code of
 * the first violation. Never aborts. */
int tm_check_heap(void);
/* Like tm_check_heap, and describes the first violation in *report (may be NULL). */
int tm_check_heap_report(tm_check_report_t *report);
/* A scoped heap check: only the part of the heap around ptr, in time independent of the
 * heap's size, so it can run after every operation of a long program. ptr is any address:
 * a live block, a block just freed, or anything else. For an address inside a small-block
 * run: that run (its bitmap against its free count, its class list links, the block sizes)
 * with its class's remote-free list and the calling thread's cached blocks of that class;
 * inside a medium segment: the block holding ptr and both physical neighbours (boundary
 * tags, block starts, coalescing, free blocks' place in the best-fit index); inside a large
 * block: its header, address-map entries and list links; elsewhere (memory tinymalloc does
 * not own, e.g. after the segment of a freed block went back to the OS): nothing, and the
 * result is TM_CHECK_OK. Cross-heap counters are left to tm_check_heap. Returns TM_CHECK_OK
 * or the first violation's code, described in *report (may be NULL) as by
 * tm_check_heap_report. Never aborts. */
int tm_check_heap_around(const void *ptr, tm_check_report_t *report);

/* Heap map: a picture of where the memory is. Writes to fd one row per small segment (a cell
 * per 64 KiB run: header, free, purged, or in use with its size class and fill), per medium
 * segment (every block, in use or free, purged parts of free blocks), per large block (its
 * mapping, usable and requested bytes), per free mapping of the shared segment pool (resident
 * or purged) and for the sampled-block region (its 64 slots), after a summary: mapped,
 * committed and requested bytes, small-run fill, medium free space and its fragmentation
 * (the share of free bytes outside the largest free block), large and pooled bytes. Memory
 * pools' segments are rows too ("pool N"). TM_HEAP_MAP_TEXT: one line per row, a character
 * per 64 KiB ('#' header, ' ' free, '_' purged, '1'..'9' tenths in use, '@' full; sampled
 * slots 'L' live, 'f' freed, '.' unused). TM_HEAP_MAP_SVG: an SVG image (1 px per 4 KiB, a
 * tooltip on every run and block). Takes every heap lock while it writes (other threads'
 * allocations wait) and never allocates. Returns 0, or -1 with errno (EINVAL: bad fd or
 * format; a write error's errno). */
enum tm_heap_map_format { TM_HEAP_MAP_TEXT = 0, TM_HEAP_MAP_SVG = 1 };
int tm_heap_map(int fd, int format);

/* ---- Memory pools (heaps) ------------------------------------------------------------ */

/* A memory pool: its blocks live in segments of their own, and the whole pool is released
 * at once by tm_heap_reset / tm_heap_destroy. At most 64 pools exist at a time. Pool
 * operations are thread-safe, but no thread may use a pool during its reset or destroy.
 * tm_free / tm_realloc / tm_usable_size also accept pool blocks. */
typedef struct tm_heap_s tm_heap_t;

typedef struct tm_heap_stats_s {
  size_t live_blocks;  /* blocks allocated from the pool and not freed */
  size_t usable_bytes; /* their usable bytes */
  size_t segments;     /* 4 MiB segments the pool holds */
  size_t large_blocks; /* of live_blocks, those with a mapping of their own */
  size_t mapped_bytes; /* segments and large mappings */
} tm_heap_stats_t;

/* Creates a pool; NULL + ENOMEM when 64 pools exist already. */
tm_heap_t *tm_heap_create(void);
/* malloc / calloc / realloc / free within the pool. A pointer from another pool (or from
 * tm_malloc) is misuse: reported, then abort. tm_heap_realloc keeps the block in the pool. */
void *tm_heap_malloc(tm_heap_t *heap, size_t size);
void *tm_heap_calloc(tm_heap_t *heap, size_t count, size_t size);
void *tm_heap_realloc(tm_heap_t *heap, void *ptr, size_t size);
void tm_heap_free(tm_heap_t *heap, void *ptr);
/* Frees every block of the pool at once; the pool stays usable. */
void tm_heap_reset(tm_heap_t *heap);
/* Frees every block and the pool itself (its memory goes to the global pool / the OS). */
void tm_heap_destroy(tm_heap_t *heap);
/* Counters of one pool. */
void tm_heap_stats(tm_heap_t *heap, tm_heap_stats_t *out);

/* ---- Size classes -------------------------------------------------------------------- */

/* Largest size served from size-class runs (8 KiB). */
size_t tm_small_max(void);
/* Largest size served from the best-fit medium tier; larger sizes are mmapped directly. */
size_t tm_medium_max(void);
/* Block size of small class index (0 .. TM_SMALL_CLASS_COUNT-1); 0 for a bad index. */
size_t tm_size_class_size(size_t class_index);
/* Class index for a small size (<= tm_small_max()); TM_SMALL_CLASS_COUNT when larger. */
size_t tm_size_to_class(size_t size);

/* ---- Options ------------------------------------------------------------------------- */

/* Run-time options (README "Options"). tinymalloc reads the environment variable
 * TINYMALLOC_OPTIONS once, at its first use: comma-separated name=value items, e.g.
 *   TINYMALLOC_OPTIONS="arenas=4,stats=json,verbose=1"
 * An item with an unknown name, no '=', or a bad or out-of-range value is ignored with one
 * warning line on stderr; the other items still apply. The options (index order):
 *   arenas          0..64, default 0 (0 = one arena per CPU)
 *   arena_select    0 = cpu (default), 1 = thread: how a thread picks its arena
 *   thread_cache    0/1, default 1: per-thread caches of small blocks
 *   purge_delay_ms  0..3600000, default 1000: delay before free memory goes back to the OS
 *   pool_segments   0..4096, default 16: empty segments the global pool keeps mapped
 *   arena_retain    0..64, default 1: empty segments an arena keeps before pooling them
 *   debug           0/1, default 0: canaries, fill patterns, allocation sites
 *   leaks           0/1, default 0: leak report at exit
 *   leak_exitcode   0..255, default 0: exit status forced when leaks are found (0 = keep)
 *   stats           0 = off (default), 1 = text, 2 = json: statistics printed at exit
 *   verbose         0/1, default 0: print the effective options at start-up
 *   track_requested 0/1, default 0: exact requested bytes of small blocks (read at start-up)
 *   medium_cache    0/1, default 1: per-thread caches of medium blocks up to 64 KiB (with
 *                   thread_cache); 0 = every medium free coalesces at once
 * arenas and arena_select are read whenever a thread picks its arena, so setting them after
 * the first allocation affects later choices. debug (and leaks, which implies it) is a
 * run-time switch: blocks allocated while it is on are checked until freed, blocks from
 * before are passed through unchecked. Symbolic and boolean
 * values are numbers here (arena_select thread = 1, stats json = 2, true = 1). */

/* Stores the current value of option `name` in *value. Returns 0, or -1 with errno = EINVAL
 * when the name is unknown or an argument is NULL. */
int tm_option_get(const char *name, long *value);
/* Sets option `name` to value. Returns 0, or -1 with errno = EINVAL when the name is unknown
 * or the value is outside the option's range; the option then keeps its value. */
int tm_option_set(const char *name, long value);
/* Name of option `index` (0, 1, ...), or NULL past the last option: enumerates the options. */
const char *tm_option_name(unsigned index);

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
