/* One-click unsubscribe (RFC 8058): links carrying a MAC-protected token with a single-use
 * nonce, and the withdrawal such a link records. */
#include <stdio.h>
#include <string.h>
#include "consent_int.h"
#include "core/core.h"

/* ---- one-click unsubscribe ---- */

#define TOKEN_BODY 35 /* version 1 + nonce 16 + customer 16 + purpose 1 + channel 1 */
#define TOKEN_LEN (TOKEN_BODY + 16)

static void token_mac(const struct cd_consent *c, const uint8_t *body, uint8_t mac[32])
{
    /* Keyed BLAKE2b-256 (the blind-index primitive) as a MAC under DATA/unsubscribe.key. */
    cd_crypto_blind_index(c->unsub_key, CD_STR("candor.unsubscribe.v1"),
                          (struct cd_str){(const char *)body, TOKEN_BODY}, mac);
}

struct nonce_w {
    const struct cd_actor *a;
    uint8_t nonce[16];
    char customer_id[CD_ID_MAX];
    const char *purpose, *channel;
    bool found;
    bool used;
    bool match;
};

static enum cd_err nonce_ins_fn(struct cd_tx *tx, void *ctx)
{
    struct nonce_w *w = ctx;
    struct cd_core_customer_ref ref;
    enum cd_err err = cd_core_customer_ref(tx, cd_str_c(w->customer_id), &ref);

    if (err != CD_OK)
        return err;
    if (!ref.exists)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    struct cd_val p[5] = {CD_VBLOB(w->nonce, 16), CD_VCSTR(w->customer_id), CD_VCSTR(w->purpose),
                          CD_VCSTR(w->channel), CD_VINT(cd_now_ms())};
    return cd_tx_exec(tx, "INSERT INTO consent_unsub_nonces(nonce, customer_id, purpose, channel, "
                          "created_at) VALUES($1,$2,$3,$4,$5)",
                      p, 5, NULL, NULL, NULL);
}

