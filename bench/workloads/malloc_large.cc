// malloc_large: blocks of uniformly random size between 5 and 25 MiB, at most 20 live, each one
// value-initialised when allocated (after mimalloc-bench "malloc-large", which replaces a random
// one of 20 `std::make_unique<char[]>(size)` buffers per iteration; mimalloc issue #447).
//
// Unlike `large` (log-uniform sizes, one word per page), every byte of every new block is
// written, as `new char[n]()` does: an allocator that hands back fresh mappings pays every page
// fault again, one that reuses freed memory pays a memset. (malloc + memset would be turned into
// calloc by the compiler; new char[n]() is not, as in the original.) Each thread keeps --live slots;
// --ops allocations in all are split evenly over the threads.
//
// Result line: malloc_large threads=N ops=<allocations> checksum=0x... time_s=... minflt=<faults>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "malloc_large";
constexpr size_t kPage = 4096;
constexpr uint64_t kMiB = 1024 * 1024;

struct Block {
  void* p = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
};

// On its own cache line: the threads' counters must not false-share.
struct alignas(64) Worker {
  uint64_t sum = 0;
  bool ok = true;
};

// One thread's iterations: replace a random slot's block by a new, zeroed one of random size.
void run(Worker* w, uint64_t tid, uint64_t live, uint64_t ops, uint64_t min, uint64_t max, bool use_calloc) {
  bench::Rng rng(0x3a11a26e + tid);
  std::vector<Block> slots(live);
  auto retire = [&](Block& b) {
    w->sum += bench::check_block(b.p, b.size, b.tag, &w->ok, kPage);
    if (use_calloc) {
      free(b.p);
    } else {
      delete[] static_cast<char*>(b.p);
    }
    b.p = nullptr;
  };
  for (uint64_t i = 0; i < ops; i++) {
    Block& b = slots[rng.below(live)];
    if (b.p) retire(b);
    b.size = rng.range(min, max);
    b.tag = rng.next();
    // Value-initialised (zeroed) as make_unique<char[]> does, or by calloc (--calloc 1).
    b.p = use_calloc ? calloc(1, b.size) : new char[b.size]();
    if (!b.p) bench::fail(kName, "calloc returned NULL");
    bench::fill_block(b.p, b.size, b.tag, kPage);
  }
  for (Block& b : slots)
    if (b.p) retire(b);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t live = args.u64("live", 20);
  uint64_t ops = args.u64("ops", 1000);
  uint64_t min = args.u64("min", 5 * kMiB);
  uint64_t max = args.u64("max", 25 * kMiB);
  bool use_calloc = args.u64("calloc", 0) != 0;
  args.finish(
      "5-25 MiB blocks of uniform random size, <= --live per thread, each zeroed (new char[n](), or calloc with "
      "--calloc 1); --ops in all");
  if (threads == 0 || live == 0 || min < 8 || max < min) bench::fail(kName, "bad parameters");

  std::vector<Worker> workers(threads);
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = bench::now_s();
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < threads; t++)
    ts.emplace_back(run, &workers[t], t, live, bench::share(ops, threads, t), min, max, use_calloc);
  for (std::thread& t : ts) t.join();
  double t1 = bench::now_s();
  getrusage(RUSAGE_SELF, &r1);
  uint64_t checksum = 0;
  for (Worker& w : workers) {
    if (!w.ok) bench::fail(kName, "a large block's contents changed while it was live");
    checksum += w.sum;
  }
  bench::print_result(kName, threads, ops, checksum, t1 - t0, "minflt=" + std::to_string(r1.ru_minflt - r0.ru_minflt));
  return 0;
}
