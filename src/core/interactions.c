/* Interactions: ingestion (with identity resolution, the in-path hooks and idempotency), one
 * interaction, and the timeline with keyset cursors. */
#include <stdio.h>
#include <string.h>
#include "core_int.h"
#include "policy/policy.h"

static const char *const channels[] = {CD_CHANNELS(CD_NAME_ITEM) NULL};
static const char *const directions[] = {"inbound", "outbound", NULL};

static bool in_list(struct cd_str s, const char *const *list)
{
    for (; *list; list++)
        if (cd_str_eq_c(s, *list))
            return true;
    return false;
}

bool cd_core_channel_valid(struct cd_str s)
{
    return in_list(s, channels);
}

bool cd_core_direction_valid(struct cd_str s)
{
    return in_list(s, directions);
}

/* ---- cursors: base64url("<occurred_at ms>.<id>") ---- */

enum cd_err cd__core_cursor_decode(struct cd_str cursor, int64_t *ms, char id[CD_ID_MAX])
{
    char raw[64], *dot, *end = NULL;
    size_t n = 0;

    if (cursor.len == 0) {
        *ms = INT64_MAX;
        snprintf(id, CD_ID_MAX, "~"); /* sorts after every id */
        return CD_OK;
    }
    if (cd_b64url_decode(cursor, raw, sizeof raw - 1, &n) != CD_OK)
        goto bad;
    raw[n] = '\0';
    if ((dot = memchr(raw, '.', n)) == NULL)
        goto bad;
    *dot = '\0';
    *ms = strtoll(raw, &end, 10);
    if (end == raw || *end != '\0' || strlen(dot + 1) >= CD_ID_MAX || dot[1] == '\0')
        goto bad;
    snprintf(id, CD_ID_MAX, "%s", dot + 1);
    return CD_OK;
bad:
    return cd_err_set(CD_ERR_INVALID, "the cursor is not one this server issued");
}

void cd__core_cursor_text(int64_t ms, const char *id, char out[CD__CURSOR_MAX])
{
    char raw[64];
    int n = snprintf(raw, sizeof raw, "%lld.%s", (long long)ms, id);

    cd_b64url_encode(raw, (size_t)n, out);
}

enum cd_err cd__core_cursor_encode(int64_t ms, const char *id, json_t **out)
{
    char enc[CD__CURSOR_MAX];

    cd__core_cursor_text(ms, id, enc);
    *out = json_string(enc);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* ---- rendering ---- */

/* Appends ,"key":"value" (escaped). */
static enum cd_err put_str_member(struct cd_buf *b, const char *key, const char *v)
{
    enum cd_err err = cd_buf_puts(b, key);

    return err != CD_OK ? err : cd_buf_json_text(b, cd_str_c(v));
}

/* Appends ,"key":"<RFC 3339 time>". */
static enum cd_err put_time_member(struct cd_buf *b, const char *key, int64_t ms)
{
    char ts[CD_TIME_STRLEN];

    cd_time_format(ms, ts);
    return put_str_member(b, key, ts);
}

/* Appends ,"key":"text" or ,"key":null. */
static enum cd_err put_opt_member(struct cd_buf *b, const char *key, struct cd_str v)
{
    enum cd_err err = cd_buf_puts(b, key);

    if (err != CD_OK)
        return err;
    return v.p ? cd_buf_json_text(b, v) : cd_buf_puts(b, "null");
}

enum cd_err cd__core_interaction_write(struct cd_buf *b, const struct cd__interaction_row *r,
                                       const struct cd__interaction_text *t, const char *extra)
{
    size_t mark = b->len;
    enum cd_err err;

    if ((err = cd_buf_puts(b, "{\"id\":")) != CD_OK ||
        (err = cd_buf_json_text(b, cd_str_c(r->id))) != CD_OK ||
        (err = put_str_member(b, ",\"customer_id\":", r->customer_id)) != CD_OK ||
        (err = put_str_member(b, ",\"channel\":", r->channel)) != CD_OK ||
        (err = put_str_member(b, ",\"direction\":", r->direction)) != CD_OK ||
        (err = put_str_member(b, ",\"purpose\":", r->purpose)) != CD_OK ||
        (err = put_time_member(b, ",\"occurred_at\":", r->occurred_at)) != CD_OK ||
        (err = put_time_member(b, ",\"created_at\":", r->created_at)) != CD_OK)
        goto fail;
    if (r->guard.type == CD_VAL_BLOB || r->guard.type == CD_VAL_TEXT) {
        /* The verdict is stored in clear (it holds no personal data), so a damaged column is
         * checked rather than copied into the answer: not a JSON object, it is left out. */
        json_error_t jerr;
        json_t *g = json_loadb(r->guard.p, r->guard.len, 0, &jerr);
        bool ok = json_is_object(g);
        json_decref(g);
        if (ok && ((err = cd_buf_puts(b, ",\"guard\":")) != CD_OK ||
                   (err = cd_buf_append(b, r->guard.p, r->guard.len)) != CD_OK))
            goto fail;
    }
    if (t && t->shown) {
        /* The metadata plaintext is the JSON text sealed at ingestion; the AEAD tag proves it
         * is those very bytes, so it is copied, not parsed again. */
        if ((err = put_opt_member(b, ",\"thread_id\":", t->thread_id)) != CD_OK ||
            (err = put_opt_member(b, ",\"subject\":", t->subject)) != CD_OK ||
            (err = put_opt_member(b, ",\"body\":", t->body)) != CD_OK ||
            (err = cd_buf_puts(b, ",\"metadata\":")) != CD_OK ||
            (err = t->metadata.p ? cd_buf_append(b, t->metadata.p, t->metadata.len)
                                 : cd_buf_puts(b, "{}")) != CD_OK)
            goto fail;
    }
    if ((extra && (err = cd_buf_puts(b, extra)) != CD_OK) || (err = cd_buf_putc(b, '}')) != CD_OK)
        goto fail;
    return CD_OK;
fail:
    b->len = mark;
    if (b->p)
        b->p[mark] = '\0';
    return err == CD_ERR_TOO_BIG ? CD_ERR_NOMEM : err;
}

/* ---- ingestion ---- */

struct ingest_ctx {
    struct cd_core *c;
    const struct cd_actor *a;
    const struct cd_idem *idem; /* NULL, or &idem_copy */
    struct cd_idem idem_copy;
    uint8_t idem_hash[CD_CRYPTO_HASH_LEN]; /* the key's keyed hash */
    unsigned fields; /* what the answer may show */
    /* resolved before the write */
    struct cd_str customer_id_in;
    struct cd_str ident_type;
    char ident_network[72];
    uint8_t lookup[CD_CRYPTO_HASH_LEN];
    bool by_identity;
    struct cd_buf ident_norm;
    /* The identity's confusable skeleton, needed only when it makes a new customer: computed
     * before the write when the read found no owner (skeleton_ok), else in it. */
    bool skeleton_ok, beyond_ascii;
    uint8_t skeleton[CD_CRYPTO_HASH_LEN];
    struct cd__interaction_row row;
    struct cd_str subject, body;
    struct cd_str topic; /* metadata.topic (borrowed from the request body), may be empty */
    char *metadata;     /* serialised, cd_malloc'ed */
    char *masked_body;  /* inbound body after masking, cd_malloc'ed */
    char *guard_json;   /* findings, cd_malloc'ed */
    const json_t *meta_obj; /* the body's metadata object (borrowed), or NULL */
    json_t *note;       /* the annotate hook's note for the recorded hook, or NULL */
    struct cd_buf s_subject, s_body, s_meta, s_ident, s_thread;
    uint8_t thread_hash[CD_CRYPTO_HASH_LEN]; /* for the customer the fields are sealed for */
    /* Whom s_subject, s_body and s_meta are sealed for: a customer and the wrapped key that was
     * unwrapped to seal them (fields_for_ok false: for nobody yet); ident_for likewise for
     * s_ident. pre_seal fills them before the write for the owner a read saw (or for a new
     * customer, below); the write uses them only when they match the owner it finds, and
     * seals again otherwise, so a rerun of the write never uses fields sealed for another. */
    bool fields_for_ok;
    char fields_for[CD_ID_MAX];
    uint8_t fields_for_wrapped[CD_CRYPTO_WRAPPED_LEN];
    char ident_for[CD_ID_MAX];
    /* A customer made before the write for an identity the read found no owner for: its id and
     * wrapped key (pre_new). The write creates it if the identity still has no owner. */
    bool pre_new;
    char new_customer_id[CD_ID_MAX];
    uint8_t new_wrapped[CD_CRYPTO_WRAPPED_LEN];
    /* The interaction.ingest audit event prepared before the write for the owner the read saw
     * (audit_for; audit_ok false: not prepared). The write appends it when that is still the
     * owner, and builds the event itself otherwise. */
    bool audit_ok;
    char audit_for[CD_ID_MAX];
    struct cd_audit_prepared audit;
    /* decided in the write */
    char replay_id[CD_ID_MAX];
    /* the identity's owner and wrapped key the write used, for the owner cache */
    bool owner_known;
    char owner_id[CD_ID_MAX];
    uint8_t owner_wrapped[CD_CRYPTO_WRAPPED_LEN];
    uint64_t owners_gen; /* the cache's generation before the first read of the owner */
    bool created_customer;
    /* Overrides the outbound hook honoured, for their audit events: rule ids "A,B" and the
     * reason as the hook keeps it (cd_malloc'ed; NULL when not overridden). */
    char *guard_rules, *guard_reason;
    char *purpose_rules, *purpose_reason;
};

/* The categories the ingestion's answer echoes: the conversation (what the request itself
 * carried) when the declared purpose may see it, else nothing personal. The write's own
 * ledger entry names them, with the purpose: ingestion is the hot write path, and a separate
 * read entry would cost the writer a second append per row. */
static unsigned echoed(const struct ingest_ctx *ic)
{
    return (ic->fields & CD_FIELDS_CONVERSATION) ? CD_FIELDS_REFERENCE | CD_FIELDS_CONVERSATION
                                                 : 0;
}

struct ident_lookup {
    char customer_id[CD_ID_MAX];
    struct cd_buf wrapped;
    bool found;
};

static enum cd_err owner_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct ident_lookup *l = ctx;

