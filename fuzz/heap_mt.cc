// Fuzz target heap_mt: multi-threaded op programs (harness/FORMAT.md "Multi-threaded
// programs", harness/tm_harness_mt.h). 2 to 8 real threads run their own op sub-streams
// concurrently in phases and hand blocks to each other (mailboxes during a phase, gives at
// phase ends); threads exit and are replaced, so blocks are freed and reallocated by threads
// that did not allocate them, also after their allocating thread exited. Every op is
// checked by its thread's shadow model; at phase ends (workers parked) the main thread checks
// contents, overlaps of all live blocks, tm_check_heap and tm_stats; after every worker is
// joined, the final frees and the leak check.
//
// Builds: with libFuzzer (fuzz preset: ASan + UBSan) it fuzzes; elsewhere (release, asan,
// tsan, msan) the standalone driver replays files. Under TSan use the standalone replay only:
// libFuzzer's own coverage counters are updated by every thread without synchronisation.
//
// Environment: TM_HARNESS_BACKEND (tm, system, faulty:<mode>; or -tm_backend=NAME),
// TM_HARNESS_VERBOSE=1 (every op with its thread), TM_HARNESS_VERIFY_EVERY=N,
// TM_HARNESS_SELFTEST=poke, TM_HARNESS_MT_SERIAL=1 (the threads of a phase run one after
// another: deterministic replay), TM_FUZZ_TRACE=1 (print the decoded trace first).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "generic_target.h"
#include "tm_harness_mt.h"

namespace {

struct MtRunner {
  std::unique_ptr<tmh::Backend> backend;
  std::unique_ptr<tmh::MtInterpreter> interp;
  bool trace = false;
};

// The backend and interpreter, created once per process.
MtRunner& mt_runner() {
  static MtRunner* r = [] {
    auto* x = new MtRunner;
    if (!tm_fuzz::backend_flag().empty()) {
      x->backend = tmh::make_backend(tm_fuzz::backend_flag());
      if (!x->backend) {
        fprintf(stderr, "heap_mt: unknown -tm_backend=%s (use tm, system or faulty:<mode>)\n",
                tm_fuzz::backend_flag().c_str());
        exit(2);
      }
    } else {
      x->backend = tmh::backend_from_env();
    }
    x->interp =
        std::make_unique<tmh::MtInterpreter>(*x->backend, tmh::options_from_env(tmh::Profile::kGeneral, "heap_mt"));
    x->interp->set_serial(tmh::mt_serial_from_env());
    const char* t = getenv("TM_FUZZ_TRACE");
    x->trace = t != nullptr && *t && strcmp(t, "0") != 0;
    return x;
  }();
  return *r;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const char* a = (*argv)[i];
    if (strncmp(a, "-tm_backend=", 12) == 0) tm_fuzz::backend_flag() = a + 12;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  MtRunner& r = mt_runner();
  const tmh::MtProgram p = tmh::decode_mt(data, size);
  if (r.trace) fputs(tmh::format_mt_program(p).c_str(), stderr);
  tmh::set_current_input(data, size);
  r.interp->run(p);
  tmh::set_current_input(nullptr, 0);
  return 0;
}
