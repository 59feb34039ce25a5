/* Notices: versioned, content-addressed texts a consent event may name (publishing one is a
 * ledger event of its own), and reading one back. */
#include <string.h>
#include "audit/audit.h"
#include "consent_int.h"

/* ---- notices ---- */

struct notice_w {
    struct cd_consent *c;
    const struct cd_actor *a;
    struct cd_str name, text, language;
    bool material;
    uint8_t sha[32];
    char id[CD_ID_MAX];
    int64_t version, at;
    bool existed;
    char other_name[64];
};

static enum cd_err notice_existing_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct notice_w *w = ctx;

    w->existed = true;
    cd__consent_copy(w->other_name, sizeof w->other_name, (struct cd_str){col[0].p, col[0].len});
    w->version = col[1].i;
    return CD_OK;
}

static enum cd_err notice_fn(struct cd_tx *tx, void *ctx)
{
    struct notice_w *w = ctx;
    struct cd_val s[1] = {CD_VBLOB(w->sha, 32)};
    enum cd_err err;

    if ((err = cd_tx_exec(tx, "SELECT name, version FROM consent_notices WHERE sha256 = $1", s,
                          1, notice_existing_row, w, NULL)) != CD_OK)
        return err;
    if (w->existed) {
        if (!cd_str_eq_c(w->name, w->other_name))
            return cd_err_set(CD_ERR_CONFLICT, "this text is already published under another "
                                               "notice name");
        return CD_OK;
    }
    struct cd_val nm[1] = {CD_VTEXT(w->name)};
    int64_t v = 0;
    err = cd_tx_int(tx, "SELECT coalesce(max(version), 0) FROM consent_notices WHERE name = $1", nm, 1, &v);
    if (err != CD_OK && err != CD_ERR_NOT_FOUND)
        return err;
    w->version = v + 1;
    struct cd_val p[8] = {CD_VCSTR(w->id),   CD_VTEXT(w->name),          CD_VINT(w->version),
                          CD_VBLOB(w->sha, 32), CD_VINT(w->material),    CD_VTEXT(w->language),
                          CD_VBLOB(w->text.p, w->text.len), CD_VINT(w->at)};
    if ((err = cd_tx_exec(tx, "INSERT INTO consent_notices(id, name, version, sha256, material, "
                              "language, text, published_at) VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    struct cd_audit_event ae = {.action = "notice.publish", .outcome = "ok",
                                .actor_token = w->a->token_id, .actor_role = w->a->role,
                                .actor_name = w->a->name, .request_id = w->a->request_id,
                                .resource_id = w->id,
                                .reason = w->material ? "material" : "non-material"};
    if ((err = cd_tx_notify(tx, "consent.notices")) != CD_OK)
        return err;
    return cd_audit_append(tx, &ae, NULL);
}

enum cd_err cd_consent_notice_publish(struct cd_consent *c, const struct cd_actor *a,
                                      const json_t *body, json_t **out, bool *created)
{
    static const char *const allowed[] = {"name", "text", "material", "language", NULL};
    struct notice_w w;
    enum cd_err err;
    char hex[65];

    memset(&w, 0, sizeof w);
    w.c = c;
    w.a = a;
    w.language = CD_STR("en");
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "name", true, &w.name)) != CD_OK ||
        (err = cd_json_str(body, "text", true, &w.text)) != CD_OK ||
        (err = cd_json_str(body, "language", false, &w.language)) != CD_OK ||
        (err = cd_json_bool(body, "material", false, &w.material)) != CD_OK)
        return err;
    for (size_t i = 0; i < w.name.len; i++)
        if (!((w.name.p[i] >= 'a' && w.name.p[i] <= 'z') || (w.name.p[i] >= '0' &&
              w.name.p[i] <= '9') || w.name.p[i] == '-' || w.name.p[i] == '_'))
            return cd_err_set(CD_ERR_INVALID, "'name' must be lower-case letters, digits, - _");
    if (w.name.len == 0 || w.name.len > 60)
        return cd_err_set(CD_ERR_INVALID, "'name' must have 1 to 60 characters");
    if (w.text.len == 0 || w.text.len > 256 * 1024)
        return cd_err_set(CD_ERR_INVALID, "'text' must have 1 to 262144 bytes");
    if (w.language.len == 0 || w.language.len > 15)
        return cd_err_set(CD_ERR_INVALID, "'language' must be a BCP 47 tag");
    if ((err = cd_crypto_sha256(w.text.p, w.text.len, w.sha)) != CD_OK)
        return err;
    /* Content-addressed: the id is the first 128 bits of the text's SHA-256. */
    cd_id_format(w.sha, "ntc", w.id);
    w.at = cd_now_ms();
    if ((err = cd_store_write(c->store, notice_fn, &w)) != CD_OK)
        return err;
    if (!w.existed) {
        cd__consent_wlock(c);
        err = cd__consent_notice_add(c, w.id, w.name, (uint32_t)w.version, w.material, w.sha);
        cd__consent_wunlock(c);
        if (err != CD_OK)
            return err;
    }
    *created = !w.existed;
    cd_hex_encode(w.sha, 32, hex);
    *out = json_pack("{s:s,s:s%,s:I,s:s,s:b}", "id", w.id, "name", w.name.p, w.name.len,
                     "version", (json_int_t)w.version, "sha256", hex, "material", w.material);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

struct notice_r {
    json_t *o;
};

static enum cd_err notice_get_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct notice_r *r = ctx;
    char hex[65], at[CD_TIME_STRLEN];

    if (col[3].len != 32)
        return cd_err_set(CD_ERR_INTEGRITY, "a notice row is malformed");
    cd_hex_encode(col[3].p, 32, hex);
    cd_time_format(col[7].i, at);
    r->o = json_pack("{s:s%,s:s%,s:I,s:s,s:b,s:s%,s:s%,s:s}", "id", col[0].p, col[0].len,
                     "name", col[1].p, col[1].len, "version", (json_int_t)col[2].i, "sha256", hex,
                     "material", (int)col[4].i, "language", col[5].p, col[5].len, "text",
                     col[6].p, col[6].len, "published_at", at);
    return r->o ? CD_OK : CD_ERR_NOMEM;
}

struct notice_q {
    struct cd_str id;
    struct notice_r r;
};

static enum cd_err notice_get_fn(struct cd_tx *tx, void *ctx)
{
    struct notice_q *q = ctx;
    struct cd_val p[1] = {CD_VTEXT(q->id)};

    return cd_tx_exec(tx, "SELECT id, name, version, sha256, material, language, text, "
                          "published_at FROM consent_notices WHERE id = $1",
                      p, 1, notice_get_row, &q->r, NULL);
}

enum cd_err cd_consent_notice_get(struct cd_consent *c, struct cd_str id, json_t **out)
{
    struct notice_q q = {id, {NULL}};
    enum cd_err err;

    if (!cd_id_valid(id, "ntc"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no notice with this id");
    if ((err = cd_store_read(c->store, notice_get_fn, &q)) != CD_OK) {
        json_decref(q.r.o);
        return err;
    }
    if (q.r.o == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "no notice with this id");
    *out = q.r.o;
    return CD_OK;
}