    l->found = true;
    cd__core_col_text(cols[0], l->customer_id, sizeof l->customer_id);
    cd_buf_reset(&l->wrapped);
    if (n > 1 && cols[1].type == CD_VAL_BLOB)
        return cd_buf_append(&l->wrapped, cols[1].p, cols[1].len);
    return CD_OK;
}

static const char SELECT_BY_IDENTITY[] =
    "SELECT c.id, c.key_wrapped FROM identities i JOIN customers c ON c.id = i.customer_id"
    " WHERE i.kind = $1 AND i.lookup = $2";
static const char SELECT_IDENTITY_OWNER[] =
    "SELECT customer_id FROM identities WHERE kind = $1 AND lookup = $2";
static const char SELECT_BY_ID[] =
    "SELECT id, key_wrapped FROM customers WHERE id = $1 AND merged_into IS NULL"
    " AND erased_at IS NULL";

/* Seals the fields under k, the key that `wrapped` (CD_CRYPTO_WRAPPED_LEN bytes) holds, bound
 * to the row (its id and metadata are known before the write and never change there). */
static enum cd_err seal_all(struct ingest_ctx *ic, const struct cd__ckey *k,
                            const void *wrapped)
{
    struct cd__row_binding b;
    enum cd_err err = CD_OK;

    ic->fields_for_ok = false;
    cd__core_interaction_binding(&b, ic->row.id, ic->row.channel, ic->row.direction,
                                 ic->row.occurred_at, ic->row.purpose);
    if (ic->subject.p)
        err = cd__core_seal_row(k, "subject", &b, ic->subject, &ic->s_subject);
    if (err == CD_OK && ic->body.p)
        err = cd__core_seal_row(k, "body", &b, ic->body, &ic->s_body);
    if (err == CD_OK && ic->metadata)
        err = cd__core_seal_row(k, "metadata", &b, cd_str_c(ic->metadata), &ic->s_meta);
    if (err == CD_OK && ic->row.thread_id[0]) {
        err = cd__core_seal_row(k, "thread_id", &b, cd_str_c(ic->row.thread_id), &ic->s_thread);
        cd__core_thread_hash(ic->c, k->customer_id, cd_str_c(ic->row.thread_id),
                             ic->thread_hash);
    }
    if (err == CD_OK) {
        snprintf(ic->fields_for, sizeof ic->fields_for, "%s", k->customer_id);
        memcpy(ic->fields_for_wrapped, wrapped, CD_CRYPTO_WRAPPED_LEN);
        ic->fields_for_ok = true;
    }
    return err;
}

/* True when the fields are sealed for this customer under this wrapped key. */
static bool fields_sealed_for(const struct ingest_ctx *ic, const char *customer_id,
                              const void *wrapped, size_t len)
{
    return ic->fields_for_ok && strcmp(ic->fields_for, customer_id) == 0 &&
           len == CD_CRYPTO_WRAPPED_LEN && memcmp(ic->fields_for_wrapped, wrapped, len) == 0;
}

/* The identity's owner and its wrapped key, read inside the write. When the fields were sealed
 * before the write for the customer the identity still points to, the key they were sealed under
 * is that customer's key, and it is not read again (a B-tree search of customers by text id, on
 * the writer, the serial part of every ingest). Why that holds: a customer's wrapped key is set
 * when the customer is created and changes only when it is merged away or erased, and the same
 * transaction then moves its identities to the survivor or deletes them; identities are only
 * ever added to a live customer. So while an identity points to a customer, that customer has
 * the key it was created with, the one pre_seal (or the owner cache) saw. */
static enum cd_err owner_by_identity(struct cd_tx *tx, const struct ingest_ctx *ic,
                                     struct ident_lookup *l)
{
    struct cd_val p[] = {CD_VTEXT(ic->ident_type), CD_VBLOB(ic->lookup, sizeof ic->lookup)};
    enum cd_err err;

    if (ic->fields_for_ok) {
        if ((err = cd_tx_exec(tx, SELECT_IDENTITY_OWNER, p, 2, owner_row, l, NULL)) != CD_OK ||
            !l->found)
            return err;
        if (strcmp(l->customer_id, ic->fields_for) == 0) {
            cd_buf_reset(&l->wrapped);
            return cd_buf_append(&l->wrapped, ic->fields_for_wrapped, CD_CRYPTO_WRAPPED_LEN);
        }
        l->found = false; /* another owner: its key is needed, to seal again */
    }
    return cd_tx_exec(tx, SELECT_BY_IDENTITY, p, 2, owner_row, l, NULL);
}

/* Seals the normalised identity under k (a new customer's key). */
static enum cd_err seal_ident(struct ingest_ctx *ic, const struct cd__ckey *k)
{
    enum cd_err err;

    ic->ident_for[0] = '\0';
    err = cd__core_seal(k, "identity", (struct cd_str){ic->ident_norm.p, ic->ident_norm.len},
                        &ic->s_ident);
    if (err == CD_OK)
        snprintf(ic->ident_for, sizeof ic->ident_for, "%s", k->customer_id);
    return err;
}

static struct cd_val opt_blob(const struct cd_buf *b, bool has)
{
    return has ? CD_VBLOB(b->p, b->len) : CD_VNULL;
}

struct thread_prev {
    char ids[CD_CORE_THREAD_PREV_MAX][CD_ID_MAX];
    size_t n;
};

static enum cd_err thread_prev_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct thread_prev *t = ctx;

    if (t->n < CD_CORE_THREAD_PREV_MAX)
        cd__core_col_text(cols[0], t->ids[t->n++], CD_ID_MAX);
    return CD_OK;
}

/* The recorded hook, with the thread's earlier interactions, found by the thread's keyed hash
 * for the customer the interaction was stored for. */
static enum cd_err recorded(struct cd_tx *tx, const struct ingest_ctx *ic)
{
    const struct cd_core_hooks *h = &ic->c->hooks;
    struct thread_prev t = {.n = 0};
    enum cd_err err;

    if (h->recorded == NULL)
        return CD_OK;
    if (ic->row.thread_id[0]) {
        struct cd_val p[] = {CD_VBLOB(ic->thread_hash, CD_CRYPTO_HASH_LEN), CD_VCSTR(ic->row.id),
                             CD_VINT(CD_CORE_THREAD_PREV_MAX)};
        if ((err = cd_tx_exec(tx, "SELECT id FROM interactions WHERE thread_hash = $1"
                                  " AND id <> $2 ORDER BY occurred_at DESC, id DESC LIMIT $3",
                              p, 3, thread_prev_row, &t, NULL)) != CD_OK)
            return err;
    }
    struct cd_core_recorded r = {.actor = ic->a,
                                 .id = ic->row.id,
                                 .customer_id = ic->row.customer_id,
                                 .channel = ic->row.channel,
                                 .direction = ic->row.direction,
                                 .purpose = ic->row.purpose,
                                 .occurred_at = ic->row.occurred_at,
                                 .created_at = ic->row.created_at,
                                 .customer_created = ic->created_customer,
                                 .threaded = ic->row.thread_id[0] != '\0',
                                 .thread_prev = (const char(*)[CD_ID_MAX])t.ids,
                                 .nthread_prev = t.n,
                                 .note = ic->note};
    return h->recorded(h->ctx, tx, &r);
}

