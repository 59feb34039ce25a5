/* libFuzzer driver for routing: "METHOD PATH" → route or none; captured parameters must lie
 * inside the path and never contain '/'. */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include "http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[512], *path;
    size_t index = 0;
    struct cd_str params[CD_MAX_PARAMS] = {{0}};
    bool known = false;

    if (size >= sizeof buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    if ((path = strchr(buf, ' ')) == NULL)
        return 0;
    *path++ = '\0';
    const struct cd_route *r = cd__http_route_find(buf, path, &index, params, &known);
    if (r) {
        assert(known);
        assert(index < cd__http_nroutes);
        for (size_t i = 0; i < CD_MAX_PARAMS; i++) {
            if (params[i].p == NULL)
                continue;
            assert(params[i].p >= path && params[i].p + params[i].len <= path + strlen(path));
            assert(memchr(params[i].p, '/', params[i].len) == NULL);
        }
    }
    return 0;
}
