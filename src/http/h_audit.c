/* Audit ledger handlers: list and verify the ledger, signed tree heads, inclusion and
 * consistency proofs, the public key. Thin: parse parameters, call src/audit, hand back JSON.
 * Proofs for an entry or size that does not exist are problems: 400 invalid-request for a
 * missing, non-numeric or zero parameter (or first > second), 404 not-found for a size beyond
 * the ledger or an entry beyond the tree size. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "http_int.h"

enum cd_err cd__http_audit_list(struct cd_req *r)
{
    struct cd_audit_query q = {cd__http_query(r, "customer_id"), cd__http_query(r, "action"),
                               cd__http_query(r, "actor_token"), cd__http_query(r, "cursor"),
                               0, 0, 50};
    struct cd_str since = cd__http_query(r, "since"), until = cd__http_query(r, "until");
    enum cd_err err = cd__http_query_int(r, "limit", 50, 1, 500, &q.limit);

    if (err == CD_OK && since.p)
        err = cd_time_parse(since, &q.since_ms);
    if (err == CD_OK && until.p)
        err = cd_time_parse(until, &q.until_ms);
    if (err != CD_OK)
        return err;
    return cd_audit_list(r->app->store, &q, &r->resp_json);
}

/* Verifies the whole ledger: chain, index columns, Merkle nodes, every stored tree head
 * (signatures under the server's key) and the heads in the data directory's heads file. A
 * failed check is a 200 answer with ok false: the request succeeded. */
enum cd_err cd__http_audit_verify(struct cd_req *r)
{
    struct cd_audit_report rep;
    struct cd_audit_trusted trusted;
    uint8_t pk[CD_CRYPTO_PK_LEN];
    bool have_pk = r->app->audit && cd_audit_public_key(r->app->audit, pk) == CD_OK;
    char path[CD_PATH_MAX];
    enum cd_err err = CD_OK;

    memset(&trusted, 0, sizeof trusted);
    if (r->app->data_dir) {
        snprintf(path, sizeof path, "%s/%s", r->app->data_dir, CD_AUDIT_HEADS_FILE);
        err = cd_audit_trusted_load(&trusted, path, true);
    }
    cd_err_clear();
    if (err == CD_OK)
        err = cd_audit_verify_all(r->app->store, have_pk ? pk : NULL, &trusted, &rep, NULL);
    cd_audit_trusted_free(&trusted);
    if (err == CD_ERR_INTEGRITY || err == CD_ERR_INVALID) {
        /* An unreadable heads file is a finding too, not a bad request. */
        r->resp_json = json_pack("{s:b,s:I,s:I,s:s}", "ok", 0, "checked",
                                 (json_int_t)rep.entries, "first_bad_entry",
                                 (json_int_t)rep.bad_seq, "detail", cd_err_detail());
        return r->resp_json ? CD_OK : CD_ERR_NOMEM;
    }
    if (err != CD_OK)
        return err;
    r->resp_json = json_pack("{s:b,s:I,s:I,s:I,s:I}", "ok", 1, "checked", (json_int_t)rep.entries,
                             "nodes_checked", (json_int_t)rep.nodes, "tree_heads_checked",
                             (json_int_t)rep.tree_heads, "trusted_heads_checked",
                             (json_int_t)rep.trusted);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd__http_audit_sth_latest(struct cd_req *r)
{
    struct cd_audit_sth sth;
    enum cd_err err = cd_audit_sth_latest(r->app->store, &sth);

    if (err != CD_OK)
        return err;
    return cd_audit_sth_json(&sth, &r->resp_json);
}

enum cd_err cd__http_audit_sth_publish(struct cd_req *r)
{
    struct cd_audit_sth sth;
    bool created = false;
    enum cd_err err;

    if (r->app->audit == NULL)
        return cd_err_set(CD_ERR_CRYPTO, "this server has no signing key");
    if ((err = cd_audit_publish(r->app->audit, &sth, &created)) != CD_OK)
        return err;
    if ((err = cd_audit_sth_json(&sth, &r->resp_json)) != CD_OK)
        return err;
    r->status = created ? 201 : 200;
    if (created)
        snprintf(r->location, sizeof r->location, "/v1/audit/tree-heads/latest");
    return CD_OK;
}

/* A required positive 64-bit query parameter. Errors: CD_ERR_INVALID naming it. */
static enum cd_err query_u64(const struct cd_req *r, const char *key, uint64_t *out)
{
    struct cd_str v = cd__http_query(r, key);
    char buf[24], *end = NULL;
    unsigned long long n;

    if (v.p == NULL || v.len == 0 || v.len >= sizeof buf || v.p[0] < '0' || v.p[0] > '9')
        goto bad;
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    n = strtoull(buf, &end, 10);
    if (*end != '\0' || n == 0 || n > (1ull << 62))
        goto bad;
    *out = n;
    return CD_OK;
bad:
    return cd_err_set(CD_ERR_INVALID, "query parameter '%s' must be a positive integer", key);
}

enum cd_err cd__http_audit_inclusion(struct cd_req *r)
{
    uint64_t seq = 0, size = 0;
    enum cd_err err;

    if ((err = query_u64(r, "seq", &seq)) != CD_OK ||
        (err = query_u64(r, "tree_size", &size)) != CD_OK)
        return err;
    return cd_audit_inclusion(r->app->store, seq, size, &r->resp_json);
}

enum cd_err cd__http_audit_consistency(struct cd_req *r)
{
    uint64_t first = 0, second = 0;
    enum cd_err err;

    if ((err = query_u64(r, "first", &first)) != CD_OK ||
        (err = query_u64(r, "second", &second)) != CD_OK)
        return err;
    return cd_audit_consistency(r->app->store, first, second, &r->resp_json);
}

enum cd_err cd__http_audit_public_key(struct cd_req *r)
{
    uint8_t pk[CD_CRYPTO_PK_LEN], id[CD_CRYPTO_HASH_LEN];
    char hex[CD_CRYPTO_PK_HEX_LEN + 1], idhex[2 * CD_CRYPTO_HASH_LEN + 1];
    struct cd_buf pem = CD_BUF_INIT(1024);
    enum cd_err err;

    if (r->app->audit == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "this server has no signing key");
    if ((err = cd_audit_public_key(r->app->audit, pk)) != CD_OK ||
        (err = cd_crypto_pubkey_id(pk, id)) != CD_OK ||
        (err = cd_crypto_pubkey_pem(pk, &pem)) != CD_OK)
        goto out;
    cd_crypto_pubkey_hex(pk, hex);
    cd_hex_encode(id, sizeof id, idhex);
    r->resp_json = json_pack("{s:s,s:s,s:s%,s:s,s:s}", "algorithm", "Ed25519", "public_key_hex",
                             hex, "public_key_pem", pem.p, pem.len, "key_id", idhex,
                             "tree_head_format", CD_AUDIT_STH_DOMAIN);
    err = r->resp_json ? CD_OK : CD_ERR_NOMEM;
out:
    cd_buf_free(&pem);
    return err;
}
