/* Linked with -ltinymalloc (shared or static, no LD_PRELOAD): the program's malloc family
 * and the C++-free C paths must be tinymalloc's. Exit status 0 when they are. */
#define _GNU_SOURCE 1
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinymalloc.h"

int main(void) {
  int failures = 0;
  void *blocks[6];
  blocks[0] = malloc(24);
  blocks[1] = calloc(10, 100);
  blocks[2] = realloc(NULL, 5000);
  blocks[3] = aligned_alloc(64, 640);
  blocks[4] = memalign(4096, 100);
  if (posix_memalign(&blocks[5], 256, 300) != 0) blocks[5] = NULL;
  for (int i = 0; i < 6; ++i) {
    if (blocks[i] == NULL || !tm_owns(blocks[i])) {
      fprintf(stderr, "link_check: block %d (%p) is not tinymalloc's\n", i, blocks[i]);
      ++failures;
    }
  }
  if (malloc_usable_size(blocks[0]) != tm_usable_size(blocks[0])) {
    fprintf(stderr, "link_check: malloc_usable_size is not tinymalloc's\n");
    ++failures;
  }
  struct mallinfo2 info = mallinfo2();
  tm_stats_t stats;
  tm_stats(&stats);
  if (info.uordblks != stats.usable_bytes) {
    fprintf(stderr, "link_check: mallinfo2 uordblks %zu != usable_bytes %zu\n", info.uordblks, stats.usable_bytes);
    ++failures;
  }
  for (int i = 0; i < 6; ++i) free(blocks[i]);
  if (tm_check_heap() != 0) {
    fprintf(stderr, "link_check: heap check failed\n");
    ++failures;
  }
  if (malloc_trim(0) < 0) ++failures;
  printf("link_check: %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