enum cd_err cd_consent_unsubscribe_link(struct cd_consent *c, const struct cd_actor *a,
                                        struct cd_str customer_id, enum cd_purpose purpose,
                                        enum cd_consent_channel channel, struct cd_str base_url,
                                        json_t **out)
{
    struct nonce_w w;
    uint8_t tok[TOKEN_LEN], mac[32];
    char b64[128], url[1200], hdr[1300];
    enum cd_err err;

    memset(&w, 0, sizeof w);
    if (!(base_url.len >= 8 && (strncmp(base_url.p, "https://", 8) == 0 ||
                                strncmp(base_url.p, "http://", 7) == 0)) ||
        base_url.len > 1000 || !cd__consent_printable(base_url, 1000) ||
        memchr(base_url.p, '>', base_url.len) || memchr(base_url.p, ' ', base_url.len))
        return cd_err_set(CD_ERR_INVALID, "'base_url' must be an http(s) URL without spaces");
    if ((unsigned)purpose >= CD_PURPOSE__COUNT || (unsigned)channel >= CD_CONSENT_CHANNEL__COUNT)
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    tok[0] = 1;
    cd_random_bytes(tok + 1, 16);
    if (!cd_id_bits(customer_id, "cus", tok + 17))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    tok[33] = (uint8_t)purpose;
    tok[34] = (uint8_t)channel;
    token_mac(c, tok, mac);
    memcpy(tok + TOKEN_BODY, mac, 16);
    memcpy(w.nonce, tok + 1, 16);
    cd__consent_copy(w.customer_id, sizeof w.customer_id, customer_id);
    w.purpose = cd_purpose_name(purpose);
    w.channel = cd__consent_channel_names[channel];
    w.a = a;
    if ((err = cd_store_write(c->store, nonce_ins_fn, &w)) != CD_OK)
        return err;
    cd_b64url_encode(tok, TOKEN_LEN, b64);
    size_t bl = base_url.len;
    while (bl && base_url.p[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%.*s/u/%s", (int)bl, base_url.p, b64);
    snprintf(hdr, sizeof hdr, "<%s>", url);
    *out = json_pack("{s:s,s:s,s:{s:s,s:s}}", "token", b64, "url", url, "headers",
                     "List-Unsubscribe", hdr, "List-Unsubscribe-Post",
                     "List-Unsubscribe=One-Click");
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* Decodes and authenticates a token. Errors: CD_ERR_NOT_FOUND for anything not genuine. */
static enum cd_err token_open(const struct cd_consent *c, struct cd_str token,
                              uint8_t tok[TOKEN_LEN])
{
    uint8_t mac[32];
    size_t n = 0;

    if (token.len > 100 || cd_b64url_decode(token, tok, TOKEN_LEN, &n) != CD_OK ||
        n != TOKEN_LEN || tok[0] != 1 || tok[33] >= CD_PURPOSE__COUNT ||
        tok[34] >= CD_CONSENT_CHANNEL__COUNT)
        return cd_err_set(CD_ERR_NOT_FOUND, "this unsubscribe link is not valid");
    token_mac(c, tok, mac);
    if (!cd_ct_eq(mac, tok + TOKEN_BODY, 16))
        return cd_err_set(CD_ERR_NOT_FOUND, "this unsubscribe link is not valid");
    return CD_OK;
}

static enum cd_err nonce_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct nonce_w *w = ctx;

    w->found = true;
    w->used = col[0].type != CD_VAL_NULL;
    w->match = col[1].type == CD_VAL_TEXT && col[1].len == strlen(w->customer_id) &&
               memcmp(col[1].p, w->customer_id, col[1].len) == 0;
    return CD_OK;
}

static enum cd_err nonce_get_fn(struct cd_tx *tx, void *ctx)
{
    struct nonce_w *w = ctx;
    struct cd_val p[1] = {CD_VBLOB(w->nonce, 16)};

    return cd_tx_exec(tx, "SELECT used_at, customer_id FROM consent_unsub_nonces WHERE nonce = $1",
                      p, 1, nonce_row, w, NULL);
}

static enum cd_err token_check(struct cd_consent *c, struct cd_str token, uint8_t tok[TOKEN_LEN],
                               struct nonce_w *w)
{
    enum cd_err err;

    memset(w, 0, sizeof *w);
    if ((err = token_open(c, token, tok)) != CD_OK)
        return err;
    memcpy(w->nonce, tok + 1, 16);
    cd_id_format(tok + 17, "cus", w->customer_id);
    if ((err = cd_store_read(c->store, nonce_get_fn, w)) != CD_OK)
        return err;
    if (!w->found || !w->match)
        return cd_err_set(CD_ERR_NOT_FOUND, "this unsubscribe link is not valid");
    if (w->used)
        return cd_err_set(CD_ERR_CONFLICT, "this unsubscribe link was already used");
    return CD_OK;
}

enum cd_err cd_consent_unsubscribe_peek(struct cd_consent *c, struct cd_str token,
                                        enum cd_purpose *purpose, enum cd_consent_channel *channel)
{
    uint8_t tok[TOKEN_LEN];
    struct nonce_w w;
    enum cd_err err = token_check(c, token, tok, &w);

    if (err != CD_OK)
        return err;
    *purpose = (enum cd_purpose)tok[33];
    *channel = (enum cd_consent_channel)tok[34];
    return CD_OK;
}

enum cd_err cd_consent_unsubscribe(struct cd_consent *c, struct cd_str token,
                                   const char *request_id, json_t **out)
{
    uint8_t tok[TOKEN_LEN];
    struct nonce_w w;
    struct cd__ev *e = NULL;
    struct cd_actor a = {"anonymous", "public", "one-click unsubscribe", request_id, NULL,
                         false, false};
    enum cd_err err;

    if ((err = token_check(c, token, tok, &w)) != CD_OK)
        return err;
    if ((e = cd_malloc(sizeof *e)) == NULL)
        return CD_ERR_NOMEM;
    cd__consent_ev_init(e, &a, "consent.unsubscribe");
    snprintf(e->customer_id, sizeof e->customer_id, "%s", w.customer_id);
    e->purpose = (enum cd_purpose)tok[33];
    e->channel = (enum cd_consent_channel)tok[34];
    e->state = CD_CONSENT_WITHDRAWN;
    snprintf(e->basis, sizeof e->basis, "consent");
    snprintf(e->method, sizeof e->method, "unsubscribe");
    snprintf(e->collector, sizeof e->collector, "RFC 8058 one-click");
    snprintf(e->language, sizeof e->language, "en");
    snprintf(e->evidence, sizeof e->evidence, "List-Unsubscribe=One-Click; request %s",
             request_id ? request_id : "-");
    e->occurred_at = e->recorded_at;
    e->flags = CD__SF_UNSUB;
    e->nonce = tok + 1;
    err = cd__consent_record_ev(c, e, out);
    cd_free(e->receipt);
    cd_free(e);
    return err;
}
