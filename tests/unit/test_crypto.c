/* Unit tests for src/crypto: SHA-256, key files, the master key, key wrapping, field sealing,
 * blind indexes and Ed25519 (including interop with the openssl command-line tool). */
#include "crypto/crypto.h"
#include "crypto/crypto_int.h"
#include "unit.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/candor-test-crypto-XXXXXX";

static int setup(void **state)
{
    (void)state;
    if (cd_crypto_init() != CD_OK || mkdtemp(tmpdir) == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    assert_int_equal(cd_hex_decode(cd_str_c(hex), out, n), CD_OK);
}

static void write_file(const char *path, const void *p, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* ---- SHA-256 ---- */

static void sha256_matches_known_vectors(void **state)
{
    uint8_t h[32], want[32], h2[32];
    struct cd_crypto_sha256 inc = {0};
    struct cd_str parts[3] = {CD_STR("a"), CD_STR(""), CD_STR("bc")};

    assert_int_equal(cd_crypto_sha256("", 0, h), CD_OK);
    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want, 32);
    assert_memory_equal(h, want, 32);
    assert_int_equal(cd_crypto_sha256("abc", 3, h), CD_OK);
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, 32);
    assert_memory_equal(h, want, 32);
    assert_int_equal(cd_crypto_sha256v(parts, 3, h2), CD_OK);
    assert_memory_equal(h2, want, 32);

    /* The incremental form, reused for a second message without re-initialising. */
    assert_int_equal(cd_crypto_sha256_init(&inc), CD_OK);
    assert_int_equal(cd_crypto_sha256_update(&inc, "ab", 2), CD_OK);
    assert_int_equal(cd_crypto_sha256_update(&inc, "c", 1), CD_OK);
    assert_int_equal(cd_crypto_sha256_final(&inc, h), CD_OK);
    assert_memory_equal(h, want, 32);
    assert_int_equal(cd_crypto_sha256_update(&inc, "abc", 3), CD_OK);
    assert_int_equal(cd_crypto_sha256_final(&inc, h), CD_OK);
    assert_memory_equal(h, want, 32);
    cd_crypto_sha256_free(&inc);
    cd_crypto_sha256_free(&inc);               /* safe twice */
    assert_int_equal(cd_crypto_init(), CD_OK); /* idempotent */
}

/* The digest of pre || body through the incremental form, which is always OpenSSL EVP. */
static void sha256_evp(const uint8_t *pre, size_t npre, const uint8_t *body, size_t n,
                       uint8_t out[32])
{
    struct cd_crypto_sha256 inc = {0};

    assert_int_equal(cd_crypto_sha256_init(&inc), CD_OK);
    assert_int_equal(cd_crypto_sha256_update(&inc, pre, npre), CD_OK);
    assert_int_equal(cd_crypto_sha256_update(&inc, body, n), CD_OK);
    assert_int_equal(cd_crypto_sha256_final(&inc, out), CD_OK);
    cd_crypto_sha256_free(&inc);
}

/* The one-shot and pair forms on the CPU's SHA extensions (when it has them) and on OpenSSL give
 * OpenSSL's digests at every length and block boundary, behind the prefixes the ledger uses
 * (the 32-byte previous hash, the 0x00 and 0x01 bytes) and others around a block. */
static void sha256_paths_agree_with_openssl(void **state)
{
    static const size_t prefixes[] = {0, 1, 32, 55, 56, 63, 64, 65, 100};
    uint8_t body[400], pre[128], want_a[32], want_b[32], a[32], b[32], alias[256];

    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 131 + 7);
    for (size_t i = 0; i < sizeof pre; i++)
        pre[i] = (uint8_t)(i * 37 + 1);
    for (int ni = 1; ni >= 0; ni--) {
        cd__crypto_sha_ni_use(ni);
        for (size_t pi = 0; pi < sizeof prefixes / sizeof prefixes[0]; pi++) {
            size_t na = prefixes[pi], nb = prefixes[(pi + 3) % 9];
            for (size_t n = 0; n <= 300; n++) {
                sha256_evp(pre, na, body, n, want_a);
                sha256_evp(pre + 7, nb, body, n, want_b);
                /* One-shot, the body split in three parts at varying points. */
                size_t k1 = n / 3, k2 = n - n / 5;
                struct cd_str parts[4] = {{(const char *)pre, na}, {(const char *)body, k1},
                                          {(const char *)body + k1, k2 - k1},
                                          {(const char *)body + k2, n - k2}};
                assert_int_equal(cd_crypto_sha256v(parts, 4, a), CD_OK);
                assert_memory_equal(a, want_a, 32);
                assert_int_equal(cd_crypto_sha256_pair(pre, na, pre + 7, nb, body, n, a, b), CD_OK);
                assert_memory_equal(a, want_a, 32);
                assert_memory_equal(b, want_b, 32);
                /* The outputs may overwrite the prefixes (the chain hash replaces prev). */
                memcpy(alias, pre, na);
                memcpy(alias + 128, pre + 7, nb);
                assert_int_equal(cd_crypto_sha256_pair(alias, na, alias + 128, nb, body, n, alias,
                                                       alias + 128),
                                 CD_OK);
                assert_memory_equal(alias, want_a, 32);
                assert_memory_equal(alias + 128, want_b, 32);
            }
        }
    }
    cd__crypto_sha_ni_use(true);
}

