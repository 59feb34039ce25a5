/* Where the shared files are: the guard's rule packs and the consent jurisdictions
 * (RULES/consent/jurisdictions.yaml). The same answer whatever the working directory, so
 * `candor serve` started by systemd, cron or a shell anywhere loads the same rules. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli_int.h"

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directory holding this executable, from /proc/self/exe (symlinks resolved, so a link in
 * /usr/local/bin to a tree elsewhere finds that tree). False when it cannot be known. */
static bool exe_dir(char *out, size_t n)
{
    char buf[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", buf, sizeof buf - 1);

    if (len <= 0)
        return false;
    buf[len] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash == NULL || (size_t)(slash - buf) >= n)
        return false;
    *slash = '\0';
    snprintf(out, n, "%s", buf[0] ? buf : "/");
    return true;
}

/* The checkout an executable in ROOT/build/ or ROOT/build/FLAVOUR/ was built in: ROOT must
 * hold the sources (src/cli/main.c), so a directory that only happens to be called "build"
 * does not count. */
static bool source_tree(const char *dir, char *root, size_t n)
{
    char probe[CD_PATH_MAX];

    snprintf(root, n, "%s", dir);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(root, '/');
        if (slash == NULL)
            return false;
        bool build = strcmp(slash + 1, "build") == 0;
        *slash = '\0';
        if (build) {
            snprintf(probe, sizeof probe, "%s/src/cli/main.c", root);
            return is_file(probe);
        }
    }
    return false;
}

enum cd_err cd__cli_rules_dir(const char *explicit_dir, char *out, size_t n, const char **from)
{
    char dir[PATH_MAX], root[PATH_MAX], cand[CD_PATH_MAX];
    const char *env = getenv(CD_CLI_SHARE_ENV);

    /* 1. The option, and 2. the environment: a place named on purpose is used as named (the
     * loader's error says what is wrong with it), never passed over for another. */
    if (explicit_dir) {
        *from = "--rules";
        snprintf(out, n, "%s", explicit_dir);
        return CD_OK;
    }
    if (env && *env) {
        *from = CD_CLI_SHARE_ENV;
        snprintf(out, n, "%s/rules", env);
        return CD_OK;
    }
    if (exe_dir(dir, sizeof dir)) {
        /* 3. An installed tree, wherever it was unpacked or moved: BIN/../share/candor. */
        char *slash = strrchr(dir, '/');
        snprintf(cand, sizeof cand, "%.*s/share/candor/rules",
                 slash ? (int)(slash - dir) : (int)strlen(dir), dir);
        if (is_dir(cand)) {
            *from = "installed beside the executable";
            snprintf(out, n, "%s", cand);
            return CD_OK;
        }
        /* 4. A binary still in the checkout it was built in uses that checkout's rules. */
        if (source_tree(dir, root, sizeof root)) {
            *from = "the source tree";
            snprintf(out, n, "%s/rules", root);
            if (is_dir(out))
                return CD_OK;
        }
    }
    /* 5. Where `make install` put them for the PREFIX this binary was built for. */
    *from = "compiled in";
    snprintf(out, n, "%s/rules", cd__cli_build_sharedir);
    if (is_dir(out))
        return CD_OK;
    return cd_err_set(CD_ERR_IO,
                      "no rules directory found: give --rules DIR, set %s, or install with "
                      "'make install' (looked beside the executable and in %s)",
                      CD_CLI_SHARE_ENV, out);
}
