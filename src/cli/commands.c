/* Subcommands: init, token, audit. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "auth/auth.h"
#include "audit/audit.h"
#include "cli_int.h"
#include "consent/consent.h"
#include "crypto/crypto.h"

/* ---- init ---- */

int cd_cli_init(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory to create", NULL, NULL},
        {"--db", "URL", "a PostgreSQL database (postgres://...) instead of DIR/candor.db; the URL "
                        "is kept in DIR/database.url", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct cd__cli_env env;
    char path[CD_PATH_MAX], url[CD_PATH_MAX], token[CD_TOKEN_LEN + 2], id[CD_ID_MAX];
    json_t *tokens = NULL;
    enum cd_err err;
    struct stat st;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 0, &npos, &help)) != CD_OK)
        return cd__cli_fail("init", err);
    if (help) {
        cd_cli_usage("init", "--data DIR [--db URL]",
                     "Creates a data directory: the master key (wraps every customer's data key),\n"
                     "the signing key, an admin API token written to DIR/admin.token (mode 0600),\n"
                     "and the database: DIR/candor.db (SQLite), or with --db the schema in an\n"
                     "existing, empty PostgreSQL database, whose URL is then kept in\n"
                     "DIR/database.url (mode 0600) for every later command on DIR. Prefer a URL\n"
                     "without a password: libpq reads it from ~/.pgpass or PGPASSFILE.",
                     opts);
        return 0;
    }
    const char *dir = cd_cli_get(opts, "--data"), *db = cd_cli_get(opts, "--db");
    if (dir == NULL)
        return cd__cli_fail("init", cd_err_set(CD_ERR_INVALID, "--data DIR is required"));
    if (db && !cd_store_url_is_pg(db))
        return cd__cli_fail("init", cd_err_set(CD_ERR_INVALID,
                                               "--db takes a postgres:// or postgresql:// URL "
                                               "(without --db the database is DIR/candor.db)"));
    if (db && strlen(db) >= sizeof url)
        return cd__cli_fail("init", cd_err_set(CD_ERR_INVALID, "--db: the URL is too long"));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return cd__cli_fail("init", cd_err_set(CD_ERR_IO, "cannot create %s: %s", dir,
                                               strerror(errno)));
    if ((err = cd__cli_data_dir_check(dir)) != CD_OK)
        return cd__cli_fail("init", err);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, i ? CD__CLI_DB_URL_FILE : "candor.db");
        if (stat(path, &st) == 0)
            return cd__cli_fail("init", cd_err_set(CD_ERR_CONFLICT,
                                                   "%s is already initialised (%s exists)", dir,
                                                   path));
    }
    if (db)
        snprintf(url, sizeof url, "%s", db);
    else
        snprintf(url, sizeof url, "%s/candor.db", dir);
    if ((err = cd__cli_env_open_url(dir, url, NULL, &env)) != CD_OK)
        return cd__cli_fail("init", err);
    if (db) {
        /* New keys could not read what an existing instance sealed under its own. */
        if ((err = cd_auth_token_list(env.store, &tokens)) != CD_OK)
            goto out;
        if (json_array_size(tokens) > 0) {
            err = cd_err_set(CD_ERR_CONFLICT,
                             "the database already holds a Candor instance (%zu API tokens); "
                             "use the data directory made with it, or an empty database",
                             json_array_size(tokens));
            goto out;
        }
        snprintf(path, sizeof path, "%s/%s", dir, CD__CLI_DB_URL_FILE);
        char line[CD_PATH_MAX + 2];
        snprintf(line, sizeof line, "%s\n", db);
        if ((err = cd__cli_write_secret_file(path, line)) != CD_OK)
            goto out;
    }
    struct cd_crypto_signer signer;
    snprintf(path, sizeof path, "%s/%s", dir, CD_CRYPTO_SIGNING_KEY_FILE);
    if ((err = cd_crypto_signer_load_or_create(path, &signer)) != CD_OK)
        goto out;
    cd_crypto_signer_wipe(&signer);
    if ((err = cd_auth_token_create(env.store, CD_ROLE_ADMIN, CD_STR("admin (candor init)"), 0,
                                    "cli", NULL, token, id)) != CD_OK)
        goto out;
    token[CD_TOKEN_LEN] = '\n';
    token[CD_TOKEN_LEN + 1] = '\0';
    snprintf(path, sizeof path, "%s/admin.token", dir);
    err = cd__cli_write_secret_file(path, token);
    cd_crypto_wipe(token, sizeof token);
    if (err == CD_OK)
        printf("initialised %s (%s)\nadmin token (%s) written to %s (mode 0600)\n", dir,
               db ? "PostgreSQL" : "SQLite", id, path);