/* ---- key files and the master key ---- */

static void keyfile_is_created_0600_and_reloaded(void **state)
{
    char path[256];
    uint8_t a[32], b[32], zero[32] = {0};
    struct stat st;

    path_of(path, sizeof path, "k1.key");
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 32, a), CD_OK);
    assert_memory_not_equal(a, zero, 32);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 32, b), CD_OK);
    assert_memory_equal(a, b, 32);
    /* No temporary file is left behind. */
    assert_int_equal(system("sh -c 'ls /tmp/candor-test-crypto-*/ | grep -q tmp-'") == 0, 0);
}

static void keyfile_refuses_loose_modes_links_and_wrong_sizes(void **state)
{
    char path[256], link_path[256];
    uint8_t k[32] = {1}, out[32], untouched[32];

    memset(out, 0xAB, sizeof out);
    memcpy(untouched, out, sizeof out);
    path_of(path, sizeof path, "loose.key");
    write_file(path, k, sizeof k, 0640);
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 32, out), CD_ERR_CRYPTO);
    assert_non_null(strstr(cd_err_detail(), "chmod 600"));
    assert_non_null(strstr(cd_err_detail(), "0640"));
    assert_memory_equal(out, untouched, 32);
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 32, out), CD_ERR_CRYPTO);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 32, out), CD_OK);
    assert_memory_equal(out, k, 32);

    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 31, out), CD_ERR_CRYPTO);
    assert_non_null(strstr(cd_err_detail(), "wrong length"));
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 33, out), CD_ERR_CRYPTO);

    path_of(link_path, sizeof link_path, "link.key");
    assert_int_equal(symlink(path, link_path), 0);
    assert_int_equal(cd_crypto_keyfile_load_or_create(link_path, 32, out), CD_ERR_CRYPTO);
    assert_non_null(strstr(cd_err_detail(), "symbolic link"));

    path_of(path, sizeof path, "no/such/dir.key");
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 32, out), CD_ERR_IO);
    assert_int_equal(cd_crypto_keyfile_load_or_create(path, 0, out), CD_ERR_INVALID);
    assert_memory_equal(out, k, 32);
}

static void keyfile_survives_allocation_failures(void **state)
{
    char path[256];
    uint8_t k[32];

    for (long n = 1; n < 10; n++) {
        snprintf(path, sizeof path, "%s/fault-%ld.key", tmpdir, n);
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_crypto_keyfile_load_or_create(path, 32, k);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_int_equal(err, CD_ERR_NOMEM);
        /* A failed create leaves nothing behind, so a retry starts clean. */
        assert_int_equal(access(path, F_OK), -1);
    }
}

static void master_key_from_env_or_file(void **state)
{
    uint8_t a[32], b[32], want[32];
    bool env = true;
    const char *hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    char path[256];

    unsetenv(CD_CRYPTO_MASTER_KEY_ENV);
    assert_int_equal(cd_crypto_master_key_load(tmpdir, a, &env), CD_OK);
    assert_false(env);
    assert_int_equal(cd_crypto_master_key_load(tmpdir, b, NULL), CD_OK);
    assert_memory_equal(a, b, 32);
    path_of(path, sizeof path, CD_CRYPTO_MASTER_KEY_FILE);
    assert_int_equal(access(path, F_OK), 0);

    setenv(CD_CRYPTO_MASTER_KEY_ENV, hex, 1);
    assert_int_equal(cd_crypto_master_key_load("/nonexistent", b, &env), CD_OK);
    assert_true(env);
    unhex(hex, want, 32);
    assert_memory_equal(b, want, 32);
    setenv(CD_CRYPTO_MASTER_KEY_ENV, "00ff", 1);
    assert_int_equal(cd_crypto_master_key_load(tmpdir, b, &env), CD_ERR_CRYPTO);
    assert_null(strstr(cd_err_detail(), "00ff")); /* the value is never echoed */
    unsetenv(CD_CRYPTO_MASTER_KEY_ENV);
    cd_crypto_wipe(a, 32);
    cd_crypto_wipe(b, 32);
}

