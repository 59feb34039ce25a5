/* The web console's files (web/), embedded when the binary is built: the generated table
 * (scripts/embed-web.py) holds each file, its gzip form, Content-Type and ETag, so the console
 * needs nothing on disk and every page a binary serves matches that binary's API. */
#include "http_int.h"

#include "web_assets.inc"
