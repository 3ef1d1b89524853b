// Scenario 1 of tests/system: tinymalloc serves allocations made before main(), before any
// constructor ran.
//
// A .preinit_array function runs before every object's constructors (libc's, libstdc++'s and,
// under LD_PRELOAD, libtinymalloc.so's own), so the allocator meets it uninitialised. It, and
// constructor(101)/(102) functions after it, call malloc, calloc, realloc, free and operator
// new/delete and start + join a thread. Blocks cross the phases (preinit -> constructors ->
// main -> destructor) and are freed in a later phase than the one that allocated them, each
// checked to be tinymalloc's (tm_owns) with its contents intact. The destructor that runs
// last frees what main allocated, checks the heap and prints "system_preinit: ok".
#include <pthread.h>
#include <stdint.h>

#include <new>
#include <string>
#include <vector>

#include "system_check.h"

namespace {

// Phases that ran, one bit each, in order.
enum Phase : unsigned {
  kPreinit = 1,
  kConstructor101 = 2,
  kConstructor102 = 4,
  kStaticObject = 8,
  kMain = 16,
};

// Blocks handed from one phase to a later one. Plain data: zero-initialised before the
// preinit function runs, never touched by a constructor.
struct Handoff {
  unsigned phases;
  void* preinit_to_ctor;             // malloc in preinit, free in constructor(101)
  void* preinit_to_main;             // calloc in preinit, realloc in constructor(101), free in main
  std::vector<int>* preinit_vector;  // new in preinit, delete in main
  void* preinit_thread_block;        // malloc by the preinit's thread, free in main
  void* ctor_to_main;                // malloc in constructor(101), free in main
  void* ctor_thread_block;           // malloc by the constructor's thread, free in main
  std::string* ctor_string;          // new in constructor(102), delete in main
  void* main_to_dtor;                // malloc in main, free in the last destructor
};
Handoff g_handoff;

constexpr size_t kPreinitMainBytes = 300;
constexpr size_t kPreinitMainGrown = 20000;
constexpr size_t kThreadBlockBytes = 200;

// A 128-byte aligned type: operator new(size_t, align_val_t).
struct alignas(128) Wide {
  unsigned char bytes[128];
};

// Thread body: frees the block its creator passed, exercises operator new in the thread, and
// returns a fresh block for the creator's successor phase to free.
void* thread_body(void* arg) {
  sys_release(arg, 64, 0x11);
  auto* text = new std::string(100, 'x');
  SYS_CHECK_NEW(text);
  SYS_CHECK_NEW(text->data());
  delete text;
  void* scratch[32];
  for (int i = 0; i < 32; ++i) scratch[i] = sys_block(16 + 48 * i, i);
  for (int i = 31; i >= 0; --i) sys_release(scratch[i], 16 + 48 * i, i);
  return sys_block(kThreadBlockBytes, 0x22);
}

// Starts a thread (thread_body) and joins it; returns the block it handed back.
void* run_thread() {
  pthread_t thread;
  SYS_CHECK(pthread_create(&thread, nullptr, thread_body, sys_block(64, 0x11)) == 0);
  void* result = nullptr;
  SYS_CHECK(pthread_join(thread, &result) == 0);
  SYS_CHECK(result != nullptr);
  return result;
}

// Every allocation function once, each block freed again (calls made by one phase).
void allocate_everything() {
  void* small = sys_block(24, 1);
  auto* zeroed = static_cast<unsigned char*>(sys_calloc(10, 100));
  SYS_CHECK(zeroed != nullptr && sys_owns(zeroed) && sys_filled(zeroed, 1000, 0));
  void* grown = sys_realloc(nullptr, 5000);
  SYS_CHECK(grown != nullptr && sys_owns(grown));
  memset(grown, 3, 5000);
  grown = sys_realloc(grown, 300000);  // medium or large tier
  SYS_CHECK(grown != nullptr && sys_owns(grown) && sys_filled(grown, 5000, 3));
  memset(grown, 4, 300000);
  void* large = sys_block(4 << 20, 5);
  sys_release(large, 4 << 20, 5);
  sys_release(grown, 300000, 4);
  sys_free(zeroed);
  sys_release(small, 24, 1);

  auto* numbers = new int[1000];
  SYS_CHECK_NEW(numbers);
  delete[] numbers;
  auto* wide = new Wide[4];
  SYS_CHECK_NEW(wide);
  SYS_CHECK(reinterpret_cast<uintptr_t>(wide) % alignof(Wide) == 0);
  delete[] wide;
  auto* quiet = new (std::nothrow) std::vector<std::string>(8, std::string(64, 'q'));
  SYS_CHECK(quiet != nullptr);
  SYS_CHECK_NEW(quiet);
  SYS_CHECK_NEW((*quiet)[7].data());
  delete quiet;
}

// Runs first of all (before libc's and libstdc++'s constructors): allocates with an
// allocator nobody has initialised yet.
void preinit(int /*argc*/, char** /*argv*/, char** /*envp*/) {
  Handoff& h = g_handoff;
  SYS_CHECK(h.phases == 0);
  allocate_everything();
  h.preinit_to_ctor = sys_block(64, 0x33);
  h.preinit_to_main = sys_calloc(1, kPreinitMainBytes);
  SYS_CHECK(h.preinit_to_main != nullptr && sys_owns(h.preinit_to_main));
  memset(h.preinit_to_main, 0x44, kPreinitMainBytes);
  h.preinit_vector = new std::vector<int>(1000, 7);
  SYS_CHECK_NEW(h.preinit_vector);
  SYS_CHECK_NEW(h.preinit_vector->data());
  h.preinit_thread_block = run_thread();
  h.phases |= kPreinit;
}

__attribute__((section(".preinit_array"), used)) void (*g_preinit_entry)(int, char**, char**) = preinit;

// First constructor: frees a preinit block, moves another with realloc, starts a thread.
__attribute__((constructor(101))) void constructor_101() {
  Handoff& h = g_handoff;
  SYS_CHECK(h.phases == kPreinit);
  sys_release(h.preinit_to_ctor, 64, 0x33);
  h.preinit_to_ctor = nullptr;
  h.preinit_to_main = sys_realloc(h.preinit_to_main, kPreinitMainGrown);
  SYS_CHECK(h.preinit_to_main != nullptr && sys_owns(h.preinit_to_main));
  SYS_CHECK(sys_filled(h.preinit_to_main, kPreinitMainBytes, 0x44));
  memset(h.preinit_to_main, 0x55, kPreinitMainGrown);
  allocate_everything();
  h.ctor_to_main = sys_block(1000, 0x66);
  h.ctor_thread_block = run_thread();
  h.phases |= kConstructor101;
}

// Second constructor: operator new of a std::string that main deletes.
__attribute__((constructor(102))) void constructor_102() {
  Handoff& h = g_handoff;
  SYS_CHECK(h.phases == (kPreinit | kConstructor101));
  h.ctor_string = new std::string(500, 's');
  SYS_CHECK_NEW(h.ctor_string);
  SYS_CHECK_NEW(h.ctor_string->data());
  h.phases |= kConstructor102;
}

// A C++ static object with allocating members, constructed after the prioritised
// constructors (default priority) and destroyed at exit.
struct StaticUser {
  std::vector<std::string> names;
  // Checks the earlier phases ran, then fills the members.
  StaticUser() {
    SYS_CHECK(g_handoff.phases == (kPreinit | kConstructor101 | kConstructor102));
    for (int i = 0; i < 50; ++i) names.push_back(std::string(40 + i, static_cast<char>('a' + i % 26)));
    SYS_CHECK_NEW(names.data());
    g_handoff.phases |= kStaticObject;
  }
  // Checks the members survived until exit.
  ~StaticUser() {
    SYS_CHECK(names.size() == 50);
    for (int i = 0; i < 50; ++i) SYS_CHECK(names[i] == std::string(40 + i, static_cast<char>('a' + i % 26)));
  }
};
StaticUser g_static_user;

// Runs last of the program's destructors: frees main's block, checks the heap, says ok.
__attribute__((destructor(101))) void destructor_101() {
  Handoff& h = g_handoff;
  SYS_CHECK(h.phases == (kPreinit | kConstructor101 | kConstructor102 | kStaticObject | kMain));
  sys_release(h.main_to_dtor, 333, 0x77);
  allocate_everything();
  SYS_CHECK(sys_check_heap() == 0);
  sys_ok("system_preinit");
}

}  // namespace

// Frees what the earlier phases handed over, allocates a block for the last destructor.
int main() {
  Handoff& h = g_handoff;
  SYS_CHECK(h.phases == (kPreinit | kConstructor101 | kConstructor102 | kStaticObject));
  sys_release(h.preinit_to_main, kPreinitMainGrown, 0x55);
  SYS_CHECK(h.preinit_vector->size() == 1000 && (*h.preinit_vector)[999] == 7);
  delete h.preinit_vector;
  sys_release(h.preinit_thread_block, kThreadBlockBytes, 0x22);
  sys_release(h.ctor_thread_block, kThreadBlockBytes, 0x22);
  sys_release(h.ctor_to_main, 1000, 0x66);
  SYS_CHECK(*h.ctor_string == std::string(500, 's'));
  delete h.ctor_string;
  allocate_everything();
  // A thread started by main frees a block and hands one back, as in the earlier phases.
  sys_release(run_thread(), kThreadBlockBytes, 0x22);
  SYS_CHECK(sys_check_heap() == 0);
  h.main_to_dtor = sys_block(333, 0x77);
  h.phases |= kMain;
  return 0;
}
