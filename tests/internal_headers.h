// The allocator's internal headers, for white-box tests of the pieces that need no heap:
// size classes, bitmaps, the best-fit index, report formatting. Tests refer to the core's namespace as `tmi`.
#pragma once

#include "bitmap.h"
#include "config.h"
#include "fit_index.h"
#include "medium_block.h"
#include "medium_cache.h"
#include "size_class.h"
#include "text_buffer.h"

// The core's namespace (not `tm`: that name belongs to struct tm of <time.h>).
namespace tmi = ::tmalloc;
