/* Test-only entry points of base (base_testing.h). This file is linked into the unit tests, the
 * fuzz drivers and the benchmarks, never into the candor binary. */
#include "base_testing.h"

void cd_clock_override(int64_t (*now_ms)(void))
{
    atomic_store(&cd__clock_fn, now_ms);
}
