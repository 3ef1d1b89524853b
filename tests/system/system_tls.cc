// Scenario 4 of tests/system: tinymalloc in thread-local storage set-up and tear-down.
//
// 64 threads, created and joined in 4 waves of 16. Each constructs C++ thread_local objects
// whose constructors and destructors allocate and free (std::string, std::vector, malloc);
// one destructor constructs another thread_local object while the thread's TLS destructors
// are already running, and hands a fresh block to main. Each thread also sets two pthread
// keys: one whose destructor frees the thread's block, and one whose destructor allocates a
// new block and sets the key again, so that glibc calls it a second round, which frees it.
// The key destructors run after tinymalloc's own thread-exit destructor (its key is older
// than ours; in the prefixed build one of ours is older) flushed the thread's cache: their
// calls take tinymalloc's exited-thread path.
// Blocks also cross threads: each thread frees a block main allocated, and main frees the
// blocks the threads hand back. After every wave: every destructor ran once per thread, the
// thread-cache count is back where it was (no exited thread left a cache registered), the
// heap is consistent and the live blocks did not grow with the threads. Prints
// "system_tls: ok".
#include <pthread.h>

#include <atomic>
#include <string>
#include <vector>

#include "system_check.h"

namespace {

constexpr int kWaves = 4;
constexpr int kThreadsPerWave = 16;
constexpr int kThreads = kWaves * kThreadsPerWave;

// Counts of what ran, over all threads.
std::atomic<int> g_outer_constructed{0};
std::atomic<int> g_outer_destroyed{0};
std::atomic<int> g_late_destroyed{0};
std::atomic<int> g_key_frees{0};
std::atomic<int> g_key_rounds[3];

// Per thread: a block main allocated (freed by the thread) and the blocks the thread's
// destructors hand to main.
void* g_from_main[kThreads];
void* g_from_outer[kThreads];

pthread_key_t g_key_free;   // destructor frees the value
pthread_key_t g_key_again;  // destructor allocates and sets the key again once

// Constructed inside Outer's destructor, i.e. while the thread's TLS destructors run.
struct Late {
  std::string text;
  void* raw;
  // Allocates with operator new and malloc.
  Late() : text(3000, 'l'), raw(sys_block(96, 0x1a)) { SYS_CHECK_NEW(text.data()); }
  // Checks and frees.
  ~Late() {
    SYS_CHECK(text.size() == 3000 && text[2999] == 'l');
    sys_release(raw, 96, 0x1a);
    g_late_destroyed.fetch_add(1);
  }
};
thread_local Late t_late;

// The thread's main thread_local object.
struct Outer {
  int index = -1;
  std::vector<std::string> names;
  void* raw;
  // Allocates with operator new and malloc.
  Outer() : names(12, std::string(50, 'o')), raw(sys_block(5000, 0x2f)) {
    SYS_CHECK_NEW(names.data());
    SYS_CHECK_NEW(names[11].data());
    g_outer_constructed.fetch_add(1);
  }
  // Frees its blocks, hands a new one to main and touches t_late for the first time.
  ~Outer() {
    SYS_CHECK(index >= 0 && index < kThreads);
    SYS_CHECK(names.size() == 12 && names[11] == std::string(50, 'o'));
    sys_release(raw, 5000, 0x2f);
    g_from_outer[index] = sys_block(700, 0x3e);
    SYS_CHECK(t_late.text.size() == 3000);  // constructed now: destroyed after this one
    g_outer_destroyed.fetch_add(1);
  }
};
thread_local Outer t_outer;

// Key destructor: frees the thread's block.
void free_value(void* value) {
  sys_release(value, 256, 0x5f);
  g_key_frees.fetch_add(1);
}

// Key destructor: round 1 gets the thread's block, frees it, allocates another and sets the
// key again (glibc calls the destructors again while values remain); round 2 frees that.
void again_value(void* value) {
  int* round = static_cast<int*>(value);
  SYS_CHECK(sys_owns(round) && (*round == 1 || *round == 2));
  g_key_rounds[*round].fetch_add(1);
  const int next = *round + 1;
  sys_free(round);
  if (next == 2) {
    int* again = static_cast<int*>(sys_malloc(sizeof(int)));
    SYS_CHECK(again != nullptr && sys_owns(again));
    *again = next;
    SYS_CHECK(pthread_setspecific(g_key_again, again) == 0);
  }
}

// Thread body: uses the thread_local objects and the keys, frees main's block.
void* thread_body(void* arg) {
  const int index = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  sys_release(g_from_main[index], 128, 0x4b);
  t_outer.index = index;
  void* value = sys_block(256, 0x5f);
  SYS_CHECK(pthread_setspecific(g_key_free, value) == 0);
  int* round = static_cast<int*>(sys_malloc(sizeof(int)));
  SYS_CHECK(round != nullptr);
  *round = 1;
  SYS_CHECK(pthread_setspecific(g_key_again, round) == 0);
  // Some ordinary traffic through the thread cache.
  void* blocks[64];
  for (int i = 0; i < 64; ++i) blocks[i] = sys_block(16 + 32 * i, i);
  for (int i = 0; i < 64; ++i) sys_release(blocks[i], 16 + 32 * i, i);
  return nullptr;
}

// Runs one wave of threads and checks what their exits did.
void run_wave(int wave) {
  pthread_t threads[kThreadsPerWave];
  const int first = wave * kThreadsPerWave;
  for (int i = 0; i < kThreadsPerWave; ++i) g_from_main[first + i] = sys_block(128, 0x4b);
  for (int i = 0; i < kThreadsPerWave; ++i) {
    void* arg = reinterpret_cast<void*>(static_cast<intptr_t>(first + i));
    SYS_CHECK(pthread_create(&threads[i], nullptr, thread_body, arg) == 0);
  }
  for (int i = 0; i < kThreadsPerWave; ++i) SYS_CHECK(pthread_join(threads[i], nullptr) == 0);
  const int done = first + kThreadsPerWave;
  SYS_CHECK(g_outer_constructed.load() == done && g_outer_destroyed.load() == done);
  SYS_CHECK(g_late_destroyed.load() == done && g_key_frees.load() == done);
  SYS_CHECK(g_key_rounds[1].load() == done && g_key_rounds[2].load() == done);
  for (int i = first; i < done; ++i) {
    sys_release(g_from_outer[i], 700, 0x3e);
    g_from_outer[i] = nullptr;
  }
}

}  // namespace

