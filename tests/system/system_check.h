/* Helpers shared by the system-integration scenarios of tests/system (C11 and C++).
 *
 * Proves nothing by itself: it gives every scenario one way to allocate, to ask whether
 * tinymalloc served a pointer, to read tinymalloc's counters and to check its heap, in the
 * three ways a scenario is built (one compile definition picks it):
 *
 *   TM_SYS_LINKED    linked with -ltinymalloc (tinymalloc_shared): malloc, operator new & co
 *                    are tinymalloc's, and the tm_* introspection functions are called directly.
 *   TM_SYS_PRELOAD   not linked with tinymalloc, run under LD_PRELOAD=libtinymalloc.so: malloc
 *                    & co are tinymalloc's, tm_* are found with dlsym(RTLD_DEFAULT, ...), so a
 *                    run without the preload fails the ownership checks instead of passing.
 *   TM_SYS_PREFIXED  sanitizer trees (no override library is built there): the scenarios
 *                    allocate through tm_* (tinymalloc_prefixed), while malloc and operator new
 *                    stay the sanitizer's; operator new pointers are not checked.
 *
 * A failed check prints "<file>:<line>: system check failed: <what>" on stderr and aborts,
 * so a failure is never mistaken for a pass even in an exit handler. */
#ifndef TM_SYSTEM_CHECK_H
#define TM_SYSTEM_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinymalloc.h"

#if defined(TM_SYS_LINKED) + defined(TM_SYS_PRELOAD) + defined(TM_SYS_PREFIXED) != 1
#error "define exactly one of TM_SYS_LINKED, TM_SYS_PRELOAD, TM_SYS_PREFIXED"
#endif

/* 1 when operator new and the libc allocation functions are tinymalloc's. */
#ifdef TM_SYS_PREFIXED
#define TM_SYS_OVERRIDE 0
#else
#define TM_SYS_OVERRIDE 1
#endif

#define TM_SYS_UNUSED __attribute__((unused))

/* Reports a failed check and aborts (never returns). */
TM_SYS_UNUSED __attribute__((noreturn, format(printf, 3, 4))) static void sys_fail(const char *file, int line,
                                                                                   const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "%s:%d: system check failed: ", file, line);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  fflush(stderr);
  abort();
}

