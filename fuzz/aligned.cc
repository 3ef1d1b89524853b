// Fuzz target aligned: aligned_alloc / posix_memalign heavy programs (profile "aligned"),
// including invalid alignments (EINVAL), alignments above TM_MAX_ALIGNMENT and impossible
// sizes, mixed with frees and reallocs of aligned blocks.
#include "generic_target.h"

TM_HARNESS_FUZZ_TARGET("aligned", tmh::Profile::kAligned)
