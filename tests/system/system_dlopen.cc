// Scenario 2 of tests/system: tinymalloc inside dlopen / dlsym / dlclose / dlerror.
//
// Loads the helper library (system_dlopen_helper.cc, path in argv[1]) 50 times. Each round:
// dlopen runs the helper's static constructors and constructor function (they allocate),
// dlsym resolves its functions, a thread constructs the helper's thread_local object (which
// allocates, and frees in its destructor at thread exit), blocks cross the library boundary
// in both directions (the library frees the program's blocks, at once and in its destructor
// at dlclose; the program frees the library's blocks after dlclose), failed dlsym and dlopen
// calls produce dlerror() strings (glibc mallocs them: with the override they must be
// tinymalloc's), and dlclose must really unload the library (RTLD_NOLOAD finds it gone).
// After the rounds the heap must be consistent and the live block count must not have grown
// with the number of rounds. Prints "system_dlopen: ok".
#include <pthread.h>

#include <string>
#include <vector>

#include "system_check.h"

namespace {

constexpr int kRounds = 50;

// The helper's functions, resolved with dlsym in each round.
struct Helper {
  int (*version)();
  void* (*take_ctor_block)();
  void* (*alloc)(size_t);
  void (*adopt)(void*);
  void (*free_block)(void*, size_t, int);
  size_t (*tls_touch)();
  int (*tls_destroyed)();
  const char* (*catalog_entry)(int);
};

// dlsym of `name` in `handle`; aborts when missing.
void* must_dlsym(void* handle, const char* name) {
  void* symbol = dlsym(handle, name);
  if (symbol == nullptr) sys_fail(__FILE__, __LINE__, "dlsym(%s): %s", name, dlerror());
  return symbol;
}

// Resolves every helper function.
Helper resolve(void* handle) {
  Helper h;
  h.version = reinterpret_cast<int (*)()>(must_dlsym(handle, "helper_version"));
  h.take_ctor_block = reinterpret_cast<void* (*)()>(must_dlsym(handle, "helper_take_ctor_block"));
  h.alloc = reinterpret_cast<void* (*)(size_t)>(must_dlsym(handle, "helper_alloc"));
  h.adopt = reinterpret_cast<void (*)(void*)>(must_dlsym(handle, "helper_adopt"));
  h.free_block = reinterpret_cast<void (*)(void*, size_t, int)>(must_dlsym(handle, "helper_free"));
  h.tls_touch = reinterpret_cast<size_t (*)()>(must_dlsym(handle, "helper_tls_touch"));
  h.tls_destroyed = reinterpret_cast<int (*)()>(must_dlsym(handle, "helper_tls_destroyed"));
  h.catalog_entry = reinterpret_cast<const char* (*)(int)>(must_dlsym(handle, "helper_catalog_entry"));
  return h;
}

// Thread body: constructs the helper's thread_local object (destroyed when this thread
// exits) and allocates through the helper.
void* tls_thread(void* arg) {
  const Helper* helper = static_cast<const Helper*>(arg);
  SYS_CHECK(helper->tls_touch() == 800);
  SYS_CHECK(helper->tls_touch() == 800);
  void* block = helper->alloc(128);
  sys_release(block, 128, 0x2b);
  return nullptr;
}

// Checks the pending dlerror() string mentions `expected` and is tinymalloc's (glibc
// formats it with malloc), then that the error is cleared.
void check_dlerror(const char* expected) {
  const char* error = dlerror();
  SYS_CHECK(error != nullptr);
  if (strstr(error, expected) == nullptr) sys_fail(__FILE__, __LINE__, "dlerror() = '%s'", error);
  SYS_CHECK(!TM_SYS_OVERRIDE || sys_owns(error));
  std::string copy(error);  // operator new while glibc holds the string
  SYS_CHECK(copy.find(expected) != std::string::npos);
  SYS_CHECK(dlerror() == nullptr);
}

// Blocks the library allocated, freed by this program after dlclose.
struct Outlived {
  void* ctor_block;
  void* helper_block;
};

// One round: load, use, unload. Returns the blocks that must outlive the library.
Outlived round_trip(const char* path) {
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) sys_fail(__FILE__, __LINE__, "dlopen(%s): %s", path, dlerror());
  const Helper helper = resolve(handle);
  SYS_CHECK(helper.version() == 42);
  SYS_CHECK(std::string(helper.catalog_entry(5)) == std::string(45, 'f'));

  Outlived outlived;
  outlived.ctor_block = helper.take_ctor_block();
  outlived.helper_block = helper.alloc(1000);
  SYS_CHECK(outlived.ctor_block != nullptr && sys_owns(outlived.ctor_block));
  // The reverse direction: the library frees this program's blocks (now and at dlclose).
  helper.free_block(sys_block(100, 0x19), 100, 0x19);
  helper.adopt(sys_block(500, 0x4d));
  helper.adopt(sys_block(500, 0x4d));

  // A thread_local with a destructor defers the unload until its thread exits: join first.
  pthread_t thread;
  SYS_CHECK(pthread_create(&thread, nullptr, tls_thread, const_cast<Helper*>(&helper)) == 0);
  SYS_CHECK(pthread_join(thread, nullptr) == 0);
  SYS_CHECK(helper.tls_destroyed() == 1);

  // dlerror paths: a missing symbol in the helper, and in the global scope.
  SYS_CHECK(dlsym(handle, "helper_no_such_symbol") == nullptr);
  check_dlerror("helper_no_such_symbol");
  SYS_CHECK(dlsym(RTLD_DEFAULT, "tm_system_no_such_symbol") == nullptr);
  check_dlerror("tm_system_no_such_symbol");

  SYS_CHECK(dlclose(handle) == 0);
  // Really unloaded (so its destructors ran): RTLD_NOLOAD does not find it.
  void* again = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  SYS_CHECK(again == nullptr);
  dlerror();  // whatever RTLD_NOLOAD left
  // dlopen of a library that does not exist.
  SYS_CHECK(dlopen("libtm-system-no-such-library.so", RTLD_NOW) == nullptr);
  check_dlerror("libtm-system-no-such-library.so");
  return outlived;
}

}  // namespace

// Runs the rounds, frees the library's blocks after each dlclose, checks the counts.
int main(int argc, char** argv) {
  SYS_CHECK(argc == 2);
  const char* path = argv[1];
  size_t live_after_first = 0;
  for (int round = 0; round < kRounds; ++round) {
    const Outlived outlived = round_trip(path);
    sys_release(outlived.ctor_block, 777, 0x3c);
    sys_release(outlived.helper_block, 1000, 0x2b);
    if (round == 0) live_after_first = sys_live_blocks();
  }
  SYS_CHECK(sys_check_heap() == 0);
  // The rounds free everything they allocate (glibc's own caches aside): no growth per round.
  const size_t live_at_end = sys_live_blocks();
  if (live_at_end > live_after_first + kRounds / 5) {
    sys_fail(__FILE__, __LINE__, "live blocks grew from %zu after the first round to %zu after %d", live_after_first,
             live_at_end, kRounds);
  }
  printf("system_dlopen: %d rounds, live blocks %zu after the first, %zu after the last\n", kRounds, live_after_first,
         live_at_end);
  sys_ok("system_dlopen");
  return 0;
}