// Runs the waves; checks thread caches, live blocks and the heap after each.
int main() {
  // With the override tinymalloc is initialised before main (libc allocates at start-up),
  // so its thread-exit key precedes both of ours. In the prefixed build its first call comes
  // between them: g_key_free's destructor runs before tinymalloc's, g_key_again's after.
  SYS_CHECK(pthread_key_create(&g_key_free, free_value) == 0);
  sys_release(sys_block(10, 1), 10, 1);  // this thread's cache exists from here on
  SYS_CHECK(pthread_key_create(&g_key_again, again_value) == 0);
  const size_t caches = sys_thread_caches();
  size_t live_after_first = 0;
  for (int wave = 0; wave < kWaves; ++wave) {
    run_wave(wave);
    if (sys_thread_caches() != caches) {
      sys_fail(__FILE__, __LINE__, "%zu thread caches after wave %d, %zu before the threads", sys_thread_caches(), wave,
               caches);
    }
    SYS_CHECK(sys_check_heap() == 0);
    if (wave == 0) live_after_first = sys_live_blocks();
  }
  // glibc keeps the stacks (and their DTV blocks) of a few exited threads for reuse; every
  // thread leaving one block behind would show as kThreads * 3 / 4 more.
  const size_t live_at_end = sys_live_blocks();
  if (live_at_end > live_after_first + kThreadsPerWave) {
    sys_fail(__FILE__, __LINE__, "live blocks grew from %zu after wave 1 to %zu after wave %d", live_after_first,
             live_at_end, kWaves);
  }
  printf("system_tls: %d threads, live blocks %zu after the first wave, %zu after the last\n", kThreads,
         live_after_first, live_at_end);
  sys_ok("system_tls");
  return 0;
}
