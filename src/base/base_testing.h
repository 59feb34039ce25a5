/* base, for tests only: replacing the clock (defined in testing.c, which the candor binary
 * does not link), and the id encoder's paths one by one. */
#ifndef CD_BASE_TESTING_H
#define CD_BASE_TESTING_H

#include <stdatomic.h>
#include "base.h"

/* Makes cd_now_ms return now_ms() in every thread; NULL restores the real clock. */
void cd_clock_override(int64_t (*now_ms)(void));

/* The two paths of cd_id_digits (codec.c), each forced, so a test can compare them: the
 * portable one, and the AVX-512 VBMI one, which returns false and writes nothing when the CPU
 * (or the build's target) lacks it. */
void cd__id_digits_portable(const uint8_t raw[16], char out[CD_ID_DIGITS_ROOM]);
bool cd__id_digits_vbmi(const uint8_t raw[16], char out[CD_ID_DIGITS_ROOM]);

/* The override cd_now_ms consults (time.c). */
extern _Atomic(int64_t (*)(void)) cd__clock_fn;

#endif
