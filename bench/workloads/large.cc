// large: large-object churn (after mimalloc-bench "malloc-large").
//
// Each thread keeps --live slots (default 4); --ops operations in all are split evenly over the
// threads. An operation picks a random slot, verifies and frees
// its block and allocates a new one of a log-uniform size in --min..--max (256 KiB .. 64 MiB),
// writing one word in every 4 KiB page (every page is touched, so each fresh mapping costs its page
// faults). The allocator's choice between reusing freed memory, mremap and fresh mappings decides
// the time here; the peak RSS shows how much it keeps.
//
// Result line: large threads=N ops=<allocations> checksum=0x... time_s=... minflt=<page faults>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "large";
constexpr size_t kPage = 4096;

struct Block {
  void* p = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
};

// On its own cache line: the threads' counters must not false-share (the benchmark would
// measure itself).
struct alignas(64) Worker {
  uint64_t sum = 0;
  bool ok = true;
};

void run(Worker* w, uint64_t tid, uint64_t live, uint64_t ops, uint64_t min, uint64_t max) {
  bench::Rng rng(0x1a46e000 + tid);
  std::vector<Block> slots(live);
  auto retire = [&](Block& b) {
    w->sum += bench::check_block(b.p, b.size, b.tag, &w->ok, kPage);
    free(b.p);
    b.p = nullptr;
  };
  for (uint64_t i = 0; i < ops; i++) {
    Block& b = slots[rng.below(live)];
    if (b.p) retire(b);
    b.size = rng.log_uniform(min, max);
    b.tag = rng.next();
    b.p = bench::xmalloc(kName, b.size);
    bench::fill_block(b.p, b.size, b.tag, kPage);
  }
  for (Block& b : slots)
    if (b.p) retire(b);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t live = args.u64("live", 4);
  uint64_t ops = args.u64("ops", 200);
  uint64_t min = args.u64("min", 256 * 1024);
  uint64_t max = args.u64("max", 64 * 1024 * 1024);
  args.finish("large-object churn, every page touched; --ops in all, --live per thread");
  if (threads == 0 || live == 0 || min < 8 || max < min) bench::fail(kName, "bad parameters");

  std::vector<Worker> workers(threads);
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = bench::now_s();
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < threads; t++)
    ts.emplace_back(run, &workers[t], t, live, bench::share(ops, threads, t), min, max);
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