/* Ingestion, phase 1: whose interaction this is. By identity, the identity's owner (none: a new
 * customer); by id, that customer as merges resolve it, who must exist and not be erased. */
static enum cd_err find_owner(struct cd_tx *tx, struct ingest_ctx *ic, struct ident_lookup *l)
{
    char resolved[CD_ID_MAX];
    bool exists = false;
    enum cd_err err;

    if (ic->by_identity)
        return owner_by_identity(tx, ic, l);
    if ((err = cd__core_resolve(tx, ic->customer_id_in, resolved, &exists)) != CD_OK)
        return err;
    if (!exists)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id in 'customer_id'");
    struct cd_val p[] = {CD_VCSTR(resolved)};
    if ((err = cd_tx_exec(tx, SELECT_BY_ID, p, 1, owner_row, l, NULL)) != CD_OK)
        return err;
    if (!l->found)
        return cd_err_set(CD_ERR_CONFLICT, "the customer's data was erased; new interactions "
                                           "start a new customer");
    return CD_OK;
}

/* Phase 2a: the owner exists; the fields are sealed under their key unless they were before
 * the write under this very key (same customer, same wrapped key). */
static enum cd_err seal_for_owner(struct ingest_ctx *ic, const struct ident_lookup *l,
                                  struct cd__ckey *k, bool *key_open)
{
    enum cd_err err;

    snprintf(ic->row.customer_id, sizeof ic->row.customer_id, "%s", l->customer_id);
    if (fields_sealed_for(ic, l->customer_id, l->wrapped.p, l->wrapped.len))
        return CD_OK;
    struct cd_val w = {l->wrapped.len ? CD_VAL_BLOB : CD_VAL_NULL, 0, l->wrapped.p,
                       l->wrapped.len};
    if ((err = cd__core_key_open(ic->c, l->customer_id, w, k)) != CD_OK)
        return err;
    *key_open = true;
    return seal_all(ic, k, l->wrapped.p);
}

/* Phase 2b: a new identity; the customer is created with it, as prepared before the write when
 * the read there found no owner either (pre_new), else here. */
static enum cd_err create_owner(struct cd_tx *tx, struct ingest_ctx *ic, struct cd__ckey *k,
                                bool *key_open)
{
    uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN];
    struct cd_audit_event ev;
    int64_t now = ic->row.created_at;
    enum cd_err err;

    if (ic->pre_new) {
        snprintf(ic->row.customer_id, sizeof ic->row.customer_id, "%s", ic->new_customer_id);
        memcpy(wrapped, ic->new_wrapped, sizeof wrapped);
        if (!fields_sealed_for(ic, ic->row.customer_id, wrapped, sizeof wrapped) ||
            strcmp(ic->ident_for, ic->row.customer_id) != 0) {
            struct cd_val w = CD_VBLOB(wrapped, sizeof wrapped);
            if ((err = cd__core_key_open(ic->c, ic->row.customer_id, w, k)) != CD_OK)
                return err;
            *key_open = true;
        }
    } else {
        cd_id_new("cus", ic->row.customer_id);
        cd__core_key_new(ic->c, ic->row.customer_id, k, wrapped);
        *key_open = true;
    }
    if (*key_open &&
        ((err = seal_ident(ic, k)) != CD_OK || (err = seal_all(ic, k, wrapped)) != CD_OK))
        return err;
    if (!ic->skeleton_ok &&
        (err = cd__core_identity_skeleton(
             ic->c, ic->ident_type, (struct cd_str){ic->ident_norm.p, ic->ident_norm.len},
             ic->skeleton, &ic->beyond_ascii)) != CD_OK)
        return err;
    struct cd_val p[] = {CD_VCSTR(ic->row.customer_id), CD_VINT(now),
                         CD_VBLOB(wrapped, sizeof wrapped)};
    struct cd__identity id = {ic->ident_type, ic->ident_network, ic->lookup, ic->skeleton,
                              ic->beyond_ascii, {ic->s_ident.p, ic->s_ident.len}};
    if ((err = cd_tx_exec(tx, "INSERT INTO customers(id, created_at, updated_at,"
                              " key_wrapped) VALUES($1,$2,$2,$3)",
                          p, 3, NULL, NULL, NULL)) != CD_OK ||
        (err = cd__core_identity_insert(tx, ic->a, &id, ic->row.customer_id, now, NULL)) !=
            CD_OK)
        return err;
    cd__core_event(&ev, ic->a, "customer.create", ic->row.customer_id, NULL, 0);
    if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
        return err;
    ic->created_customer = true;
    ic->owner_known = true;
    memcpy(ic->owner_wrapped, wrapped, sizeof wrapped);
    return CD_OK;
}

/* Phase 3: the interaction's row. */
static enum cd_err insert_interaction(struct cd_tx *tx, const struct ingest_ctx *ic)
{
    struct cd_val p[] = {CD_VCSTR(ic->row.id),
                         CD_VCSTR(ic->row.customer_id),
                         CD_VCSTR(ic->row.channel),
                         CD_VCSTR(ic->row.direction),
                         opt_blob(&ic->s_thread, ic->row.thread_id[0] != '\0'),
                         CD_VINT(ic->row.occurred_at),
                         CD_VINT(ic->row.created_at),
                         CD_VCSTR(ic->row.purpose),
                         opt_blob(&ic->s_subject, ic->subject.p != NULL),
                         opt_blob(&ic->s_body, ic->body.p != NULL),
                         opt_blob(&ic->s_meta, ic->metadata != NULL),
                         ic->guard_json ? CD_VCSTR(ic->guard_json) : CD_VNULL,
                         ic->row.thread_id[0] ? CD_VBLOB(ic->thread_hash, CD_CRYPTO_HASH_LEN)
                                              : CD_VNULL};
    return cd_tx_exec(tx, "INSERT INTO interactions(id, customer_id, channel, direction,"
                          " thread, occurred_at, created_at, purpose, subject, body,"
                          " metadata, guard, thread_hash)"
                          " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                      p, 13, NULL, NULL, NULL);
}

/* Phase 4: the ledger: the ingestion (prepared before the write when its customer was known),
 * then the overrides it carried. */
static enum cd_err record_ingest(struct cd_tx *tx, struct ingest_ctx *ic)
{
    struct cd_audit_event ev;
    enum cd_err err;

    if (ic->audit_ok && strcmp(ic->audit_for, ic->row.customer_id) == 0) {
        err = cd_audit_append_prepared(tx, &ic->audit, NULL);
    } else {
        cd__core_event(&ev, ic->a, "interaction.ingest", ic->row.customer_id, ic->row.id,
                       echoed(ic));
        err = cd_audit_append(tx, &ev, NULL);
    }
    if (err != CD_OK)
        return err;
    if (ic->guard_rules) {
        cd__core_event(&ev, ic->a, "guard.override", ic->row.customer_id, ic->row.id, 0);
        ev.rules = ic->guard_rules;
        ev.override_reason = ic->guard_reason;
        if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
            return err;
    }
    if (ic->purpose_rules) {
        cd__core_event(&ev, ic->a, "purpose.override", ic->row.customer_id, ic->row.id, 0);
        ev.rules = ic->purpose_rules;
        ev.override_reason = ic->purpose_reason;
        if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
            return err;
    }
    return CD_OK;
}

/* The write of one ingestion, in the phases above, between the idempotency check and its
 * record. */
static enum cd_err ingest_fn(struct cd_tx *tx, void *ctx)
{
    struct ingest_ctx *ic = ctx;
    struct ident_lookup l = {"", CD_BUF_INIT(256), false};
    struct cd__ckey k;
    bool key_open = false;
    enum cd_err err;

