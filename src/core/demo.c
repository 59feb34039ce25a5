/* Deterministic demo data: customers with names, emails, phones and handles, and a few months
 * of conversations on every channel. A fixed-seed generator makes every run identical. Rows are
 * sealed exactly as real ones are; the load is recorded as one audit event. */
#include <stdio.h>
#include <string.h>
#include "core_int.h"

/* xorshift64*: small, fast, deterministic. The state lives with the load, not in a global. */
static uint64_t rnd(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}



#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const first[] = {
    "Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Giulia", "Hiro", "Ines", "Jonas",
    "Kwame", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq",
    "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zofia", "Aoife", "Bilal", "Camille", "Deepak"};
static const char *const last[] = {
    "Silva", "Okafor", "Müller", "Kowalski", "Nguyen", "Haddad", "Rossi", "Tanaka", "Dubois",
    "Johansson", "Mensah", "García", "Petrov", "Khan", "O'Brien", "Schmidt", "Costa", "Ivanova",
    "Larsen", "Moreau", "Yilmaz", "Fernández", "Novak", "Andersen", "Cohen", "Reyes"};
static const char *const domains[] = {"example.com", "example.org", "mail.example.net",
                                      "post.example", "inbox.example.co.uk"};
static const char *const zones[][3] = {
    {"Europe/Berlin", "de-DE", "EU"},   {"Europe/Paris", "fr-FR", "EU"},
    {"America/Los_Angeles", "en-US", "US-CA"}, {"America/New_York", "en-US", "US"},
    {"America/Toronto", "en-CA", "CA"}, {"Europe/London", "en-GB", "UK"},
    {"Europe/Madrid", "es-ES", "EU"},   {"Asia/Tokyo", "ja-JP", "JP"}};
static const char *const channels[] = CD_NAME_ARRAY(CD_CHANNELS);
static const char *const topics[] = {"billing", "delivery", "refund", "account", "outage",
                                     "upgrade", "cancellation", "complaint", "privacy"};
static const char *const inbound[] = {
    "Hi, I was charged twice for my order %u this month. Can you check and refund one of them?",
    "My parcel for order %u still shows 'in transit' after nine days. Where is it?",
    "I'd like to cancel my subscription. The website keeps sending me in circles.",
    "The app logs me out every time I switch networks. Version 4.%u on Android.",
    "Can you tell me what personal data you hold about me and who you shared it with?",
    "Your technician was very helpful yesterday, thank you for sorting the router so quickly.",
    "The invoice shows a service fee I never agreed to. Please explain line %u.",
    "I moved house; please update my address before the next delivery.",
    "Internet has been down since 7am in my street. Is there an outage?",
    "I was promised a call back within 24 hours three days ago. Still nothing.",
    "Please stop sending me marketing texts, I never signed up for them.",
    "Is the price I was quoted (%u.00 a month) fixed for the whole contract?"};
static const char *const outbound[] = {
    "Thanks for getting in touch. I've refunded the duplicate charge; it will reach your account "
    "within 5 business days.",
    "I'm sorry about the delay. The carrier confirms the parcel is at the local depot and "
    "delivery is scheduled for tomorrow between 9:00 and 13:00.",
    "I've cancelled your subscription effective today. You won't be charged again, and you can "
    "download your data from your account page until the end of the month.",
    "Thanks for the details. Our engineers have reproduced the logout problem and a fix is in "
    "the next app release; I'll update you when it ships.",
    "I've logged your access request. You'll receive a complete copy of your data within one "
    "month, as the law requires.",
    "The outage in your area was caused by a damaged cable. Engineers are on site; we expect "
    "service back by 18:00 and will credit you for the day.",
    "The fee on line 3 was applied in error. I've removed it and sent a corrected invoice.",
    "Your address is updated. Your next delivery will go to the new address.",
    "I'm sorry we didn't call back as promised. I've escalated your case to a supervisor, who "
    "will call you today before 17:00.",
    "Done: you won't receive marketing messages from us any more. Service messages about your "
    "account will continue.",
    "Yes, the price is fixed for the 24 months of your contract. It's written in section 4 of "
    "your terms."};

