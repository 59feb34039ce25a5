/* Guard quality driver: runs every line of a labelled JSONL corpus through cd_guard_check and
 * prints precision and recall per category, the warn/block rates on ordinary replies, and
 * figures per kind of practice.
 *
 * Line format: {"text": "...", "labels": ["pii", ...], "channel": "email", "ordinary": true,
 * "kind": "urgency"}; "kind" is optional. A category is "detected" when any finding has that
 * category, whatever its severity.
 *
 * Per kind: a line with labels is caught when every labelled category is detected (recall); a
 * line without labels is flagged when any finding outside the advisory jargon category (and
 * marketing, see below) fires.
 * A positive kind's precision counts the flagged lines of its honest counterpart as false
 * positives: the kind whose name, without "_honest", is a prefix of its own ("pii_honest" for
 * "pii_phone", "urgency_honest" for "urgency").
 *
 * Marketing is judged only on lines that say something about it: lines labelled marketing and
 * ordinary service replies (ordinary lines of an "_honest" kind are honest counterparts of sales
 * practices, often honest promotions, and so are not service replies). It cuts across the other categories (a pressure line may be a sales
 * message or a debt reminder), and the other lines were never labelled for it. For the same
 * reason a marketing finding does not make a line of a kind "flagged": an honest promotion is
 * marketing, which is what the category says, not a fault (ordinary replies flagged as marketing
 * count against the marketing precision above).
 *
 * Usage: quality RULES_DIR CORPUS.jsonl... [--misses] [--floors FILE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "guard/guard.h"

#define NCAT 7
static const char *const cats[NCAT] = {"pii",     "pressure", "misleading", "pricing",
                                       "respect", "jargon",   "marketing"};
/* Categories counted only on lines labelled with them or ordinary (see above). */
static const bool judged_only[NCAT] = {[6] = true};

#define NKIND 64

struct kind {
    char name[40];
    long lines, positives, caught, negatives, flagged;
};

struct stats {
    long tp[NCAT], fp[NCAT], fn[NCAT], pos[NCAT];
    long ordinary, ord_warn, ord_block, lines;
    struct kind kinds[NKIND];
    size_t nkinds;
};

/* The kind named name, added on first sight; NULL for an unnamed kind or a full table. */
static struct kind *kind_get(struct stats *st, const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) >= sizeof st->kinds[0].name)
        return NULL;
    for (size_t i = 0; i < st->nkinds; i++)
        if (strcmp(st->kinds[i].name, name) == 0)
            return &st->kinds[i];
    if (st->nkinds == NKIND)
        return NULL;
    snprintf(st->kinds[st->nkinds].name, sizeof st->kinds[0].name, "%s", name);
    return &st->kinds[st->nkinds++];
}

/* The honest counterpart of a positive kind, if the corpus has one. */
static const struct kind *kind_honest(const struct stats *st, const struct kind *k)
{
    for (size_t i = 0; i < st->nkinds; i++) {
        const char *n = st->kinds[i].name;
        size_t len = strlen(n);
        if (len > 7 && strcmp(n + len - 7, "_honest") == 0 &&
            strncmp(k->name, n, len - 7) == 0)
            return &st->kinds[i];
    }
    return NULL;
}

static int cmp_kind(const void *a, const void *b)
{
    return strcmp(((const struct kind *)a)->name, ((const struct kind *)b)->name);
}

static double kind_recall(const struct kind *k)
{
    return k->positives ? (double)k->caught / (double)k->positives : 1.0;
}

static double kind_flagged(const struct kind *k)
{
    return k->negatives ? (double)k->flagged / (double)k->negatives : 0.0;
}

static double kind_precision(const struct stats *st, const struct kind *k)
{
    const struct kind *h = kind_honest(st, k);
    long fp = h ? h->flagged : 0;

    return k->caught + fp ? (double)k->caught / (double)(k->caught + fp) : 1.0;
}

static int cat_index(const char *c)
{
    for (int i = 0; i < NCAT; i++)
        if (strcmp(cats[i], c) == 0)
            return i;
    return -1;
}

