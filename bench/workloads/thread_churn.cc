// thread_churn: many short-lived threads (after mimalloc-bench "mleak" and the thread phases of
// "mstress").
//
// --count threads (default 10000) are created and joined in waves of --wave threads at a time
// (default 4 x --threads). Each thread allocates --blocks blocks (16..1024 B, filled), verifies and
// frees all but --leave of them in random order, and hands those over to the main thread. The main
// thread keeps the handed-over blocks in a FIFO of --keep blocks and frees (after verifying) the
// oldest ones once it is full, so blocks of dead threads are freed long after their thread exited.
// An allocator that keeps per-thread state must reclaim it at thread exit or the RSS grows with the
// number of threads created: the RSS is sampled after every wave and the running maximum is
// reported at 10%, 50% and 100% of the threads, plus the RSS once all threads are joined and once
// everything is freed. Flat numbers mean no per-thread leak.
//
// Result line: thread_churn threads=N ops=<threads created> checksum=0x... time_s=...
//              rss_max_10_kib=... rss_max_50_kib=... rss_max_100_kib=... rss_joined_kib=... rss_end_kib=...
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "thread_churn";

struct Block {
  void* p = nullptr;
  uint32_t size = 0;
  uint64_t tag = 0;
};

struct Job {
  uint64_t index = 0;
  uint64_t sum = 0;
  bool ok = true;
  std::vector<Block> handed;  // reserved by main, filled by the thread
};

void run(Job* job, uint64_t blocks, uint64_t leave) {
  bench::Rng rng(0x7c4a0000 + job->index);
  Block local[1024];
  for (uint64_t i = 0; i < blocks; i++) {
    Block& b = local[i];
    b.size = static_cast<uint32_t>(rng.range(16, 1024));
    b.tag = rng.next();
    b.p = bench::xmalloc(kName, b.size);
    bench::fill_block(b.p, b.size, b.tag);
  }
  // Shuffle, free the first blocks - leave, hand over the rest.
  for (uint64_t i = blocks - 1; i > 0; i--) std::swap(local[i], local[rng.below(i + 1)]);
  for (uint64_t i = 0; i < blocks - leave; i++) {
    job->sum += bench::check_block(local[i].p, local[i].size, local[i].tag, &job->ok);
    free(local[i].p);
  }
  for (uint64_t i = blocks - leave; i < blocks; i++) job->handed.push_back(local[i]);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t count = args.u64("count", 10000);
  uint64_t wave = args.u64("wave", 4 * threads);
  uint64_t blocks = args.u64("blocks", 256);
  uint64_t leave = args.u64("leave", 16);
  uint64_t keep = args.u64("keep", 4096);
  args.finish("short-lived threads in waves; RSS flatness over thread count");
  if (count == 0 || wave == 0 || blocks == 0 || blocks > 1024 || leave > blocks || keep == 0)
    bench::fail(kName, "bad parameters");

  uint64_t checksum = 0;
  bool ok = true;
  std::vector<Block> fifo(keep);  // ring of blocks handed over by dead threads
  uint64_t fifo_head = 0, fifo_len = 0;
  auto retire = [&](Block& b) {
    checksum += bench::check_block(b.p, b.size, b.tag, &ok);
    free(b.p);
    b.p = nullptr;
  };

  std::vector<Job> jobs(wave);
  for (Job& j : jobs) j.handed.reserve(leave);
  uint64_t rss_max = 0, rss_10 = 0, rss_50 = 0, rss_100 = 0;
  double t0 = bench::now_s();
  for (uint64_t started = 0; started < count;) {
    uint64_t n = count - started < wave ? count - started : wave;
    std::vector<std::thread> ts;
    ts.reserve(n);
    for (uint64_t i = 0; i < n; i++) {
      jobs[i].index = started + i;
      jobs[i].handed.clear();
      ts.emplace_back(run, &jobs[i], blocks, leave);
    }
    for (std::thread& t : ts) t.join();
    started += n;
    for (uint64_t i = 0; i < n; i++) {
      checksum += jobs[i].sum;
      jobs[i].sum = 0;
      ok = ok && jobs[i].ok;
      for (Block& b : jobs[i].handed) {
        if (fifo_len == keep) {
          retire(fifo[fifo_head]);
          fifo_head = (fifo_head + 1) % keep;
          fifo_len--;
        }
        fifo[(fifo_head + fifo_len) % keep] = b;
        fifo_len++;
      }
    }
    uint64_t rss = bench::rss_bytes();
    if (rss > rss_max) rss_max = rss;
    // Progress points: the running maximum once 10%, 50% and 100% of the threads have finished.
    if (started * 10 >= count && rss_10 == 0) rss_10 = rss_max;
    if (started * 2 >= count && rss_50 == 0) rss_50 = rss_max;
  }
  rss_100 = rss_max;
  uint64_t rss_joined = bench::rss_bytes();
  for (uint64_t i = 0; i < fifo_len; i++) retire(fifo[(fifo_head + i) % keep]);
  double t1 = bench::now_s();
  uint64_t rss_end = bench::rss_bytes();
  if (!ok) bench::fail(kName, "a block's contents changed while it was live");

  char extra[256];
  snprintf(extra, sizeof extra,
           "rss_max_10_kib=%llu rss_max_50_kib=%llu rss_max_100_kib=%llu rss_joined_kib=%llu rss_end_kib=%llu",
           static_cast<unsigned long long>(rss_10 / 1024), static_cast<unsigned long long>(rss_50 / 1024),
           static_cast<unsigned long long>(rss_100 / 1024), static_cast<unsigned long long>(rss_joined / 1024),
           static_cast<unsigned long long>(rss_end / 1024));
  bench::print_result(kName, threads, count, checksum, t1 - t0, extra);
  return 0;
}
