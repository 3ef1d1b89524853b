// Shared body of the op-program fuzz targets (heap_ops, realloc, split_coalesce, aligned).
//
// Each target decodes its input with harness/FORMAT.md (its own profile) and runs it with
// the harness interpreter against a backend:
//   TM_HARNESS_BACKEND=tm (default) | system | faulty:<mode>, or the flag -tm_backend=NAME
// (libFuzzer warns about the unknown flag and passes it on; the standalone driver ignores
// flags). TM_HARNESS_SELFTEST=poke turns peek ops into deliberate corruption (self-test),
// TM_HARNESS_VERBOSE=1 prints every op.
//
// One source, two builds: linked with -fsanitize=fuzzer (TM_FUZZ_ENGINE) it is a libFuzzer
// binary; otherwise fuzz/standalone_main.cc replays files and directories.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "tm_harness.h"

// Harness checks expect NULL + ENOMEM from impossible requests; sanitizer allocators would
// report them as errors instead (matters for the system backend only).
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1:quarantine_size_mb=32"; }
extern "C" const char* __tsan_default_options() { return "allocator_may_return_null=1"; }
extern "C" const char* __msan_default_options() { return "allocator_may_return_null=1"; }

namespace tm_fuzz {

inline std::string& backend_flag() {
  static std::string name;
  return name;
}

struct Runner {
  std::unique_ptr<tmh::Backend> backend;
  std::unique_ptr<tmh::Interpreter> interp;
};

inline Runner& runner(const char* target, tmh::Profile profile) {
  static Runner* r = [&] {
    auto* x = new Runner;
    if (!backend_flag().empty()) {
      x->backend = tmh::make_backend(backend_flag());
      if (!x->backend) {
        fprintf(stderr, "%s: unknown -tm_backend=%s (use tm, system or faulty:<mode>)\n", target,
                backend_flag().c_str());
        exit(2);
      }
    } else {
      x->backend = tmh::backend_from_env();
    }
    x->interp = std::make_unique<tmh::Interpreter>(*x->backend, tmh::options_from_env(profile, target));
    return x;
  }();
  return *r;
}

}  // namespace tm_fuzz

#define TM_HARNESS_FUZZ_TARGET(TARGET_NAME, PROFILE)                             \
  extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {                 \
    for (int i = 1; i < *argc; ++i) {                                            \
      const char* a = (*argv)[i];                                                \
      if (strncmp(a, "-tm_backend=", 12) == 0) tm_fuzz::backend_flag() = a + 12; \
    }                                                                            \
    return 0;                                                                    \
  }                                                                              \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {      \
    tm_fuzz::runner(TARGET_NAME, PROFILE).interp->run_bytes(data, size);         \
    return 0;                                                                    \
  }