    ic->owner_known = false; /* outputs start afresh: the store may run this twice */
    ic->created_customer = false;
    if ((err = cd__core_idem_check(tx, ic->idem, ic->idem_hash, ic->replay_id)) != CD_OK ||
        ic->replay_id[0])
        goto out;
    if ((err = find_owner(tx, ic, &l)) != CD_OK)
        goto out;
    err = l.found ? seal_for_owner(ic, &l, &k, &key_open) : create_owner(tx, ic, &k, &key_open);
    if (err != CD_OK)
        goto out;
    if (l.found && l.wrapped.len == CD_CRYPTO_WRAPPED_LEN) {
        ic->owner_known = true;
        memcpy(ic->owner_wrapped, l.wrapped.p, CD_CRYPTO_WRAPPED_LEN);
    }
    if (ic->owner_known)
        snprintf(ic->owner_id, sizeof ic->owner_id, "%s", ic->row.customer_id);
    if ((err = insert_interaction(tx, ic)) != CD_OK || (err = record_ingest(tx, ic)) != CD_OK)
        goto out;
    if ((err = cd__core_idem_record(tx, ic->idem, ic->idem_hash, ic->row.id)) != CD_OK)
        goto out;
    err = recorded(tx, ic);
out:
    if (key_open)
        cd__core_key_wipe(&k);
    cd_buf_free(&l.wrapped);
    return err;
}

static enum cd_err copy_field(const json_t *body, const char *key, char *out, size_t n,
                              bool required)
{
    struct cd_str s = CD_STR_NULL;
    enum cd_err err = cd_json_str(body, key, required, &s);

    if (err != CD_OK)
        return err;
    if (s.len >= n || (s.p && memchr(s.p, 0, s.len)))
        return cd_err_set(CD_ERR_INVALID, "member '%s' is too long", key);
    memcpy(out, s.p ? s.p : "", s.len);
    out[s.len] = '\0';
    return CD_OK;
}

/* The owner of the identity or id as a read sees it just before the write: its id (for the
 * outbound hooks: an id in the body must exist) and its wrapped key (for pre_seal). */
struct owner_read {
    struct ingest_ctx *ic;
    struct ident_lookup l; /* the live owner and its wrapped key, when found */
    char customer_id[CD_ID_MAX]; /* the owner the hooks decide for ("" if none yet) */
};

static enum cd_err owner_fn(struct cd_tx *tx, void *ctx)
{
    struct owner_read *o = ctx;
    struct ingest_ctx *ic = o->ic;
    bool exists = false;
    enum cd_err err;

    if (ic->by_identity) {
        struct cd_val p[] = {CD_VTEXT(ic->ident_type), CD_VBLOB(ic->lookup, sizeof ic->lookup)};
        err = cd_tx_exec(tx, SELECT_BY_IDENTITY, p, 2, owner_row, &o->l, NULL);
        if (err == CD_OK && o->l.found)
            snprintf(o->customer_id, sizeof o->customer_id, "%s", o->l.customer_id);
        return err;
    }
    if ((err = cd__core_resolve(tx, ic->customer_id_in, o->customer_id, &exists)) != CD_OK)
        return err;
    if (!exists)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id in 'customer_id'");
    struct cd_val p[] = {CD_VCSTR(o->customer_id)};
    return cd_tx_exec(tx, SELECT_BY_ID, p, 1, owner_row, &o->l, NULL);
}

/* The owner cache's answer for the identity, as owner_fn would give it. */
static bool owner_cached(struct ingest_ctx *ic, struct ident_lookup *l)
{
    uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN];

    if (!cd__owners_get(ic->c->owners, ic->ident_type, ic->lookup, l->customer_id, wrapped))
        return false;
    cd_buf_reset(&l->wrapped);
    l->found = cd_buf_append(&l->wrapped, wrapped, sizeof wrapped) == CD_OK;
    cd_crypto_wipe(wrapped, sizeof wrapped);
    return l->found;
}

/* Prepares the interaction.ingest audit event for the owner customer_id (see audit_ok). */
static void pre_audit(struct ingest_ctx *ic, const char *customer_id)
{
    struct cd_audit_event ev;

    snprintf(ic->audit_for, sizeof ic->audit_for, "%s", customer_id);
    cd__core_event(&ev, ic->a, "interaction.ingest", ic->audit_for, ic->row.id, echoed(ic));
    ic->audit_ok = cd_audit_prepare(&ev, &ic->audit) == CD_OK;
}

/* The writer thread runs every write of the store one after another, so the sealing (and the
 * key unwrap it needs) is done here, on the caller's thread, for the owner a read saw just
 * before the write; ingest_fn uses the result only when the owner and its wrapped key are
 * still the same, and seals there otherwise (a concurrent merge or erasure). An identity the
 * read found no owner for gets its new customer here too: id, data key and its wrapping, the
 * identity and the fields sealed under it; ingest_fn creates that customer unless another
 * write gave the identity an owner meanwhile. The audit event is prepared here likewise, for
 * the same owner. Any failure here just leaves the work to ingest_fn, which reports it as
 * before. */
static void pre_seal(struct ingest_ctx *ic, const struct ident_lookup *l)
{
    struct cd__ckey k;

    if (!l->found) {
        if (!ic->by_identity)
            goto out;
        cd_id_new("cus", ic->new_customer_id);
        ic->skeleton_ok = cd__core_identity_skeleton(
                              ic->c, ic->ident_type,
                              (struct cd_str){ic->ident_norm.p, ic->ident_norm.len},
                              ic->skeleton, &ic->beyond_ascii) == CD_OK;
        cd__core_key_new(ic->c, ic->new_customer_id, &k, ic->new_wrapped);
        ic->pre_new = true;
        if (seal_ident(ic, &k) == CD_OK)
            seal_all(ic, &k, ic->new_wrapped);
        cd__core_key_wipe(&k);
        pre_audit(ic, ic->new_customer_id);
        goto out;
    }
    pre_audit(ic, l->customer_id);
    if (l->wrapped.len != CD_CRYPTO_WRAPPED_LEN)
        goto out;
    struct cd_val w = CD_VBLOB(l->wrapped.p, l->wrapped.len);
    if (cd__core_key_open(ic->c, l->customer_id, w, &k) != CD_OK)
        goto out;
    seal_all(ic, &k, l->wrapped.p);
    cd__core_key_wipe(&k);
out:
    cd_err_clear();
}

/* Parses an override {"reason"} at key into *on and *reason. */
static enum cd_err parse_override(const json_t *body, const char *key, bool *on,
                                  struct cd_str *reason)
{
    static const char *const allowed[] = {"reason", NULL};
    json_t *o = NULL;
    enum cd_err err;

    if ((err = cd_json_obj(body, key, false, &o)) != CD_OK || o == NULL)
        return err;
    if ((err = cd_json_only(o, allowed)) != CD_OK ||
        (err = cd_json_str(o, "reason", true, reason)) != CD_OK)
        return cd_err_set(err, "'%s': %s", key, cd_err_detail());
    /* The reason goes into the ledger: long enough to explain, short enough to read. */
    if (reason->len < 10 || reason->len > 500 || !cd_utf8_valid(reason->p, reason->len))
        return cd_err_set(CD_ERR_INVALID, "'%s.reason' must explain the override (10 to 500 "
                                          "characters)",
                          key);
    *on = true;
    return CD_OK;
}

