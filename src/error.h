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

// What a report knows about the block beyond its address, for the JSON form (report=json):
// set by the reporting code just before report_misuse (or passed to report_json_line).
// size 0 and null sites mean "not known"; the tier is taken from the address map when null.
struct ReportBlock {
  size_t size = 0;
  const char* tier = nullptr;
  const void* alloc_site = nullptr;
  const void* free_site = nullptr;
};
void report_context(const ReportBlock& block);

// True with report=json: every report is also written as one JSON line on stderr.
bool report_json();

// Writes the JSON line of a report (kind, address, its text line without the newline) when
// report=json; report_misuse and the sampled-block fault handler call it.
void report_json_line(const char* kind, const void* addr, const char* text, const ReportBlock& block);

// Appends s to b as a JSON string literal (quotes and escapes included).
void append_json_string(TextBuffer& b, const char* s);

}  // namespace tmalloc
