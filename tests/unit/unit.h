/* Shared includes for the cmocka unit tests. Each tests/unit/test_<module>.c is one program
 * run in its own process by tests/run.sh. */
#ifndef CD_UNIT_H
#define CD_UNIT_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "base/base.h"
#endif
