/* A program with a known sequence of malloc-family calls, run under LD_PRELOAD with
 * TINYMALLOC_OPTIONS=trace=PATH by check-trace: the trace must show these calls, in this
 * order, with the right block references and two threads. With an argument N it then makes
 * N more malloc/free pairs (the bound and sampling of a long trace). A fork child allocates
 * too: its calls must not reach the parent's trace. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The second thread: one malloc and one free of 777 bytes. */
static void* other_thread(void* arg) {
  (void)arg;
  void* p = malloc(777);
  memset(p, 1, 777);
  free(p);
  return NULL;
}

int main(int argc, char** argv) {
  char* a = malloc(100);
  char* b = calloc(3, 40);
  a = realloc(a, 5000);
  void* c = aligned_alloc(4096, 8192);
  void* d = NULL;
  if (posix_memalign(&d, 64, 200) != 0) return 1;
  memset(a, 2, 5000);
  free(b);
  free(c);
  free(d);
  pthread_t t;
  if (pthread_create(&t, NULL, other_thread, NULL) != 0 || pthread_join(t, NULL) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    void* in_child = malloc(31337);
    free(in_child);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  a = realloc(a, 0);
  long more = argc > 1 ? atol(argv[1]) : 0;
  for (long i = 0; i < more; ++i) {
    volatile char* p = malloc((size_t)(16 + i % 5000));
    p[0] = 1;
    free((void*)p);
  }
  printf("traced: done\n");
  return 0;
}
