/* Scenario 5 of tests/system: tinymalloc itself loaded with dlopen after start-up.
 *
 * argv[1] is a build of tinymalloc with the global-dynamic TLS model (the model a library
 * needs when it is dlopen'ed after start-up; the default initial-exec one needs a slot in the
 * static TLS block). This program is not linked with tinymalloc and is not run under
 * LD_PRELOAD. Three rounds of: dlopen(RTLD_NOW | RTLD_LOCAL) (the tm_* names must not become
 * global), tm_* resolved with dlsym, 8 threads doing random malloc/realloc/free with contents
 * checks and freeing each other's blocks, then: every block freed (live count 0), no exited
 * thread left a cache registered, foreign pointers not owned, the heap consistent; dlclose
 * must unload the core build (the next round gets a fresh instance), and a fork() afterwards
 * must not call an unloaded library's fork handlers. With the override build (argv[2]
 * "override") the library's own malloc/free exports are exercised too; the loader keeps that
 * build loaded after dlclose: libstdc++, which this C program did not load before, comes in
 * with it, binds its operator new references to the library's (the first definition in the
 * dlopen'ed group) and is never unloaded, so glibc marks the library not unloadable either.
 * Prints "system_dlopen_allocator: ok".
 *
 * argv[2] "outlive" checks a thread that used the library and is still running at dlclose:
 * it must be able to exit afterwards (tinymalloc deletes its thread-exit pthread key when it
 * is unloaded; before that fix glibc called the key's destructor in the unmapped library and
 * the thread's exit crashed). The case runs in a child process; "system_dlopen_allocator:
 * ok" when it survives, "system_dlopen_allocator: FAILED (regression): ..." when the child
 * dies after dlclose. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tinymalloc.h"

#define ROUNDS 3
#define THREADS 8
#define SLOTS 256
#define OPERATIONS 20000

/* Aborts with a message when cond is false (this program has no tinymalloc to link). */
#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: system check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

/* The loaded tinymalloc's functions. */
typedef struct allocator_s {
  void *(*malloc_fn)(size_t);
  void *(*calloc_fn)(size_t, size_t);
  void *(*realloc_fn)(void *, size_t);
  void (*free_fn)(void *);
  size_t (*usable_size)(const void *);
  int (*owns)(const void *);
  int (*check_heap)(void);
  void (*stats)(tm_stats_t *);
  /* The override build's malloc / free exports (NULL in the core build). */
  void *(*exported_malloc)(size_t);
  void (*exported_free)(void *);
} allocator_t;

static allocator_t g_alloc;

/* A live block: its address, size and fill byte. */
typedef struct block_s {
  unsigned char *ptr;
  size_t size;
  unsigned char fill;
} block_t;

/* Each thread's live blocks, freed at the end by the next thread. */
static block_t g_slots[THREADS][SLOTS];
static pthread_barrier_t g_barrier;

/* dlsym of name; aborts when missing. */
static void *must_dlsym(void *handle, const char *name) {
  void *symbol = dlsym(handle, name);
  if (symbol == NULL) {
    fprintf(stderr, "dlsym(%s): %s\n", name, dlerror());
    abort();
  }
  return symbol;
}

