/* libFuzzer driver for the trusted heads a verifier is given (cd_audit_trusted_parse): the
 * bytes are a heads file, a witness's JSON lines, a tree head or a consent receipt. Whatever
 * the input, the result is CD_OK with heads that parsed or CD_ERR_INVALID naming the line, a
 * source that always fits, and nothing leaks. */
#include <assert.h>
#include <string.h>
#include "audit/audit.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cd_json_init();
    return cd_crypto_init() == CD_OK ? 0 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cd_audit_trusted t = {0};
    enum cd_err err = cd_audit_trusted_parse(&t, (const char *)data, size, "fuzz.jsonl");

    assert(err == CD_OK || err == CD_ERR_INVALID || err == CD_ERR_NOMEM);
    assert(t.n <= t.cap);
    for (size_t i = 0; i < t.n; i++)
        assert(strncmp(t.source[i], "fuzz.jsonl", 10) == 0);
    cd_audit_trusted_free(&t);
    return 0;
}