static enum cd_err parse_ingest(struct ingest_ctx *ic, const json_t *body,
                                struct cd_core_overrides *ov)
{
    static const char *const allowed[] = {"customer_id", "identity", "channel", "direction",
                                          "occurred_at", "thread_id", "subject", "body",
                                          "metadata", "purpose", "guard_override",
                                          "purpose_override", NULL};
    json_t *ident = NULL, *meta = NULL;
    struct cd_str occurred = CD_STR_NULL;
    enum cd_purpose purpose;
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "customer_id", false, &ic->customer_id_in)) != CD_OK ||
        (err = cd_json_obj(body, "identity", false, &ident)) != CD_OK ||
        (err = copy_field(body, "channel", ic->row.channel, sizeof ic->row.channel, true)) !=
            CD_OK ||
        (err = copy_field(body, "direction", ic->row.direction, sizeof ic->row.direction,
                          true)) != CD_OK ||
        (err = copy_field(body, "thread_id", ic->row.thread_id, sizeof ic->row.thread_id,
                          false)) != CD_OK ||
        (err = copy_field(body, "purpose", ic->row.purpose, sizeof ic->row.purpose, false)) !=
            CD_OK ||
        (err = cd_json_str(body, "occurred_at", false, &occurred)) != CD_OK ||
        (err = cd_json_str(body, "subject", false, &ic->subject)) != CD_OK ||
        (err = cd_json_str(body, "body", false, &ic->body)) != CD_OK ||
        (err = cd_json_obj(body, "metadata", false, &meta)) != CD_OK ||
        (err = parse_override(body, "guard_override", &ov->guard, &ov->guard_reason)) != CD_OK ||
        (err = parse_override(body, "purpose_override", &ov->purpose, &ov->purpose_reason)) !=
            CD_OK)
        return err;
    ic->meta_obj = meta;
    if (!cd_core_channel_valid(cd_str_c(ic->row.channel)))
        return cd_err_set(CD_ERR_INVALID, "'channel' must be one of email, sms, phone, chat, "
                                          "social, app, push, post, in_person");
    if (!cd_core_direction_valid(cd_str_c(ic->row.direction)))
        return cd_err_set(CD_ERR_INVALID, "'direction' must be inbound or outbound");
    if (!ic->row.purpose[0])
        snprintf(ic->row.purpose, sizeof ic->row.purpose, "service");
    if (!cd_purpose_parse(cd_str_c(ic->row.purpose), &purpose))
        return cd_err_set(CD_ERR_INVALID, "'purpose' must be one of %s", cd_purpose_list());
    if ((ic->customer_id_in.p != NULL) == (ident != NULL))
        return cd_err_set(CD_ERR_INVALID,
                          "give exactly one of 'customer_id' or 'identity' to say whose it is");
    if (ic->subject.len > CD_MAX_SUBJECT)
        return cd_err_set(CD_ERR_INVALID, "'subject' is longer than %d bytes", CD_MAX_SUBJECT);
    if (ic->body.len > CD_MAX_BODY)
        return cd_err_set(CD_ERR_TOO_BIG, "'body' is longer than %d bytes", CD_MAX_BODY);
    if (occurred.p) {
        if ((err = cd_time_parse(occurred, &ic->row.occurred_at)) != CD_OK)
            return cd_err_set(err, "'occurred_at': %s", cd_err_detail());
        /* A time far ahead would sit at the top of every timeline page for years, and one
         * before 1970 is a mistake in the sending system; clocks drift by less. */
        if (ic->row.occurred_at > ic->row.created_at + ic->c->future_skew_ms)
            return cd_err_set(CD_ERR_INVALID, "'occurred_at' is more than %lld seconds ahead of "
                                              "the server's clock",
                              (long long)(ic->c->future_skew_ms / 1000));
        if (ic->row.occurred_at < 0)
            return cd_err_set(CD_ERR_INVALID, "'occurred_at' is before 1970-01-01T00:00:00Z");
    } else {
        ic->row.occurred_at = ic->row.created_at;
    }
    if (meta) {
        size_t n = 0;
        /* The topic an outbound message is about: the consent hook refuses topics the
         * customer opted out of, so on an outbound message a topic that is there but not a
         * string is refused rather than ignored. */
        if (strcmp(ic->row.direction, "outbound") == 0 &&
            (err = cd_json_str(meta, "topic", false, &ic->topic)) != CD_OK)
            return cd_err_set(err, "'metadata': %s", cd_err_detail());
        if ((err = cd_json_dump(meta, &ic->metadata, &n)) != CD_OK)
            return err;
        if (n > CD_MAX_META)
            return cd_err_set(CD_ERR_INVALID, "'metadata' is larger than %d bytes", CD_MAX_META);
    }
    if (ident) {
        static const char *const ident_allowed[] = {"type", "value", "network", NULL};
        struct cd_str value = CD_STR_NULL, network = CD_STR_NULL;
        if ((err = cd_json_only(ident, ident_allowed)) != CD_OK ||
            (err = cd_json_str(ident, "type", true, &ic->ident_type)) != CD_OK ||
            (err = cd_json_str(ident, "value", true, &value)) != CD_OK ||
            (err = cd_json_str(ident, "network", false, &network)) != CD_OK ||
            (err = cd_core_identity_normalize(ic->ident_type, network, value, &ic->ident_norm)) !=
                CD_OK)
            return cd_err_set(err, "'identity': %s", cd_err_detail());
        const char *colon = memchr(ic->ident_norm.p, ':', ic->ident_norm.len);
        if (colon && !cd_str_eq_c(ic->ident_type, "email")) {
            size_t n = (size_t)(colon - ic->ident_norm.p);
            if (n >= sizeof ic->ident_network)
                n = sizeof ic->ident_network - 1;
            memcpy(ic->ident_network, ic->ident_norm.p, n);
            ic->ident_network[n] = '\0';
        }
        cd__core_lookup(ic->c, ic->ident_type,
                        (struct cd_str){ic->ident_norm.p, ic->ident_norm.len}, ic->lookup);
        ic->by_identity = true;
    } else if (!cd_id_valid(ic->customer_id_in, "cus")) {
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id in 'customer_id'");
    }
    return CD_OK;
}

/* The ingestion response, from the plaintext still in memory. */
static enum cd_err ingest_response(const struct ingest_ctx *ic, unsigned fields,
                                   struct cd_buf *out)
{
    struct cd__interaction_row r = ic->row;
    struct cd__interaction_text t = {false, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL};

    r.subject = r.body = r.metadata = r.thread = CD_VNULL;
    r.guard = ic->guard_json ? CD_VCSTR(ic->guard_json) : CD_VNULL;
    if (fields & CD_FIELDS_CONVERSATION)
        t = (struct cd__interaction_text){
            true, ic->subject, ic->body,
            ic->row.thread_id[0] ? cd_str_c(ic->row.thread_id) : CD_STR_NULL,
            cd_str_c(ic->metadata)};
    return cd__core_interaction_write(out, &r, &t,
                                      ic->created_customer ? ",\"customer_created\":true"
                                                           : ",\"customer_created\":false");
}

/* The rule ids of a JSON array of strings as "A,B" (cd_malloc'ed; "" for none), cut short
 * with "..." so that an audit event stays small. */
static enum cd_err rule_list(const json_t *arr, char **out)
{
    struct cd_buf b = CD_BUF_INIT(1024);
    enum cd_err err = cd_buf_puts(&b, ""); /* allocates: "" for no rules */
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
    {
        const char *id = json_string_value(v);
        if (err != CD_OK || id == NULL)
            continue;
        if (b.len + strlen(id) + 5 > 1000) {
            err = cd_buf_puts(&b, ",...");
            break;
        }
        err = cd_buf_printf(&b, "%s%s", b.len ? "," : "", id);
    }
    if (err == CD_OK && (*out = cd_buf_take(&b, NULL)) == NULL)
        err = CD_ERR_NOMEM;
    cd_buf_free(&b);
    return err;
}

/* Takes the overrides the hook honoured from its annotation (see struct cd_core_hooks). */
static enum cd_err take_overrides(struct ingest_ctx *ic, const json_t *annotation)
{
    const json_t *po = json_object_get(annotation, "purpose_override");
    const char *gr = json_string_value(json_object_get(annotation, "override_reason"));
    const char *pr = json_string_value(json_object_get(po, "reason"));
    enum cd_err err = CD_OK;

    if (json_is_true(json_object_get(annotation, "overridden")) &&
        ((err = rule_list(json_object_get(annotation, "overridden_rules"), &ic->guard_rules)) !=
             CD_OK ||
         (gr && (ic->guard_reason = cd_strndup(gr, strlen(gr))) == NULL)))
        return err != CD_OK ? err : CD_ERR_NOMEM;
    if (json_is_object(po) &&
        ((err = rule_list(json_object_get(po, "rules"), &ic->purpose_rules)) != CD_OK ||
         (pr && (ic->purpose_reason = cd_strndup(pr, strlen(pr))) == NULL)))
        return err != CD_OK ? err : CD_ERR_NOMEM;
    return CD_OK;
}

/* Everything before the write, on the caller's thread: parsing, the in-path hooks (inbound
 * masking; consent and guard on outbound), sealing. On CD_ERR_GUARD_BLOCKED and
 * CD_ERR_PURPOSE_MISMATCH *out gets the findings. */
static enum cd_err ingest_prepare(struct ingest_ctx *ic, const json_t *body, json_t **out)
{
    struct cd_core *c = ic->c;
    struct cd_core_overrides ov = {false, false, CD_STR_NULL, CD_STR_NULL};
    json_t *annotation = NULL;
    struct owner_read o = {ic, {"", CD_BUF_INIT(256), false}, ""};
    enum cd_err err;

