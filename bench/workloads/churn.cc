// churn: random allocation and free over a live set, sizes log-uniform in 8 B .. 64 KiB.
//
// The --slots slots and the --ops operations are split evenly over the threads; each thread works on
// its own slots. An operation picks a random slot: a live block there is verified
// and freed, an empty slot gets a new block of a log-uniform random size in --min..--max (every
// power of two equally likely), filled with one word per 256 B (every page is touched). About half
// of the slots are live in the steady state. This spreads over all three of tinymalloc's tiers
// (small <= 8 KiB, medium above) and measures fragmentation through the peak RSS.
//
// --heapmap PATH: tinymalloc's heap map (tm_heap_map) of the steady state, once every thread has
// done its operations and before the live sets are freed (SVG when PATH ends in .svg).
//
// Result line: churn threads=N ops=<mallocs + frees> checksum=0x... time_s=...
#include <barrier>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "churn";
constexpr size_t kStride = 256;

struct Block {
  void* p = nullptr;
  uint32_t size = 0;
  uint64_t tag = 0;
};

// On its own cache line: the threads' counters must not false-share (the benchmark would
// measure itself).
struct alignas(64) Worker {
  uint64_t sum = 0;
  bool ok = true;
};

// Steady-state hook: every thread waits here after its operations; the heap map is written
// while they all hold their live sets.
struct SteadyState {
  std::barrier<>* done_ops;
  const char* heapmap;
};

void run(Worker* w, uint64_t tid, uint64_t slots, uint64_t ops, uint64_t min, uint64_t max, SteadyState steady) {
  bench::Rng rng(0xc4a2000 + tid);
  std::vector<Block> live(slots);
  for (uint64_t i = 0; i < ops; i++) {
    Block& b = live[rng.below(slots)];
    if (b.p) {
      w->sum += bench::check_block(b.p, b.size, b.tag, &w->ok, kStride);
      free(b.p);
      b.p = nullptr;
    } else {
      b.size = static_cast<uint32_t>(rng.log_uniform(min, max));
      b.tag = rng.next();
      b.p = bench::xmalloc(kName, b.size);
      bench::fill_block(b.p, b.size, b.tag, kStride);
    }
  }
  if (steady.heapmap != nullptr) {
    steady.done_ops->arrive_and_wait();
    if (tid == 0) bench::write_heap_map(kName, steady.heapmap);  // a failure is said on stderr
    steady.done_ops->arrive_and_wait();
  }
  for (Block& b : live) {
    if (!b.p) continue;
    w->sum += bench::check_block(b.p, b.size, b.tag, &w->ok, kStride);
    free(b.p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t slots = args.u64("slots", 10000);
  uint64_t ops = args.u64("ops", 1500000);
  uint64_t min = args.u64("min", 8);
  uint64_t max = args.u64("max", 65536);
  const char* heapmap = args.str("heapmap", nullptr);
  args.finish("random malloc/free over a live set, log-uniform sizes; --ops and --slots in all");
  if (threads == 0 || slots < threads || min < 8 || max < min || max > UINT32_MAX) bench::fail(kName, "bad parameters");

  std::vector<Worker> workers(threads);
  std::barrier<> done_ops(static_cast<std::ptrdiff_t>(threads));
  const SteadyState steady{&done_ops, heapmap};
  double t0 = bench::now_s();
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < threads; t++)
    ts.emplace_back(run, &workers[t], t, bench::share(slots, threads, t), bench::share(ops, threads, t), min, max,
                    steady);
  for (std::thread& t : ts) t.join();
  double t1 = bench::now_s();
  uint64_t checksum = 0;
  for (Worker& w : workers) {
    if (!w.ok) bench::fail(kName, "a block's contents changed while it was live");
    checksum += w.sum;
  }
  bench::print_result(kName, threads, ops, checksum, t1 - t0);
  return 0;
}
