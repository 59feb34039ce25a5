/* base, for tests only: replacing the clock. Defined in testing.c, which the candor binary
 * does not link. */
#ifndef CD_BASE_TESTING_H
#define CD_BASE_TESTING_H

#include <stdatomic.h>
#include "base.h"

/* Makes cd_now_ms return now_ms() in every thread; NULL restores the real clock. */
void cd_clock_override(int64_t (*now_ms)(void));

/* The override cd_now_ms consults (time.c). */
extern _Atomic(int64_t (*)(void)) cd__clock_fn;

#endif
