/* Checking a message: normalise, one Hyperscan pass, then validators and context windows on the
 * candidates only, then verdict, spans in the original text, the redacted copy and JSON. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "guard/guard_int.h"

struct match {
    uint32_t id, from, to;
};

struct scan {
    struct match *m;
    size_t n, cap;
    const struct cd__guard_set *set;
    bool nomem, truncated;
};

struct fnd {
    struct cd_guard_finding pub; /* first, so a pointer to fnd is one to pub */
    const struct cd__guard_rule *rule;
    uint32_t nfrom, nto; /* span in the normalised text */
};

struct cd_guard_result {
    struct cd__guard_set *set; /* keeps the rule strings alive */
    char *text;
    size_t len;
    struct fnd *f;
    size_t nf;
    char *redacted; /* == text when nothing was redacted */
    size_t rlen;
    double grade;
    enum cd_guard_verdict verdict;
};

static struct cd__guard_set *set_get(struct cd_guard *g)
{
    struct cd__guard_set *s;

    pthread_mutex_lock(&g->lock);
    s = g->cur;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&g->lock);
    return s;
}

static hs_scratch_t *scratch_get(struct cd__guard_set *s)
{
    hs_scratch_t *sc = NULL;

    pthread_mutex_lock(&s->pool_lock);
    if (s->npool)
        sc = s->pool[--s->npool];
    pthread_mutex_unlock(&s->pool_lock);
    /* The prototype is never scanned with, so cloning it needs no lock. */
    if (sc == NULL && hs_clone_scratch(s->proto, &sc) != HS_SUCCESS)
        sc = NULL;
    return sc;
}

static void scratch_put(struct cd__guard_set *s, hs_scratch_t *sc)
{
    pthread_mutex_lock(&s->pool_lock);
    if (s->npool == s->cappool) {
        size_t nc = s->cappool ? s->cappool * 2 : 16;
        hs_scratch_t **np = cd_realloc(s->pool, nc * sizeof *np);
        if (np == NULL) {
            /* Dropping one scratch is harmless: the next check clones another. */
            pthread_mutex_unlock(&s->pool_lock);
            hs_free_scratch(sc);
            return;
        }
        s->pool = np;
        s->cappool = nc;
    }
    s->pool[s->npool++] = sc;
    pthread_mutex_unlock(&s->pool_lock);
}

static bool keeps_all_ends(const struct cd__guard_set *s, uint32_t id)
{
    uint32_t ri = s->pats[id].rule;

    /* A validated pattern may need a shorter match from the same start ("4242 4242 4242 4242"
     * followed by more digits); everything else keeps only the longest. */
    return ri != CD__GUARD_NO_RULE && s->rules[ri].validator != CD__GUARD_V_NONE;
}

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx)
{
    struct scan *sc = ctx;

    (void)flags;
    if (sc->n && sc->m[sc->n - 1].id == id && sc->m[sc->n - 1].from == from &&
        !keeps_all_ends(sc->set, id)) {
        sc->m[sc->n - 1].to = (uint32_t)to;
        return 0;
    }
    if (sc->n == sc->cap) {
        size_t nc = sc->cap ? sc->cap * 2 : 64;
        struct match *nm;
        if (nc > CD__GUARD_MAX_MATCHES) {
            sc->truncated = true; /* keep what we have: findings so far are still true */
            return 1;
        }
        if ((nm = cd_realloc(sc->m, nc * sizeof *nm)) == NULL) {
            sc->nomem = true;
            return 1;
        }
        sc->m = nm;
        sc->cap = nc;
    }
    sc->m[sc->n++] = (struct match){id, (uint32_t)from, (uint32_t)to};
    return 0;
}

static int cmp_match(const void *a, const void *b)
{
    const struct match *x = a, *y = b;

    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    return x->to > y->to ? -1 : x->to < y->to;
}

/* True if key[a, b) holds the end of a sentence: ".", "!" or "?" before whitespace, or a blank
 * line. */
static bool sentence_end(const char *key, uint32_t a, uint32_t b)
{
    for (uint32_t i = a; i + 1 < b; i++) {
        char c = key[i], nx = key[i + 1];
        if (((c == '.' || c == '!' || c == '?') && (nx == ' ' || nx == '\n' || nx == '\r')) ||
            (c == '\n' && nx == '\n'))
            return true;
    }
    return false;
}