static void derived_keys_are_independent(void **state)
{
    uint8_t root[32] = {7}, a[32], b[32], c[32];

    cd_crypto_derive_key(root, "cdbidx01", 1, a);
    cd_crypto_derive_key(root, "cdbidx01", 1, b);
    assert_memory_equal(a, b, 32);
    cd_crypto_derive_key(root, "cdbidx01", 2, b);
    cd_crypto_derive_key(root, "cdother1", 1, c);
    assert_memory_not_equal(a, b, 32);
    assert_memory_not_equal(a, c, 32);
}

/* ---- key wrapping ---- */

static void data_keys_wrap_and_bind_customer_and_version(void **state)
{
    uint8_t master[32], other[32], dk[32], out[32], w[CD_CRYPTO_WRAPPED_LEN],
        w2[CD_CRYPTO_WRAPPED_LEN];
    struct cd_str cus = CD_STR("cus_01HZY");

    cd_crypto_data_key_new(master);
    cd_crypto_data_key_new(other);
    cd_crypto_data_key_new(dk);
    cd_crypto_key_wrap(master, cus, 3, dk, w);
    cd_crypto_key_wrap(master, cus, 3, dk, w2);
    assert_memory_not_equal(w, w2, sizeof w); /* fresh nonce each time */
    assert_int_equal(w[0], CD_CRYPTO_WRAP_VERSION);
    assert_int_equal(cd_crypto_key_unwrap(master, cus, 3, w, sizeof w, out), CD_OK);
    assert_memory_equal(out, dk, 32);
    assert_int_equal(cd_crypto_key_unwrap(master, CD_STR("cus_01HZZ"), 3, w, sizeof w, out),
                     CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_key_unwrap(master, cus, 4, w, sizeof w, out), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_key_unwrap(other, cus, 3, w, sizeof w, out), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_key_unwrap(master, cus, 3, w, sizeof w - 1, out), CD_ERR_CRYPTO);
    for (size_t i = 0; i < sizeof w; i++) {
        memcpy(w2, w, sizeof w);
        w2[i] ^= 0x01;
        assert_int_equal(cd_crypto_key_unwrap(master, cus, 3, w2, sizeof w2, out), CD_ERR_CRYPTO);
    }
    assert_memory_equal(out, dk, 32); /* untouched by the failures */
}

/* ---- sealing ---- */

static void seal_round_trips_and_binds_customer_and_field(void **state)
{
    uint8_t key[32], other[32];
    struct cd_buf s = CD_BUF_INIT(4096), o = CD_BUF_INIT(4096);
    struct cd_str cus = CD_STR("cus_1"), field = CD_STR("email");
    struct cd_str pt = CD_STR("ada@example.org");

    cd_crypto_data_key_new(key);
    cd_crypto_data_key_new(other);
    assert_int_equal(cd_crypto_seal(key, cus, field, pt, &s), CD_OK);
    assert_int_equal(s.len, pt.len + CD_CRYPTO_SEAL_OVERHEAD);
    assert_int_equal((uint8_t)s.p[0], CD_CRYPTO_SEAL_VERSION);
    assert_null(memmem(s.p, s.len, "ada", 3));
    struct cd_str sealed = {s.p, s.len};
    assert_int_equal(cd_crypto_open(key, cus, field, sealed, &o), CD_OK);
    assert_int_equal(o.len, pt.len);
    assert_memory_equal(o.p, pt.p, pt.len);

    /* Swapped rows, swapped columns, wrong key: all refused, out untouched. */
    cd_buf_reset(&o);
    assert_int_equal(cd_crypto_open(key, CD_STR("cus_2"), field, sealed, &o), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_open(key, cus, CD_STR("phone"), sealed, &o), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_open(other, cus, field, sealed, &o), CD_ERR_CRYPTO);
    assert_int_equal(o.len, 0);
    for (size_t i = 0; i < s.len; i++) {
        s.p[i] ^= 0x20;
        assert_int_equal(cd_crypto_open(key, cus, field, sealed, &o), CD_ERR_CRYPTO);
        s.p[i] ^= 0x20;
    }
    for (size_t n = 0; n < s.len; n++)
        assert_int_equal(cd_crypto_open(key, cus, field, (struct cd_str){s.p, n}, &o),
                         CD_ERR_CRYPTO);
    assert_int_equal(o.len, 0);

    /* Length-prefixed AD: ("ab", "c") is not ("a", "bc"). */
    cd_buf_reset(&s);
    assert_int_equal(cd_crypto_seal(key, CD_STR("ab"), CD_STR("c"), pt, &s), CD_OK);
    sealed = (struct cd_str){s.p, s.len};
    assert_int_equal(cd_crypto_open(key, CD_STR("a"), CD_STR("bc"), sealed, &o), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_open(key, CD_STR("ab"), CD_STR("c"), sealed, &o), CD_OK);

    /* Empty plaintext, and appending after existing bytes. */
    cd_buf_reset(&s);
    assert_int_equal(cd_buf_puts(&s, "hdr"), CD_OK);
    assert_int_equal(cd_crypto_seal(key, cus, field, CD_STR(""), &s), CD_OK);
    assert_int_equal(s.len, 3 + CD_CRYPTO_SEAL_OVERHEAD);
    cd_buf_reset(&o);
    assert_int_equal(cd_crypto_open(key, cus, field, (struct cd_str){s.p + 3, s.len - 3}, &o),
                     CD_OK);
    assert_int_equal(o.len, 0);
    cd_buf_free(&s);
    cd_buf_free(&o);
}

