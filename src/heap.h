// Memory pools (tm_heap_*, heap.cc): what the rest of the allocator needs of the pool table.
#pragma once

namespace tmalloc {

// tm_test_reset: true when no memory pool exists (every tm_heap_create was destroyed).
bool heaps_none_live();
// tm_test_reset (heaps_none_live() held, no other thread in the allocator): the pool table
// back in its zero state.
void heaps_reset_for_test();

}  // namespace tmalloc
