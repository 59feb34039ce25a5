/* Key files, the master key, key derivation and the wrapping of per-customer data keys.
 *
 * A key file is created under a temporary name and link()ed into place: link never replaces an
 * existing file, so two processes racing to create the same key both end up using the winner's
 * bytes, and a reader never sees a half-written file. */
#include "crypto_int.h"
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAX 4096

void cd__crypto_hash_parts(const uint8_t *key, const struct cd_str *parts, size_t nparts,
                           uint8_t out[CD_CRYPTO_HASH_LEN])
{
    /* Short inputs (the associated data of sealed fields, at most a few hundred bytes) are
     * encoded into one buffer and hashed in one call: two incremental updates per part cost
     * more than the hashing itself. */
    uint8_t buf[512];
    size_t total = 0;

    for (size_t i = 0; i < nparts; i++)
        total += 8 + parts[i].len;
    if (total <= sizeof buf) {
        uint8_t *p = buf;
        for (size_t i = 0; i < nparts; i++) {
            uint64_t n = parts[i].len;
            for (int b = 7; b >= 0; b--, n >>= 8)
                p[b] = (uint8_t)n;
            if (parts[i].len)
                memcpy(p + 8, parts[i].p, parts[i].len);
            p += 8 + parts[i].len;
        }
        crypto_generichash(out, CD_CRYPTO_HASH_LEN, buf, total, key,
                           key ? CD_CRYPTO_KEY_LEN : 0);
        if (key)
            sodium_memzero(buf, total); /* a blind index's input is a personal value */
        return;
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, key ? CD_CRYPTO_KEY_LEN : 0, CD_CRYPTO_HASH_LEN);
    for (size_t i = 0; i < nparts; i++) {
        uint8_t len[8];
        uint64_t n = parts[i].len;
        for (int b = 7; b >= 0; b--, n >>= 8)
            len[b] = (uint8_t)n;
        crypto_generichash_update(&st, len, sizeof len);
        if (parts[i].len)
            crypto_generichash_update(&st, (const unsigned char *)parts[i].p, parts[i].len);
    }
    crypto_generichash_final(&st, out, CD_CRYPTO_HASH_LEN);
    sodium_memzero(&st, sizeof st);
}