/* Copies template into out with its "%u" (if any) replaced by n. */
static void fill(char *out, size_t cap, const char *template, unsigned n)
{
    const char *mark = strstr(template, "%u");

    if (mark == NULL)
        snprintf(out, cap, "%s", template);
    else
        snprintf(out, cap, "%.*s%u%s", (int)(mark - template), template, n, mark + 2);
}

struct demo_customer {
    char id[CD_ID_MAX];
    struct cd__ckey key;
};

struct demo_ctx {
    struct cd_core *c;
    struct demo_customer *customers;
    int ncustomers;
    int from, to;          /* customer range of this batch */
    int per_customer;      /* interactions per customer (average) */
    int days;
    int64_t now;
    bool first_batch;
    uint64_t rng;
    uint64_t rng_at_batch; /* where this batch's draws start: a re-run draws the same data */
};

static unsigned pick(struct demo_ctx *d, unsigned n)
{
    return (unsigned)(rnd(&d->rng) % n);
}

static enum cd_err seal_insert_identity(struct cd_tx *tx, struct cd_core *c,
                                        struct demo_customer *dc, const char *kind,
                                        const char *network, const char *value, int64_t at)
{
    struct cd_buf norm = CD_BUF_INIT(1024), sealed = CD_BUF_INIT(2048);
    uint8_t lookup[CD_CRYPTO_HASH_LEN], skeleton[CD_CRYPTO_HASH_LEN];
    bool beyond_ascii = false;
    static const struct cd_actor system = CD_ACTOR_SYSTEM_INIT("demo data");
    enum cd_err err;

    if ((err = cd_core_identity_normalize(cd_str_c(kind), cd_str_c(network), cd_str_c(value),
                                          &norm)) != CD_OK)
        goto out;
    cd__core_lookup(c, cd_str_c(kind), (struct cd_str){norm.p, norm.len}, lookup);
    if ((err = cd__core_identity_skeleton(c, cd_str_c(kind), (struct cd_str){norm.p, norm.len},
                                          skeleton, &beyond_ascii)) != CD_OK ||
        (err = cd__core_seal(&dc->key, "identity", (struct cd_str){norm.p, norm.len}, &sealed)) !=
            CD_OK)
        goto out;
    struct cd__identity id = {cd_str_c(kind), network,      lookup,
                              skeleton,       beyond_ascii, {sealed.p, sealed.len}};
    err = cd__core_identity_insert(tx, &system, &id, dc->id, at, NULL);
out:
    cd_buf_free(&norm);
    cd_buf_free(&sealed);
    return err;
}

static enum cd_err demo_batch(struct cd_tx *tx, void *ctx)
{
    struct demo_ctx *d = ctx;
    /* Sealed forms of the fixed-size texts below (at most 600 bytes plus the seal). */
    struct cd_buf a = CD_BUF_INIT(1024), b = CD_BUF_INIT(1024), m = CD_BUF_INIT(1024),
                  th = CD_BUF_INIT(1024);
    uint8_t thread_hash[CD_CRYPTO_HASH_LEN];
    char text[600], value[200], name[120], subject[120], thread[40], meta[200], iid[CD_ID_MAX];
    enum cd_err err = CD_OK;
    int64_t span = (int64_t)d->days * 86400000;

    d->rng = d->rng_at_batch;
    for (int i = d->from; i < d->to && err == CD_OK; i++) {
        struct demo_customer *dc = &d->customers[i];
        const char *fn = first[pick(d, N(first))], *ln = last[pick(d, N(last))];
        const char *const *zone = zones[pick(d, N(zones))];
        int64_t created = d->now - span - (int64_t)pick(d, 86400) * 1000 * 30;
        uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN];

