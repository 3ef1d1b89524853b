// Trace mode (option trace=PATH): records every malloc-family call of the program into a
// compact file, for tools/tm-trace2corpus (harness seeds) and bench/trace_replay. The format
// is described in docs/harness.md "Real-program traces". While tracing, every call takes the routed path (as in debug
// mode: the inline fast paths send everything out of line), which records it after the core
// has served it; nothing is added to the fast paths.
#pragma once

#include <cstddef>
#include <cstdint>

#include "platform.h"

namespace tmalloc {

// The calls a trace records (one byte each in the file, with the record's kind).
enum class TraceOp : uint8_t {
  kWindow = 0,   // start of a window of recorded calls: window index
  kMalloc = 1,   // thread, size, result
  kCalloc = 2,   // thread, count * size, result
  kAligned = 3,  // thread, alignment, size, result (aligned_alloc, posix_memalign, memalign, new)
  kFree = 4,     // thread, pointer (free, delete, sized variants)
  kRealloc = 5,  // thread, old pointer, size, result
};

// Whether calls are being recorded (a relaxed peek; the recorder locks).
bool trace_active();

// Opens the trace file named by the trace option's path (`%p` in it becomes the process id)
// and starts recording; runtime init, before the debug routing is decided. Writes a warning
// and records nothing when the file cannot be created.
void trace_start(const char* path, size_t max_bytes);

// Records one call (nothing unless tracing). `in` is the pointer a free or realloc names,
// `out` what an allocation returned (nullptr for a failure).
void trace_record(TraceOp op, size_t size, size_t alignment, const void* in, const void* out);

// Fork child: stops recording (the file belongs to the parent; an exec'd program starts its
// own trace from the environment).
void trace_fork_child();

}  // namespace tmalloc
