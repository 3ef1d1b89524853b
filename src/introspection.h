// The snapshot behind tm_stats, tm_class_stats, tm_arena_stats and tm_stats_print.
#pragma once

#include <cstddef>

#include "tinymalloc.h"

namespace tmalloc {

// Fills *out (as tm_stats), classes[0 .. TM_SMALL_CLASS_COUNT) when not null, and
// arena_rows[i] for slot i < min(max_arenas, used) when not null, all in one pass with
// every lock held in the global order (fork.h). Returns the arena slots in use. Never
// allocates.
size_t stats_snapshot(tm_stats_t* out, tm_class_stats_t* classes, tm_arena_stats_t* arena_rows, size_t max_arenas);

}  // namespace tmalloc
