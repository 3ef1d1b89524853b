/* The misuse suite: small C programs that misuse the heap the way buggy programs and heap
 * exploits do (double frees through every tier, invalid and interior frees, writes after free
 * into a free block's links, overflows into the next block's metadata, pool misuse). Each must
 * end in a tinymalloc report and an abort: never a normal exit, never silent corruption and
 * never the same memory handed out twice (a case that gets past the misuse goes on to show the
 * harm and exits 0, which fails it).
 *
 *   misuse --list            the case names
 *   misuse CASE              runs CASE in a child process and checks how it ended (exit 0: it
 *                            was stopped by the expected report)
 *   misuse --run CASE        runs CASE in this process (to see it under a debugger)
 *
 * malloc and free are tinymalloc's: the program links libtinymalloc.so. A case's options
 * (thread_cache=0, medium_cache=0, sample_rate=1) reach its process through TINYMALLOC_OPTIONS.
 * The sampled_* cases (overflows, underflows, uses after free of blocks on guard pages) end
 * by SIGSEGV after the fault handler's report; the others by SIGABRT after the report.
 * ctest registers one test per MISUSE_CASE line (label `misuse`, tests/misuse/CMakeLists.txt). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tinymalloc.h"

enum { KiB = 1024, MiB = 1024 * 1024 };

static char g_static_target[256];

/* Keeps the compiler from proving a pointer dead or a store unused. */
static void* volatile g_sink;
static void keep(void* p) { g_sink = p; }

/* Exits 0: the misuse was not stopped (the case failed to be caught). */
static void not_stopped(void) { _exit(0); }

/* Hands out blocks of `size` until one equals `target` (the same memory twice, or memory a
 * corrupted link chose): that is the harm a missed misuse causes. */
static void hand_out_until(size_t size, const void* target, int tries) {
  for (int i = 0; i < tries; ++i) {
    void* p = malloc(size);
    if (p == target) not_stopped();
    keep(p);
  }
  not_stopped();
}

/* Two live blocks of `size` physically next to each other (a below b), or exits 3. */
static void adjacent_pair(size_t size, char** a, char** b) {
  char* blocks[64];
  for (int i = 0; i < 64; ++i) {
    blocks[i] = malloc(size);
    for (int j = 0; j < i; ++j) {
      const size_t gap = (size_t)(blocks[i] - blocks[j]);
      if (blocks[i] > blocks[j] && gap >= size && gap <= size + 64 && malloc_usable_size(blocks[j]) + 16 >= gap) {
        *a = blocks[j];
        *b = blocks[i];
        return;
      }
    }
  }
  _exit(3);
}

/* ---- double free ------------------------------------------------------------------------ */

