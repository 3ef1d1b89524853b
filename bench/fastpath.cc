// Fast-path probe for bench/check-fastpath: `fastpath <size> <iterations>`.
//
// Keeps one block of <size> bytes live (so the allocator's run/page for that size never empties),
// then performs <iterations> malloc(size) + free pairs through the PLT. The allocator is whatever
// the process links or LD_PRELOADs. Built with -fno-builtin so the compiler keeps every call.
// Running it under callgrind for N and 2N iterations and subtracting gives the exact number of
// instructions of one pair, start-up and lazy binding cancelled out.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s <size> <iterations>\n", argv[0]);
    return 2;
  }
  size_t size = strtoull(argv[1], nullptr, 0);
  unsigned long long iterations = strtoull(argv[2], nullptr, 0);
  void* keep = malloc(size);
  if (!keep) return 1;
  asm volatile("" : : "r"(keep) : "memory");
  for (unsigned long long i = 0; i < iterations; i++) {
    void* p = malloc(size);
    asm volatile("" : : "r"(p) : "memory");
    free(p);
  }
  free(keep);
  return 0;
}