    if ((err = parse_ingest(ic, body, &ov)) != CD_OK)
        goto out;
    bool outbound = strcmp(ic->row.direction, "outbound") == 0;
    if (!outbound && ic->body.p && c->hooks.inbound_filter) {
        size_t n = 0;
        if ((err = c->hooks.inbound_filter(c->hooks.ctx, ic->body, &ic->masked_body, &n)) !=
            CD_OK)
            goto out;
        if (ic->masked_body)
            ic->body = (struct cd_str){ic->masked_body, n};
    }
    /* One read of the owner serves the outbound hooks and the sealing. A failed read only
     * matters to the hooks (an unknown customer_id); the write reads again for itself. The
     * owner cache answers for the hooks too: an identity changes owner only by a merge or an
     * erasure, and both empty the cache once committed (see owners.c), so a hit is what the
     * read would return, with the same race against a concurrent merge as the read has. */
    bool hooks = outbound && c->hooks.outbound_check;
    enum cd_err rerr = CD_OK;
    ic->owners_gen = cd__owners_generation(c->owners);
    if (ic->by_identity && owner_cached(ic, &o.l)) {
        memcpy(o.customer_id, o.l.customer_id, sizeof o.customer_id); /* known: no read */
    } else if ((rerr = cd_store_read(c->store, owner_fn, &o)) != CD_OK && !hooks) {
        cd_err_clear();
    }
    if (hooks) {
        if ((err = rerr) != CD_OK)
            goto out;
        err = c->hooks.outbound_check(c->hooks.ctx, ic->a,
                                      o.customer_id[0] ? o.customer_id : NULL, ic->row.channel,
                                      ic->row.purpose, ic->topic,
                                      ic->body.p ? ic->body : CD_STR(""), &ov, &annotation);
        if ((err == CD_ERR_GUARD_BLOCKED || err == CD_ERR_PURPOSE_MISMATCH) && annotation) {
            *out = annotation; /* the findings explain the refusal */
            annotation = NULL;
        }
        if (err != CD_OK)
            goto out;
        if (annotation && ((err = take_overrides(ic, annotation)) != CD_OK ||
                           (err = cd_json_dump(annotation, &ic->guard_json, NULL)) != CD_OK))
            goto out;
    }
    /* What the capabilities that follow interactions need of the text, while it is clear. */
    if (c->hooks.annotate) {
        struct cd_core_content in = {ic->row.direction, ic->row.channel, ic->row.purpose,
                                     ic->subject.p ? ic->subject : CD_STR(""),
                                     ic->body.p ? ic->body : CD_STR(""), ic->meta_obj};
        if ((err = c->hooks.annotate(c->hooks.ctx, ic->a, &in, &ic->note)) != CD_OK)
            goto out;
    }
    if (rerr == CD_OK)
        pre_seal(ic, &o.l);
out:
    cd_buf_free(&o.l.wrapped);
    json_decref(annotation);
    return err;
}

/* After a durable write: the answer. A replayed key answers with the stored interaction (a
 * read); otherwise the response is built from what was just written, without reading. */
static enum cd_err ingest_answer(struct ingest_ctx *ic, struct cd_buf *out, bool *replayed)
{
    if (ic->by_identity && ic->owner_known && ic->replay_id[0] == '\0')
        cd__owners_put(ic->c->owners, ic->owners_gen, ic->ident_type, ic->lookup, ic->owner_id,
                       ic->owner_wrapped, sizeof ic->owner_wrapped);
    *replayed = ic->replay_id[0] != '\0';
    if (*replayed)
        return cd__core_interaction_by_id(ic->c, ic->a, cd_str_c(ic->replay_id), ic->fields,
                                          "interaction.read", out);
    return ingest_response(ic, ic->fields, out);
}

/* size: of the ingest_ctx, or of a struct that starts with one (struct cd_core_ingest). */
static struct ingest_ctx *ingest_new(size_t size, struct cd_core *c, const struct cd_actor *a,
                                     const struct cd_idem *idem, unsigned fields)
{
    struct ingest_ctx *ic = cd_calloc(1, size);

    if (ic == NULL)
        return NULL;
    ic->c = c;
    ic->a = a;
    if (idem) {
        ic->idem_copy = *idem; /* the caller's struct may not outlive an asynchronous write */
        ic->idem = &ic->idem_copy;
        cd__core_idem_hash(c, idem, ic->idem_hash);
    }
    ic->fields = fields;
    ic->ident_norm = CD_BUF_INIT(1024);
    ic->s_subject = CD_BUF_INIT(CD_MAX_SUBJECT + 1024);
    ic->s_body = CD_BUF_INIT(CD_MAX_BODY + 1024);
    ic->s_meta = CD_BUF_INIT(CD_MAX_META + 1024);
    ic->s_ident = CD_BUF_INIT(2048);
    ic->s_thread = CD_BUF_INIT(1024);
    ic->row.created_at = cd_now_ms();
    cd_id_new("int", ic->row.id);
    return ic;
}

static void ingest_free(struct ingest_ctx *ic)
{
    cd_buf_free(&ic->ident_norm);
    cd_buf_free(&ic->s_subject);
    cd_buf_free(&ic->s_body);
    cd_buf_free(&ic->s_meta);
    cd_buf_free(&ic->s_ident);
    cd_buf_free(&ic->s_thread);
    cd_audit_prepared_free(&ic->audit);
    cd_free(ic->metadata);
    cd_free(ic->masked_body);
    cd_free(ic->guard_json);
    json_decref(ic->note);
    cd_free(ic->guard_rules);
    cd_free(ic->guard_reason);
    cd_free(ic->purpose_rules);
    cd_free(ic->purpose_reason);
    cd_free(ic);
}

enum cd_err cd_core_interaction_ingest(struct cd_core *c, const struct cd_actor *a,
                                       const json_t *body, const struct cd_idem *idem,
                                       unsigned fields, struct cd_buf *out, json_t **findings,
                                       bool *replayed)
{
    struct ingest_ctx *ic = ingest_new(sizeof *ic, c, a, idem, fields);
    enum cd_err err;

    if (ic == NULL)
        return CD_ERR_NOMEM;
    if ((err = ingest_prepare(ic, body, findings)) == CD_OK &&
        (err = cd_store_write(c->store, ingest_fn, ic)) == CD_OK)
        err = ingest_answer(ic, out, replayed);
    ingest_free(ic);
    return err;
}

/* ---- the asynchronous form ---- */

struct cd_core_ingest {
    struct ingest_ctx ic; /* first: the write function gets the ingest_ctx */
    cd_core_ingest_done done;
    void *done_ctx;
    enum cd_err write_err;
    char write_detail[512];
};

static void ingest_written(void *ctx, enum cd_err err, const char *detail)
{
    struct cd_core_ingest *op = ctx;

    op->write_err = err;
    snprintf(op->write_detail, sizeof op->write_detail, "%s", detail);
    op->done(op->done_ctx, op);
}

enum cd_err cd_core_interaction_ingest_start(struct cd_core *c, const struct cd_actor *a,
                                             const json_t *body, const struct cd_idem *idem,
                                             unsigned fields, cd_core_ingest_done done,
                                             void *done_ctx, json_t **out)
{
    /* The operation starts with its ingest_ctx, which ingest_free frees with it. */
    struct cd_core_ingest *op =
        (struct cd_core_ingest *)ingest_new(sizeof *op, c, a, idem, fields);
    enum cd_err err;

    if (op == NULL)
        return CD_ERR_NOMEM;
    op->done = done;
    op->done_ctx = done_ctx;
    if ((err = ingest_prepare(&op->ic, body, out)) != CD_OK ||
        (err = cd_store_write_async(c->store, ingest_fn, &op->ic, ingest_written, op)) != CD_OK) {
        ingest_free(&op->ic);
        return err;
    }
    return CD_OK;
}

bool cd_core_ingest_finish_reads(const struct cd_core_ingest *op)
{
    return op->write_err == CD_OK && op->ic.replay_id[0] != '\0';
}

enum cd_err cd_core_interaction_ingest_finish(struct cd_core_ingest *op, struct cd_buf *out,
                                              bool *replayed, char id[CD_ID_MAX])
{
    enum cd_err err = op->write_err;

    *replayed = false;
    id[0] = '\0';
    if (err != CD_OK) {
        cd_err_set(err, "%s", op->write_detail);
    } else {
        memcpy(id, op->ic.replay_id[0] ? op->ic.replay_id : op->ic.row.id, CD_ID_MAX);
        err = ingest_answer(&op->ic, out, replayed);
    }
    ingest_free(&op->ic);
    return err;
}

/* ---- reading ---- */