static void double_free_small_cached(void) {
  void* p = malloc(64);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_small_in_run(void) {
  void* p = malloc(64);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_small_not_latest(void) {
  void* a = malloc(200);
  void* b = malloc(200);
  free(a);
  free(b);
  keep(malloc(1000));
  free(a);
  not_stopped();
}

static void* free_on_thread(void* p) {
  free(p);
  return NULL;
}

static void double_free_small_across_threads(void) {
  void* p = malloc(96);
  pthread_t thread;
  pthread_create(&thread, NULL, free_on_thread, p);
  pthread_join(thread, NULL);
  free(p);
  not_stopped();
}

static void double_free_medium_cached(void) {
  void* p = malloc(20 * KiB);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_medium_in_index(void) {
  void* p = malloc(20 * KiB);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_medium_after_coalescing(void) {
  char *a, *b;
  adjacent_pair(20 * KiB, &a, &b);
  free(a);
  free(b); /* coalesces with a */
  free(b);
  not_stopped();
}

static void double_free_large(void) {
  void* p = malloc(2 * MiB);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_aligned_small(void) {
  void* p = aligned_alloc(64, 64);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_aligned_medium(void) {
  void* p = NULL;
  if (posix_memalign(&p, 4096, 12 * KiB) != 0) _exit(3);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_aligned_large(void) {
  void* p = aligned_alloc(1 * MiB, 3 * MiB);
  free(p);
  free(p);
  not_stopped();
}

static void double_free_calloc(void) {
  void* p = calloc(10, 10);
  free(p);
  free(p);
  not_stopped();
}

static void free_after_realloc_moved(void) {
  char* p = malloc(32);
  char* q = realloc(p, 100 * KiB); /* another tier: the block moves */
  if (q == p) _exit(3);
  keep(q);
  free(p);
  not_stopped();
}

static void double_free_pool(void) {
  tm_heap_t* heap = tm_heap_create();
  void* p = tm_heap_malloc(heap, 128);
  tm_heap_free(heap, p);
  tm_heap_free(heap, p);
  not_stopped();
}

/* ---- invalid and interior frees ------------------------------------------------------- */

static void free_stack_pointer(void) {
  char on_stack[64];
  keep(on_stack);
  free(on_stack);
  not_stopped();
}

static void free_global_pointer(void) {
  free(g_static_target);
  not_stopped();
}

static void free_far_pointer(void) {
  free((void*)(uintptr_t)0x100000000000ull);
  not_stopped();
}

static void free_unaligned_small(void) {
  char* p = malloc(64);
  free(p + 1);
  not_stopped();
}

static void free_interior_small(void) {
  char* p = malloc(256);
  free(p + 128);
  not_stopped();
}

static void free_interior_medium(void) {
  char* p = malloc(30 * KiB);
  free(p + 4096);
  not_stopped();
}

static void free_interior_large(void) {
  char* p = malloc(3 * MiB);
  free(p + MiB);
  not_stopped();
}

static void free_segment_metadata(void) {
  char* p = malloc(64);
  char* segment = (char*)((uintptr_t)p & ~(uintptr_t)(4 * MiB - 1));
  free(segment + 64);
  not_stopped();
}

static void free_pool_block_through_other_pool(void) {
  tm_heap_t* first = tm_heap_create();
  tm_heap_t* second = tm_heap_create();
  void* p = tm_heap_malloc(first, 64);
  tm_heap_free(second, p);
  not_stopped();
}

static void pool_block_after_destroy(void) {
  tm_heap_t* heap = tm_heap_create();
  void* p = tm_heap_malloc(heap, 64);
  tm_heap_destroy(heap);
  free(p);
  not_stopped();
}

static void pool_block_after_reset(void) {
  tm_heap_t* heap = tm_heap_create();
  void* p = tm_heap_malloc(heap, 2000);
  tm_heap_reset(heap);
  tm_heap_free(heap, p);
  not_stopped();
}

/* ---- realloc and usable size of dead or foreign pointers ------------------------------- */

static void realloc_freed_small(void) {
  void* p = malloc(48);
  free(p);
  keep(realloc(p, 96));
  not_stopped();
}

static void realloc_freed_medium(void) {
  void* p = malloc(40 * KiB);
  free(p);
  keep(realloc(p, 50 * KiB));
  not_stopped();
}

static void realloc_freed_large(void) {
  void* p = malloc(2 * MiB);
  free(p);
  keep(realloc(p, 4 * MiB));
  not_stopped();
}

static void realloc_interior(void) {
  char* p = malloc(512);
  keep(realloc(p + 16, 1024));
  not_stopped();
}

static void realloc_stack_pointer(void) {
  char on_stack[32];
  keep(on_stack);
  keep(realloc(on_stack, 64));
  not_stopped();
}

static void usable_size_of_freed_small(void) {
  void* p = malloc(80);
  free(p);
  if (malloc_usable_size(p) > 0) not_stopped();
  not_stopped();
}

static void usable_size_of_interior_medium(void) {
  char* p = malloc(24 * KiB);
  if (malloc_usable_size(p + 64) > 0) not_stopped();
  not_stopped();
}

/* ---- writes after free into a free block's links --------------------------------------- */

/* Free-list poisoning: the first word of a freed block aimed at static data. */
static void uaf_link_small_cached(void) {
  void* guard = malloc(64);
  void* p = malloc(64);
  free(p);
  *(void**)p = g_static_target;
  keep(guard);
  hand_out_until(64, g_static_target, 8);
}

/* The same write aimed at a live block: without the checks, a later malloc hands it out twice. */
static void uaf_link_small_to_live_block(void) {
  void* live = malloc(32);
  void* p = malloc(32);
  free(p);
  *(void**)p = live;
  hand_out_until(32, live, 8);
}

/* The second word (the free-block key) overwritten: a write after free found at reuse. */
static void uaf_key_small_cached(void) {
  char* p = malloc(128);
  free(p);
  memset(p + 8, 0, 8);
  keep(malloc(128));
  not_stopped();
}

/* A freed struct zeroed by the program (both words), the block deeper in the bin. */
static void uaf_zeroed_block_in_bin(void) {
  void* blocks[6];
  for (int i = 0; i < 6; ++i) blocks[i] = malloc(48);
  for (int i = 0; i < 6; ++i) free(blocks[i]);
  memset(blocks[2], 0, 48);
  for (int i = 0; i < 6; ++i) keep(malloc(48));
  not_stopped();
}

static void uaf_link_medium_cached(void) {
  void* p = malloc(16 * KiB);
  free(p);
  *(void**)p = g_static_target;
  hand_out_until(16 * KiB, g_static_target, 4);
}

/* A free medium block in the best-fit index: its list links overwritten after the free. */
static void uaf_links_medium_in_index(void) {
  char *a, *b, *c, *d;
  adjacent_pair(20 * KiB, &a, &b);
  adjacent_pair(20 * KiB, &c, &d);
  free(b);
  free(d); /* same list as b */
  memset(b, 0x42, 16);
  keep(malloc(20 * KiB));
  keep(malloc(20 * KiB));
  keep(malloc(20 * KiB));
  keep(a);
  keep(c);
  not_stopped();
}

/* A block freed by another thread, on its arena's remote-free list: link overwritten. */
static void uaf_link_remote_list(void) {
  enum { kBlocks = 600 };
  static void* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) blocks[i] = malloc(64);
  for (int i = 0; i < kBlocks; ++i) {
    pthread_t thread;
    pthread_create(&thread, NULL, free_on_thread, blocks[i]);
    pthread_join(thread, NULL);
  }
  for (int i = 0; i < kBlocks; ++i) *(void**)blocks[i] = g_static_target;
  for (int i = 0; i < 2 * kBlocks; ++i) {
    void* p = malloc(64);
    if (p == g_static_target) not_stopped();
    keep(p);
  }
  not_stopped();
}

/* ---- overflows into the next block's metadata ------------------------------------------ */

/* 16 bytes past a small block into the free block after it, which sits in the thread cache. */
static void overflow_small_into_cached_neighbour(void) {
  char* blocks[8];
  for (int i = 0; i < 8; ++i) blocks[i] = malloc(64);
  free(blocks[5]);
  memset(blocks[4], 0x41, 64 + 16);
  keep(malloc(64));
  keep(malloc(64));
  not_stopped();
}

/* Past a medium block into the live block after it; the neighbour's free checks its tag. */
static void overflow_medium_into_live_neighbour(void) {
  char *a, *b;
  adjacent_pair(20 * KiB, &a, &b);
  memset(a, 0x41, malloc_usable_size(a) + 16);
  free(b);
  not_stopped();
}

/* Past a medium block into the free block after it; the allocation that takes it checks. */
static void overflow_medium_into_free_neighbour(void) {
  char *a, *b;
  adjacent_pair(20 * KiB, &a, &b);
  free(b);
  memset(a, 0x41, malloc_usable_size(a) + 16);
  keep(malloc(20 * KiB));
  not_stopped();
}

/* Past a medium block: its own free finds the successor's prev_size broken. */
static void overflow_medium_then_free_it(void) {
  char *a, *b;
  adjacent_pair(20 * KiB, &a, &b);
  memset(a, 0x41, malloc_usable_size(a) + 16);
  free(a);
  keep(b);
  not_stopped();
}

/* An underflow of a large block into its own header, then free. */
static void underflow_large_header(void) {
  char* p = malloc(3 * MiB);
  memset(p - 32, 0, 32);
  free(p);
  not_stopped();
}

/* A large block's list links overwritten (a stray write into its header), then realloc. */
static void smashed_large_links_then_realloc(void) {
  char* older = malloc(2 * MiB);
  char* newer = malloc(2 * MiB);
  memset(older - 64 + 16, 0x43, 16); /* the header's list links (after magic, kind and pool) */
  keep(newer);
  keep(realloc(older, 40 * MiB));
  not_stopped();
}

/* ---- sampled blocks (sample_rate=1: every allocation up to 56 KiB on guard pages) ---------- */

/* A sampled block of `size` bytes placed as asked: right (its usable end on a page end) or left
 * (its start on a page start); slots alternate, so two tries suffice. Exits 3 otherwise. */
static char* sampled(size_t size, int right) {
  for (int i = 0; i < 2; ++i) {
    char* p = malloc(size);
    const uintptr_t at = (uintptr_t)p;
    const int is_right = (at + malloc_usable_size(p)) % 4096 == 0 && at % 4096 != 0;
    const int is_left = at % 4096 == 0;
    if ((right && is_right) || (!right && is_left)) return p;
    keep(p);
  }
  _exit(3);
}

/* One byte past the usable end of a small block. */
static void sampled_overflow_small_by_1(void) {
  char* p = sampled(32, 1);
  p[32] = 1;
  not_stopped();
}

/* 32 bytes too many through memcpy into a small block. */
static void sampled_overflow_small_memcpy_32(void) {
  char source[96];
  memset(source, 0x41, sizeof source);
  char* p = sampled(64, 1);
  memcpy(p, source, 96);
  not_stopped();
}

/* A medium block overrun by 1 MiB (a runaway loop). */
static void sampled_overflow_medium_by_1mib(void) {
  char* p = sampled(20000, 1);
  for (size_t i = 0; i < 20000 + MiB; ++i) p[i] = (char)i;
  not_stopped();
}

/* One byte before a small block. */
static void sampled_underflow_small_by_1(void) {
  char* p = sampled(100, 0);
  p[-1] = 1;
  not_stopped();
}

/* 32 bytes before a medium block. */
static void sampled_underflow_medium_by_32(void) {
  char* p = sampled(30000, 0);
  p[-32] = 1;
  not_stopped();
}

/* A write after free that no later free or malloc would notice. */
static void sampled_write_after_free_small(void) {
  char* p = malloc(48);
  free(p);
  p[8] = 1;
  not_stopped();
}

/* A read after free of a medium block. */
static void sampled_read_after_free_medium(void) {
  volatile char* p = malloc(12000);
  free((void*)p);
  keep((void*)(uintptr_t)p[500]);
  not_stopped();
}

/* The old pointer of a block realloc moved, written. */
static void sampled_write_after_realloc_moved(void) {
  char* p = malloc(100);
  char* q = realloc(p, 5000);
  keep(q);
  p[0] = 1;
  not_stopped();
}

/* A double free of a sampled block. */
static void sampled_double_free(void) {
  char* p = malloc(200);
  free(p);
  free(p);
  not_stopped();
}

/* ---- debug mode: what is checked at exit, zero-size blocks ------------------------------- */

/* The program's normal end: exit runs the library's exit-time checks (not_stopped skips them). */
static void end_normally(void) { exit(0); }

/* One byte past the end of a block the program never frees: found by the exit-time check. */
static void debug_overflow_never_freed(void) {
  char* p = malloc(24);
  keep(p);
  p[24] = 'x';
  end_normally();
}

/* 32 bytes through memcpy past the end of a medium block never freed. */
static void debug_overflow_memcpy_never_freed(void) {
  static char source[4128];
  char* p = malloc(4096);
  keep(p);
  memcpy(p, source, sizeof source);
  end_normally();
}

/* One byte before the start of a block never freed. */
static void debug_underflow_never_freed(void) {
  char* p = malloc(100);
  keep(p);
  p[-1] = 'x';
  end_normally();
}

/* A write into a freed block that nothing frees or reuses afterwards. */
static void debug_write_after_free_not_reused(void) {
  char* p = malloc(64);
  free(p);
  p[10] = 'x';
  end_normally();
}

/* A write into a zero-size block. */
static void debug_write_zero_size(void) {
  volatile char* p = malloc(0);
  p[0] = 'x';
  end_normally();
}

/* A read of a zero-size block (calloc). */
static void debug_read_zero_size(void) {
  volatile char* p = calloc(0, 16);
  g_sink = (void*)(uintptr_t)p[0];
  end_normally();
}

/* debug=guard: a read one byte past a 4 KiB block (its end on a page end in both placements). */
static void debug_guard_read_past_end(void) {
  volatile char* p = malloc(4096);
  g_sink = (void*)(uintptr_t)p[4096];
  end_normally();
}

/* debug=guard: a read of a freed block that nothing reuses. */
static void debug_guard_read_after_free(void) {
  volatile char* p = malloc(200);
  free((void*)p);
  g_sink = (void*)(uintptr_t)p[20];
  end_normally();
}

/* ---- the table ------------------------------------------------------------------------- */

/* name, options ("name=value,..."), the report's "what" (an extended regular expression). */
#define MISUSE_CASES(X)                                                                          \
  X(double_free_small_cached, "", "double free")                                                 \
  X(double_free_small_in_run, "thread_cache=0", "double free")                                   \
  X(double_free_small_not_latest, "", "double free")                                             \
  X(double_free_small_across_threads, "", "double free")                                         \
  X(double_free_medium_cached, "", "double free")                                                \
  X(double_free_medium_in_index, "medium_cache=0", "double free")                                \
  X(double_free_medium_after_coalescing, "medium_cache=0", "double free|invalid free")           \
  X(double_free_large, "", "double free|invalid free")                                           \
  X(double_free_aligned_small, "", "double free")                                                \
  X(double_free_aligned_medium, "", "double free")                                               \
  X(double_free_aligned_large, "", "double free|invalid free")                                   \
  X(double_free_calloc, "", "double free")                                                       \
  X(free_after_realloc_moved, "", "double free")                                                 \
  X(double_free_pool, "", "double free")                                                         \
  X(free_stack_pointer, "", "invalid free")                                                      \
  X(free_global_pointer, "", "invalid free")                                                     \
  X(free_far_pointer, "", "invalid free")                                                        \
  X(free_unaligned_small, "", "invalid free")                                                    \
  X(free_interior_small, "", "invalid free")                                                     \
  X(free_interior_medium, "", "invalid free")                                                    \
  X(free_interior_large, "", "invalid free")                                                     \
  X(free_segment_metadata, "", "invalid free")                                                   \
  X(free_pool_block_through_other_pool, "", "invalid free|invalid heap free")                    \
  X(pool_block_after_destroy, "", "invalid free")                                                \
  X(pool_block_after_reset, "", "invalid free|double free|invalid heap free")                    \
  X(realloc_freed_small, "", "invalid realloc")                                                  \
  X(realloc_freed_medium, "", "invalid realloc")                                                 \
  X(realloc_freed_large, "", "invalid realloc")                                                  \
  X(realloc_interior, "", "invalid realloc")                                                     \
  X(realloc_stack_pointer, "", "invalid realloc")                                                \
  X(usable_size_of_freed_small, "", "invalid usable_size")                                       \
  X(usable_size_of_interior_medium, "", "invalid usable_size")                                   \
  X(uaf_link_small_cached, "", "corrupted free list")                                            \
  X(uaf_link_small_to_live_block, "", "corrupted free list")                                     \
  X(uaf_key_small_cached, "", "corrupted free list")                                             \
  X(uaf_zeroed_block_in_bin, "", "corrupted free list")                                          \
  X(uaf_link_medium_cached, "", "corrupted free list")                                           \
  X(uaf_links_medium_in_index, "medium_cache=0", "corrupted best-fit free list|heap corruption") \
  X(uaf_link_remote_list, "", "corrupted free list")                                             \
  X(overflow_small_into_cached_neighbour, "", "corrupted free list")                             \
  X(overflow_medium_into_live_neighbour, "medium_cache=0", "heap corruption|invalid free")       \
  X(overflow_medium_into_free_neighbour, "medium_cache=0", "heap corruption")                    \
  X(overflow_medium_then_free_it, "medium_cache=0", "heap corruption|invalid free")              \
  X(underflow_large_header, "", "invalid free|heap corruption")                                  \
  X(smashed_large_links_then_realloc, "", "corrupted large-block list|heap corruption")          \
  X(sampled_overflow_small_by_1, "sample_rate=1", "buffer overflow")                             \
  X(sampled_overflow_small_memcpy_32, "sample_rate=1", "buffer overflow")                        \
  X(sampled_overflow_medium_by_1mib, "sample_rate=1", "buffer overflow")                         \
  X(sampled_underflow_small_by_1, "sample_rate=1", "buffer underflow")                           \
  X(sampled_underflow_medium_by_32, "sample_rate=1", "buffer underflow")                         \
  X(sampled_write_after_free_small, "sample_rate=1", "use after free")                           \
  X(sampled_read_after_free_medium, "sample_rate=1", "use after free")                           \
  X(sampled_write_after_realloc_moved, "sample_rate=1", "use after free")                        \
  X(sampled_double_free, "sample_rate=1", "double free")                                         \
  X(debug_overflow_never_freed, "debug=1", "heap overflow")                                      \
  X(debug_overflow_memcpy_never_freed, "debug=1", "heap overflow")                               \
  X(debug_underflow_never_freed, "debug=1", "heap underflow")                                    \
  X(debug_write_after_free_not_reused, "debug=1", "write after free")                            \
  X(debug_write_zero_size, "debug=1", "buffer overflow")                                         \
  X(debug_read_zero_size, "debug=1", "buffer overflow")                                          \
  X(debug_guard_read_past_end, "debug=2", "buffer overflow")                                     \
  X(debug_guard_read_after_free, "debug=2", "use after free")

struct misuse_case {
  const char* name;
  const char* options;
  const char* what;
  void (*run)(void);
};

#define MISUSE_ENTRY(name, options, what) {#name, options, what, name},
static const struct misuse_case kCases[] = {MISUSE_CASES(MISUSE_ENTRY)};
enum { kCaseCount = sizeof kCases / sizeof kCases[0] };

/* Sets "name=value,..." through tm_option_set; exits 2 on an unknown option. */
static void apply_options(const char* options) {
  char buffer[256];
  snprintf(buffer, sizeof buffer, "%s", options);
  for (char* item = strtok(buffer, ","); item != NULL; item = strtok(NULL, ",")) {
    char* equals = strchr(item, '=');
    if (equals == NULL) _exit(2);
    *equals = '\0';
    if (tm_option_set(item, strtol(equals + 1, NULL, 10)) != 0) {
      fprintf(stderr, "misuse: cannot set option %s\n", item);
      _exit(2);
    }
  }
}

static const struct misuse_case* find_case(const char* name) {
  for (int i = 0; i < kCaseCount; ++i) {
    if (strcmp(kCases[i].name, name) == 0) return &kCases[i];
  }
  return NULL;
}

/* The signal that must end case c: a fault of a sampled block's guard pages ends by SIGSEGV
 * (the report is written by the fault handler, which then lets the fault take its course);
 * every other report ends in abort. */
static int expected_signal(const struct misuse_case* c) {
  return strncmp(c->what, "buffer ", 7) == 0 || strcmp(c->what, "use after free") == 0 ? SIGSEGV : SIGABRT;
}

/* Runs `c` in a child process (the program `self` with --run), collects its stderr and checks: killed by the expected
 * signal, and a report line "tinymalloc: <what> at 0x<address> (" on stderr. */
static int check_case(const char* self, const struct misuse_case* c) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return 2;
  const pid_t child = fork();
  if (child == 0) {
    /* A fresh process, its options from the environment before its first allocation. */
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    setenv("TINYMALLOC_OPTIONS", c->options, 1);
    execl(self, self, "--run", c->name, (char*)NULL);
    _exit(2);
  }
  close(pipe_fds[1]);
  static char output[16384];
  size_t length = 0;
  ssize_t got;
  while (length + 1 < sizeof output && (got = read(pipe_fds[0], output + length, sizeof output - 1 - length)) > 0) {
    length += (size_t)got;
  }
  output[length] = '\0';
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  char pattern[512];
  snprintf(pattern, sizeof pattern, "tinymalloc: (%s) at 0x[0-9a-f]+ \\(", c->what);
  regex_t regex;
  if (regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB) != 0) return 2;
  const int reported = regexec(&regex, output, 0, NULL, 0) == 0;
  regfree(&regex);
  const int aborted = WIFSIGNALED(status) && WTERMSIG(status) == expected_signal(c);
  printf("%s (options \"%s\"): %s\n", c->name, c->options,
         aborted && reported                             ? "stopped with the expected report"
         : WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "NOT STOPPED: the program went on"
                                                         : "stopped, but not by the expected report");
  printf("--- stderr ---\n%s--- status: %s %d ---\n", output, WIFSIGNALED(status) ? "signal" : "exit",
         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  return aborted && reported ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (int i = 0; i < kCaseCount; ++i) printf("%s\n", kCases[i].name);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "--run") == 0 && find_case(argv[2]) != NULL) {
    /* Options come from TINYMALLOC_OPTIONS (set by check_case); by hand, they are set here. */
    if (getenv("TINYMALLOC_OPTIONS") == NULL) apply_options(find_case(argv[2])->options);
    find_case(argv[2])->run();
    return 0;
  }
  if (argc == 2 && find_case(argv[1]) != NULL) return check_case("/proc/self/exe", find_case(argv[1]));
  fprintf(stderr, "usage: misuse --list | CASE | --run CASE\n");
  return 2;
}
