/* Inside the retention module only. */
#ifndef CD_RETENTION_INT_H
#define CD_RETENTION_INT_H

#include "retention.h"

#endif