/* True if a hit of one of c's patterns lies within the window around [from, to). */
static bool ctx_hit(const struct scan *sc, const char *key, const struct cd__guard_ctx *c,
                    uint32_t from, uint32_t to)
{
    uint32_t lo = from > c->before ? from - c->before : 0;
    /* With no window after, a hit must start before the candidate (a negation precedes it). */
    uint32_t hi = c->after ? to + c->after : from;

    for (size_t k = 0; k < c->npats; k++) {
        uint32_t id = c->pats[k];
        size_t a = 0, b = sc->n;
        while (a < b) { /* the first match of id */
            size_t mid = (a + b) / 2;
            if (sc->m[mid].id < id)
                a = mid + 1;
            else
                b = mid;
        }
        for (; a < sc->n && sc->m[a].id == id; a++) {
            const struct match *m = &sc->m[a];
            if (m->from >= hi)
                break;
            if (m->to <= lo)
                continue;
            if (c->sentence && ((m->to <= from && sentence_end(key, m->to, from)) ||
                                (m->from >= to && sentence_end(key, to, m->from))))
                continue;
            return true;
        }
    }
    return false;
}

static bool in_scope(const struct cd__guard_rule *r, const char *channel, bool outbound)
{
    if (outbound ? !r->outbound : !r->inbound)
        return false;
    if (r->channels == NULL || channel == NULL)
        return true;
    for (size_t i = 0; i < r->nchannels; i++)
        if (strcmp(r->channels[i], channel) == 0)
            return true;
    return false;
}

static bool listed(const char *const *v, size_t n, const char *x)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], x) == 0)
            return true;
    return false;
}

/* What a check declares: where the message goes and what it is sent for. */
struct ask {
    const char *channel, *purpose; /* NULL: not declared */
    bool outbound;
};

/* A rule's severity for this check: its own, then its channel_severity, then its policy
 * entries (the rule's, then the packs'), each later one that holds overriding the earlier. */
static enum cd_guard_severity severity_for(const struct cd__guard_rule *r, const struct ask *q)
{
    enum cd_guard_severity sev = r->severity;

    for (size_t i = 0; i < r->nchsev; i++) {
        const char *c = r->chsev[i].channel;
        if ((q->channel && strcmp(c, q->channel) == 0) ||
            (q->outbound && strcmp(c, "outbound") == 0) ||
            (!q->outbound && strcmp(c, "inbound") == 0))
            sev = r->chsev[i].severity;
    }
    for (size_t i = 0; i < r->npol; i++) {
        const struct cd__guard_pol *p = &r->pol[i];
        if (p->npurposes && (q->purpose == NULL || !listed(p->purposes, p->npurposes, q->purpose)))
            continue;
        if (p->nchannels && (q->channel == NULL || !listed(p->channels, p->nchannels, q->channel)))
            continue;
        if ((p->dir == CD__GUARD_OUT && !q->outbound) || (p->dir == CD__GUARD_IN && q->outbound))
            continue;
        sev = p->severity;
    }
    return sev;
}

/* Which rules apply: a normal check, or inbound masking (cards and SSNs, any scope). */
static bool wanted(const struct cd__guard_rule *r, bool mask, const char *channel, bool outbound)
{
    if (mask)
        return r->kind == CD__GUARD_PII &&
               (r->validator == CD__GUARD_V_CARD || r->validator == CD__GUARD_V_SSN);
    return in_scope(r, channel, outbound);
}

static int cmp_fnd_rule(const void *a, const void *b)
{
    const struct fnd *x = a, *y = b;

    if (x->rule != y->rule)
        return x->rule < y->rule ? -1 : 1;
    if (x->nfrom != y->nfrom)
        return x->nfrom < y->nfrom ? -1 : 1;
    return x->nto > y->nto ? -1 : x->nto < y->nto;
}

/* Personal data first by severity, then the longest, so overlapping PII keeps the best. */
static int cmp_fnd_pii(const void *a, const void *b)
{
    const struct fnd *x = a, *y = b;
    bool px = x->rule->kind == CD__GUARD_PII, py = y->rule->kind == CD__GUARD_PII;

    if (px != py)
        return px ? -1 : 1;
    if (x->pub.severity != y->pub.severity)
        return x->pub.severity > y->pub.severity ? -1 : 1;
    if (x->nto - x->nfrom != y->nto - y->nfrom)
        return x->nto - x->nfrom > y->nto - y->nfrom ? -1 : 1;
    return x->nfrom < y->nfrom ? -1 : x->nfrom > y->nfrom;
}