out:
    json_decref(tokens);
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : cd__cli_fail("init", err);
}

/* ---- token ---- */

int cd_cli_token(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory", NULL, NULL},
        {"--role", "ROLE", CD_ROLE_NAMES, NULL, NULL},
        {"--name", "NAME", "who or what uses the token (shown in access logs)", NULL, NULL},
        {"--expires", "WHEN", "create: the token ends after this long (90d, 12h, 30m, 3600s) or "
                              "at this RFC 3339 time; default: until revoked", NULL, NULL},
        {"--format", "FMT", "text or json (list)", "text", NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[2];
    size_t npos = 0;
    bool help = false;
    struct cd__cli_env env;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 2, &npos, &help)) != CD_OK)
        return cd__cli_fail("token", err);
    if (help || npos == 0) {
        cd_cli_usage("token", "create|list|revoke [ID] --data DIR [options]",
                     "Manages API tokens. 'create' prints the new token once (only its hash is\n"
                     "stored); 'list' shows ids, roles and names; 'revoke ID' disables a token.",
                     opts);
        return help ? 0 : 2;
    }
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, NULL, &env)) != CD_OK)
        return cd__cli_fail("token", err);
    if (strcmp(pos[0], "create") == 0) {
        enum cd_role role;
        const char *r = cd_cli_get(opts, "--role"), *name = cd_cli_get(opts, "--name");
        const char *expires = cd_cli_get(opts, "--expires");
        char token[CD_TOKEN_LEN + 1], id[CD_ID_MAX], ts[CD_TIME_STRLEN];
        int64_t expires_at = 0;
        if (r == NULL || !cd_role_parse(cd_str_c(r), &role)) {
            err = cd_err_set(CD_ERR_INVALID, "--role must be one of %s", CD_ROLE_NAMES);
        } else if (name == NULL) {
            err = cd_err_set(CD_ERR_INVALID, "--name NAME is required");
        } else if (expires &&
                   (err = cd_auth_expiry_parse(cd_str_c(expires), cd_now_ms(), &expires_at)) !=
                       CD_OK) {
            cd_err_set(err, "--expires: %s", cd_err_detail());
        } else if ((err = cd_auth_token_create(env.store, role, cd_str_c(name), expires_at, "cli",
                                               NULL, token, id)) == CD_OK) {
            cd_time_format(expires_at, ts);
            printf("%s\n", token);
            fprintf(stderr, "created %s (%s%s%s); the token above is shown only once\n", id, r,
                    expires_at ? ", expires " : "", expires_at ? ts : "");
            cd_crypto_wipe(token, sizeof token);
        }
    } else if (strcmp(pos[0], "list") == 0) {
        json_t *items = NULL;
        if ((err = cd_auth_token_list(env.store, &items)) == CD_OK) {
            if (strcmp(cd_cli_get(opts, "--format"), "json") == 0) {
                json_dumpf(items, stdout, JSON_INDENT(2));
                printf("\n");
            } else {
                size_t i;
                json_t *t;
                json_array_foreach(items, i, t)
                {
                    const char *exp = json_string_value(json_object_get(t, "expires_at"));
                    printf("%s  %-11s  %-8s  %-24s  %s\n",
                           json_string_value(json_object_get(t, "id")),
                           json_string_value(json_object_get(t, "role")),
                           json_string_value(json_object_get(t, "status")),
                           exp ? exp : "no expiry", json_string_value(json_object_get(t, "name")));
                }
            }
            json_decref(items);
        }
    } else if (strcmp(pos[0], "revoke") == 0) {
        if (npos < 2)
            err = cd_err_set(CD_ERR_INVALID, "usage: candor token revoke ID --data DIR");
        else if ((err = cd_auth_token_revoke(env.store, cd_str_c(pos[1]), "cli", NULL)) == CD_OK)
            printf("revoked %s\n", pos[1]);
    } else {
        err = cd_err_set(CD_ERR_INVALID, "unknown token command '%s' (create, list, revoke)",
                         pos[0]);
    }
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : cd__cli_fail("token", err);
}

/* ---- audit ---- */

#define AUDIT_PROGRESS_MIN 200000 /* entries: below this a run is too short to report on */

static void audit_progress(uint64_t done, uint64_t total)
{
    if (total < AUDIT_PROGRESS_MIN)
        return;
    fprintf(stderr, isatty(2) ? "\rverified %llu of %llu entries" : "verified %llu of %llu entries\n",
            (unsigned long long)done, (unsigned long long)total);
}