/* Seals' nonces come from a per-thread pool: none repeats, across refills of the pool and
 * across a fork (a child must never hand out the nonces its parent will). */
/* Format 2 binds a sealed value to its row as well: the same customer, field and key, but
 * another row id or any changed row part (an interaction's channel, direction, occurred_at,
 * purpose) no longer opens it; neither does a value whose format byte is relabelled, nor the
 * other format's opener. The AD hashes a known byte layout (docs/crypto.md). */
static void seal_bound_binds_the_row(void **state)
{
    uint8_t key[32], ad[32], at[8] = {0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0x00};
    struct cd_buf s = CD_BUF_INIT(4096), o = CD_BUF_INIT(4096);
    struct cd_str cus = CD_STR("cus_1"), field = CD_STR("body"), pt = CD_STR("I was charged twice");
    struct cd_str parts[5] = {CD_STR("int_1"), CD_STR("email"), CD_STR("inbound"),
                              {(const char *)at, 8}, CD_STR("service")};
    struct cd_crypto_row row, other;
    (void)state;

    cd_crypto_data_key_new(key);
    cd_crypto_row_bind(parts, 5, &row);
    assert_int_equal(cd_crypto_seal_bound(key, cus, field, &row, pt, &s), CD_OK);
    struct cd_str sealed = {s.p, s.len};
    assert_int_equal((uint8_t)s.p[0], CD_CRYPTO_SEAL_VERSION_BOUND);
    assert_int_equal(s.len, pt.len + CD_CRYPTO_SEAL_OVERHEAD);
    assert_int_equal(cd_crypto_sealed_format(sealed), CD_CRYPTO_SEAL_VERSION_BOUND);
    assert_int_equal(cd_crypto_open_bound(key, cus, field, &row, sealed, &o), CD_OK);
    assert_memory_equal(o.p, pt.p, pt.len);

    /* Each part of the row, changed by one byte; the parts' boundaries moved; one part less. */
    for (int i = 0; i < 5; i++) {
        struct cd_str p2[5];
        char buf[16];
        memcpy(p2, parts, sizeof p2);
        memcpy(buf, parts[i].p, parts[i].len);
        buf[0] ^= 1;
        p2[i] = (struct cd_str){buf, parts[i].len};
        cd_crypto_row_bind(p2, 5, &other);
        cd_buf_reset(&o);
        assert_int_equal(cd_crypto_open_bound(key, cus, field, &other, sealed, &o),
                         CD_ERR_CRYPTO);
        assert_int_equal(o.len, 0);
    }
    struct cd_str moved[5] = {CD_STR("int_1e"), CD_STR("mail"), parts[2], parts[3], parts[4]};
    cd_crypto_row_bind(moved, 5, &other);
    assert_int_equal(cd_crypto_open_bound(key, cus, field, &other, sealed, &o), CD_ERR_CRYPTO);
    cd_crypto_row_bind(parts, 4, &other);
    assert_int_equal(cd_crypto_open_bound(key, cus, field, &other, sealed, &o), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_open_bound(key, CD_STR("cus_2"), field, &row, sealed, &o),
                     CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_open_bound(key, cus, CD_STR("subject"), &row, sealed, &o),
                     CD_ERR_CRYPTO);
    /* The other format's opener, and the format byte relabelled either way. */
    assert_int_equal(cd_crypto_open(key, cus, field, sealed, &o), CD_ERR_CRYPTO);
    s.p[0] = CD_CRYPTO_SEAL_VERSION;
    assert_int_equal(cd_crypto_open(key, cus, field, sealed, &o), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_open_bound(key, cus, field, &row, sealed, &o), CD_ERR_CRYPTO);
    cd_buf_reset(&s);
    assert_int_equal(cd_crypto_seal(key, cus, field, pt, &s), CD_OK);
    sealed = (struct cd_str){s.p, s.len};
    assert_int_equal(cd_crypto_sealed_format(sealed), CD_CRYPTO_SEAL_VERSION);
    assert_int_equal(cd_crypto_open_bound(key, cus, field, &row, sealed, &o), CD_ERR_CRYPTO);
    s.p[0] = CD_CRYPTO_SEAL_VERSION_BOUND;
    assert_int_equal(cd_crypto_open_bound(key, cus, field, &row, sealed, &o), CD_ERR_CRYPTO);
    assert_int_equal(cd_crypto_sealed_format((struct cd_str){s.p, 3}), 0);
    s.p[0] = 7;
    assert_int_equal(cd_crypto_sealed_format(sealed), 0);

    /* The layout: row = BLAKE2b-256(enc("candor.seal.row.v2") || enc(each part)), AD =
     * BLAKE2b-256(enc("candor.seal.v2") || enc(customer) || enc(field) || enc(row)): a value
     * sealed with libsodium directly under that AD opens. */
    uint8_t msg[512], *m = msg, rd[32];
    struct cd_str rparts[6] = {CD_STR("candor.seal.row.v2"), parts[0], parts[1], parts[2],
                               parts[3], parts[4]};
    for (int i = 0; i < 6; i++) {
        for (int b = 0; b < 8; b++)
            m[b] = (uint8_t)((uint64_t)rparts[i].len >> (56 - 8 * b));
        memcpy(m + 8, rparts[i].p, rparts[i].len);
        m += 8 + rparts[i].len;
    }
    crypto_generichash(rd, sizeof rd, msg, (size_t)(m - msg), NULL, 0);
    assert_memory_equal(rd, row.digest, 32);
    struct cd_str aparts[4] = {CD_STR("candor.seal.v2"), cus, field, {(const char *)rd, 32}};
    m = msg;
    for (int i = 0; i < 4; i++) {
        for (int b = 0; b < 8; b++)
            m[b] = (uint8_t)((uint64_t)aparts[i].len >> (56 - 8 * b));
        memcpy(m + 8, aparts[i].p, aparts[i].len);
        m += 8 + aparts[i].len;
    }
    crypto_generichash(ad, sizeof ad, msg, (size_t)(m - msg), NULL, 0);
    uint8_t ct[1 + 24 + 64];
    ct[0] = CD_CRYPTO_SEAL_VERSION_BOUND;
    randombytes_buf(ct + 1, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct + 25, NULL, (const uint8_t *)pt.p, pt.len, ad,
                                               sizeof ad, NULL, ct + 1, key);
    cd_buf_reset(&o);
    assert_int_equal(cd_crypto_open_bound(key, cus, field, &row,
                                          (struct cd_str){(const char *)ct, 25 + pt.len + 16}, &o),
                     CD_OK);
    assert_memory_equal(o.p, pt.p, pt.len);
    cd_buf_free(&s);
    cd_buf_free(&o);
}

