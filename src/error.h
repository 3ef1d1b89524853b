// Misuse reports: "tinymalloc: <what> at 0x<addr> (<detail>)" on stderr, then abort.
#pragma once

#include "platform.h"
#include "text_buffer.h"

namespace tmalloc {

// Writes the report line for a misuse of `addr` and aborts the process. `detail` is the
// text inside the parentheses.
[[noreturn]] TM_NOINLINE void report_misuse(const char* what, const void* addr, const TextBuffer& detail);

// Same, with a plain detail string.
[[noreturn]] TM_NOINLINE void report_misuse(const char* what, const void* addr, const char* detail);

// Writes a line on stderr without allocating (warnings, stats output).
void write_stderr(const char* text, size_t length);

}  // namespace tmalloc
