/* The structured logger: one JSON object per line on stderr, written with a single write(2)
 * so lines from different threads never interleave. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <unistd.h>
#include "base.h"

static enum cd_log_level min_level = CD_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cd_log_set_level(enum cd_log_level min)
{
    min_level = min;
}

void cd_log(enum cd_log_level level, const char *msg, const char *fields_fmt, ...)
{
    char line[2048], ts[CD_TIME_STRLEN];
    int n, m = 0;
    va_list ap;

    if (level < min_level)
        return;
    cd_time_format(cd_now_ms(), ts);
    n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"", ts,
                 level_names[level], msg);
    if (n < 0 || (size_t)n >= sizeof line - 3)
        return;
    if (fields_fmt && fields_fmt[0]) {
        line[n++] = ',';
        va_start(ap, fields_fmt);
        m = vsnprintf(line + n, sizeof line - (size_t)n - 2, fields_fmt, ap);
        va_end(ap);
        if (m < 0)
            m = 0;
        if ((size_t)m > sizeof line - (size_t)n - 3)
            m = (int)(sizeof line - (size_t)n - 3);
    }
    n += m;
    line[n++] = '}';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

const char *cd_log_safe(const char *s, char *out, size_t n)
{
    size_t o = 0;

    if (n == 0)
        return "";
    for (; s && *s && o + 1 < n; s++) {
        char c = *s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == ':' || c == '/' || c == '-')
            out[o++] = c;
        else
            out[o++] = '?';
    }
    out[o] = '\0';
    return out;
}