static void seal_nonces_never_repeat(void **state)
{
    uint8_t key[CD_CRYPTO_KEY_LEN] = {0};
    static uint8_t seen[100][CD_CRYPTO_NONCE_LEN];
    struct cd_buf b = CD_BUF_INIT(1024);
    int fds[2];
    (void)state;

    for (int i = 0; i < 60; i++) { /* several pool refills */
        assert_int_equal(cd_crypto_seal(key, CD_STR("cus_1"), CD_STR("f"), CD_STR("x"), &b),
                         CD_OK);
        memcpy(seen[i], b.p + 1, CD_CRYPTO_NONCE_LEN);
        cd_buf_reset(&b);
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(seen[i], seen[j], CD_CRYPTO_NONCE_LEN);
    }
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t n[CD_CRYPTO_NONCE_LEN] = {0};
        if (cd_crypto_seal(key, CD_STR("cus_1"), CD_STR("f"), CD_STR("x"), &b) == CD_OK)
            memcpy(n, b.p + 1, sizeof n);
        _exit(write(fds[1], n, sizeof n) == (ssize_t)sizeof n ? 0 : 1);
    }
    uint8_t child[CD_CRYPTO_NONCE_LEN];
    int status = 0;
    close(fds[1]); /* a child that dies early makes the read end, not hang */
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        /* libsodium's generator refuses to run in a forked child (it aborts): then the child
         * did not take a nonce from the pool it inherited either. */
        assert_int_equal(WTERMSIG(status), SIGABRT);
    } else {
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
        assert_int_equal(cd_crypto_seal(key, CD_STR("cus_1"), CD_STR("f"), CD_STR("x"), &b),
                         CD_OK);
        assert_memory_not_equal(child, b.p + 1, CD_CRYPTO_NONCE_LEN);
        for (int j = 0; j < 60; j++)
            assert_memory_not_equal(child, seen[j], CD_CRYPTO_NONCE_LEN);
    }
    close(fds[0]);
    cd_buf_free(&b);
}

