/* A small C program with deliberate leaks, for tinymalloc's leak report. Run it with
 *   LD_PRELOAD=<build>/src/libtinymalloc.so TINYMALLOC_OPTIONS=leaks=1,leak_exitcode=23 ./leaky
 * Expected on stderr (see check_leaky.cmake), then exit status 23:
 *   tinymalloc: leak report: 14 blocks, 4433 bytes in 3 allocation sites
 *   tinymalloc:   4096 bytes in 1 blocks allocated at 0x... main+0x... (leaky)
 *   tinymalloc:   320 bytes in 10 blocks allocated at 0x... build_list+0x... (leaky)
 *   tinymalloc:   17 bytes in 3 blocks allocated at 0x... make_name+0x... (leaky)
 * It writes with write(2), not stdio: glibc's stdout buffer is a malloc'd block that is never
 * freed and would show in the report too. Built with -rdynamic so that dladdr names the
 * functions. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Results go here so the compiler cannot drop an allocation whose result is unused. */
void *volatile g_sink;

/* Leaks a copy of text (never freed by its callers). */
__attribute__((noinline)) char *make_name(const char *text) {
  const size_t n = strlen(text) + 1;
  char *p = malloc(n);
  if (p != NULL) memcpy(p, text, n);
  g_sink = p;
  return p;
}

struct node {
  struct node *next;
  int value[6];
}; /* 32 bytes */

/* A list of `count` nodes that nobody frees. */
__attribute__((noinline)) struct node *build_list(int count) {
  struct node *head = NULL;
  for (int i = 0; i < count; ++i) {
    struct node *n = malloc(sizeof *n);
    if (n == NULL) abort();
    n->next = head;
    for (int k = 0; k < 6; ++k) n->value[k] = i * k;
    head = n;
  }
  g_sink = head;
  return head;
}

int main(void) {
  for (int i = 0; i < 100; ++i) { /* freed: not leaks */
    g_sink = malloc((size_t)(100 + i));
    free(g_sink);
  }
  char *names[3] = {make_name("alpha"), make_name("beta"), make_name("gamma")}; /* 17 bytes */
  build_list(10);                                                               /* 320 bytes */
  g_sink = calloc(1, 4096);                                                     /* 4096 bytes */
  static const char done[] = "leaky: done\n";
  if (write(STDOUT_FILENO, done, sizeof done - 1) < 0) return 1;
  (void)names;
  return 0;
}
