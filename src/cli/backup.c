/* `candor backup`: a consistent copy of the database while it is in use. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cli_int.h"
#include "crypto/crypto.h"

#define PROGRESS_MIN_PAGES 25600 /* about 100 MiB: below this a copy is too quick to report */

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    if (total >= PROGRESS_MIN_PAGES)
        fprintf(stderr, "copied %llu of %llu pages\n", (unsigned long long)done,
                (unsigned long long)total);
}

int cd_cli_backup(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory (see candor init)", NULL, NULL},
        {"--db", "URL", "the database DIR belongs to (refused if it names another)", NULL, NULL},
        {"--out", "FILE", "the copy to create (never replaces a file)", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct cd_store *store = NULL;
    struct cd_store_backup_info info = {0, 0};
    char url[CD_PATH_MAX], when[CD_TIME_STRLEN];
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 0, &npos, &help)) != CD_OK)
        return cd__cli_fail("backup", err);
    if (help) {
        cd_cli_usage(
            "backup", "--data DIR --out FILE",
            "Writes a consistent copy of the database to FILE while candor serve goes on\n"
            "serving: every write acknowledged before the copy started is in it, none that\n"
            "came later. It uses SQLite's online backup API on one snapshot. FILE is created\n"
            "with mode 0600, first as FILE.partial, and appears only once it is complete,\n"
            "synced and has passed SQLite's quick_check; an existing file is never replaced.\n"
            "FILE is a self-contained SQLite database.\n"
            "\n"
            "The copy holds no keys. Personal data in it is sealed with per-customer keys that\n"
            "only the master key unwraps, so a copy that leaks, or outlives the erasure it\n"
            "should have forgotten, reveals nothing without the master key. That is why keys\n"
            "never go into the same file: keep them apart, under other access rules. Back up\n"
            "once, after the first start, from DIR: master.key (or the CANDOR_MASTER_KEY value\n"
            "the server runs with), signing.key (the audit ledger's signatures), receipts.key\n"
            "and unsubscribe.key (consent receipts, unsubscribe links). They do not change.\n"
            "\n"
            "To restore: stop the server; make an empty data directory (mode 0700, owned by the\n"
            "service's user); copy FILE to DIR/candor.db and the four key files into DIR (mode\n"
            "0600); run 'candor audit verify --data DIR', which checks the ledger's hash chain,\n"
            "Merkle tree and signed tree heads; start the server, which migrates an older copy\n"
            "to its schema. Customers erased after the copy was made come back with it: replay\n"
            "their erasures (customer.erase in the ledger) before serving (docs/crypto.md).\n"
            "\n"
            "A data directory on PostgreSQL (candor init --db) is backed up with PostgreSQL's\n"
            "tools instead, which this command names: pg_dump --format=custom takes one\n"
            "snapshot while Candor serves; pg_restore into an empty database, point\n"
            "DIR/database.url at it, and run 'candor audit verify --data DIR'. The keys are\n"
            "backed up apart from it, as above.",
            opts);
        return 0;
    }
    const char *data = cd_cli_get(opts, "--data"), *db = cd_cli_get(opts, "--db");
    const char *out = cd_cli_get(opts, "--out");
    if (out == NULL || strcmp(out, "-") == 0)
        return cd__cli_fail("backup", cd_err_set(CD_ERR_INVALID, "--out FILE is required (a "
                                                                 "file: the copy is not a "
                                                                 "stream)"));
    if (data == NULL)
        return cd__cli_fail("backup", cd_err_set(CD_ERR_INVALID, "--data DIR is required"));
    /* An uninitialised directory is refused there: opening a missing database would create an
     * empty one and back that up. */
    if ((err = cd__cli_db_url(data, db, url, sizeof url)) != CD_OK)
        return cd__cli_fail("backup", err);
    cd_time_format(cd_now_ms(), when);
    if ((err = cd_store_open(url, &store)) == CD_OK)
        err = cd_store_backup(store, out, progress, NULL, &info);
    cd_store_close(store);
    if (err != CD_OK)
        return cd__cli_fail("backup", err);
    printf("backup: %s (%llu bytes, schema version %d), a snapshot taken after %s\n", out,
           (unsigned long long)info.bytes, info.schema_version, when);
    printf("not in it, and needed to restore (keep copies apart from it): %s/%s or %s, "
           "%s/%s, %s/receipts.key, %s/unsubscribe.key\n",
           data ? data : "DIR", CD_CRYPTO_MASTER_KEY_FILE, CD_CRYPTO_MASTER_KEY_ENV,
           data ? data : "DIR", CD_CRYPTO_SIGNING_KEY_FILE, data ? data : "DIR",
           data ? data : "DIR");
    return 0;
}