/* xorshift64: the threads' random sizes and choices. */
static uint64_t next_random(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

/* A random size: mostly small, some medium, a few large. */
static size_t random_size(uint64_t *state) {
  const uint64_t r = next_random(state);
  const unsigned kind = (unsigned)(r % 100);
  if (kind < 70) return 1 + (size_t)(r >> 8) % 512;
  if (kind < 95) return 512 + (size_t)(r >> 8) % 16384;
  return 16384 + (size_t)(r >> 8) % 300000;
}

/* Checks a block is the loaded tinymalloc's and still holds its fill byte (first, middle and
 * last bytes: the full check of large blocks would dominate the run time). */
static void check_block(const block_t *block) {
  CHECK(g_alloc.owns(block->ptr));
  CHECK(g_alloc.usable_size(block->ptr) >= block->size);
  CHECK(block->ptr[0] == block->fill && block->ptr[block->size / 2] == block->fill &&
        block->ptr[block->size - 1] == block->fill);
}

/* Fills a block with its fill byte. */
static void fill_block(block_t *block) { memset(block->ptr, block->fill, block->size); }

/* Thread body: random malloc / calloc / realloc / free over its slots, then (after every
 * thread got there) frees the next thread's leftovers. */
static void *thread_body(void *arg) {
  const int index = (int)(intptr_t)arg;
  uint64_t state = 0x9e3779b97f4a7c15u * (uint64_t)(index + 1);
  block_t *slots = g_slots[index];
  for (int op = 0; op < OPERATIONS; ++op) {
    block_t *block = &slots[next_random(&state) % SLOTS];
    if (block->ptr == NULL) {
      block->size = random_size(&state);
      block->fill = (unsigned char)(next_random(&state) | 1);
      if (op % 7 == 0) {
        block->ptr = g_alloc.calloc_fn(1, block->size);
        CHECK(block->ptr != NULL && block->ptr[0] == 0 && block->ptr[block->size - 1] == 0);
      } else {
        block->ptr = g_alloc.malloc_fn(block->size);
        CHECK(block->ptr != NULL);
      }
      fill_block(block);
    } else if (op % 5 == 0) {
      check_block(block);
      const size_t size = random_size(&state);
      unsigned char *moved = g_alloc.realloc_fn(block->ptr, size);
      CHECK(moved != NULL);
      const size_t kept = size < block->size ? size : block->size;
      CHECK(moved[0] == block->fill && moved[kept - 1] == block->fill);
      block->ptr = moved;
      block->size = size;
      fill_block(block);
    } else {
      check_block(block);
      g_alloc.free_fn(block->ptr);
      block->ptr = NULL;
    }
  }
  const int rc = pthread_barrier_wait(&g_barrier);
  CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
  block_t *other = g_slots[(index + 1) % THREADS];
  for (int i = 0; i < SLOTS; ++i) {
    if (other[i].ptr == NULL) continue;
    check_block(&other[i]);
    g_alloc.free_fn(other[i].ptr);
    other[i].ptr = NULL;
  }
  return NULL;
}

/* One round: load, use from THREADS threads, check, unload. */
static void round_trip(const char *path, int override_build, int unloads) {
  CHECK(dlsym(RTLD_DEFAULT, "tm_malloc") == NULL); /* nothing global provides tinymalloc */
  void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
    abort();
  }
  CHECK(dlsym(RTLD_DEFAULT, "tm_malloc") == NULL); /* RTLD_LOCAL: still not global */
  g_alloc.malloc_fn = (void *(*)(size_t))must_dlsym(handle, "tm_malloc");
  g_alloc.calloc_fn = (void *(*)(size_t, size_t))must_dlsym(handle, "tm_calloc");
  g_alloc.realloc_fn = (void *(*)(void *, size_t))must_dlsym(handle, "tm_realloc");
  g_alloc.free_fn = (void (*)(void *))must_dlsym(handle, "tm_free");
  g_alloc.usable_size = (size_t(*)(const void *))must_dlsym(handle, "tm_usable_size");
  g_alloc.owns = (int (*)(const void *))must_dlsym(handle, "tm_owns");
  g_alloc.check_heap = (int (*)(void))must_dlsym(handle, "tm_check_heap");
  g_alloc.stats = (void (*)(tm_stats_t *))must_dlsym(handle, "tm_stats");
  g_alloc.exported_malloc = override_build ? (void *(*)(size_t))must_dlsym(handle, "malloc") : NULL;
  g_alloc.exported_free = override_build ? (void (*)(void *))must_dlsym(handle, "free") : NULL;

  /* A fresh instance: nothing allocated yet. */
  tm_stats_t stats;
  g_alloc.stats(&stats);
  CHECK(stats.live_blocks == 0);

  /* The main thread first, then the threads. */
  block_t mine = {g_alloc.malloc_fn(1000), 1000, 0x42};
  CHECK(mine.ptr != NULL);
  fill_block(&mine);
  check_block(&mine);
  if (override_build) {
    /* The library's malloc export is its own (RTLD_LOCAL: the program's malloc is libc's). */
    CHECK((void *)g_alloc.exported_malloc != (void *)malloc);
    void *exported = g_alloc.exported_malloc(300);
    CHECK(exported != NULL && g_alloc.owns(exported));
    g_alloc.exported_free(exported);
  }
  void *foreign = malloc(100); /* libc's (or the sanitizer's) malloc */
  CHECK(foreign != NULL && !g_alloc.owns(foreign) && !g_alloc.owns(&stats));
  free(foreign);

  CHECK(pthread_barrier_init(&g_barrier, NULL, THREADS) == 0);
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; ++i) CHECK(pthread_create(&threads[i], NULL, thread_body, (void *)(intptr_t)i) == 0);
  for (int i = 0; i < THREADS; ++i) CHECK(pthread_join(threads[i], NULL) == 0);
  CHECK(pthread_barrier_destroy(&g_barrier) == 0);

  check_block(&mine);
  g_alloc.free_fn(mine.ptr);
  CHECK(g_alloc.check_heap() == 0);
  g_alloc.stats(&stats);
  if (stats.live_blocks != 0 || stats.thread_caches != 1) {
    fprintf(stderr, "after the threads: %zu live blocks (expected 0), %zu thread caches (expected 1: main's)\n",
            stats.live_blocks, stats.thread_caches);
    abort();
  }

  CHECK(dlclose(handle) == 0);
  memset(&g_alloc, 0, sizeof g_alloc);
  void *again = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (unloads) {
    CHECK(again == NULL); /* really unloaded: the next round gets a fresh instance */
  } else if (again != NULL) {
    CHECK(dlclose(again) == 0);
  }
  dlerror();

  /* fork after dlclose: the unloaded library's pthread_atfork handlers must be gone. */
  const pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) _exit(0);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Semaphores of the outlive case: the thread has used the library / may exit now. */