static void seal_respects_buffer_caps_and_allocation_failures(void **state)
{
    uint8_t key[32];
    struct cd_buf s = CD_BUF_INIT(CD_CRYPTO_SEAL_OVERHEAD + 4);
    struct cd_buf o = CD_BUF_INIT(3);

    cd_crypto_data_key_new(key);
    assert_int_equal(cd_crypto_seal(key, CD_STR("c"), CD_STR("f"), CD_STR("12345"), &s),
                     CD_ERR_TOO_BIG);
    assert_int_equal(s.len, 0);
    assert_int_equal(cd_crypto_seal(key, CD_STR("c"), CD_STR("f"), CD_STR("1234"), &s), CD_OK);
    assert_int_equal(cd_crypto_open(key, CD_STR("c"), CD_STR("f"), (struct cd_str){s.p, s.len}, &o),
                     CD_ERR_TOO_BIG);
    assert_int_equal(o.len, 0);
    cd_buf_free(&s);
    cd_buf_free(&o);

    for (long n = 1; n < 10; n++) {
        struct cd_buf a = CD_BUF_INIT(CD_BUF_UNBOUNDED), b = CD_BUF_INIT(CD_BUF_UNBOUNDED);
        cd_alloc_fail_nth(n);
        enum cd_err e1 = cd_crypto_seal(key, CD_STR("c"), CD_STR("f"), CD_STR("secret"), &a);
        enum cd_err e2 = e1 == CD_OK ? cd_crypto_open(key, CD_STR("c"), CD_STR("f"),
                                                      (struct cd_str){a.p, a.len}, &b)
                                     : e1;
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (hit) {
            assert_true(e1 == CD_ERR_NOMEM || e2 == CD_ERR_NOMEM);
            assert_int_equal(b.len, 0);
        } else {
            assert_int_equal(e2, CD_OK);
            assert_memory_equal(b.p, "secret", 6);
        }
        cd_buf_free(&a);
        cd_buf_free(&b);
        if (!hit)
            break;
    }
}

/* ---- blind index ---- */

static void blind_index_is_keyed_and_domain_separated(void **state)
{
    uint8_t k1[32] = {1}, k2[32] = {2}, a[32], b[32];

    cd_crypto_blind_index(k1, CD_STR("email"), CD_STR("ada@example.org"), a);
    cd_crypto_blind_index(k1, CD_STR("email"), CD_STR("ada@example.org"), b);
    assert_memory_equal(a, b, 32);
    cd_crypto_blind_index(k2, CD_STR("email"), CD_STR("ada@example.org"), b);
    assert_memory_not_equal(a, b, 32);
    cd_crypto_blind_index(k1, CD_STR("handle"), CD_STR("ada@example.org"), b);
    assert_memory_not_equal(a, b, 32);
    cd_crypto_blind_index(k1, CD_STR("ab"), CD_STR("c"), a);
    cd_crypto_blind_index(k1, CD_STR("a"), CD_STR("bc"), b);
    assert_memory_not_equal(a, b, 32);
}

/* ---- Ed25519 ---- */

static void ed25519_matches_rfc8032_and_rejects_forgeries(void **state)
{
    uint8_t seed[32], pk[32], sig[64], want[64];
    struct cd_crypto_signer s;
    char hex[CD_CRYPTO_PK_HEX_LEN + 1];

    unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed, 32);
    unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", pk, 32);
    unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc"
          "61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
          want, 64);
    cd_crypto_signer_from_seed(seed, &s);
    assert_memory_equal(s.pk, pk, 32);
    cd_crypto_sign(&s, "", 0, sig);
    assert_memory_equal(sig, want, 64);
    assert_int_equal(cd_crypto_verify(pk, "", 0, sig), CD_OK);
    assert_int_equal(cd_crypto_verify(pk, "x", 1, sig), CD_ERR_INTEGRITY);
    sig[5] ^= 1;
    assert_int_equal(cd_crypto_verify(pk, "", 0, sig), CD_ERR_INTEGRITY);
    cd_crypto_pubkey_hex(pk, hex);
    assert_string_equal(hex, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    cd_crypto_signer_wipe(&s);
    memset(seed, 0, sizeof seed);
    assert_memory_equal(s.sk, seed, 32);
}

