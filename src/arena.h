// Arenas: independent heaps, each with its own small size-class runs, segments and medium
// tier, each lock-protected on its own. A thread uses one arena for its slow paths (cache
// refills, medium allocations). With the default arena_select=cpu a new thread starts in
// the arena with the fewest live threads, the lowest such index (a thread started after
// another exited takes the arena that one left; a lone thread uses arena 0). When locks of
// its arena are found busy, it moves to the arena of the CPU it runs on (sched_getcpu; a
// thread already there stays, and the thread it collides with, from another CPU, moves
// away). Threads that run side by side thus start in arenas of their own: two threads
// allocating from the runs of one arena get blocks that share cache lines, and thread
// caches rarely meet a busy lock that would separate them (measured: larson with 2 threads
// ran 0.38 s in one arena, 0.31 s in two). arena_select=thread assigns arenas round-robin
// per thread instead (and steps to the next one on contention).
//
// Why a thread that migrates between CPUs mid-operation is still correct: the arena choice
// is only a locality hint, never an ownership claim. Every structure of an arena is guarded
// by that arena's locks, and the owner of a block is recorded in its segment (not derived
// from the CPU), so an operation that started for arena A on CPU 0 and finishes on CPU 1
// still takes A's locks and returns blocks to A. The worst outcome is contention with a
// thread that now runs on A's CPU, which the try-lock fallback resolves by moving on.
#pragma once

#include "config.h"

namespace tmalloc {

// Number of arenas threads choose from (1 until the runtime is initialised): the `arenas`
// option, or one per CPU this process may run on; at most kMaxArenas.
unsigned arena_count();

// Picks an arena for a thread: `previous` is the thread's current arena + 1 (0 = none yet)
// and `contended` tells whether its lock was found busy. The result is < arena_count().
unsigned arena_select(unsigned previous, bool contended);

// Counts a thread in arena `index` (its cache became active there) and out of it (the
// thread moved on or exited); arena_select places a new thread by these counts.
void arena_occupant_enter(unsigned index);
void arena_occupant_leave(unsigned index);

// Threads counted in arena `index` (statistics and tests).
int arena_occupants(unsigned index);

// Arenas [0, arenas_used()) have been touched; heap checks and stats visit only these.
unsigned arenas_used();

// Marks arena slot `index` used before its structures are touched (first use only locks).
void arena_note_used(unsigned index);

// Whether arena slot `index` (< arenas_used()) was ever used: whole-heap walks and lock-all
// loops skip the others, whose structures are still in their zero state (slots below a
// memory pool's slot that no arena ever took).
bool arena_touched(unsigned index);

// tm_test_reset: one used arena, no occupants, the round-robin choice starts over.
void arena_reset_for_test();

// Serialises arena activation with whole-heap walks: taken first by lock_everything.
void arena_activation_lock();
void arena_activation_unlock();

// Counts the CPUs this process may run on (runtime init; no allocation).
void arena_init();

}  // namespace tmalloc