/* Aborts with the expression's text when cond is false. */
#define SYS_CHECK(cond)                                     \
  do {                                                      \
    if (!(cond)) sys_fail(__FILE__, __LINE__, "%s", #cond); \
  } while (0)

/* ---- tinymalloc's introspection functions ----------------------------------------------- */

#ifdef TM_SYS_PRELOAD
/* Address of tinymalloc function `name` in the preloaded library; aborts when absent (the
 * program was run without LD_PRELOAD=libtinymalloc.so). */
TM_SYS_UNUSED static void *sys_symbol(const char *name) {
  void *symbol = dlsym(RTLD_DEFAULT, name);
  if (symbol == NULL) sys_fail(__FILE__, __LINE__, "%s not found: is libtinymalloc.so preloaded?", name);
  return symbol;
}
#endif

/* tm_owns: nonzero when tinymalloc's heap holds ptr. */
TM_SYS_UNUSED static int sys_owns(const void *ptr) {
#ifdef TM_SYS_PRELOAD
  static int (*owns)(const void *);
  if (owns == NULL) owns = (int (*)(const void *))sys_symbol("tm_owns");
  return owns(ptr);
#else
  return tm_owns(ptr);
#endif
}

/* tm_check_heap: 0 when every heap invariant holds. */
TM_SYS_UNUSED static int sys_check_heap(void) {
#ifdef TM_SYS_PRELOAD
  static int (*check)(void);
  if (check == NULL) check = (int (*)(void))sys_symbol("tm_check_heap");
  return check();
#else
  return tm_check_heap();
#endif
}

/* tm_stats: a snapshot of tinymalloc's counters. */
TM_SYS_UNUSED static void sys_stats(tm_stats_t *out) {
#ifdef TM_SYS_PRELOAD
  static void (*stats)(tm_stats_t *);
  if (stats == NULL) stats = (void (*)(tm_stats_t *))sys_symbol("tm_stats");
  stats(out);
#else
  tm_stats(out);
#endif
}

/* Live blocks tinymalloc counts now (exact while no other thread allocates). */
TM_SYS_UNUSED static size_t sys_live_blocks(void) {
  tm_stats_t stats;
  sys_stats(&stats);
  return stats.live_blocks;
}

/* Threads holding a live tinymalloc thread cache. */
TM_SYS_UNUSED static size_t sys_thread_caches(void) {
  tm_stats_t stats;
  sys_stats(&stats);
  return stats.thread_caches;
}

/* ---- Allocation: the libc names, or tm_* in the prefixed build -------------------------- */

/* malloc (tm_malloc in the prefixed build). */
TM_SYS_UNUSED static void *sys_malloc(size_t size) {
#ifdef TM_SYS_PREFIXED
  return tm_malloc(size);
#else
  return malloc(size);
#endif
}

/* calloc (tm_calloc in the prefixed build). */
TM_SYS_UNUSED static void *sys_calloc(size_t count, size_t size) {
#ifdef TM_SYS_PREFIXED
  return tm_calloc(count, size);
#else
  return calloc(count, size);
#endif
}

/* realloc (tm_realloc in the prefixed build). */
TM_SYS_UNUSED static void *sys_realloc(void *ptr, size_t size) {
#ifdef TM_SYS_PREFIXED
  return tm_realloc(ptr, size);
#else
  return realloc(ptr, size);
#endif
}

/* free (tm_free in the prefixed build). */
TM_SYS_UNUSED static void sys_free(void *ptr) {
#ifdef TM_SYS_PREFIXED
  tm_free(ptr);
#else
  free(ptr);
#endif
}

/* sys_malloc that checks the block is tinymalloc's and fills it with `fill`. */
TM_SYS_UNUSED static void *sys_block(size_t size, int fill) {
  void *block = sys_malloc(size);
  if (block == NULL) sys_fail(__FILE__, __LINE__, "malloc(%zu) failed", size);
  memset(block, fill, size); /* first: gcc warns about passing uninitialised bytes to tm_owns */
  if (!sys_owns(block)) sys_fail(__FILE__, __LINE__, "malloc(%zu) = %p is not tinymalloc's", size, block);
  return block;
}

/* Nonzero when the `size` bytes at block all equal `fill`. */
TM_SYS_UNUSED static int sys_filled(const void *block, size_t size, int fill) {
  const unsigned char *bytes = (const unsigned char *)block;
  for (size_t i = 0; i < size; ++i) {
    if (bytes[i] != (unsigned char)fill) return 0;
  }
  return 1;
}

/* Checks the block holds `fill` and is tinymalloc's, then frees it. */
TM_SYS_UNUSED static void sys_release(void *block, size_t size, int fill) {
  if (block == NULL || !sys_owns(block)) sys_fail(__FILE__, __LINE__, "block %p is not tinymalloc's", block);
  if (!sys_filled(block, size, fill)) sys_fail(__FILE__, __LINE__, "block %p lost its contents", block);
  sys_free(block);
}

/* Checks that a pointer from operator new (or a container's storage) is tinymalloc's, where
 * operator new is tinymalloc's (not in the prefixed build). */
#define SYS_CHECK_NEW(ptr) SYS_CHECK(!TM_SYS_OVERRIDE || sys_owns(ptr))

/* Prints "<name>: ok" on stdout and flushes it: the line ctest's PASS_REGULAR_EXPRESSION
 * looks for, printed only once every check passed. */
TM_SYS_UNUSED static void sys_ok(const char *name) {
  printf("%s: ok\n", name);
  fflush(stdout);
}

#endif /* TM_SYSTEM_CHECK_H */