        cd__core_key_new(d->c, dc->id, &dc->key, wrapped);
        snprintf(name, sizeof name, "%s %s", fn, ln);
        snprintf(text, sizeof text, "{\"tier\":\"%s\",\"customer_since\":%u}",
                 pick(d, 10) ? "standard" : "plus", 2015 + pick(d, 11));
        if ((err = cd__core_seal(&dc->key, "display_name", cd_str_c(name), &a)) != CD_OK ||
            (err = cd__core_seal(&dc->key, "attributes", cd_str_c(text), &b)) != CD_OK)
            break;
        struct cd_val p[] = {CD_VCSTR(dc->id),    CD_VINT(created),
                             CD_VBLOB(a.p, a.len), CD_VBLOB(b.p, b.len),
                             CD_VCSTR(zone[1]),   CD_VCSTR(zone[0]),
                             CD_VCSTR(zone[2]),   CD_VBLOB(wrapped, sizeof wrapped)};
        if ((err = cd_tx_exec(tx, "INSERT INTO customers(id, created_at, updated_at,"
                                  " display_name, attributes, locale, time_zone, jurisdiction,"
                                  " key_wrapped) VALUES($1,$2,$2,$3,$4,$5,$6,$7,$8)",
                              p, 8, NULL, NULL, NULL)) != CD_OK)
            break;
        snprintf(value, sizeof value, "%s.%s.%d@%s", fn, ln, i, domains[pick(d, N(domains))]);
        /* Keep the demo addresses ASCII: strip bytes outside it. */
        for (char *s = value; *s; s++)
            if ((unsigned char)*s >= 0x80 || *s == '\'')
                *s = 'x';
        if ((err = seal_insert_identity(tx, d->c, dc, "email", NULL, value, created)) != CD_OK)
            break;
        snprintf(value, sizeof value, "+4915%09d", 100000000 + i * 7919 % 800000000);
        if (pick(d, 3) && (err = seal_insert_identity(tx, d->c, dc, "phone", NULL, value, created)) !=
                           CD_OK)
            break;
        snprintf(value, sizeof value, "@%c%s%d", fn[0] | 0x20, "user", i);
        if (pick(d, 4) == 0 &&
            (err = seal_insert_identity(tx, d->c, dc, "social", "instagram", value, created)) !=
                CD_OK)
            break;
        int count = d->per_customer / 2 + (int)pick(d, (unsigned)d->per_customer + 1);
        int64_t t = d->now - (int64_t)pick(d, (unsigned)(span / 1000)) * 1000;
        for (int k = 0; k < count && err == CD_OK; k++) {
            bool out = k % 2 == 1;
            unsigned topic = pick(d, N(topics));
            const char *channel = channels[k == 0 ? pick(d, N(channels)) : pick(d, 4)];
            if (out)
                snprintf(text, sizeof text, "%s", outbound[pick(d, N(outbound))]);
            else
                fill(text, sizeof text, inbound[pick(d, N(inbound))], 1000 + pick(d, 90000));
            snprintf(subject, sizeof subject, "%s: %s", out ? "Re" : "Question",
                     topics[topic]);
            snprintf(thread, sizeof thread, "thr-%d-%d", i, k / 4);
            /* Replies name the agent who sent them (one of twelve); customers' messages none. */
            if (out)
                snprintf(meta, sizeof meta, "{\"topic\":\"%s\",\"agent\":\"agent-%02d\"}",
                         topics[topic], (i * 7 + k) % 12 + 1);
            else
                snprintf(meta, sizeof meta, "{\"topic\":\"%s\"}", topics[topic]);
            t += (int64_t)(60 + pick(d, 86400 * 3)) * 1000;
            if (t > d->now)
                t = d->now - (int64_t)pick(d, 3600) * 1000;
            cd_id_new("int", iid);
            struct cd__row_binding rb;
            const char *direction = out ? "outbound" : "inbound";
            cd__core_interaction_binding(&rb, iid, channel, direction, t, "service");
            if ((err = cd__core_seal_row(&dc->key, "subject", &rb, cd_str_c(subject), &a)) !=
                    CD_OK ||
                (err = cd__core_seal_row(&dc->key, "body", &rb, cd_str_c(text), &b)) != CD_OK ||
                (err = cd__core_seal_row(&dc->key, "metadata", &rb, cd_str_c(meta), &m)) !=
                    CD_OK ||
                (err = cd__core_seal_row(&dc->key, "thread_id", &rb, cd_str_c(thread), &th)) !=
                    CD_OK)
                break;
            cd__core_thread_hash(d->c, dc->id, cd_str_c(thread), thread_hash);
            struct cd_val q[] = {CD_VCSTR(iid),
                                 CD_VCSTR(dc->id),
                                 CD_VCSTR(channel),
                                 CD_VCSTR(direction),
                                 CD_VBLOB(th.p, th.len),
                                 CD_VINT(t),
                                 CD_VINT(t),
                                 CD_VCSTR("service"),
                                 CD_VBLOB(a.p, a.len),
                                 CD_VBLOB(b.p, b.len),
                                 CD_VBLOB(m.p, m.len),
                                 CD_VBLOB(thread_hash, sizeof thread_hash)};
            err = cd_tx_exec(tx, "INSERT INTO interactions(id, customer_id, channel, direction,"
                                 " thread, occurred_at, created_at, purpose, subject, body,"
                                 " metadata, thread_hash)"
                                 " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
                             q, 12, NULL, NULL, NULL);
        }
        cd__core_key_wipe(&dc->key);
    }
    if (err == CD_OK && d->first_batch) {
        struct cd_audit_event ev = {0};
        ev.action = "demo.load";
        ev.outcome = "ok";
        ev.actor_token = CD_ACTOR_SYSTEM;
        err = cd_audit_append(tx, &ev, NULL);
    }
    cd_buf_free(&a);
    cd_buf_free(&b);
    cd_buf_free(&m);
    cd_buf_free(&th);
    return err;
}

