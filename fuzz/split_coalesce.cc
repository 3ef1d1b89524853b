// Fuzz target split_coalesce: medium-tier programs (profile "split_coalesce": sizes in
// 8 KiB .. 512 KiB, exact 16-byte multiples, sizes relative to freed blocks around the
// kMediumMinBlock split threshold, and range frees in strided / reversed orders that make
// blocks merge with one or both neighbours).
#include "generic_target.h"

TM_HARNESS_FUZZ_TARGET("split_coalesce", tmh::Profile::kSplitCoalesce)
