// Failure reporting for the unit-level fuzz targets (size_class, bitmap, fit_index):
// print what differed and the op trace so far, then abort() so libFuzzer records a crash.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tm_fuzz {

// Trace of the current input (cleared per input); printed on failure.
inline std::string& unit_trace() {
  static std::string t;
  return t;
}

__attribute__((format(printf, 1, 2))) inline void trace(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::string& t = unit_trace();
  if (t.size() < (1u << 20)) {
    t += buf;
    t += '\n';
  }
}

[[noreturn]] __attribute__((format(printf, 2, 3))) inline void unit_fail(const char* target, const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  const std::string& t = unit_trace();
  // Last ~60 lines of the trace.
  size_t start = t.size(), lines = 0;
  while (start > 0 && lines < 60) {
    --start;
    if (t[start] == '\n' && start + 1 < t.size()) ++lines;
  }
  fprintf(stderr, "\n==== tinymalloc unit fuzz target %s: FAILURE ====\nwhat: %s\ntrace (%s):\n%s====\n", target, buf,
          start > 0 ? "last 60 ops" : "all ops", t.c_str() + (start > 0 ? start + 1 : 0));
  fflush(stderr);
  abort();
}

// End of an input: with TM_FUZZ_TRACE=1 (tools/tm-repro) print the whole trace.
inline void unit_done(const char* target) {
  static const bool print = [] {
    const char* e = getenv("TM_FUZZ_TRACE");
    return e != nullptr && *e != '\0' && *e != '0';
  }();
  if (print) fprintf(stderr, "---- %s trace ----\n%s---- end (passed) ----\n", target, unit_trace().c_str());
}

}  // namespace tm_fuzz