/* Reads the key file; CD_ERR_NOT_FOUND (without a detail) when it does not exist. */
static enum cd_err read_keyfile(const char *path, size_t len, uint8_t *out)
{
    enum cd_err err = CD_OK;
    uint8_t tmp[KEYFILE_MAX + 1];
    struct stat st;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ENOENT)
            err = CD_ERR_NOT_FOUND;
        else if (errno == ELOOP)
            err = cd_err_set(CD_ERR_CRYPTO, "key file %s is a symbolic link; refusing it", path);
        else
            err = cd_err_set(CD_ERR_IO, "cannot open key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        err = cd_err_set(CD_ERR_IO, "cannot stat key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err = cd_err_set(CD_ERR_CRYPTO, "key file %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        err = cd_err_set(CD_ERR_CRYPTO,
                         "key file %s is accessible by group or others (mode %04o); "
                         "run `chmod 600 %s` after checking nobody else has read it",
                         path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    while (got <= len) {
        ssize_t r = read(fd, tmp + got, sizeof tmp - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = cd_err_set(CD_ERR_IO, "cannot read key file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got != len) {
        err = cd_err_set(CD_ERR_CRYPTO, "key file %s has the wrong length (expected %zu bytes)",
                         path, len);
        goto out;
    }
    memcpy(out, tmp, len);
out:
    sodium_memzero(tmp, sizeof tmp);
    if (fd >= 0)
        close(fd);
    return err;
}

static enum cd_err write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return CD_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return CD_OK;
}

static enum cd_err sync_dir(const char *dir)
{
    enum cd_err err = CD_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0)
        err = cd_err_set(CD_ERR_IO, "cannot sync directory %s: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    return err;
}

static enum cd_err create_keyfile(const char *path, size_t len, uint8_t *key, bool *lost_race)
{
    enum cd_err err = CD_OK;
    struct cd_buf tmp = CD_BUF_INIT(CD_PATH_MAX);
    uint8_t rnd[8];
    char rhex[17];
    int fd = -1;
    bool created = false;
    const char *slash = strrchr(path, '/');
    /* Everything that can run out of memory happens before the key is installed. */
    char *dir =
        slash ? cd_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : cd_strdup(".");

    *lost_race = false;
    randombytes_buf(rnd, sizeof rnd);
    cd_hex_encode(rnd, sizeof rnd, rhex);
    if (dir == NULL || (err = cd_buf_printf(&tmp, "%s.tmp-%s", path, rhex)) != CD_OK) {
        err = err == CD_ERR_TOO_BIG ? cd_err_set(CD_ERR_IO, "%s: path too long", path)
                                    : cd_err_set(CD_ERR_NOMEM, "out of memory");
        goto out;
    }
    fd = open(tmp.p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = cd_err_set(CD_ERR_IO, "cannot create key file %s: %s", tmp.p, strerror(errno));
        goto out;
    }
    created = true;
    randombytes_buf(key, len);
    /* The umask can only remove bits; set the mode explicitly anyway so it is exactly 0600. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, key, len) != CD_OK || fsync(fd) != 0) {
        err = cd_err_set(CD_ERR_IO, "cannot write key file %s: %s", tmp.p, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (link(tmp.p, path) != 0) {
        if (errno == EEXIST)
            *lost_race = true;
        else
            err = cd_err_set(CD_ERR_IO, "cannot install key file %s: %s", path, strerror(errno));
        goto out;
    }
    err = sync_dir(dir);
out:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp.p); /* after link() the key lives on under path */
    if (err != CD_OK || *lost_race)
        sodium_memzero(key, len);
    cd_buf_free(&tmp);
    cd_free(dir);
    return err;
}

enum cd_err cd_crypto_keyfile_load_or_create(const char *path, size_t len, uint8_t *out)
{
    enum cd_err err = CD_OK;
    uint8_t key[KEYFILE_MAX];
    bool lost_race = false;

    if (len == 0 || len > KEYFILE_MAX) {
        err = cd_err_set(CD_ERR_INVALID, "key length must be 1..%d bytes", KEYFILE_MAX);
        goto out;
    }
    if ((err = cd_crypto_init()) != CD_OK)
        goto out;
    if ((err = read_keyfile(path, len, key)) != CD_ERR_NOT_FOUND)
        goto out;
    if ((err = create_keyfile(path, len, key, &lost_race)) != CD_OK)
        goto out;
    if (lost_race && (err = read_keyfile(path, len, key)) == CD_ERR_NOT_FOUND)
        err = cd_err_set(CD_ERR_IO, "key file %s vanished while being created", path);
out:
    if (err == CD_OK)
        memcpy(out, key, len);
    sodium_memzero(key, sizeof key);
    return err;
}

enum cd_err cd_crypto_master_key_load(const char *data_dir, uint8_t out[CD_CRYPTO_KEY_LEN],
                                      bool *from_env)
{
    enum cd_err err = CD_OK;
    const char *env = getenv(CD_CRYPTO_MASTER_KEY_ENV);
    struct cd_buf path = CD_BUF_INIT(CD_PATH_MAX);
    uint8_t key[CD_CRYPTO_KEY_LEN];

    if (env != NULL) {
        /* Never echo the value: it is the key. */
        if (cd_hex_decode(cd_str_c(env), key, sizeof key) != CD_OK) {
            err = cd_err_set(CD_ERR_CRYPTO, "%s must be exactly 64 hex digits",
                             CD_CRYPTO_MASTER_KEY_ENV);
            goto out;
        }
    } else {
        if ((err = cd_buf_printf(&path, "%s/%s", data_dir, CD_CRYPTO_MASTER_KEY_FILE)) != CD_OK) {
            err = err == CD_ERR_TOO_BIG ? cd_err_set(CD_ERR_IO, "%s: path too long", data_dir)
                                        : cd_err_set(err, "out of memory");
            goto out;
        }
        if ((err = cd_crypto_keyfile_load_or_create(path.p, sizeof key, key)) != CD_OK)
            goto out;
    }
    memcpy(out, key, sizeof key);
    if (from_env != NULL)
        *from_env = env != NULL;
out:
    sodium_memzero(key, sizeof key);
    cd_buf_free(&path);
    return err;
}

void cd_crypto_derive_key(const uint8_t root[CD_CRYPTO_KEY_LEN], const char context[8], uint64_t id,
                          uint8_t out[CD_CRYPTO_KEY_LEN])
{
    crypto_kdf_derive_from_key(out, CD_CRYPTO_KEY_LEN, id, context, root);
}

void cd_crypto_data_key_new(uint8_t out[CD_CRYPTO_KEY_LEN])
{
    randombytes_buf(out, CD_CRYPTO_KEY_LEN);
}

/* The wrap's associated data: a digest of the domain, the customer id and the key version. */
static void wrap_ad(struct cd_str customer_id, uint32_t key_version, uint8_t ad[CD_CRYPTO_HASH_LEN])
{
    uint8_t v[4] = {(uint8_t)(key_version >> 24), (uint8_t)(key_version >> 16),
                    (uint8_t)(key_version >> 8), (uint8_t)key_version};
    struct cd_str parts[3] = {
        CD_STR("candor.key-wrap.v1"), customer_id, {(const char *)v, sizeof v}};

    cd__crypto_hash_parts(NULL, parts, 3, ad);
}

void cd_crypto_key_wrap(const uint8_t master[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                        uint32_t key_version, const uint8_t data_key[CD_CRYPTO_KEY_LEN],
                        uint8_t out[CD_CRYPTO_WRAPPED_LEN])
{
    uint8_t ad[CD_CRYPTO_HASH_LEN];
    uint8_t *nonce = out + 1;

    wrap_ad(customer_id, key_version, ad);
    out[0] = CD_CRYPTO_WRAP_VERSION;
    cd_random_bytes(nonce, CD_CRYPTO_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + CD_CRYPTO_NONCE_LEN, NULL, data_key,
                                               CD_CRYPTO_KEY_LEN, ad, sizeof ad, NULL, nonce,
                                               master);
}

enum cd_err cd_crypto_key_unwrap(const uint8_t master[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                                 uint32_t key_version, const uint8_t *wrapped, size_t len,
                                 uint8_t out[CD_CRYPTO_KEY_LEN])
{
    enum cd_err err = CD_OK;
    uint8_t ad[CD_CRYPTO_HASH_LEN], key[CD_CRYPTO_KEY_LEN];

    if (len != CD_CRYPTO_WRAPPED_LEN || wrapped[0] != CD_CRYPTO_WRAP_VERSION) {
        err = cd_err_set(CD_ERR_CRYPTO, "wrapped key has an unknown format");
        goto out;
    }
    wrap_ad(customer_id, key_version, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL,
                                                   wrapped + 1 + CD_CRYPTO_NONCE_LEN,
                                                   CD_CRYPTO_WRAPPED_LEN - 1 - CD_CRYPTO_NONCE_LEN,
                                                   ad, sizeof ad, wrapped + 1, master) != 0) {
        err = cd_err_set(CD_ERR_CRYPTO, "wrapped key does not open with this master key, "
                                        "customer and key version");
        goto out;
    }
    memcpy(out, key, sizeof key);
out:
    sodium_memzero(key, sizeof key);
    return err;
}
