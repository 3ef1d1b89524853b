// Fuzz target heap_ops: general op programs (harness/FORMAT.md, profile "general") against
// tinymalloc with every shadow-heap check. See fuzz/generic_target.h for the switches.
#include "generic_target.h"

TM_HARNESS_FUZZ_TARGET("heap_ops", tmh::Profile::kGeneral)
