/* The data directory: where the database and keys live, and opening them together. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli_int.h"
#include "crypto/crypto.h"

enum cd_err cd__cli_data_dir_check(const char *data_dir)
{
    struct stat st;

    if (stat(data_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cd_err_set(CD_ERR_IO, "%s is not a data directory; run 'candor init --data %s'",
                          data_dir, data_dir);
    /* As ssh does for keys: the directory holds the master key, the signing key, the admin
     * token and the database, so nobody but its owner may list, read or change it. */
    if (st.st_mode & 077)
        return cd_err_set(CD_ERR_IO, "the data directory %s is accessible by group or others "
                                     "(mode %04o); it holds keys and personal data: run "
                                     "'chmod 700 %s'",
                          data_dir, (unsigned)(st.st_mode & 07777), data_dir);
    if (st.st_uid != geteuid())
        return cd_err_set(CD_ERR_IO, "the data directory %s belongs to another user (uid %u); "
                                     "run candor as its owner",
                          data_dir, (unsigned)st.st_uid);
    return CD_OK;
}

enum cd_err cd__cli_env_open(const char *data_dir, const char *db_url, struct cd__cli_env *env)
{
    enum cd_err err;
    char url[CD__CLI_PATH_MAX];

    memset(env, 0, sizeof *env);
    if (data_dir == NULL)
        return cd_err_set(CD_ERR_INVALID, "--data DIR is required");
    if ((err = cd__cli_data_dir_check(data_dir)) != CD_OK)
        return err;
    if ((err = cd_crypto_init()) != CD_OK)
        return err;
    if ((err = cd_crypto_master_key_load(data_dir, env->master, NULL)) != CD_OK)
        return err;
    if (db_url)
        snprintf(url, sizeof url, "%s", db_url);
    else
        snprintf(url, sizeof url, "%s/candor.db", data_dir);
    if ((err = cd_store_open(url, &env->store)) != CD_OK)
        goto fail;
    if ((err = cd_core_open(env->store, env->master, &env->core)) != CD_OK)
        goto fail;
    return CD_OK;
fail:
    cd__cli_env_close(env);
    return err;
}

void cd__cli_env_close(struct cd__cli_env *env)
{
    cd_core_close(env->core);
    cd_store_close(env->store);
    cd_crypto_wipe(env->master, sizeof env->master);
    env->core = NULL;
    env->store = NULL;
}

enum cd_err cd__cli_write_secret_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t n = strlen(text);

    if (fd < 0)
        return cd_err_set(CD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    if (write(fd, text, n) != (ssize_t)n || fsync(fd) != 0) {
        close(fd);
        return cd_err_set(CD_ERR_IO, "cannot write %s", path);
    }
    close(fd);
    return CD_OK;
}

int cd__cli_fail(const char *cmd, enum cd_err err)
{
    const char *d = cd_err_detail();

    fprintf(stderr, "candor %s: %s\n", cmd, d[0] ? d : cd_err_name(err));
    return err == CD_ERR_INVALID ? 2 : 1;
}
