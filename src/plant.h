// Planted bugs: the harness's own test. A build with -DTM_PLANT=N compiles in bug N
// (0 = none, the default); ci/plant-check builds each one and proves the harness catches it.
//   1  medium split leaves a remainder one granule (16 B) too large: overlaps the block
//   2  medium free does not coalesce with a free next block
//   3  medium coalescing crosses the segment end (merges with the end sentinel)
//   4  small allocation clears the wrong bitmap bit (index ^ 1)
//   5  realloc copies the new size instead of min(old, new)
//   6  medium in-place grow does not check that the next block is free
//   7  calloc skips zeroing a reused (dirty) block
//   8  aligned allocation above a page returns a block misaligned by 16 B
//   9  usable size of small blocks overstated by 16 B
//  10  medium in-place realloc does not update the requested-bytes statistic
//  11  remote-free push and drain without release/acquire ordering (relaxed CAS / exchange)
//  12  a drained remote-free list read without synchronisation (load + store instead of an
//      atomic exchange: a concurrent push is lost)
//  13  the segment pool's lock skipped on the migration path (arena <-> pool)
//  14  a thread cache not flushed at thread exit (its blocks are stranded)
#pragma once

#ifndef TM_PLANT
#define TM_PLANT 0
#endif

// True in the build that plants bug n.
#define TM_PLANT_IF(n) (TM_PLANT == (n))