static int cmp_fnd_pos(const void *a, const void *b)
{
    const struct fnd *x = a, *y = b;

    if (x->pub.start != y->pub.start)
        return x->pub.start < y->pub.start ? -1 : 1;
    if (x->pub.end != y->pub.end)
        return x->pub.end > y->pub.end ? -1 : 1;
    return strcmp(x->pub.rule, y->pub.rule);
}

struct fvec {
    struct fnd *f;
    size_t n, cap;
};

static enum cd_err fpush(struct fvec *v, const struct fnd *f)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 8;
        struct fnd *nf;
        if (nc > CD__GUARD_MAX_MATCHES)
            return CD_OK; /* enough findings for any reader */
        if ((nf = cd_realloc(v->f, nc * sizeof *nf)) == NULL)
            return CD_ERR_NOMEM;
        v->f = nf;
        v->cap = nc;
    }
    v->f[v->n++] = *f;
    return CD_OK;
}

static size_t clen_at(const char *p)
{
    unsigned char c = (unsigned char)*p;

    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* The length in the original text of what produced key byte k at offset off: a whole
 * placeholder for the placeholder byte, else one character. */
static size_t unit_len(struct cd_str text, size_t off, char k)
{
    if (k == CD__GUARD_SLOT) {
        size_t ph = cd__guard_placeholder_len(text.p + off, text.len - off,
                                              off ? text.p[off - 1] : 0);
        if (ph)
            return ph;
    }
    return clen_at(text.p + off);
}

/* ---- precedence between personal-data rules ----
 * A candidate that has the shape of a checked number (a card's issuer and length, an IBAN's
 * country and length, an SSN's groups) but fails its own check is some other number written
 * like one: an order number in card groups, a mistyped IBAN. Rules that go by shape alone (no
 * checksum of their own, no required context words) must not report it instead. */
struct veto {
    uint32_t from, to;
    const struct cd__guard_rule *rule;
};

struct vvec {
    struct veto *v;
    size_t n, cap;
};

static bool in_set(const uint8_t set[32], char c)
{
    unsigned char b = (unsigned char)c;

    return (set[b >> 3] >> (b & 7)) & 1;
}

static bool shape_only(const struct cd__guard_rule *r)
{
    return r->kind == CD__GUARD_PII && r->context.npats == 0 &&
           (r->validator == CD__GUARD_V_NONE || r->validator == CD__GUARD_V_PHONE ||
            r->validator == CD__GUARD_V_EMAIL || r->validator == CD__GUARD_V_ADDRESS);
}

static enum cd_err veto_push(struct vvec *vv, uint32_t from, uint32_t to,
                             const struct cd__guard_rule *r)
{
    if (vv->n == vv->cap) {
        size_t nc = vv->cap ? vv->cap * 2 : 8;
        struct veto *nv;
        if (nc > CD__GUARD_MAX_MATCHES)
            return CD_OK; /* the scan itself is capped at this many matches */
        if ((nv = cd_realloc(vv->v, nc * sizeof *nv)) == NULL)
            return CD_ERR_NOMEM;
        vv->v = nv;
        vv->cap = nc;
    }
    vv->v[vv->n++] = (struct veto){from, to, r};
    return CD_OK;
}

static bool vetoed(const struct vvec *vv, const struct fnd *f)
{
    if (!shape_only(f->rule))
        return false;
    for (size_t i = 0; i < vv->n; i++)
        if (vv->v[i].rule != f->rule && f->nfrom >= vv->v[i].from && f->nto <= vv->v[i].to)
            return true;
    return false;
}

static struct fnd make_fnd(const struct cd__guard_set *s, const struct cd__guard_rule *r,
                           uint32_t pat, uint32_t from, uint32_t to, const struct ask *q)
{
    struct fnd f = {0};

    f.rule = r;
    f.nfrom = from;
    f.nto = to;
    f.pub.rule = r->id;
    f.pub.category = r->category;
    f.pub.severity = severity_for(r, q);
    f.pub.message = r->message;
    f.pub.suggestion = (pat != CD__GUARD_NO_RULE && s->pats[pat].replacement)
                           ? s->pats[pat].replacement
                           : r->suggestion;
    f.pub.references = r->refs;
    f.pub.nreferences = r->nrefs;
    return f;
}

/* First pass: marks the rules that have a match (ids are rule indexes). */
static int on_rule(unsigned int id, unsigned long long from, unsigned long long to,
                   unsigned int flags, void *ctx)
{
    uint8_t *found = ctx;

    (void)from, (void)to, (void)flags;
    found[id >> 3] |= (uint8_t)(1u << (id & 7));
    return 0;
}

/* The matches of every rule that applies and is in the text, with exact spans: the first pass
 * finds the rules (masking skips it: it wants two rules only), then each is scanned with its
 * own database. */
static enum cd_err scan(const struct cd__guard_set *s, const char *key, size_t klen,
                        const struct ask *q, bool mask, hs_scratch_t *scratch, struct scan *sc)
{
    uint8_t stack[128], *found = stack;
    size_t nb = (s->nrules + 7) / 8;
    enum cd_err err = CD_OK;
    hs_error_t rc;

    if (nb > sizeof stack && (found = cd_calloc(nb, 1)) == NULL)
        return CD_ERR_NOMEM;
    if (found == stack)
        memset(stack, 0, sizeof stack);
    if (!mask) {
        rc = hs_scan(s->db, key, (unsigned)klen, 0, scratch, on_rule, found);
        if (rc != HS_SUCCESS) {
            err = cd_err_set(CD_ERR_INTERNAL, "hyperscan scan failed (%d)", (int)rc);
            goto out;
        }
    }
    for (size_t ri = 0; ri < s->nrules; ri++) {
        const struct cd__guard_rule *r = &s->rules[ri];
        if (r->db == NULL || !wanted(r, mask, q->channel, q->outbound) ||
            (!mask && !(found[ri >> 3] >> (ri & 7) & 1)))
            continue;
        rc = hs_scan(r->db, key, (unsigned)klen, 0, scratch, on_match, sc);
        if (sc->nomem) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        if (sc->truncated)
            break; /* enough matches for any reader; findings so far are still true */
        if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED) {
            err = cd_err_set(CD_ERR_INTERNAL, "hyperscan scan failed (%d)", (int)rc);
            goto out;
        }
    }
out:
    if (found != stack)
        cd_free(found);
    return err;
}

