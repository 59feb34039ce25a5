/* The data directory: where the keys live and which database goes with them (DIR/candor.db,
 * or the PostgreSQL database named in DIR/database.url), and opening the two together. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli_int.h"
#include "crypto/crypto.h"
#include "outbox/outbox.h"

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

/* Reads DIR/database.url into out (trailing white space dropped). Returns CD_ERR_NOT_FOUND
 * when there is none. */
static enum cd_err read_db_url_file(const char *data_dir, char *out, size_t n)
{
    char path[CD_PATH_MAX];
    struct cd_buf b = CD_BUF_INIT(CD_PATH_MAX);
    enum cd_err err;

    snprintf(path, sizeof path, "%s/%s", data_dir, CD__CLI_DB_URL_FILE);
    if (access(path, F_OK) != 0)
        return CD_ERR_NOT_FOUND;
    if ((err = cd_buf_read_file(&b, path)) != CD_OK) {
        cd_buf_free(&b);
        return cd_err_set(err, "cannot read %s: %s", path, cd_err_detail());
    }
    while (b.len && (b.p[b.len - 1] == '\n' || b.p[b.len - 1] == '\r' || b.p[b.len - 1] == ' '))
        b.len--;
    if (b.len == 0 || b.len >= n || !cd_store_url_is_pg(b.p)) {
        cd_buf_free(&b);
        return cd_err_set(CD_ERR_INVALID, "%s must hold one postgres:// or postgresql:// URL",
                          path);
    }
    snprintf(out, n, "%.*s", (int)b.len, b.p);
    cd_buf_free(&b);
    return CD_OK;
}

enum cd_err cd__cli_db_url(const char *data_dir, const char *db_url, char *out, size_t n)
{
    char sqlite[CD_PATH_MAX];
    enum cd_err err;

    snprintf(sqlite, sizeof sqlite, "%s/candor.db", data_dir);
    if ((err = read_db_url_file(data_dir, out, n)) == CD_OK) {
        if (access(sqlite, F_OK) == 0)
            return cd_err_set(CD_ERR_CONFLICT, "%s has both candor.db and %s: which database "
                                               "its keys belong to is unclear; move one away",
                              data_dir, CD__CLI_DB_URL_FILE);
    } else if (err == CD_ERR_NOT_FOUND) {
        /* Never a new instance by accident: an empty directory (a volume that failed to
         * mount, a typo) would otherwise get an empty database, and fresh keys from serve. */
        if (access(sqlite, F_OK) != 0)
            return cd_err_set(CD_ERR_IO, "%s is not an initialised data directory (no candor.db "
                                         "and no %s); run 'candor init --data %s' first",
                              data_dir, CD__CLI_DB_URL_FILE, data_dir);
        snprintf(out, n, "%s", sqlite);
    } else {
        return err;
    }
    /* The keys of a directory read the data of one database only. */
    if (db_url && strcmp(db_url, out) != 0)
        return cd_err_set(CD_ERR_CONFLICT, "--db names another database than the one %s belongs "
                                           "to (%s); leave --db out",
                          data_dir, cd_store_url_is_pg(out) ? CD__CLI_DB_URL_FILE : "candor.db");
    return CD_OK;
}

enum cd_err cd__cli_env_open(const char *data_dir, const char *db_url,
                             const struct cd_store_options *opts, struct cd__cli_env *env)
{
    enum cd_err err;
    char url[CD_PATH_MAX];

    memset(env, 0, sizeof *env);
    if (data_dir == NULL)
        return cd_err_set(CD_ERR_INVALID, "--data DIR is required");
    if ((err = cd__cli_data_dir_check(data_dir)) != CD_OK ||
        (err = cd__cli_db_url(data_dir, db_url, url, sizeof url)) != CD_OK)
        return err;
    return cd__cli_env_open_url(data_dir, url, opts, env);
}

enum cd_err cd__cli_env_open_url(const char *data_dir, const char *url,
                                 const struct cd_store_options *opts, struct cd__cli_env *env)
{
    enum cd_err err;

    memset(env, 0, sizeof *env);
    if ((err = cd_crypto_init()) != CD_OK)
        return err;
    if ((err = cd_crypto_master_key_load(data_dir, env->master, NULL)) != CD_OK)
        return err;
    if ((err = cd_store_open_with(url, opts, &env->store)) != CD_OK)
        goto fail;
    if ((err = cd_outbox_open(env->store, env->master, &env->outbox)) != CD_OK ||
        (err = cd_core_open(env->store, env->master, &env->core)) != CD_OK)
        goto fail;
    return CD_OK;
fail:
    cd__cli_env_close(env);
    return err;
}

void cd__cli_env_close(struct cd__cli_env *env)
{
    cd_core_close(env->core);
    /* Every write of this process has returned by now (the server stops first). */
    cd_outbox_close(env->outbox);
    cd_store_close(env->store);
    cd_crypto_wipe(env->master, sizeof env->master);
    env->core = NULL;
    env->store = NULL;
    env->outbox = NULL;
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
