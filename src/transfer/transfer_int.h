/* Inside the transfer module only. */
#ifndef CD_TRANSFER_INT_H
#define CD_TRANSFER_INT_H

#include "transfer.h"

struct cd_transfer_map {
    char delim;
    json_t *columns; /* CSV column -> field */
    json_t *values;  /* field -> constant */
    json_t *index;   /* field -> column index, after cd_transfer_map_header */
    size_t ncols;
};

#endif