struct page_ctx {
    struct cd__interaction_row *rows;
    struct cd_buf blobs; /* copies of the sealed columns, rows point into it by offset */
    size_t (*offsets)[5];
    int count, max;
    char customer_id[CD_ID_MAX];
    struct cd_buf wrapped;
    bool customer_found;
    bool restricted;
    bool erased; /* the content was shredded: only reference fields remain */
};

static enum cd_err page_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct page_ctx *pc = ctx;
    struct cd__interaction_row *r;
    enum cd_err err;

    if (pc->count >= pc->max)
        return CD_OK;
    r = &pc->rows[pc->count];
    memset(r, 0, sizeof *r);
    cd__core_col_text(cols[0], r->id, sizeof r->id);
    cd__core_col_text(cols[1], r->customer_id, sizeof r->customer_id);
    cd__core_col_text(cols[2], r->channel, sizeof r->channel);
    cd__core_col_text(cols[3], r->direction, sizeof r->direction);
    r->occurred_at = cols[5].i;
    r->created_at = cols[6].i;
    cd__core_col_text(cols[7], r->purpose, sizeof r->purpose);
    struct cd_val *dst[5] = {&r->subject, &r->body, &r->metadata, &r->guard, &r->thread};
    for (int i = 0; i < 5; i++) {
        const struct cd_val *v = i < 4 ? &cols[8 + i] : &cols[4];
        *dst[i] = *v;
        pc->offsets[pc->count][i] = pc->blobs.len;
        if (v->type == CD_VAL_BLOB || v->type == CD_VAL_TEXT) {
            if ((err = cd_buf_append(&pc->blobs, v->p, v->len)) != CD_OK)
                return err;
        }
    }
    pc->count++;
    return CD_OK;
}

/* Blob pointers are fixed up after the query: the buffer may move while it grows. */
static void page_fixup(struct page_ctx *pc)
{
    for (int i = 0; i < pc->count; i++) {
        struct cd__interaction_row *r = &pc->rows[i];
        struct cd_val *dst[5] = {&r->subject, &r->body, &r->metadata, &r->guard, &r->thread};
        for (int j = 0; j < 5; j++)
            if (dst[j]->type == CD_VAL_BLOB || dst[j]->type == CD_VAL_TEXT)
                dst[j]->p = pc->blobs.p + pc->offsets[i][j];
    }
}

struct timeline_ctx {
    const struct cd_core *c;
    struct page_ctx pc;
    struct cd_str id;
    const struct cd_timeline_query *q;
    int64_t before_ms;
    char before_id[CD_ID_MAX];
    bool single; /* one interaction by id */
};

static enum cd_err key_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct page_ctx *pc = ctx;

    pc->customer_found = true;
    pc->restricted = cols[1].type == CD_VAL_INT && cols[1].i != 0;
    pc->erased = cols[2].type == CD_VAL_INT;
    cd_buf_reset(&pc->wrapped);
    if (cols[0].type == CD_VAL_BLOB)
        return cd_buf_append(&pc->wrapped, cols[0].p, cols[0].len);
    return CD_OK;
}

static enum cd_err timeline_fn(struct cd_tx *tx, void *ctx)
{
    struct timeline_ctx *t = ctx;
    enum cd_err err;
    bool exists = false;

    if (t->single) {
        char id[CD_ID_MAX];
        if (!cd_id_valid(t->id, "int"))
            return CD_OK;
        memcpy(id, t->id.p, t->id.len);
        id[t->id.len] = '\0';
        struct cd_val p[] = {CD_VCSTR(id)};
        if ((err = cd_tx_exec(tx,
                              "SELECT id, customer_id, channel, direction, thread,"
                              " occurred_at, created_at, purpose, subject, body, metadata, guard"
                              " FROM interactions WHERE id = $1",
                              p, 1, page_row, &t->pc, NULL)) != CD_OK)
            return err;
        if (t->pc.count == 0)
            return CD_OK;
        snprintf(t->pc.customer_id, sizeof t->pc.customer_id, "%s", t->pc.rows[0].customer_id);
    } else {
        if ((err = cd__core_resolve(tx, t->id, t->pc.customer_id, &exists)) != CD_OK)
            return err;
        if (!exists)
            return CD_OK;
        const struct cd_timeline_query *q = t->q;
        uint8_t thread[CD_CRYPTO_HASH_LEN] = {0};
        /* A thread is found by its keyed hash for the customer the merges resolved to. */
        if (q->thread_id.len)
            cd__core_thread_hash(t->c, t->pc.customer_id, q->thread_id, thread);
        struct cd_val p[] = {CD_VCSTR(t->pc.customer_id), CD_VINT(t->before_ms),
                             CD_VCSTR(t->before_id),      CD_VTEXT(q->channel),
                             CD_VTEXT(q->direction),      CD_VINT(q->limit + 1),
                             CD_VINT(q->thread_id.len != 0), CD_VBLOB(thread, sizeof thread)};
        if ((err = cd_tx_exec(tx,
                              "SELECT id, customer_id, channel, direction, thread,"
                              " occurred_at, created_at, purpose, subject, body, metadata, guard"
                              " FROM interactions WHERE customer_id = $1"
                              " AND (occurred_at, id) < ($2, $3)"
                              " AND ($4 = '' OR channel = $4) AND ($5 = '' OR direction = $5)"
                              " AND ($7 = 0 OR thread_hash = $8)"
                              " ORDER BY occurred_at DESC, id DESC LIMIT $6",
                              p, 8, page_row, &t->pc, NULL)) != CD_OK)
            return err;
    }
    struct cd_val p[] = {CD_VCSTR(t->pc.customer_id)};
    return cd_tx_exec(tx, "SELECT key_wrapped, restricted, erased_at FROM customers"
                          " WHERE id = $1",
                      p, 1, key_row, &t->pc, NULL);
}

static enum cd_err page_init(struct page_ctx *pc, int max)
{
    memset(pc, 0, sizeof *pc);
    pc->max = max;
    /* Unbounded: a page holds at most max rows the store holds, each capped when written. */
    pc->blobs = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    pc->wrapped = CD_BUF_INIT(256);
    pc->rows = cd_calloc((size_t)max, sizeof *pc->rows);
    pc->offsets = cd_calloc((size_t)max, sizeof *pc->offsets);
    return pc->rows && pc->offsets ? CD_OK : CD_ERR_NOMEM;
}

static void page_free(struct page_ctx *pc)
{
    if (pc->blobs.p)
        cd_crypto_wipe(pc->blobs.p, pc->blobs.cap);
    cd_buf_free(&pc->blobs);
    cd_buf_free(&pc->wrapped);
    cd_free(pc->rows);
    cd_free(pc->offsets);
}

/* Appends rows [0, n) of a page, each a JSON object, separated by commas. */
static enum cd_err page_items(struct cd_core *c, struct page_ctx *pc, int n, unsigned fields,
                              struct cd_buf *out)
{
    static const char *const names[4] = {"subject", "body", "metadata", "thread_id"};
    struct cd_buf plain[4] = {CD_BUF_INIT(CD_MAX_SUBJECT + 1024), CD_BUF_INIT(CD_MAX_BODY + 1024),
                              CD_BUF_INIT(CD_MAX_META + 1024), CD_BUF_INIT(1024)};
    struct cd__ckey k;
    bool key_open = false;
    enum cd_err err = CD_OK;

    if (pc->erased)
        fields &= ~(unsigned)CD_FIELDS_CONVERSATION;
    if ((fields & CD_FIELDS_CONVERSATION) && n > 0) {
        struct cd_val w = {pc->wrapped.len ? CD_VAL_BLOB : CD_VAL_NULL, 0, pc->wrapped.p,
                           pc->wrapped.len};
        if ((err = cd__core_key_open(c, pc->customer_id, w, &k)) != CD_OK)
            goto out;
        key_open = true;
    }
    for (int i = 0; i < n; i++) {
        const struct cd__interaction_row *r = &pc->rows[i];
        struct cd__interaction_text t = {false, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL,
                                         CD_STR_NULL};
        if (fields & CD_FIELDS_CONVERSATION) {
            const struct cd_val sealed[4] = {r->subject, r->body, r->metadata, r->thread};
            struct cd_str *dst[4] = {&t.subject, &t.body, &t.metadata, &t.thread_id};
            struct cd__row_binding b;
            cd__core_interaction_binding(&b, r->id, r->channel, r->direction, r->occurred_at,
                                         r->purpose);
            t.shown = true;
            for (int f = 0; f < 4; f++) {
                bool present = false;
                if ((err = cd__core_open_row(&k, names[f], &b, sealed[f], false, &plain[f],
                                             &present)) != CD_OK)
                    goto out;
                *dst[f] = present ? (struct cd_str){plain[f].p ? plain[f].p : "", plain[f].len}
                                  : CD_STR_NULL;
            }
        }
        if ((i > 0 && (err = cd_buf_putc(out, ',')) != CD_OK) ||
            (err = cd__core_interaction_write(out, r, &t, NULL)) != CD_OK)
            goto out;
    }
out:
    if (key_open)
        cd__core_key_wipe(&k);
    for (int f = 0; f < 4; f++) {
        if (plain[f].p)
            cd_crypto_wipe(plain[f].p, plain[f].cap);
        cd_buf_free(&plain[f]);
    }
    return err;
}

