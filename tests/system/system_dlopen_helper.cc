// Helper library of scenario 2 (system_dlopen.cc), dlopen'ed and dlclose'd many times.
//
// What it proves, together with the main program: tinymalloc serves a library's allocations
// while the dynamic loader runs its constructors and destructors. Loading it constructs a
// static object with std::string / std::vector members and runs a constructor function that
// allocates; unloading runs their destructors, which free those blocks and the blocks the main
// program handed over (helper_adopt). A thread_local object with an allocating constructor
// and destructor lives in the threads that call helper_tls_touch. Blocks it returns
// (helper_alloc, helper_take_ctor_block) outlive it: the main program frees them after
// dlclose. Every block is checked to be tinymalloc's; a failed check aborts.
#include <atomic>
#include <string>
#include <vector>

#include "system_check.h"

namespace {

constexpr size_t kCtorBlockBytes = 777;
constexpr int kMaxAdopted = 16;

// Entry i of the catalog (distinct lengths and letters, all past the short-string buffer).
std::string catalog_entry(int i) { return std::string(40 + i, static_cast<char>('a' + i % 26)); }

// A static object whose members allocate: constructed by dlopen, destroyed by dlclose.
struct Catalog {
  std::string name;
  std::vector<std::string> entries;
  void* raw;
  // Fills the members (operator new) and a raw block (malloc).
  Catalog() : name("system_dlopen_helper catalog, longer than any short-string buffer") {
    for (int i = 0; i < 32; ++i) entries.push_back(catalog_entry(i));
    SYS_CHECK_NEW(name.data());
    SYS_CHECK_NEW(entries.data());
    SYS_CHECK_NEW(entries[31].data());
    raw = sys_block(4096, 0x5c);
  }
  // Checks the members survived until dlclose and frees the raw block.
  ~Catalog() {
    SYS_CHECK(entries.size() == 32);
    for (int i = 0; i < 32; ++i) SYS_CHECK(entries[i] == catalog_entry(i));
    sys_release(raw, 4096, 0x5c);
  }
};
Catalog g_catalog;

// Destructor runs of the thread_local object, for helper_tls_destroyed.
std::atomic<int> g_tls_destroyed{0};

// A thread_local object with allocating members and a destructor (registered with
// __cxa_thread_atexit, which keeps the library loaded until the thread exits).
struct ThreadState {
  std::string text;
  std::vector<int> numbers;
  void* raw;
  // Allocates with operator new and malloc.
  ThreadState() : text(300, 't'), numbers(500, 9), raw(sys_block(2000, 0x7e)) {
    SYS_CHECK_NEW(text.data());
    SYS_CHECK_NEW(numbers.data());
  }
  // Checks and frees at thread exit.
  ~ThreadState() {
    SYS_CHECK(text == std::string(300, 't') && numbers.size() == 500 && numbers[499] == 9);
    sys_release(raw, 2000, 0x7e);
    g_tls_destroyed.fetch_add(1);
  }
};
thread_local ThreadState t_state;

// Blocks allocated by the constructor function, and those the main program handed over.
void* g_ctor_block;
void* g_ctor_scratch;
void* g_adopted[kMaxAdopted];
int g_adopted_count;

// Runs at dlopen: allocates (one block for the main program to take, one freed at dlclose).
// Its order against g_catalog's constructor is unspecified: it does not use g_catalog.
__attribute__((constructor)) void helper_init() {
  g_ctor_block = sys_block(kCtorBlockBytes, 0x3c);
  g_ctor_scratch = sys_calloc(64, 64);
  SYS_CHECK(g_ctor_scratch != nullptr && sys_owns(g_ctor_scratch) && sys_filled(g_ctor_scratch, 4096, 0));
  char* copy = strdup("system_dlopen_helper constructor");  // libc's own malloc call
  SYS_CHECK(copy != nullptr);
  SYS_CHECK(!TM_SYS_OVERRIDE || sys_owns(copy));
  free(copy);
}

// Runs at dlclose: frees the adopted blocks and whatever the constructor kept.
__attribute__((destructor)) void helper_fini() {
  for (int i = 0; i < g_adopted_count; ++i) sys_release(g_adopted[i], 500, 0x4d);
  g_adopted_count = 0;
  g_ctor_scratch = sys_realloc(g_ctor_scratch, 100000);
  SYS_CHECK(g_ctor_scratch != nullptr && sys_filled(g_ctor_scratch, 4096, 0));
  sys_free(g_ctor_scratch);
  if (g_ctor_block != nullptr) sys_release(g_ctor_block, kCtorBlockBytes, 0x3c);
}

}  // namespace

extern "C" {

// A value the main program checks after dlsym.
__attribute__((visibility("default"))) int helper_version() { return 42; }

// Hands the constructor's block to the caller, who frees it (kCtorBlockBytes of 0x3c).
__attribute__((visibility("default"))) void* helper_take_ctor_block() {
  void* block = g_ctor_block;
  g_ctor_block = nullptr;
  return block;
}

// A block allocated inside the library for the caller to free (size bytes of 0x2b).
__attribute__((visibility("default"))) void* helper_alloc(size_t size) { return sys_block(size, 0x2b); }

// Keeps a block of the caller (500 bytes of 0x4d) and frees it at dlclose.
__attribute__((visibility("default"))) void helper_adopt(void* block) {
  SYS_CHECK(g_adopted_count < kMaxAdopted && sys_owns(block));
  g_adopted[g_adopted_count++] = block;
}

// Frees a block of the caller now (size bytes of fill).
__attribute__((visibility("default"))) void helper_free(void* block, size_t size, int fill) {
  sys_release(block, size, fill);
}

// Constructs (first call in a thread) and uses the calling thread's thread_local object.
__attribute__((visibility("default"))) size_t helper_tls_touch() {
  t_state.text[0] = 't';
  return t_state.text.size() + t_state.numbers.size();
}

// How many thread_local objects were destroyed since the library was loaded.
__attribute__((visibility("default"))) int helper_tls_destroyed() { return g_tls_destroyed.load(); }

// Catalog entry i (the static object's contents), for the caller to compare.
__attribute__((visibility("default"))) const char* helper_catalog_entry(int i) {
  return g_catalog.entries.at(static_cast<size_t>(i)).c_str();
}
}