static void signing_key_file_and_pem_round_trip(void **state)
{
    char path[256];
    struct cd_crypto_signer a, b;
    struct cd_buf pem = CD_BUF_INIT(1024);
    uint8_t pk[32], id[32];
    char hex[CD_CRYPTO_PK_HEX_LEN + 1];
    struct stat st;

    path_of(path, sizeof path, CD_CRYPTO_SIGNING_KEY_FILE);
    assert_int_equal(cd_crypto_signer_load_or_create(path, &a), CD_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(cd_crypto_signer_load_or_create(path, &b), CD_OK);
    assert_memory_equal(a.pk, b.pk, 32);
    assert_memory_equal(a.sk, b.sk, 64);

    assert_int_equal(cd_crypto_pubkey_pem(a.pk, &pem), CD_OK);
    assert_non_null(strstr(pem.p, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
    assert_int_equal(cd_crypto_pubkey_parse((struct cd_str){pem.p, pem.len}, pk), CD_OK);
    assert_memory_equal(pk, a.pk, 32);
    cd_crypto_pubkey_hex(a.pk, hex);
    memset(pk, 0, sizeof pk);
    assert_int_equal(cd_crypto_pubkey_parse(cd_str_c(hex), pk), CD_OK);
    assert_memory_equal(pk, a.pk, 32);
    assert_int_equal(cd_crypto_pubkey_parse(CD_STR("nope"), pk), CD_ERR_INVALID);
    assert_int_equal(cd_crypto_pubkey_parse(CD_STR("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"
                                                   "\n-----END PUBLIC KEY-----"),
                                            pk),
                     CD_ERR_INVALID);
    assert_int_equal(cd_crypto_pubkey_id(a.pk, id), CD_OK);
    /* A known vector: the key of RFC 8032's first test; its id is the SHA-256 of its DER
     * SubjectPublicKeyInfo (302a300506032b6570032100 || key), as `openssl pkey -pubin
     * -outform DER | sha256sum` computes it. */
    uint8_t rfc_pk[CD_CRYPTO_PK_LEN], want_id[CD_CRYPTO_HASH_LEN];
    assert_int_equal(cd_hex_decode(CD_STR("d75a980182b10ab7d54bfed3c964073a"
                                          "0ee172f3daa62325af021a68f707511a"),
                                   rfc_pk, sizeof rfc_pk),
                     CD_OK);
    assert_int_equal(cd_hex_decode(CD_STR("06e3fd8fda29bb60ab59557de61edb0a"
                                          "ecdb231134be30e75b455f8e1b792fa9"),
                                   want_id, sizeof want_id),
                     CD_OK);
    assert_int_equal(cd_crypto_pubkey_id(rfc_pk, id), CD_OK);
    assert_memory_equal(id, want_id, sizeof want_id);

    /* A too-small buffer fails cleanly and keeps what it had. */
    struct cd_buf small = CD_BUF_INIT(20);
    assert_int_equal(cd_buf_puts(&small, "keep"), CD_OK);
    assert_int_equal(cd_crypto_pubkey_pem(a.pk, &small), CD_ERR_TOO_BIG);
    assert_string_equal(small.p, "keep");
    cd_buf_free(&small);
    for (long n = 1; n < 5; n++) {
        struct cd_buf p2 = CD_BUF_INIT(CD_BUF_UNBOUNDED);
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_crypto_pubkey_pem(a.pk, &p2);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        assert_int_equal(err, hit ? CD_ERR_NOMEM : CD_OK);
        assert_int_equal(p2.len, hit ? 0 : pem.len);
        cd_buf_free(&p2);
        if (!hit)
            break;
    }
    cd_buf_free(&pem);
    cd_crypto_signer_wipe(&a);
    cd_crypto_signer_wipe(&b);
}

static int run_openssl_verify(const char *pub, const char *msg, const char *sig)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd,
             "openssl pkeyutl -verify -pubin -inkey '%s' -rawin -in '%s' -sigfile '%s' "
             ">/dev/null 2>&1",
             pub, msg, sig);
    return system(cmd);
}

static void openssl_cli_verifies_our_signatures(void **state)
{
    struct cd_crypto_signer s;
    struct cd_buf pem = CD_BUF_INIT(1024);
    char keyp[256], pubp[256], msgp[256], sigp[256];
    const char msg[] = "{\"tree_size\":12345,\"root_hash\":\"00ff\",\"timestamp\":1764097000000}";
    uint8_t sig[64];

    if (system("command -v openssl >/dev/null 2>&1") != 0)
        skip();
    path_of(keyp, sizeof keyp, "interop.key");
    path_of(pubp, sizeof pubp, "interop.pem");
    path_of(msgp, sizeof msgp, "interop.msg");
    path_of(sigp, sizeof sigp, "interop.sig");
    assert_int_equal(cd_crypto_signer_load_or_create(keyp, &s), CD_OK);
    assert_int_equal(cd_crypto_pubkey_pem(s.pk, &pem), CD_OK);
    write_file(pubp, pem.p, pem.len, 0644);
    write_file(msgp, msg, sizeof msg - 1, 0644);
    cd_crypto_sign(&s, msg, sizeof msg - 1, sig);
    write_file(sigp, sig, sizeof sig, 0644);
    assert_int_equal(run_openssl_verify(pubp, msgp, sigp), 0);

    sig[10] ^= 0x04;
    write_file(sigp, sig, sizeof sig, 0644);
    assert_int_not_equal(run_openssl_verify(pubp, msgp, sigp), 0);
    sig[10] ^= 0x04;
    write_file(sigp, sig, sizeof sig, 0644);
    write_file(msgp, msg, sizeof msg - 2, 0644);
    assert_int_not_equal(run_openssl_verify(pubp, msgp, sigp), 0);
    cd_buf_free(&pem);
    cd_crypto_signer_wipe(&s);
}

/* One-time codes: eight digits, every position taking every digit; the shape check refuses
 * anything else. */
static void codes_are_eight_uniform_digits(void **state)
{
    char code[CD_CRYPTO_CODE_DIGITS + 1];
    unsigned seen[CD_CRYPTO_CODE_DIGITS][10] = {{0}};

    for (int i = 0; i < 2000; i++) {
        cd_crypto_code_new(code);
        assert_int_equal(strlen(code), CD_CRYPTO_CODE_DIGITS);
        assert_true(cd_crypto_code_shaped(cd_str_c(code)));
        for (int k = 0; k < CD_CRYPTO_CODE_DIGITS; k++)
            seen[k][code[k] - '0']++;
    }
    /* 200 expected per cell; a leading zero is as likely as any digit. */
    for (int k = 0; k < CD_CRYPTO_CODE_DIGITS; k++)
        for (int d = 0; d < 10; d++)
            assert_true(seen[k][d] > 100 && seen[k][d] < 300);
    assert_false(cd_crypto_code_shaped(CD_STR("1234567")));
    assert_false(cd_crypto_code_shaped(CD_STR("123456789")));
    assert_false(cd_crypto_code_shaped(CD_STR("1234567a")));
    assert_false(cd_crypto_code_shaped(CD_STR("")));
}

/* A derived token is bound to its secret and its label, and checked in full. */
static void derived_tokens_are_bound_to_secret_and_label(void **state)
{
    char a[CD_CRYPTO_DERIVED_LEN + 1], b[CD_CRYPTO_DERIVED_LEN + 1];

    assert_int_equal(cd_crypto_derived("one\n", CD_STR("css_secret"), a), CD_OK);
    assert_int_equal(strlen(a), CD_CRYPTO_DERIVED_LEN);
    assert_int_equal(cd_crypto_derived("two\n", CD_STR("css_secret"), b), CD_OK);
    assert_string_not_equal(a, b);
    assert_true(cd_crypto_derived_check("one\n", CD_STR("css_secret"), cd_str_c(a)));
    assert_false(cd_crypto_derived_check("two\n", CD_STR("css_secret"), cd_str_c(a)));
    assert_false(cd_crypto_derived_check("one\n", CD_STR("css_other"), cd_str_c(a)));
    assert_false(cd_crypto_derived_check("one\n", CD_STR("css_secret"),
                                         (struct cd_str){a, CD_CRYPTO_DERIVED_LEN - 1}));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_matches_known_vectors),
        cmocka_unit_test(sha256_paths_agree_with_openssl),
        cmocka_unit_test(keyfile_is_created_0600_and_reloaded),
        cmocka_unit_test(keyfile_refuses_loose_modes_links_and_wrong_sizes),
        cmocka_unit_test(keyfile_survives_allocation_failures),
        cmocka_unit_test(master_key_from_env_or_file),
        cmocka_unit_test(derived_keys_are_independent),
        cmocka_unit_test(data_keys_wrap_and_bind_customer_and_version),
        cmocka_unit_test(seal_round_trips_and_binds_customer_and_field),
        cmocka_unit_test(seal_bound_binds_the_row),
        cmocka_unit_test(seal_respects_buffer_caps_and_allocation_failures),
        cmocka_unit_test(seal_nonces_never_repeat),
        cmocka_unit_test(blind_index_is_keyed_and_domain_separated),
        cmocka_unit_test(ed25519_matches_rfc8032_and_rejects_forgeries),
        cmocka_unit_test(signing_key_file_and_pem_round_trip),
        cmocka_unit_test(openssl_cli_verifies_our_signatures),
        cmocka_unit_test(codes_are_eight_uniform_digits),
        cmocka_unit_test(derived_tokens_are_bound_to_secret_and_label),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