static sem_t g_thread_used;
static sem_t g_thread_may_exit;

/* Outlive case, thread body: allocates and frees through the library, then waits (while
 * main unloads the library) and exits. */
static void *outliving_thread(void *arg) {
  (void)arg;
  void *block = g_alloc.malloc_fn(100);
  CHECK(block != NULL && g_alloc.owns(block));
  g_alloc.free_fn(block);
  CHECK(sem_post(&g_thread_used) == 0);
  while (sem_wait(&g_thread_may_exit) != 0) {
  }
  return NULL;
}

/* Outlive case, in the child process: dlclose while a thread that used the library runs;
 * writes one byte to report_fd once the library is gone and the thread is told to exit. */
static void outlive_child(const char *path, int report_fd) {
  void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(handle != NULL);
  g_alloc.malloc_fn = (void *(*)(size_t))must_dlsym(handle, "tm_malloc");
  g_alloc.free_fn = (void (*)(void *))must_dlsym(handle, "tm_free");
  g_alloc.owns = (int (*)(const void *))must_dlsym(handle, "tm_owns");
  CHECK(sem_init(&g_thread_used, 0, 0) == 0 && sem_init(&g_thread_may_exit, 0, 0) == 0);
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, outliving_thread, NULL) == 0);
  while (sem_wait(&g_thread_used) != 0) {
  }
  CHECK(dlclose(handle) == 0);
  memset(&g_alloc, 0, sizeof g_alloc);
  CHECK(dlopen(path, RTLD_NOW | RTLD_NOLOAD) == NULL); /* unloaded */
  CHECK(write(report_fd, "u", 1) == 1);
  CHECK(sem_post(&g_thread_may_exit) == 0);
  CHECK(pthread_join(thread, NULL) == 0);
  _exit(0);
}

/* Outlive case: runs outlive_child in a child process and says what became of it. */
static int outlive(const char *path) {
  int report[2];
  CHECK(pipe(report) == 0);
  fflush(stdout);
  const pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    close(report[0]);
    outlive_child(path, report[1]);
  }
  close(report[1]);
  char unloaded = 0;
  const ssize_t got = read(report[0], &unloaded, 1);
  close(report[0]);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    printf("system_dlopen_allocator: a thread that used the library exited fine after dlclose\n");
    printf("system_dlopen_allocator: ok\n");
    return 0;
  }
  /* A failure before the library was unloaded is this test's own, not the regression. */
  CHECK(got == 1 && unloaded == 'u');
  printf(
      "system_dlopen_allocator: FAILED (regression): a thread that used the dlopen'ed tinymalloc and was "
      "still running at dlclose died when it exited (%s %d): glibc called tinymalloc's "
      "pthread key destructor (thread_exit), which was unloaded with the library\n",
      WIFSIGNALED(status) ? "signal" : "exit status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  return 1;
}

/* argv[1]: the library; argv[2]: "core" (tm_* only), "override" (also exports malloc & co,
 * and stays loaded after dlclose, see above) or "outlive" (the regression case above). */
int main(int argc, char **argv) {
  CHECK(argc == 3);
  if (strcmp(argv[2], "outlive") == 0) return outlive(argv[1]);
  CHECK(strcmp(argv[2], "core") == 0 || strcmp(argv[2], "override") == 0);
  const int override_build = strcmp(argv[2], "override") == 0;
  const int unloads = !override_build;
  for (int round = 0; round < ROUNDS; ++round) round_trip(argv[1], override_build, unloads);
  printf("system_dlopen_allocator: ok\n");
  return 0;
}
