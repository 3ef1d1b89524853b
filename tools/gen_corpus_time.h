// Seeds of format v3 (advance_time) for tm_gen_corpus: programs that let virtual time pass
// the purge delay, so the upkeep's purges and sweeps and the reuse of purged memory are
// explored deterministically (harness/FORMAT.md "Virtual time (v3)").
#pragma once

#include <string>
#include <vector>

#include "tm_harness.h"

namespace tmtools {

// The time seeds of one op-program target (heap_ops, realloc, split_coalesce, aligned,
// heap_pools); empty for any other name.
std::vector<tmh::Program> time_seeds(const std::string& target);

}  // namespace tmtools