static int run_file(struct cd_guard *g, const char *path, struct stats *st, bool misses)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    if (f == NULL) {
        fprintf(stderr, "quality: cannot open %s\n", path);
        return -1;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)n, 0, &jerr), *labels;
        const char *text, *channel, *kname;
        bool want[NCAT] = {0}, got[NCAT] = {0}, any_label = false, all_caught = true,
             flagged = false;
        struct kind *kd;
        struct cd_guard_result *r = NULL;
        struct cd_guard_input in;
        size_t i;
        json_t *v;

        if (j == NULL)
            continue;
        text = json_string_value(json_object_get(j, "text"));
        channel = json_string_value(json_object_get(j, "channel"));
        kname = json_string_value(json_object_get(j, "kind"));
        labels = json_object_get(j, "labels");
        if (text == NULL) {
            json_decref(j);
            continue;
        }
        json_array_foreach(labels, i, v)
        {
            int c = json_string_value(v) ? cat_index(json_string_value(v)) : -1;
            if (c >= 0)
                want[c] = true;
        }
        in = (struct cd_guard_input){{text, strlen(text)}, channel, true, NULL};
        if (cd_guard_check(g, &in, &r) != CD_OK) {
            fprintf(stderr, "quality: check failed: %s\n", cd_err_detail());
            json_decref(j);
            continue;
        }
        st->lines++;
        for (i = 0; i < cd_guard_result_count(r); i++) {
            const char *cat = cd_guard_result_finding(r, i)->category;
            int c = cat_index(cat);
            if (c >= 0)
                got[c] = true;
            if (strcmp(cat, "jargon") != 0 && strcmp(cat, "marketing") != 0)
                flagged = true;
        }
        for (int c = 0; c < NCAT; c++) {
            any_label |= want[c];
            if (want[c] && !got[c])
                all_caught = false;
        }
        if ((kd = kind_get(st, kname)) != NULL) {
            kd->lines++;
            if (any_label) {
                kd->positives++;
                kd->caught += all_caught;
            } else {
                kd->negatives++;
                kd->flagged += flagged;
                if (misses && flagged)
                    printf("FLAGGED %s %s\t%s\n", kd->name, cd_guard_result_finding(r, 0)->rule,
                           text);
            }
        }
        /* A service reply: ordinary, and not the honest counterpart of a sales practice (an
         * honest promotion is still a promotion). */
        size_t kl = kname ? strlen(kname) : 0;
        bool service = json_is_true(json_object_get(j, "ordinary")) &&
                       !(kl > 7 && strcmp(kname + kl - 7, "_honest") == 0);
        for (int c = 0; c < NCAT; c++) {
            if (judged_only[c] && !want[c] && !service)
                continue;
            st->pos[c] += want[c];
            if (want[c] && got[c])
                st->tp[c]++;
            else if (want[c])
                st->fn[c]++;
            else if (got[c])
                st->fp[c]++;
            if (misses && want[c] != got[c]) {
                const char *rule = "";
                for (i = 0; i < cd_guard_result_count(r); i++)
                    if (strcmp(cd_guard_result_finding(r, i)->category, cats[c]) == 0)
                        rule = cd_guard_result_finding(r, i)->rule;
                printf("%s %s %s %s\t%s\n", want[c] ? "MISS" : "FALSE", cats[c], rule,
                       kname ? kname : "-", text);
            }
        }
        if (json_is_true(json_object_get(j, "ordinary"))) {
            enum cd_guard_verdict vd = cd_guard_result_verdict(r);
            st->ordinary++;
            st->ord_warn += vd >= CD_GUARD_WARN;
            st->ord_block += vd == CD_GUARD_BLOCK;
            if (misses && vd >= CD_GUARD_WARN)
                printf("ORDINARY-%s %s\t%s\n", cd_guard_verdict_name(vd),
                       cd_guard_result_finding(r, 0)->rule, text);
        }
        cd_guard_result_free(r);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    struct cd_guard *g = NULL;
    struct stats st = {0};
    bool misses = false;
    const char *floors = NULL;
    int rc = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: quality RULES_DIR CORPUS.jsonl... [--misses] [--floors FILE]\n");
        return 2;
    }
    cd_json_init();
    if (cd_guard_open(argv[1], &g) != CD_OK) {
        fprintf(stderr, "quality: rules: %s\n", cd_err_detail());
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--misses") == 0)
            misses = true;
        else if (strcmp(argv[i], "--floors") == 0 && i + 1 < argc)
            floors = argv[++i];
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--misses") == 0)
            continue;
        if (strcmp(argv[i], "--floors") == 0) {
            i++;
            continue;
        }
        if (run_file(g, argv[i], &st, misses) != 0)
            rc = 2;
    }
    printf("%-11s %9s %9s %9s %7s\n", "category", "precision", "recall", "positives", "false+");
    double prec[NCAT], rec[NCAT];
    for (int c = 0; c < NCAT; c++) {
        long tp = st.tp[c], fp = st.fp[c], fn = st.fn[c];
        prec[c] = tp + fp ? (double)tp / (double)(tp + fp) : 1.0;
        rec[c] = tp + fn ? (double)tp / (double)(tp + fn) : 1.0;
        printf("%-11s %9.4f %9.4f %9ld %7ld\n", cats[c], prec[c], rec[c], st.pos[c], fp);
    }
    double wr = st.ordinary ? (double)st.ord_warn / (double)st.ordinary : 0;
    double br = st.ordinary ? (double)st.ord_block / (double)st.ordinary : 0;
    printf("ordinary replies: %ld, warned %.4f (%ld), blocked %.4f (%ld); %ld lines\n", st.ordinary,
           wr, st.ord_warn, br, st.ord_block, st.lines);
    if (st.nkinds) {
        qsort(st.kinds, st.nkinds, sizeof st.kinds[0], cmp_kind);
        printf("%-22s %6s %9s %9s %9s\n", "kind", "lines", "recall", "precision", "flagged");
        for (size_t i = 0; i < st.nkinds; i++) {
            const struct kind *k = &st.kinds[i];
            if (k->positives)
                printf("%-22s %6ld %9.4f %9.4f %9s\n", k->name, k->lines, kind_recall(k),
                       kind_precision(&st, k), "");
            else
                printf("%-22s %6ld %9s %9s %9.4f\n", k->name, k->lines, "", "", kind_flagged(k));
        }
    }
    if (floors) {
        /* Each line: "<category> precision|recall <min>", "ordinary warn|block <max>",
         * "kind:<name> recall|precision <min>" or "kind:<name> flagged <max>". */
        FILE *f = fopen(floors, "r");
        char cat[32], what[32];
        double lim;
        if (f == NULL) {
            fprintf(stderr, "quality: cannot open %s\n", floors);
            rc = 2;
        }
        while (f && fscanf(f, "%31s %31s %lf", cat, what, &lim) == 3) {
            double val;
            bool below;
            int c = cat_index(cat);
            if (strcmp(cat, "ordinary") == 0) {
                val = strcmp(what, "warn") == 0 ? wr : br;
                below = val > lim;
            } else if (strncmp(cat, "kind:", 5) == 0) {
                const struct kind *k = NULL;
                for (size_t i = 0; i < st.nkinds; i++)
                    if (strcmp(st.kinds[i].name, cat + 5) == 0)
                        k = &st.kinds[i];
                if (k == NULL) {
                    printf("FLOOR FAILED: %s is not in the corpus\n", cat);
                    rc = 1;
                    continue;
                }
                if (strcmp(what, "flagged") == 0) {
                    val = kind_flagged(k);
                    below = val > lim;
                } else {
                    val = strcmp(what, "precision") == 0 ? kind_precision(&st, k) : kind_recall(k);
                    below = val < lim;
                }
            } else if (c >= 0) {
                val = strcmp(what, "precision") == 0 ? prec[c] : rec[c];
                below = val < lim;
            } else {
                continue;
            }
            if (below) {
                printf("FLOOR FAILED: %s %s = %.4f (limit %.4f)\n", cat, what, val, lim);
                rc = 1;
            }
        }
        if (f)
            fclose(f);
        if (rc == 0)
            printf("quality floors: ok\n");
    }
    cd_guard_close(g);
    return rc;
}
