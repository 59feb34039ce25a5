/* Shared includes for the cmocka unit tests. Each tests/unit/test_<module>.c is one program
 * run in its own process by tests/run.sh. */
#ifndef CD_UNIT_H
#define CD_UNIT_H
#include <setjmp.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "base/base.h"

/* Removes a test's SQLite database with its WAL and shared-memory files. */
static inline void unit_db_remove(const char *path)
{
    char p[CD_PATH_MAX + 8];

    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}
#endif
