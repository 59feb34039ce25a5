/* A full data volume, for the PostgreSQL server of tests/e2e/test_pg_faults.py, without root:
 * filling a real disk is not for a shared machine, and a small tmpfs or loop device needs mount
 * rights that CI containers and developers' accounts do not have.
 *
 * Loaded with LD_PRELOAD into the test cluster's postmaster (and so into every backend). While
 * the file named by $CANDOR_ENOSPC_FLAG exists, a write to a file under the cluster's base/
 * directory (tables and indexes) that would make the file larger fails with ENOSPC, which is
 * what the kernel answers when the volume has no free block: PostgreSQL extends a relation with
 * pwrite() past its end (mdextend), and reports "could not extend file ...: No space left on
 * device" (SQLSTATE 53100). Writes inside a file's existing size still succeed, as they do on a
 * full disk (the checkpointer overwrites pages in place). The write-ahead log is left alone: it
 * is the model of a deployment whose WAL volume still has room; when the WAL volume fills,
 * PostgreSQL stops (PANIC) and restarts, which the restart tests cover. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);

/* True when the volume is "full" and a write of len bytes at off would grow a file of base/. */
static int refused(int fd, off_t off, size_t len)
{
    const char *flag = getenv("CANDOR_ENOSPC_FLAG");
    char link[64], target[PATH_MAX];
    struct stat st;
    ssize_t n;

    if (flag == NULL || access(flag, F_OK) != 0)
        return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || off + (off_t)len <= st.st_size)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if ((n = readlink(link, target, sizeof target - 1)) <= 0)
        return 0;
    target[n] = '\0';
    return strstr(target, "/base/") != NULL;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    static pwrite_fn real;

    if (real == NULL)
        real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
    if (refused(fd, off, len)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    static pwritev_fn real;
    size_t len = 0;

    if (real == NULL)
        real = (pwritev_fn)dlsym(RTLD_NEXT, "pwritev");
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (refused(fd, off, len)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, iov, n, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
    return pwritev(fd, iov, n, off);
}
