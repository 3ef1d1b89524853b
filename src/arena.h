// Arenas: independent heaps, each with its own small size-class runs, segments and medium
// tier, each lock-protected on its own. A thread uses one arena for its slow paths (cache
// refills, medium allocations). With the default arena_select=cpu a new thread starts in
// arena 0 and, when locks of its arena are found busy, moves to the arena of the CPU it runs
// on (sched_getcpu; a thread already there stays, and the thread it collides with, from
// another CPU, moves away). Threads that never contend thus share one heap (no memory
// spread over arenas), and threads that collide spread out over the CPUs' arenas. arena_select=thread assigns arenas
// round-robin per thread instead (and steps to the next one on contention).
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

// Arenas [0, arenas_used()) have been touched; heap checks and stats visit only these.
unsigned arenas_used();

// Marks arena `index` used before its structures are touched (first use only locks).
void arena_note_used(unsigned index);

// Serialises arena activation with whole-heap walks: taken first by lock_everything.
void arena_activation_lock();
void arena_activation_unlock();

// Counts the CPUs this process may run on (runtime init; no allocation).
void arena_init();

}  // namespace tmalloc