static enum cd_err count_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM customers", NULL, 0, ctx);
}

enum cd_err cd_core_load_demo(struct cd_core *c, int customers, int interactions, int days)
{
    struct demo_ctx d = {c, NULL, customers, 0, 0, 0, days, cd_now_ms(), true,
                         0x9E3779B97F4A7C15ull, 0};
    int64_t existing = 0;
    enum cd_err err;

    if ((err = cd_store_read(c->store, count_fn, &existing)) != CD_OK)
        return err;
    if (existing > 0)
        return CD_OK;
    if ((d.customers = cd_calloc((size_t)customers, sizeof *d.customers)) == NULL)
        return CD_ERR_NOMEM;
    d.per_customer = interactions / customers;
    for (int i = 0; i < customers; i++)
        cd_id_new("cus", d.customers[i].id);
    for (d.from = 0; d.from < customers; d.from = d.to) {
        d.to = d.from + 100 < customers ? d.from + 100 : customers;
        d.rng_at_batch = d.rng;
        if ((err = cd_store_write(c->store, demo_batch, &d)) != CD_OK)
            break;
        d.first_batch = false;
    }
    cd_free(d.customers);
    return err;
}

struct ids_ctx {
    char (*ids)[CD_ID_MAX];
    size_t max, n;
};

static enum cd_err id_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct ids_ctx *x = ctx;

    if (x->n < x->max)
        cd__core_col_text(cols[0], x->ids[x->n++], CD_ID_MAX);
    return CD_OK;
}

static enum cd_err ids_fn(struct cd_tx *tx, void *ctx)
{
    struct ids_ctx *x = ctx;
    struct cd_val p[] = {CD_VINT((int64_t)x->max)};

    x->n = 0;
    return cd_tx_exec(tx, "SELECT id FROM customers WHERE merged_into IS NULL AND"
                          " erased_at IS NULL ORDER BY created_at, id LIMIT $1",
                      p, 1, id_row, x, NULL);
}

enum cd_err cd_core_customer_ids(struct cd_core *c, size_t max, char (*ids)[CD_ID_MAX],
                                 size_t *n)
{
    struct ids_ctx x = {ids, max, 0};
    enum cd_err err = cd_store_read(c->store, ids_fn, &x);

    *n = x.n;
    return err;
}
