// realloc_build: strings and vectors built by appending, growing with realloc.
//
// Each thread keeps --live buffers under construction at once and appends 1..64 bytes to a random one
// of them at each step; --appends steps in all are split evenly over the threads. Half of the buffers grow to exactly
// the new length on every append (a realloc per append, the worst case for an allocator without in-place growth), the
// other half grow their capacity by 1.5x (std::vector-like). A buffer's final length is log-uniform
// in 16 B .. --max (default 256 KiB); when it is reached the whole buffer is verified byte by byte,
// hashed and freed, and a new buffer starts. Interleaving several buffers means the neighbour of a
// growing block is often taken, so in-place growth is not always possible.
//
// Result line: realloc_build threads=N ops=<appends> checksum=0x... time_s=...
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "realloc_build";

struct Buffer {
  unsigned char* p = nullptr;
  size_t len = 0, cap = 0, target = 0;
  uint64_t seed = 0;
  bool exact = false;
};

inline unsigned char byte_at(uint64_t seed, size_t i) {
  return static_cast<unsigned char>((i * 131 + seed) ^ (i >> 7) ^ (seed >> 13));
}

// On its own cache line: the threads' counters must not false-share (the benchmark would
// measure itself).
struct alignas(64) Worker {
  uint64_t sum = 0;
  uint64_t reallocs = 0;
  bool ok = true;
};

void start(Buffer& b, bench::Rng& rng, uint64_t max) {
  b.p = nullptr;
  b.len = b.cap = 0;
  b.target = rng.log_uniform(16, max);
  b.seed = rng.next();
  b.exact = (rng.next() & 1) != 0;
}

void finish(Worker* w, Buffer& b) {
  uint64_t h = 0;
  for (size_t i = 0; i < b.len; i++) {
    if (b.p[i] != byte_at(b.seed, i)) w->ok = false;
    h = h * 31 + b.p[i];
  }
  w->sum += bench::mix64(h ^ b.len);
  free(b.p);
  b.p = nullptr;
}

void run(Worker* w, uint64_t tid, uint64_t live, uint64_t appends, uint64_t max) {
  bench::Rng rng(0x4ea110c + tid);
  std::vector<Buffer> bufs(live);
  for (Buffer& b : bufs) start(b, rng, max);
  for (uint64_t i = 0; i < appends; i++) {
    Buffer& b = bufs[rng.below(live)];
    size_t k = rng.range(1, 64);
    if (b.len + k > b.cap) {
      size_t cap = b.exact ? b.len + k : (b.cap + b.cap / 2 > b.len + k ? b.cap + b.cap / 2 : b.len + k + 16);
      void* q = realloc(b.p, cap);
      if (!q) bench::fail(kName, "realloc returned NULL");
      b.p = static_cast<unsigned char*>(q);
      b.cap = cap;
      w->reallocs++;
    }
    for (size_t j = 0; j < k; j++) b.p[b.len + j] = byte_at(b.seed, b.len + j);
    b.len += k;
    if (b.len >= b.target) {
      finish(w, b);
      start(b, rng, max);
    }
  }
  for (Buffer& b : bufs)
    if (b.p) finish(w, b);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t live = args.u64("live", 8);
  uint64_t appends = args.u64("appends", 6000000);
  uint64_t max = args.u64("max", 256 * 1024);
  args.finish("buffers grown by realloc (exact and 1.5x growth); --appends in all, --live per thread");
  if (threads == 0 || live == 0 || max < 16) bench::fail(kName, "bad parameters");

  std::vector<Worker> workers(threads);
  double t0 = bench::now_s();
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < threads; t++)
    ts.emplace_back(run, &workers[t], t, live, bench::share(appends, threads, t), max);
  for (std::thread& t : ts) t.join();
  double t1 = bench::now_s();
  uint64_t checksum = 0, reallocs = 0;
  for (Worker& w : workers) {
    if (!w.ok) bench::fail(kName, "a buffer's contents changed across realloc");
    checksum += w.sum;
    reallocs += w.reallocs;
  }
  bench::print_result(kName, threads, appends, checksum, t1 - t0, "reallocs=" + std::to_string(reallocs));
  return 0;
}