struct analysis {
    struct fnd *f;
    size_t nf;
    double grade;
};

/* The core of check and mask: everything but building the result. */
static enum cd_err analyse(struct cd__guard_set *s, struct cd_str text, const struct ask *q,
                           bool mask, struct analysis *out)
{
    enum cd_err err = CD_OK;
    char *norm = NULL;
    uint32_t *map = NULL, *counts = NULL, *lastm = NULL;
    size_t nlen = 0, words = 0;
    struct scan sc = {NULL, 0, 0, s, false, false};
    struct fvec cand = {0}, fin = {0};
    struct vvec vetoes = {0};
    hs_scratch_t *scratch = NULL;
    struct cd__guard_norm_stats nst = {0, 0};

    /* Templates are checked before they are filled; masking looks at what customers wrote. */
    if ((err = cd__guard_normalise(text, !mask, &norm, &nlen, &map, &nst)) != CD_OK)
        goto out;
    if (s->db && nlen) {
        if ((scratch = scratch_get(s)) == NULL) {
            err = cd_err_set(CD_ERR_NOMEM, "no Hyperscan scratch");
            goto out;
        }
        err = scan(s, norm, nlen, q, mask, scratch, &sc);
        scratch_put(s, scratch);
        if (err != CD_OK)
            goto out;
        if (sc.n > 1)
            qsort(sc.m, sc.n, sizeof *sc.m, cmp_match);
    }
    /* Candidates: validators and context windows on matched spans only. */
    for (size_t i = 0; i < sc.n; i++) {
        const struct match *m = &sc.m[i];
        uint32_t ri = s->pats[m->id].rule, from;
        const struct cd__guard_rule *r;
        enum cd__guard_vres vres;
        struct fnd f;
        size_t u;

        if (ri == CD__GUARD_NO_RULE)
            continue;
        r = &s->rules[ri];
        if (!wanted(r, mask, q->channel, q->outbound))
            continue;
        if (r->kind == CD__GUARD_OCCURRENCE) {
            if (counts == NULL) {
                counts = cd_calloc(s->nrules, sizeof *counts);
                lastm = cd_calloc(s->nrules, sizeof *lastm);
                if (counts == NULL || lastm == NULL) {
                    err = CD_ERR_NOMEM;
                    goto out;
                }
            }
            counts[ri]++;
            if (counts[ri] == 1 || sc.m[lastm[ri]].from < m->from)
                lastm[ri] = (uint32_t)i;
            continue;
        }
        if (r->kind != CD__GUARD_EXISTENCE && r->kind != CD__GUARD_PII &&
            r->kind != CD__GUARD_SUBSTITUTION)
            continue;
        from = m->from;
        if (r->has_extend_left)
            while (from > 0 && in_set(r->extend_left, norm[from - 1]))
                from--;
        vres = cd__guard_validate(r->validator, norm, nlen, from, m->to);
        if (vres == CD__GUARD_VR_NO)
            continue;
        if (r->context.npats && !ctx_hit(&sc, norm, &r->context, from, m->to))
            continue;
        if (vres == CD__GUARD_VR_FAILED) {
            /* Its own check failed: not this kind of data, and no weaker rule's either. */
            if (r->kind == CD__GUARD_PII && (err = veto_push(&vetoes, from, m->to, r)) != CD_OK)
                goto out;
            continue;
        }
        for (u = 0; u < r->nunless; u++)
            if (ctx_hit(&sc, norm, &r->unless[u], from, m->to))
                break;
        if (u < r->nunless)
            continue;
        f = make_fnd(s, r, m->id, from, m->to, q);
        if ((err = fpush(&cand, &f)) != CD_OK)
            goto out;
    }
    if (counts) {
        for (size_t ri = 0; ri < s->nrules; ri++) {
            const struct cd__guard_rule *r = &s->rules[ri];
            struct fnd f;
            if (counts[ri] == 0 || counts[ri] <= r->max_count)
                continue;
            f = make_fnd(s, r, CD__GUARD_NO_RULE, sc.m[lastm[ri]].from, sc.m[lastm[ri]].to, q);
            if ((err = fpush(&cand, &f)) != CD_OK)
                goto out;
        }
    }
    /* One finding per rule per span: drop later overlaps of the same rule, and what a failed
     * check vetoed. */
    if (cand.n > 1)
        qsort(cand.f, cand.n, sizeof *cand.f, cmp_fnd_rule);
    {
        size_t k = 0;
        for (size_t i = 0; i < cand.n; i++) {
            if (k && cand.f[k - 1].rule == cand.f[i].rule && cand.f[i].nfrom < cand.f[k - 1].nto)
                continue;
            if (vetoes.n && vetoed(&vetoes, &cand.f[i]))
                continue;
            cand.f[k++] = cand.f[i];
        }
        cand.n = k;
    }
    /* Personal data spans must not overlap across rules (a card is not also a phone). */
    if (cand.n > 1)
        qsort(cand.f, cand.n, sizeof *cand.f, cmp_fnd_pii);
    for (size_t i = 0; i < cand.n; i++) {
        bool clash = false;
        if (cand.f[i].rule->kind == CD__GUARD_PII)
            for (size_t j = 0; j < fin.n && fin.f[j].rule->kind == CD__GUARD_PII; j++)
                if (cand.f[i].nfrom < fin.f[j].nto && fin.f[j].nfrom < cand.f[i].nto) {
                    clash = true;
                    break;
                }
        if (!clash && (err = fpush(&fin, &cand.f[i])) != CD_OK)
            goto out;
    }
    /* Whole-message measures. */
    if (!mask) {
        out->grade = cd__guard_fk_grade(norm, nlen, &words);
        size_t letters = nst.letters, upper = nst.upper;
        for (size_t ri = 0; ri < s->nrules; ri++) {
            const struct cd__guard_rule *r = &s->rules[ri];
            struct fnd f;
            bool hit = false;
            if (!in_scope(r, q->channel, q->outbound))
                continue;
            if (r->kind == CD__GUARD_READABILITY)
                hit = words >= r->min_words && out->grade > r->max_grade;
            else if (r->kind == CD__GUARD_OCCURRENCE && r->measure == CD__GUARD_UPPERCASE)
                hit = letters >= r->min_letters &&
                      (double)upper > r->max_ratio * (double)letters;
            if (!hit || nlen == 0)
                continue;
            f = make_fnd(s, r, CD__GUARD_NO_RULE, 0, (uint32_t)nlen, q);
            if ((err = fpush(&fin, &f)) != CD_OK)
                goto out;
        }
    }
    /* Spans back to the original text: bytes, then UTF-16 units in one walk. */
    for (size_t i = 0; i < fin.n; i++) {
        struct fnd *f = &fin.f[i];
        if (map == NULL) {
            f->pub.start = f->nfrom;
            f->pub.end = f->nto;
        } else {
            size_t last = map[f->nto - 1];
            f->pub.start = map[f->nfrom];
            f->pub.end = last + unit_len(text, last, norm[f->nto - 1]);
        }
    }
    if (fin.n > 1)
        qsort(fin.f, fin.n, sizeof *fin.f, cmp_fnd_pos);
    {
        size_t pos = 0, u16 = 0;
        for (size_t i = 0; i < fin.n; i++) {
            struct fnd *f = &fin.f[i];
            u16 += cd__guard_utf16_len(text.p + pos, f->pub.start - pos);
            pos = f->pub.start;
            f->pub.start_utf16 = u16;
            f->pub.end_utf16 = u16 + cd__guard_utf16_len(text.p + f->pub.start,
                                                          f->pub.end - f->pub.start);
        }
    }
    out->f = fin.f;
    out->nf = fin.n;
    fin.f = NULL;
out:
    cd_free(norm);
    cd_free(map);
    cd_free(sc.m);
    cd_free(counts);
    cd_free(lastm);
    cd_free(cand.f);
    cd_free(fin.f);
    cd_free(vetoes.v);
    return err;
}