enum cd_err cd__core_interaction_by_id(struct cd_core *c, const struct cd_actor *a,
                                       struct cd_str id, unsigned fields, const char *action,
                                       struct cd_buf *out)
{
    struct timeline_ctx t;
    enum cd_err err;

    memset(&t, 0, sizeof t);
    t.id = id;
    t.single = true;
    if ((err = page_init(&t.pc, 1)) != CD_OK)
        goto out;
    if ((err = cd_store_read(c->store, timeline_fn, &t)) != CD_OK)
        goto out;
    page_fixup(&t.pc);
    if (t.pc.count == 0) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no interaction with this id");
        goto out;
    }
    /* The reference fields alone (a replayed ingestion without a purpose) disclose nothing. */
    if ((fields & ~(unsigned)CD_FIELDS_REFERENCE) &&
        ((err = cd__core_read_allowed(c, a, t.pc.customer_id, t.pc.restricted, action)) !=
             CD_OK ||
         (err = cd__core_audit_read(c, a, action, t.pc.customer_id, t.pc.rows[0].id, fields)) !=
             CD_OK))
        goto out;
    err = page_items(c, &t.pc, 1, fields, out);
out:
    page_free(&t.pc);
    return err;
}

struct owner_of {
    char id[CD_ID_MAX];
    char customer_id[CD_ID_MAX];
};

static enum cd_err owner_of_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct owner_of *o = ctx;

    cd__core_col_text(cols[0], o->customer_id, sizeof o->customer_id);
    return CD_OK;
}

static enum cd_err owner_of_fn(struct cd_tx *tx, void *ctx)
{
    struct owner_of *o = ctx;
    struct cd_val p[] = {CD_VCSTR(o->id)};

    return cd_tx_exec(tx, "SELECT customer_id FROM interactions WHERE id = $1", p, 1,
                      owner_of_row, o, NULL);
}

enum cd_err cd_core_interaction_customer(struct cd_core *c, struct cd_str id,
                                         char customer_id[CD_ID_MAX])
{
    struct owner_of o = {"", ""};
    enum cd_err err;

    if (!cd_id_valid(id, "int"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no interaction with this id");
    memcpy(o.id, id.p, id.len);
    o.id[id.len] = '\0';
    if ((err = cd_store_read(c->store, owner_of_fn, &o)) != CD_OK)
        return err;
    if (!o.customer_id[0])
        return cd_err_set(CD_ERR_NOT_FOUND, "no interaction with this id");
    memcpy(customer_id, o.customer_id, CD_ID_MAX);
    return CD_OK;
}

enum cd_err cd_core_interactions_each(struct cd_core *c, struct cd_str customer_id,
                                      cd_core_page_fn fn, void *ctx)
{
    struct cd_timeline_query q = {.limit = CD_CORE_EXPORT_PAGE};
    struct timeline_ctx t;
    struct cd_buf items = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    enum cd_err err;
    bool more = true;

    memset(&t, 0, sizeof t);
    t.c = c;
    t.id = customer_id;
    t.q = &q;
    t.before_ms = INT64_MAX;
    snprintf(t.before_id, sizeof t.before_id, "%s", "~"); /* after every id */
    if ((err = page_init(&t.pc, q.limit + 1)) != CD_OK)
        goto out;
    /* One read transaction per page: a long history never holds one snapshot open for the
     * whole export, and only one page is in memory at a time. */
    while (err == CD_OK && more) {
        t.pc.count = 0;
        cd_buf_reset(&t.pc.blobs);
        if ((err = cd_store_read(c->store, timeline_fn, &t)) != CD_OK)
            break;
        page_fixup(&t.pc);
        if (!t.pc.customer_found) {
            err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
            break;
        }
        int shown = t.pc.count > q.limit ? q.limit : t.pc.count;
        more = t.pc.count > q.limit;
        if (shown == 0)
            break;
        cd_buf_reset(&items);
        if ((err = page_items(c, &t.pc, shown, CD_FIELDS_ALL, &items)) != CD_OK)
            break;
        err = fn(ctx, (struct cd_str){items.p, items.len}, shown);
        t.before_ms = t.pc.rows[shown - 1].occurred_at;
        snprintf(t.before_id, sizeof t.before_id, "%s", t.pc.rows[shown - 1].id);
    }
out:
    if (items.p)
        cd_crypto_wipe(items.p, items.cap);
    cd_buf_free(&items);
    page_free(&t.pc);
    return err == CD_ERR_TOO_BIG ? CD_ERR_NOMEM : err;
}

enum cd_err cd_core_interaction_get(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                    unsigned fields, struct cd_buf *out)
{
    return cd__core_interaction_by_id(c, a, id, fields, "interaction.read", out);
}

enum cd_err cd_core_timeline(struct cd_core *c, const struct cd_actor *a, struct cd_str customer_id,
                             const struct cd_timeline_query *q, unsigned fields, struct cd_buf *out)
{
    struct timeline_ctx t;
    size_t mark = out->len;
    enum cd_err err;

    memset(&t, 0, sizeof t);
    if (q->limit < 1 || q->limit > 200)
        return cd_err_set(CD_ERR_INVALID, "limit must be between 1 and 200");
    if (q->channel.len && !cd_core_channel_valid(q->channel))
        return cd_err_set(CD_ERR_INVALID, "channel must be one of email, sms, phone, chat, "
                                          "social, app, push, post, in_person");
    if (q->direction.len && !cd_core_direction_valid(q->direction))
        return cd_err_set(CD_ERR_INVALID, "direction must be inbound or outbound");
    if (q->thread_id.len > 128 || (q->thread_id.p && memchr(q->thread_id.p, 0, q->thread_id.len)))
        return cd_err_set(CD_ERR_INVALID, "thread_id has at most 128 bytes");
    if ((err = cd__core_cursor_decode(q->cursor, &t.before_ms, t.before_id)) != CD_OK)
        return err;
    t.c = c;
    t.id = customer_id;
    t.q = q;
    if ((err = page_init(&t.pc, q->limit + 1)) != CD_OK)
        goto out;
    if ((err = cd_store_read(c->store, timeline_fn, &t)) != CD_OK)
        goto out;
    page_fixup(&t.pc);
    if (!t.pc.customer_found) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
        goto out;
    }
    if ((err = cd__core_read_allowed(c, a, t.pc.customer_id, t.pc.restricted,
                                     "timeline.read")) != CD_OK ||
        (err = cd__core_audit_read(c, a, "timeline.read", t.pc.customer_id, NULL, fields)) !=
            CD_OK)
        goto out;
    int shown = t.pc.count > q->limit ? q->limit : t.pc.count;
    const struct cd__interaction_row *last = shown ? &t.pc.rows[shown - 1] : NULL;
    char cursor[CD__CURSOR_MAX];
    if ((err = cd_buf_puts(out, "{\"customer_id\":")) != CD_OK ||
        (err = cd_buf_json_text(out, cd_str_c(t.pc.customer_id))) != CD_OK ||
        (err = cd_buf_puts(out, ",\"items\":[")) != CD_OK ||
        (err = page_items(c, &t.pc, shown, fields, out)) != CD_OK ||
        (err = cd_buf_puts(out, "],\"next_cursor\":")) != CD_OK)
        goto out;
    if (last && t.pc.count > q->limit) {
        cd__core_cursor_text(last->occurred_at, last->id, cursor);
        err = cd_buf_printf(out, "\"%s\"}", cursor);
    } else {
        err = cd_buf_puts(out, "null}");
    }
out:
    if (err != CD_OK) {
        out->len = mark; /* nothing of a failed page stays */
        if (out->p)
            out->p[mark] = '\0';
        if (err == CD_ERR_TOO_BIG)
            err = CD_ERR_NOMEM;
    }
    page_free(&t.pc);
    return err;
}
