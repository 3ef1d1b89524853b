// Scenario 3 of tests/system: tinymalloc while the program exits.
//
// After main returns, glibc runs (in this order) the main thread's thread_local destructors,
// the atexit / on_exit / __cxa_atexit handlers and static-object destructors in reverse order
// of registration, then the destructor functions. Every one of them here allocates, reallocs
// or frees blocks main left behind; one joins a thread that was still allocating when main
// returned, another starts and joins a new thread. The handler registered first (from a
// constructor) runs last of the handlers and checks the order so far; the destructor(101)
// function runs last of all: it checks every step ran in the expected order, that exactly
// the blocks main left behind were freed (tm_stats live count), that the heap is consistent,
// and prints "system_atexit: ok".
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include <atomic>
#include <string>
#include <vector>

#include "system_check.h"

extern "C" void* __dso_handle;
extern "C" int __cxa_atexit(void (*function)(void*), void* arg, void* dso);

namespace {

// The exit steps, in the order they must run.
enum Step : int {
  kThreadLocal = 1,     // main thread's thread_local destructor
  kStopWorker = 2,      // atexit, registered last in main
  kOnExit = 3,          // on_exit
  kCxaAtexit = 4,       // __cxa_atexit with an argument
  kLocalStatic = 5,     // function-local static constructed in main
  kFirstInMain = 6,     // atexit, registered first in main
  kStaticObject = 7,    // static object constructed before main
  kFirstOfAll = 8,      // atexit registered in constructor(101): the last handler
  kDestructor = 9,      // destructor function (default priority)
  kLastDestructor = 10  // destructor(101): the final check
};

// Steps in the order they ran (no allocation: plain array).
int g_steps[16];
int g_step_count;

// Records a step, checking it comes right after the previous one.
void step(int id) {
  SYS_CHECK(g_step_count < 16);
  g_steps[g_step_count++] = id;
  if (id != g_step_count) sys_fail(__FILE__, __LINE__, "exit step %d ran as step %d", id, g_step_count);
}

// Blocks main leaves for the exit steps, and how many of them are live.
struct Leftovers {
  void* for_thread_local;   // 100 B of 0x01, freed by the thread_local destructor
  void* for_on_exit;        // 200 B of 0x02, grown by on_exit to 50000 B of 0x12
  void* for_cxa;            // 300 B of 0x03, freed by the __cxa_atexit handler (its argument)
  void* for_first_in_main;  // freed by the first atexit of main (on_exit's grown block)
  void* for_static;         // 400 B of 0x04, freed by the static object's destructor
  void* for_destructor;     // 500 B of 0x05, reallocated then freed by the destructor function
  void* worker_result;      // 64 B of 0x06 from the worker, freed by the destructor(101)
  size_t local_blocks;      // blocks the function-local static holds (measured in main)
  size_t holder_blocks;     // blocks main put into the static object
  size_t live_after_join;   // tm_stats live blocks once the worker was joined
};
Leftovers g_left;

// The worker thread started by main and stopped by an exit handler.
pthread_t g_worker;
std::atomic<bool> g_worker_stop{false};
std::atomic<long> g_worker_rounds{0};
void* g_worker_input[64];  // main's blocks, freed by the worker

// Worker: frees main's blocks, then allocates and frees until told to stop; returns a block.
void* worker_body(void*) {
  for (int i = 0; i < 64; ++i) sys_release(g_worker_input[i], 32 + i, 0x60);
  while (!g_worker_stop.load() || g_worker_rounds.load() < 100) {
    void* blocks[16];
    for (int i = 0; i < 16; ++i) blocks[i] = sys_block(16 << (i % 8), i);
    for (int i = 0; i < 16; ++i) sys_release(blocks[i], 16 << (i % 8), i);
    auto* text = new std::string(200, 'w');
    SYS_CHECK_NEW(text);
    delete text;
    g_worker_rounds.fetch_add(1);
  }
  return sys_block(64, 0x06);
}

// Thread started and joined inside an exit handler: allocates, frees, returns nothing.
void* exit_thread_body(void* arg) {
  sys_release(arg, 48, 0x48);
  std::vector<std::string> names(20, std::string(100, 'e'));
  SYS_CHECK_NEW(names.data());
  void* blocks[32];
  for (int i = 0; i < 32; ++i) blocks[i] = sys_block(8 + 100 * i, i);
  for (int i = 0; i < 32; ++i) sys_release(blocks[i], 8 + 100 * i, i);
  return nullptr;
}

// The main thread's thread_local object: its destructor runs first at exit.
struct MainThreadLocal {
  std::string text;
  // Allocates (constructed on first use in main).
  MainThreadLocal() : text(1000, 'L') { SYS_CHECK_NEW(text.data()); }
  // Frees main's block for this step.
  ~MainThreadLocal() {
    step(kThreadLocal);
    SYS_CHECK(text == std::string(1000, 'L'));
    sys_release(g_left.for_thread_local, 100, 0x01);
  }
};
thread_local MainThreadLocal t_main_local;

// atexit, registered last in main (runs first): stops and joins the worker.
void stop_worker() {
  step(kStopWorker);
  g_worker_stop.store(true);
  void* result = nullptr;
  SYS_CHECK(pthread_join(g_worker, &result) == 0);
  SYS_CHECK(result != nullptr && sys_owns(result) && sys_filled(result, 64, 0x06));
  g_left.worker_result = result;
  // From here on only this thread allocates: the counts are exact.
  g_left.live_after_join = sys_live_blocks();
}

// on_exit: checks main's exit status, grows main's block with realloc.
void on_exit_handler(int status, void* arg) {
  step(kOnExit);
  SYS_CHECK(status == 0 && arg == &g_left);
  void* grown = sys_realloc(g_left.for_on_exit, 50000);
  SYS_CHECK(grown != nullptr && sys_owns(grown) && sys_filled(grown, 200, 0x02));
  memset(grown, 0x12, 50000);
  g_left.for_on_exit = nullptr;
  g_left.for_first_in_main = grown;
}

// __cxa_atexit handler: frees its argument (main's block), runs a thread to completion.
void cxa_handler(void* arg) {
  step(kCxaAtexit);
  SYS_CHECK(arg == g_left.for_cxa);
  sys_release(arg, 300, 0x03);
  g_left.for_cxa = nullptr;
  pthread_t thread;
  SYS_CHECK(pthread_create(&thread, nullptr, exit_thread_body, sys_block(48, 0x48)) == 0);
  SYS_CHECK(pthread_join(thread, nullptr) == 0);
}

// A function-local static constructed in main: destroyed between main's handlers.
struct LocalStatic {
  std::vector<std::string> names;
  void* raw;
  // Allocates with operator new and malloc.
  LocalStatic() : names(30, std::string(70, 'n')), raw(sys_block(700, 0x70)) {}
  // Checks and frees its own blocks.
  ~LocalStatic() {
    step(kLocalStatic);
    SYS_CHECK(names.size() == 30 && names[29] == std::string(70, 'n'));
    sys_release(raw, 700, 0x70);
  }
};

// The function-local static (constructed on first call).
LocalStatic& local_static() {
  static LocalStatic instance;
  return instance;
}

// atexit, registered first in main: frees the block on_exit grew.
void first_in_main() {
  step(kFirstInMain);
  sys_release(g_left.for_first_in_main, 50000, 0x12);
  g_left.for_first_in_main = nullptr;
}

// A static object constructed before main (default priority); main fills it.
struct StaticHolder {
  std::vector<std::string> names;
  // Destroyed after main's handlers: frees main's block, allocates and frees.
  ~StaticHolder() {
    step(kStaticObject);
    SYS_CHECK(names.size() == 10 && names[9] == std::string(90, 'h'));
    sys_release(g_left.for_static, 400, 0x04);
    g_left.for_static = nullptr;
    sys_release(sys_block(4000, 0x44), 4000, 0x44);
  }
};
StaticHolder g_holder;

// atexit registered from constructor(101), before any other handler: runs last of them.
void first_of_all() {
  step(kFirstOfAll);
  SYS_CHECK(g_left.for_on_exit == nullptr && g_left.for_cxa == nullptr && g_left.for_first_in_main == nullptr &&
            g_left.for_static == nullptr);
  SYS_CHECK(sys_check_heap() == 0);
}

// Registers first_of_all before the static objects register their destructors.
__attribute__((constructor(101))) void register_first() { SYS_CHECK(atexit(first_of_all) == 0); }

// Destructor function (default priority): runs after every handler.
__attribute__((destructor)) void destructor_default() {
  step(kDestructor);
  void* moved = sys_realloc(g_left.for_destructor, 3 << 20);  // into the large tier
  SYS_CHECK(moved != nullptr && sys_owns(moved) && sys_filled(moved, 500, 0x05));
  memset(moved, 0x15, 3 << 20);
  moved = sys_realloc(moved, 1000);  // and back
  SYS_CHECK(moved != nullptr && sys_owns(moved) && sys_filled(moved, 1000, 0x15));
  sys_free(moved);
  g_left.for_destructor = nullptr;
}

// Runs last of the program's code: checks every step ran in order and that exactly main's
// leftovers were freed, then says ok.
__attribute__((destructor(101))) void destructor_last() {
  step(kLastDestructor);
  SYS_CHECK(g_step_count == kLastDestructor);
  SYS_CHECK(g_worker_rounds.load() >= 100);
  sys_release(g_left.worker_result, 64, 0x06);
  // Once the worker was joined, the leftovers were live: 5 raw blocks (for_on_exit, for_cxa,
  // for_static, for_destructor, worker_result) and the two static objects' blocks. All of
  // them are gone now, and the steps' own allocations (a thread's included) left nothing.
  const size_t expected = g_left.live_after_join - 5 - g_left.local_blocks - g_left.holder_blocks;
  const size_t live = sys_live_blocks();
  if (live != expected) {
    sys_fail(__FILE__, __LINE__, "%zu live blocks at the end, expected %zu (%zu after the worker's join)", live,
             expected, g_left.live_after_join);
  }
  SYS_CHECK(sys_check_heap() == 0);
  sys_ok("system_atexit");
}

}  // namespace