/* Whether a finding is personal data that is never shown in clear. */
static bool masked(const struct fnd *f)
{
    return f->rule->kind == CD__GUARD_PII && f->rule->redact != NULL;
}

/* Appends the masked form of a personal-data finding's text: a card as "•••• 1234", anything
 * else as "[tag]". */
static enum cd_err put_mask(struct cd_buf *b, struct cd_str text, const struct fnd *f)
{
    size_t st = f->pub.start, en = f->pub.end;

    if (strcmp(f->rule->redact, "card") == 0) {
        char last4[5];
        int k = 4;
        last4[4] = '\0';
        for (size_t j = en; j > st && k > 0; j--)
            if (text.p[j - 1] >= '0' && text.p[j - 1] <= '9')
                last4[--k] = text.p[j - 1];
        return cd_buf_printf(b, "\xE2\x80\xA2\xE2\x80\xA2\xE2\x80\xA2\xE2\x80\xA2 %s",
                             last4 + k);
    }
    return cd_buf_printf(b, "[%s]", f->rule->redact);
}

/* Writes text with personal-data findings replaced by their masked form. */
static enum cd_err redact(struct cd_str text, const struct fnd *f, size_t nf, char **out,
                          size_t *outlen, size_t *count)
{
    struct cd_buf b = CD_BUF_INIT(text.len + 32 * nf + 64);
    enum cd_err err = CD_OK;
    size_t pos = 0, n = 0;

    if ((err = cd_buf_reserve(&b, text.len + 1)) != CD_OK)
        goto out;
    for (size_t i = 0; i < nf; i++) {
        size_t st = f[i].pub.start;
        if (!masked(&f[i]) || st < pos)
            continue;
        if ((err = cd_buf_append(&b, text.p + pos, st - pos)) != CD_OK ||
            (err = put_mask(&b, text, &f[i])) != CD_OK)
            goto out;
        pos = f[i].pub.end;
        n++;
    }
    if ((err = cd_buf_append(&b, text.p + pos, text.len - pos)) != CD_OK)
        goto out;
    *out = cd_buf_take(&b, outlen);
    *count = n;
out:
    cd_buf_free(&b);
    return err;
}