static void export_progress(uint64_t done, uint64_t total)
{
    if (total >= AUDIT_PROGRESS_MIN)
        fprintf(stderr, "exported %llu of %llu entries\n", (unsigned long long)done,
                (unsigned long long)total);
}

/* Reads a small file (a public key or a tree head) into buf. */
static enum cd_err read_small_file(const char *path, struct cd_buf *buf)
{
    FILE *f = fopen(path, "rb");
    char chunk[1024];
    size_t n;
    enum cd_err err = CD_OK;

    if (f == NULL)
        return cd_err_set(CD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    while (err == CD_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        err = cd_buf_append(buf, chunk, n);
    if (err == CD_OK && ferror(f))
        err = cd_err_set(CD_ERR_IO, "cannot read %s", path);
    fclose(f);
    return err;
}

/* --pubkey KEY: a PEM file, a file holding hex, or the hex itself. */
static enum cd_err load_pubkey(const char *arg, uint8_t pk[CD_CRYPTO_PK_LEN])
{
    struct cd_buf b = CD_BUF_INIT(8192);
    struct stat st;
    enum cd_err err;

    if (stat(arg, &st) != 0)
        return cd_crypto_pubkey_parse(cd_str_c(arg), pk);
    if ((err = read_small_file(arg, &b)) == CD_OK)
        err = cd_crypto_pubkey_parse((struct cd_str){b.p ? b.p : "", b.len}, pk);
    cd_buf_free(&b);
    return err;
}

/* The trusted heads of a verify: DIR/audit-heads.jsonl (when verifying a data directory and the
 * file exists) and --trusted-head FILE. */
static enum cd_err load_trusted(const char *data, const char *file, struct cd_audit_trusted *t)
{
    char path[CD_PATH_MAX];
    enum cd_err err;

    if (data) {
        snprintf(path, sizeof path, "%s/%s", data, CD_AUDIT_HEADS_FILE);
        if ((err = cd_audit_trusted_load(t, path, true)) != CD_OK)
            return err;
    }
    return file ? cd_audit_trusted_load(t, file, false) : CD_OK;
}

static void trusted_note(const struct cd_audit_trusted *t)
{
    if (t->skipped)
        fprintf(stderr, "note: %zu partial line%s (a crash while a head was appended) ignored\n",
                t->skipped, t->skipped == 1 ? "" : "s");
}

/* Prints the outcome of one check; returns 0 (passed), 1 (integrity failure) or the exit code
 * of another error. */
static int audit_report(enum cd_err err, const struct cd_audit_report *rep)
{
    if (isatty(2) && rep->entries >= AUDIT_PROGRESS_MIN)
        fprintf(stderr, "\n");
    if (err == CD_OK) {
        printf("ok: %llu entries, %llu Merkle nodes and %llu signed tree heads verified",
               (unsigned long long)rep->entries, (unsigned long long)rep->nodes,
               (unsigned long long)rep->tree_heads);
        if (rep->trusted)
            printf("; %llu trusted heads found in the ledger, each consistent with it",
                   (unsigned long long)rep->trusted);
        printf("\n");
        return 0;
    }
    if (err != CD_ERR_INTEGRITY)
        return cd__cli_fail("audit", err);
    if (rep->bad_seq)
        fprintf(stderr, "FAILED at entry %llu: %s\n", (unsigned long long)rep->bad_seq,
                cd_err_detail());
    else
        fprintf(stderr, "FAILED: %s\n", cd_err_detail());
    return 1;
}

/* verify --export FILE --pubkey KEY [--trusted-head FILE]: no database involved. */
static int audit_verify_export(const char *path, const uint8_t pk[CD_CRYPTO_PK_LEN],
                               const char *trusted_file)
{
    struct cd_audit_report rep;
    struct cd_audit_trusted trusted;
    enum cd_err err;
    FILE *in;
    int rc;

    memset(&rep, 0, sizeof rep);
    memset(&trusted, 0, sizeof trusted);
    if ((err = cd_crypto_init()) != CD_OK ||
        (err = load_trusted(NULL, trusted_file, &trusted)) != CD_OK) {
        cd_audit_trusted_free(&trusted);
        return cd__cli_fail("audit", err);
    }
    in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (in == NULL) {
        cd_audit_trusted_free(&trusted);
        return cd__cli_fail("audit", cd_err_set(CD_ERR_IO, "cannot open %s: %s", path,
                                                strerror(errno)));
    }
    trusted_note(&trusted);
    err = cd_audit_verify_export(in, pk, &trusted, &rep, audit_progress);
    if (in != stdin)
        fclose(in);
    rc = audit_report(err, &rep);
    cd_audit_trusted_free(&trusted);
    return rc;
}

/* The public half of a key file of the data directory (signing.key, receipts.key), never
 * created here; false when the file does not exist. */
static enum cd_err data_pubkey(const char *data, const char *name, uint8_t pk[CD_CRYPTO_PK_LEN],
                               bool *have)
{
    char path[CD_PATH_MAX];
    struct stat st;
    struct cd_crypto_signer signer;
    enum cd_err err;

    *have = false;
    snprintf(path, sizeof path, "%s/%s", data, name);
    if (stat(path, &st) != 0)
        return CD_OK;
    if ((err = cd_crypto_signer_load_or_create(path, &signer)) != CD_OK)
        return err;
    memcpy(pk, signer.pk, CD_CRYPTO_PK_LEN);
    cd_crypto_signer_wipe(&signer);
    *have = true;
    return CD_OK;
}

/* The exit code of a check that did not pass: 1 for a finding (named on stderr), the code of
 * any other failure. */
static int check_failed(enum cd_err err)
{
    if (err != CD_ERR_INTEGRITY)
        return cd__cli_fail("audit", err);
    fprintf(stderr, "FAILED: %s\n", cd_err_detail());
    return 1;
}

/* The consent events against their ledger entries and signed receipts. */
static int verify_consent(struct cd_store *store, const char *data)
{
    struct cd_consent_report rep;
    uint8_t pk[CD_CRYPTO_PK_LEN];
    bool have = false;
    enum cd_err err;

    if ((err = data_pubkey(data, "receipts.key", pk, &have)) != CD_OK)
        return cd__cli_fail("audit", err);
    cd_err_clear();
    err = cd_consent_verify(store, have ? pk : NULL, &rep);
    if (err == CD_OK) {
        printf("ok: %llu consent events match their ledger entries%s",
               (unsigned long long)rep.events, have ? " and signed receipts" : "");
        if (rep.receipt_only)
            printf(" (%llu recorded before ledger binding, checked by receipt only)",
                   (unsigned long long)rep.receipt_only);
        printf("\n");
        return 0;
    }
    return check_failed(err);
}

/* Every sealed value against its row (needs the master key). */
static int verify_rows(struct cd_core *core)
{
    struct cd_core_rows_report rep;
    enum cd_err err;

    cd_err_clear();
    err = cd_core_verify_rows(core, &rep, audit_progress);
    if (err == CD_OK) {
        printf("ok: the sealed fields of %llu interactions (%llu values), %llu identities and "
               "%llu customers open under their rows",
               (unsigned long long)rep.interactions, (unsigned long long)rep.fields,
               (unsigned long long)rep.identities, (unsigned long long)rep.customers);
        if (rep.legacy_fields)
            printf(" (%llu values in the legacy format, re-sealed when candor serve starts)",
                   (unsigned long long)rep.legacy_fields);
        printf("\n");
        return 0;
    }
    return check_failed(err);
}

int cd_cli_audit(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory (verify, export)", NULL, NULL},
        {"--export", "FILE", "verify: check this export ('-' = stdin) instead of a data directory",
         NULL, NULL},
        {"--pubkey", "KEY", "verify: Ed25519 public key as a PEM file or 64 hex digits (with "
                            "--data the default is DIR/signing.key)", NULL, NULL},
        {"--trusted-head", "FILE", "verify: tree heads obtained outside the database (a head from "
                                   "GET /v1/audit/tree-heads/latest, a heads file, a consent "
                                   "receipt, a witness's JSON lines) the ledger must reach and "
                                   "agree with", NULL, NULL},
        {"--tree-head", "FILE", "verify: the same as --trusted-head", NULL, NULL},
        {"--ledger-only", NULL, "verify --data: check the ledger and its heads only, not the "
                                "consent events and sealed rows", NULL, NULL},
        {"--out", "FILE", "export: create FILE instead of writing to standard output", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false, have_pk = false;
    struct cd__cli_env env;
    struct cd_audit_report rep;
    enum cd_err err;
    uint8_t pk[CD_CRYPTO_PK_LEN];
    int rc;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 1, &npos, &help)) != CD_OK)
        return cd__cli_fail("audit", err);
    if (help || npos == 0) {
        cd_cli_usage("audit", "verify|export --data DIR | verify --export FILE --pubkey KEY",
                     "verify --data DIR  checks the data directory offline: every ledger entry's\n"
                     "                   hash chain, sequence and index columns, every stored\n"
                     "                   Merkle node, every signed tree head (root recomputed,\n"
                     "                   Ed25519 signature checked), the heads in\n"
                     "                   DIR/audit-heads.jsonl and --trusted-head (the ledger\n"
                     "                   reaches and agrees with each, RFC 9162 consistency\n"
                     "                   proofs, none deleted from the database), every consent\n"
                     "                   event against its ledger entry and signed receipt, and\n"
                     "                   every sealed value against its row (needs the master\n"
                     "                   key, as serve does).\n"
                     "verify --export F  checks an export without the database, as a third-party\n"
                     "                   auditor: chain and tree recomputed, signatures checked,\n"
                     "                   a tail cut off after a signed or trusted head detected.\n"
                     "export --data DIR  writes entries and tree heads as JSON lines.\n"
                     "verify names what was edited and exits 1 on tampering. Progress goes to\n"
                     "stderr on long runs. See docs/audit.md.",
                     opts);
        return help ? 0 : 2;
    }
    const char *data = cd_cli_get(opts, "--data"), *exp = cd_cli_get(opts, "--export");
    const char *pub = cd_cli_get(opts, "--pubkey");
    const char *trusted_file = cd_cli_get(opts, "--trusted-head");
    if (trusted_file == NULL)
        trusted_file = cd_cli_get(opts, "--tree-head");
    if (strcmp(pos[0], "verify") != 0 && strcmp(pos[0], "export") != 0)
        return cd__cli_fail("audit", cd_err_set(CD_ERR_INVALID,
                                                "unknown audit command '%s' (verify, export)",
                                                pos[0]));
    if (pub) {
        if ((err = cd_crypto_init()) != CD_OK || (err = load_pubkey(pub, pk)) != CD_OK)
            return cd__cli_fail("audit", err);
        have_pk = true;
    }
    if (strcmp(pos[0], "verify") == 0 && exp) {
        if (!have_pk)
            return cd__cli_fail("audit", cd_err_set(CD_ERR_INVALID,
                                                    "verify --export needs --pubkey KEY"));
        return audit_verify_export(exp, pk, trusted_file);
    }
    if ((err = cd__cli_env_open(data, NULL, NULL, &env)) != CD_OK)
        return cd__cli_fail("audit", err);
    if (strcmp(pos[0], "export") == 0) {
        const char *outp = cd_cli_get(opts, "--out");
        FILE *out = outp ? fopen(outp, "wbx") : stdout;
        uint64_t ne = 0, nh = 0;
        if (out == NULL) {
            err = cd_err_set(CD_ERR_IO, "cannot create %s: %s", outp, strerror(errno));
        } else {
            err = cd_audit_export(env.store, out, &ne, &nh, export_progress);
            if (out != stdout && fclose(out) != 0 && err == CD_OK)
                err = cd_err_set(CD_ERR_IO, "cannot write %s", outp);
            if (err == CD_OK)
                fprintf(stderr, "exported %llu entries and %llu tree heads\n",
                        (unsigned long long)ne, (unsigned long long)nh);
        }
        cd__cli_env_close(&env);
        return err == CD_OK ? 0 : cd__cli_fail("audit", err);
    }
    /* verify --data: the key defaults to the directory's signing key, never created here. */
    if (!have_pk && (err = data_pubkey(data, CD_CRYPTO_SIGNING_KEY_FILE, pk, &have_pk)) != CD_OK) {
        cd__cli_env_close(&env);
        return cd__cli_fail("audit", err);
    }
    struct cd_audit_trusted trusted;
    memset(&trusted, 0, sizeof trusted);
    if ((err = load_trusted(data, trusted_file, &trusted)) != CD_OK) {
        cd_audit_trusted_free(&trusted);
        cd__cli_env_close(&env);
        return cd__cli_fail("audit", err);
    }
    trusted_note(&trusted);
    cd_err_clear();
    err = cd_audit_verify_all(env.store, have_pk ? pk : NULL, &trusted, &rep, audit_progress);
    rc = audit_report(err, &rep);
    cd_audit_trusted_free(&trusted);
    /* Every check runs, so one report names every kind of edit; the worst exit code wins. */
    if (!cd_cli_get(opts, "--ledger-only")) {
        int rc2 = verify_consent(env.store, data), rc3 = verify_rows(env.core);
        if (rc2 > rc)
            rc = rc2;
        if (rc3 > rc)
            rc = rc3;
    }
    cd__cli_env_close(&env);
    return rc;
}