// Leaves blocks for the exit steps, registers the handlers, returns with a worker running.
int main() {
  SYS_CHECK(g_step_count == 0);
  SYS_CHECK(atexit(first_in_main) == 0);
  SYS_CHECK(t_main_local.text.size() == 1000);
  // Blocks the static objects will free (operator new's count only with the override).
  size_t before = sys_live_blocks();
  local_static();
  g_left.local_blocks = sys_live_blocks() - before;
  SYS_CHECK(g_left.local_blocks == (TM_SYS_OVERRIDE ? 32 : 1));
  before = sys_live_blocks();
  for (int i = 0; i < 10; ++i) g_holder.names.push_back(std::string(81 + i, 'h'));
  g_left.holder_blocks = sys_live_blocks() - before;
  SYS_CHECK(g_left.holder_blocks == (TM_SYS_OVERRIDE ? 11 : 0));
  g_left.for_thread_local = sys_block(100, 0x01);
  g_left.for_on_exit = sys_block(200, 0x02);
  g_left.for_cxa = sys_block(300, 0x03);
  g_left.for_static = sys_block(400, 0x04);
  g_left.for_destructor = sys_block(500, 0x05);
  SYS_CHECK(__cxa_atexit(cxa_handler, g_left.for_cxa, &__dso_handle) == 0);
  SYS_CHECK(on_exit(on_exit_handler, &g_left) == 0);
  for (int i = 0; i < 64; ++i) g_worker_input[i] = sys_block(32 + i, 0x60);
  SYS_CHECK(pthread_create(&g_worker, nullptr, worker_body, nullptr) == 0);
  SYS_CHECK(atexit(stop_worker) == 0);
  SYS_CHECK(sys_check_heap() == 0);
  // Return while the worker allocates (stop_worker joins it).
  while (g_worker_rounds.load() < 10) sched_yield();
  return 0;
}