static enum cd_err check_input(struct cd_str text)
{
    if (text.len > CD_GUARD_MAX_TEXT)
        return cd_err_set(CD_ERR_TOO_BIG, "message above %u bytes", CD_GUARD_MAX_TEXT);
    if (text.len && text.p == NULL)
        return cd_err_set(CD_ERR_INVALID, "no text");
    if (!cd__guard_utf8_ok(text.p, text.len))
        return cd_err_set(CD_ERR_INVALID, "message is not valid UTF-8");
    return CD_OK;
}

enum cd_err cd_guard_check(struct cd_guard *g, const struct cd_guard_input *in,
                           struct cd_guard_result **out)
{
    enum cd_err err;
    struct cd__guard_set *s = NULL;
    struct cd_guard_result *r = NULL;
    struct analysis a = {0};
    struct cd_str text = in->text;
    size_t redacted_n = 0;

    if (text.p == NULL)
        text.p = "";
    if ((err = check_input(text)) != CD_OK)
        return err;
    s = set_get(g);
    struct ask q = {in->channel, in->purpose, in->outbound};
    if ((err = analyse(s, text, &q, false, &a)) != CD_OK)
        goto out;
    if ((r = cd_calloc(1, sizeof *r)) == NULL || (r->text = cd_strndup(text.p, text.len)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    r->len = text.len;
    r->f = a.f;
    r->nf = a.nf;
    a.f = NULL;
    r->grade = a.grade;
    r->verdict = CD_GUARD_ALLOW;
    for (size_t i = 0; i < r->nf; i++) {
        enum cd_guard_severity sev = r->f[i].pub.severity;
        if (sev == CD_GUARD_SEV_BLOCK)
            r->verdict = CD_GUARD_BLOCK;
        else if (sev == CD_GUARD_SEV_WARN && r->verdict == CD_GUARD_ALLOW)
            r->verdict = CD_GUARD_WARN;
        if (masked(&r->f[i]))
            redacted_n++;
    }
    if (redacted_n) {
        size_t cnt;
        if ((err = redact(text, r->f, r->nf, &r->redacted, &r->rlen, &cnt)) != CD_OK)
            goto out;
    } else {
        r->redacted = r->text;
        r->rlen = r->len;
    }
    r->set = s;
    s = NULL;
    *out = r;
    r = NULL;
out:
    cd_free(a.f);
    cd_guard_result_free(r);
    cd__guard_set_unref(s);
    return err;
}

/* Masking needs a card number (at least 12 digits) or an SSN (9). Pure ASCII text with fewer
 * than 9 digits holds neither, so most messages skip normalisation and the scan; any non-ASCII
 * byte (fullwidth digits, zero-width characters between digits) takes the full path. */
#define MASK_MIN_DIGITS 9

static bool may_hold_card_or_ssn(struct cd_str text)
{
    size_t digits = 0;

    for (size_t i = 0; i < text.len; i++) {
        unsigned char ch = (unsigned char)text.p[i];
        if (ch >= 0x80)
            return true;
        if (ch >= '0' && ch <= '9' && ++digits >= MASK_MIN_DIGITS)
            return true;
    }
    return false;
}

enum cd_err cd_guard_mask_inbound(struct cd_guard *g, struct cd_str text, char **out,
                                  size_t *outlen, size_t *masked)
{
    enum cd_err err;
    struct cd__guard_set *s;
    struct analysis a = {0};

    if (text.p == NULL)
        text.p = "";
    if ((err = check_input(text)) != CD_OK)
        return err;
    if (!may_hold_card_or_ssn(text)) {
        if ((*out = cd_malloc(text.len + 1)) == NULL)
            return CD_ERR_NOMEM;
        memcpy(*out, text.p, text.len);
        (*out)[text.len] = '\0';
        *outlen = text.len;
        *masked = 0;
        return CD_OK;
    }
    s = set_get(g);
    struct ask q = {NULL, NULL, false};
    if ((err = analyse(s, text, &q, true, &a)) != CD_OK)
        goto out;
    err = redact(text, a.f, a.nf, out, outlen, masked);
out:
    cd_free(a.f);
    cd__guard_set_unref(s);
    return err;
}

void cd_guard_result_free(struct cd_guard_result *r)
{
    if (r == NULL)
        return;
    if (r->redacted != r->text)
        cd_free(r->redacted);
    cd_free(r->text);
    cd_free(r->f);
    cd__guard_set_unref(r->set);
    cd_free(r);
}

enum cd_guard_verdict cd_guard_result_verdict(const struct cd_guard_result *r)
{
    return r->verdict;
}

const char *cd_guard_verdict_name(enum cd_guard_verdict v)
{
    return v == CD_GUARD_BLOCK ? "block" : v == CD_GUARD_WARN ? "warn" : "allow";
}

const char *cd_guard_severity_name(enum cd_guard_severity s)
{
    return s == CD_GUARD_SEV_BLOCK ? "block" : s == CD_GUARD_SEV_WARN ? "warn" : "info";
}

size_t cd_guard_result_count(const struct cd_guard_result *r)
{
    return r->nf;
}

const struct cd_guard_finding *cd_guard_result_finding(const struct cd_guard_result *r, size_t i)
{
    return i < r->nf ? &r->f[i].pub : NULL;
}

double cd_guard_result_grade(const struct cd_guard_result *r)
{
    return r->grade;
}

struct cd_str cd_guard_result_redacted(const struct cd_guard_result *r)
{
    return (struct cd_str){r->redacted, r->rlen};
}

static enum cd_err finding_json(const struct cd_guard_result *r, const struct fnd *f,
                                bool include_matches, json_t **out)
{
    json_t *o = json_object(), *refs = NULL;
    enum cd_err err = CD_ERR_NOMEM;

    if (o == NULL)
        goto out;
    if (json_object_set_new(o, "rule", json_string(f->pub.rule)) ||
        json_object_set_new(o, "category", json_string(f->pub.category)) ||
        json_object_set_new(o, "severity",
                            json_string(cd_guard_severity_name(f->pub.severity))) ||
        json_object_set_new(o, "start", json_integer((json_int_t)f->pub.start)) ||
        json_object_set_new(o, "end", json_integer((json_int_t)f->pub.end)) ||
        json_object_set_new(o, "start_utf16", json_integer((json_int_t)f->pub.start_utf16)) ||
        json_object_set_new(o, "end_utf16", json_integer((json_int_t)f->pub.end_utf16)))
        goto out;
    if (include_matches) {
        /* The wording that drew a finding is shown to its author; personal data never is, in
         * clear: an answer or a log line may travel further than the message would have. */
        struct cd_buf m = CD_BUF_INIT(f->pub.end - f->pub.start + 64);
        struct cd_str text = {r->text, r->len};
        if (masked(f)) {
            err = put_mask(&m, text, f);
        } else {
            err = cd_buf_append(&m, r->text + f->pub.start, f->pub.end - f->pub.start);
        }
        if (err != CD_OK || json_object_set_new(o, "match", json_stringn(m.p ? m.p : "", m.len))) {
            cd_buf_free(&m);
            err = err != CD_OK && err != CD_ERR_TOO_BIG ? err : CD_ERR_NOMEM;
            goto out;
        }
        cd_buf_free(&m);
        err = CD_ERR_NOMEM;
    }
    if (json_object_set_new(o, "message", json_string(f->pub.message)) ||
        json_object_set_new(o, "suggestion", json_string(f->pub.suggestion)))
        goto out;
    if ((refs = json_array()) == NULL)
        goto out;
    for (size_t i = 0; i < f->pub.nreferences; i++)
        if (json_array_append_new(refs, json_string(f->pub.references[i])))
            goto out;
    if (json_object_set_new(o, "references", refs)) {
        refs = NULL; /* set_new consumed it */
        goto out;
    }
    refs = NULL;
    *out = o;
    o = NULL;
    err = CD_OK;
out:
    json_decref(refs);
    json_decref(o);
    return err;
}

enum cd_err cd_guard_result_to_json(const struct cd_guard_result *r, bool include_matches,
                                    json_t **out)
{
    json_t *o = json_object(), *arr = NULL;
    enum cd_err err = CD_ERR_NOMEM;

    if (o == NULL)
        goto out;
    if (json_object_set_new(o, "verdict", json_string(cd_guard_verdict_name(r->verdict))) ||
        json_object_set_new(o, "grade_level", json_real(round(r->grade * 10) / 10)))
        goto out;
    if ((arr = json_array()) == NULL)
        goto out;
    for (size_t i = 0; i < r->nf; i++) {
        json_t *f;
        if ((err = finding_json(r, &r->f[i], include_matches, &f)) != CD_OK)
            goto out;
        err = CD_ERR_NOMEM;
        if (json_array_append_new(arr, f))
            goto out;
    }
    if (json_object_set_new(o, "findings", arr)) {
        arr = NULL;
        goto out;
    }
    arr = NULL;
    if (json_object_set_new(o, "redacted", json_stringn(r->redacted, r->rlen)))
        goto out;
    *out = o;
    o = NULL;
    err = CD_OK;
out:
    json_decref(arr);
    json_decref(o);
    return err;
}
