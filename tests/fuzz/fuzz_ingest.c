/* libFuzzer driver for request-body parsing on the ingestion path: the bytes are a POST
 * /v1/interactions body, run through JSON parsing, validation, identity normalisation,
 * sealing and the store (a real SQLite file on tmpfs). Whatever the input, the result is
 * CD_OK or a clean error, and nothing leaks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/core.h"
#include "crypto/crypto.h"

static struct cd_store *store;
static struct cd_core *core;

static void cleanup(void)
{
    char p[128];

    cd_core_close(core);
    cd_store_close(store);
    snprintf(p, sizeof p, "/dev/shm/candor-fuzz-%d.db", (int)getpid());
    unlink(p);
    snprintf(p, sizeof p, "/dev/shm/candor-fuzz-%d.db-wal", (int)getpid());
    unlink(p);
    snprintf(p, sizeof p, "/dev/shm/candor-fuzz-%d.db-shm", (int)getpid());
    unlink(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[128];
    uint8_t master[32] = {1, 2, 3};

    cd_json_init();
    cd_crypto_init();
    cd_log_set_level(CD_LOG_ERROR);
    snprintf(path, sizeof path, "/dev/shm/candor-fuzz-%d.db", (int)getpid());
    unlink(path);
    if (cd_store_open(path, &store) != CD_OK || cd_core_open(store, master, &core) != CD_OK)
        abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cd_actor a = {"tok_fuzz", "integration", "fuzz", "req_fuzz", NULL, false, false};
    json_t *body = NULL, *findings = NULL;
    struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    bool replayed = false;

    if (size > 64 * 1024)
        return 0;
    if (cd_json_parse_object((const char *)data, size, &body) != CD_OK)
        return 0;
    enum cd_err err = cd_core_interaction_ingest(core, &a, body, NULL, CD_FIELDS_ALL, &out,
                                                 &findings, &replayed);
    /* A stored interaction answers with one JSON object. */
    if (err == CD_OK) {
        json_t *answer = json_loadb(out.p, out.len, 0, NULL);
        if (!json_is_object(answer))
            abort();
        json_decref(answer);
    }
    json_decref(findings);
    cd_buf_free(&out);
    json_decref(body);
    return 0;
}
