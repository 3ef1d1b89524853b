// Trace mode: the recorder (see trace.h; file format in docs/harness.md "Real-program traces").
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>

#include "spinlock.h"
#include "text_buffer.h"

namespace tmalloc {

namespace {

// Calls per window: the trace is a sequence of windows of consecutive calls; once the file
// grows long, only every 2nd, 4th, ... window is kept (see window_starts).
constexpr uint64_t kWindowCalls = 4096;
constexpr size_t kBufferBytes = 64 * 1024;
constexpr size_t kMaxRecordBytes = 1 + 4 * 10;  // op byte and up to four varints
constexpr char kMagic[8] = {'T', 'M', 'T', 'R', 'A', 'C', 'E', '1'};

// Relaxed: a peek; every decision is taken again under g_lock.
std::atomic<bool> g_active{false};
SpinLock g_lock;
int g_fd = -1;
uint64_t g_max_bytes;   // the file's bound
uint64_t g_written;     // bytes in the file and the buffer
uint64_t g_calls;       // calls seen since the start, recorded or not
uint64_t g_stride = 1;  // every g_stride-th window is recorded
bool g_window_recorded;
unsigned char g_buffer[kBufferBytes];
size_t g_buffered;
std::atomic<uint32_t> g_next_thread{1};
constinit thread_local uint32_t t_thread __attribute__((tls_model(TM_TLS_MODEL))) = 0;

// Writes the buffer to the file (lock held); a write error ends the trace.
void flush_locked() {
  const int saved_errno = errno;
  size_t done = 0;
  while (done < g_buffered) {
    const ssize_t n = ::write(g_fd, g_buffer + done, g_buffered - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      g_active.store(false, std::memory_order_relaxed);
      break;
    }
    done += static_cast<size_t>(n);
  }
  g_buffered = 0;
  errno = saved_errno;
}

// Appends bytes to the buffer (lock held), flushing it when full.
void put_bytes(const unsigned char* bytes, size_t n) {
  if (g_buffered + n > kBufferBytes) flush_locked();
  for (size_t i = 0; i < n; ++i) g_buffer[g_buffered++] = bytes[i];
  g_written += n;
}

// Appends v as a LEB128 varint to out; returns the new end.
unsigned char* put_varint(unsigned char* out, uint64_t v) {
  while (v >= 0x80) {
    *out++ = static_cast<unsigned char>(v | 0x80);
    v >>= 7;
  }
  *out++ = static_cast<unsigned char>(v);
  return out;
}

// At the first call of each window (lock held): decides whether the window is recorded and
// writes its marker. The stride doubles each time the file passes half of the room that was
// left (1/2, 3/4, 7/8 ... of the bound), so a long run keeps its start and evenly thinned
// samples of the rest, and the file never passes the bound.
void window_starts(uint64_t window) {
  while (g_stride < (uint64_t{1} << 40) && g_written > g_max_bytes - g_max_bytes / (2 * g_stride)) g_stride *= 2;
  g_window_recorded = window % g_stride == 0 && g_written + 2 * kMaxRecordBytes <= g_max_bytes;
  if (!g_window_recorded) return;
  unsigned char record[kMaxRecordBytes];
  record[0] = static_cast<unsigned char>(TraceOp::kWindow);
  put_bytes(record, static_cast<size_t>(put_varint(record + 1, window) - record));
}

// Builds "path" with %p replaced by the process id into out (capacity n); false when it
// does not fit.
bool expand_path(const char* path, char* out, size_t n) {
  size_t at = 0;
  for (const char* c = path; *c != '\0'; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      TextBuffer pid;
      pid.dec(static_cast<uint64_t>(::getpid()));
      for (size_t i = 0; i < pid.size(); ++i) {
        if (at + 1 >= n) return false;
        out[at++] = pid.c_str()[i];
      }
      ++c;
      continue;
    }
    if (at + 1 >= n) return false;
    out[at++] = *c;
  }
  out[at] = '\0';
  return true;
}

// At exit (or when the library is unloaded): the buffer goes to the file, and calls made by
// later destructors are not recorded. A destructor function, like the statistics report.
__attribute__((destructor)) void trace_at_exit() {
  if (!g_active.load(std::memory_order_relaxed)) return;
  LockGuard guard(g_lock);
  if (g_fd < 0) return;
  flush_locked();
  g_active.store(false, std::memory_order_relaxed);
  ::close(g_fd);
  g_fd = -1;
}

}  // namespace

bool trace_active() { return g_active.load(std::memory_order_relaxed); }

void trace_start(const char* path, size_t max_bytes) {
  char expanded[4096];
  const int saved_errno = errno;
  const int fd = expand_path(path, expanded, sizeof expanded)
                     ? ::open(expanded, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                     : -1;
  if (fd < 0) {
    TextBuffer b;
    b.str("tinymalloc: warning: cannot create the trace file '").str(path).str("' (trace off)\n");
    (void)!::write(STDERR_FILENO, b.c_str(), b.size());
    errno = saved_errno;
    return;
  }
  errno = saved_errno;
  LockGuard guard(g_lock);
  g_fd = fd;
  g_max_bytes = max_bytes < 4096 ? 4096 : max_bytes;
  put_bytes(reinterpret_cast<const unsigned char*>(kMagic), sizeof kMagic);
  unsigned char window_calls[10];
  put_bytes(window_calls, static_cast<size_t>(put_varint(window_calls, kWindowCalls) - window_calls));
  g_active.store(true, std::memory_order_relaxed);
}

void trace_record(TraceOp op, size_t size, size_t alignment, const void* in, const void* out) {
  if (!g_active.load(std::memory_order_relaxed)) return;
  if (t_thread == 0) t_thread = g_next_thread.fetch_add(1, std::memory_order_relaxed);
  unsigned char record[kMaxRecordBytes];
  record[0] = static_cast<unsigned char>(op);
  unsigned char* end = put_varint(record + 1, t_thread);
  switch (op) {
    case TraceOp::kMalloc:
    case TraceOp::kCalloc:
      end = put_varint(put_varint(end, size), reinterpret_cast<uintptr_t>(out));
      break;
    case TraceOp::kAligned:
      end = put_varint(put_varint(put_varint(end, alignment), size), reinterpret_cast<uintptr_t>(out));
      break;
    case TraceOp::kFree:
      end = put_varint(end, reinterpret_cast<uintptr_t>(in));
      break;
    case TraceOp::kRealloc:
      end = put_varint(put_varint(put_varint(end, reinterpret_cast<uintptr_t>(in)), size),
                       reinterpret_cast<uintptr_t>(out));
      break;
    case TraceOp::kWindow:
      return;
  }
  LockGuard guard(g_lock);
  if (g_fd < 0) return;
  if (g_calls % kWindowCalls == 0) window_starts(g_calls / kWindowCalls);
  ++g_calls;
  if (!g_window_recorded) return;
  const size_t n = static_cast<size_t>(end - record);
  if (g_written + n > g_max_bytes) {
    g_window_recorded = false;  // full: the rest of the window is dropped
    return;
  }
  put_bytes(record, n);
}

void trace_fork_child() {
  g_lock.reset();  // the forking thread holds no allocator lock here, but another thread may
  g_active.store(false, std::memory_order_relaxed);
  if (g_fd >= 0) ::close(g_fd);
  g_fd = -1;
  g_buffered = 0;
}

}  // namespace tmalloc
