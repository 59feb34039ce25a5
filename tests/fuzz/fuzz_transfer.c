/* libFuzzer driver for the import's record parsers: the input is a file as `candor import`
 * reads it, its first byte choosing the format (n: NDJSON, c: CSV through a fixed column
 * mapping, z: Zendesk tickets). Every line (CSV: record) goes through the parser; a record
 * that parses must carry a source id and a body. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "base/base.h"
#include "transfer/transfer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char map_text[] =
    "{\"columns\": {\"id\": \"id\", \"email\": \"identity.value\", \"at\": \"occurred_at\", "
    "\"text\": \"body\", \"q\": \"metadata.queue\"}, \"values\": {\"identity.type\": \"email\", "
    "\"channel\": \"email\", \"direction\": \"inbound\"}}";

static void check(enum cd_err err, struct cd_transfer_record *rec)
{
    if (err == CD_OK)
        assert(rec->id[0] != '\0' && json_is_object(rec->body));
    cd_transfer_record_free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    struct cd_transfer_map *map = NULL;
    struct cd_transfer_record rec;
    bool header = false;

    if (!init) {
        cd_json_init();
        init = true;
    }
    if (size < 1 || size > 64 * 1024)
        return 0;
    char mode = (char)data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    if (mode == 'c' && cd_transfer_map_parse(CD_STR(map_text), &map) != CD_OK)
        return 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        struct cd_str line = {p, nl ? (size_t)(nl - p) : (size_t)(end - p)};
        if (mode == 'c') {
            /* A quoted field may hold line breaks: the record goes on to where quotes close. */
            while (nl && !cd_transfer_csv_complete(line)) {
                nl = memchr(nl + 1, '\n', (size_t)(end - nl - 1));
                line.len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            }
            json_t *fields = NULL;
            if (cd_transfer_csv_split(line, ',', &fields) == CD_OK) {
                if (!header)
                    header = cd_transfer_map_header(map, fields) == CD_OK;
                else
                    check(cd_transfer_map_row(map, fields, &rec), &rec);
            }
            json_decref(fields);
        } else if (mode == 'z') {
            json_t *t = NULL, *recs = NULL;
            if (cd_json_parse_object(line.p, line.len, &t) == CD_OK &&
                cd_transfer_zendesk_ticket(t, &recs) == CD_OK)
                for (size_t i = 0; i < json_array_size(recs); i++)
                    check(cd_transfer_record_from_json(json_array_get(recs, i), &rec), &rec);
            json_decref(recs);
            json_decref(t);
        } else {
            check(cd_transfer_record_parse(line, &rec), &rec);
        }
        p = nl ? nl + 1 : end;
    }
    cd_transfer_map_free(map);
    return 0;
}
