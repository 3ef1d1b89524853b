// Fuzz target heap_pools: memory-pool programs (harness/FORMAT.md "Memory pool ops (v2)",
// profile "heap_pools"). Inputs with a v2 header (version nibble >= 2) decode opcodes 16-26
// as the pool ops (tm_heap_create / malloc / calloc / realloc / free / reset / destroy /
// stats, range allocations and the 64-pool limit) and weight them over the v1 ops in the
// aliases 27-63; pool blocks are freed and reallocated with plain free / realloc too.
// Inputs with a v1 header decode as heap_ops inputs. See fuzz/generic_target.h for the
// switches (TM_HARNESS_BACKEND=system emulates the pools over the process's malloc).
#include "generic_target.h"

TM_HARNESS_FUZZ_TARGET("heap_pools", tmh::Profile::kPools)
