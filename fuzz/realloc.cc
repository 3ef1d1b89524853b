// Fuzz target realloc: realloc-heavy programs (profile "realloc": alias opcodes favour
// realloc, alias size categories favour sizes relative to the block's own size and usable
// size, so in-place grow/shrink, split-on-shrink and move paths are hit).
#include "generic_target.h"

TM_HARNESS_FUZZ_TARGET("realloc", tmh::Profile::kRealloc)
