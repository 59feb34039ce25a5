/* Handlers for the communication guard: check a message, reload the rule packs. */
#include <stdio.h>
#include "guard/guard.h"
#include "http_int.h"

enum cd_err cd__http_guard_check(struct cd_req *r)
{
    static const char *const allowed[] = {"text", "channel", "direction", "purpose", NULL};
    struct cd_str text = CD_STR_NULL, channel = CD_STR_NULL, direction = CD_STR_NULL,
                  purpose = CD_STR_NULL;
    enum cd_purpose pu;
    struct cd_guard_result *res = NULL;
    char chan[16] = "";
    enum cd_err err;

    if (r->app->guard == NULL)
        return cd_err_set(CD_ERR_BUSY, "no guard rules are loaded on this server");
    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "text", true, &text)) != CD_OK ||
        (err = cd_json_str(r->json, "channel", false, &channel)) != CD_OK ||
        (err = cd_json_str(r->json, "direction", false, &direction)) != CD_OK ||
        (err = cd_json_str(r->json, "purpose", false, &purpose)) != CD_OK)
        return err;
    if (channel.p) {
        if (!cd_core_channel_valid(channel))
            return cd_err_set(CD_ERR_INVALID, "'channel' must be one of email, sms, phone, chat, "
                                              "social, app, push, post, in_person");
        snprintf(chan, sizeof chan, "%.*s", (int)channel.len, channel.p);
    }
    if (direction.p && !cd_core_direction_valid(direction))
        return cd_err_set(CD_ERR_INVALID, "'direction' must be inbound or outbound");
    /* The purpose the message is to be sent for (not the purpose of this request): the packs'
     * policy decides severities by it. */
    if (purpose.p && !cd_purpose_parse(purpose, &pu))
        return cd_err_set(CD_ERR_INVALID, "'purpose' must be one of: %s", cd_purpose_list());
    struct cd_guard_input in = {text, chan[0] ? chan : NULL,
                                direction.p == NULL || cd_str_eq_c(direction, "outbound"),
                                purpose.p ? cd_purpose_name(pu) : NULL};
    if ((err = cd_guard_check(r->app->guard, &in, &res)) != CD_OK)
        return err;
    /* The caller sent the text: the matches are theirs to see. Nothing is stored or logged. */
    err = cd_guard_result_to_json(res, true, &r->resp_json);
    cd_guard_result_free(res);
    return err;
}

enum cd_err cd__http_guard_reload(struct cd_req *r)
{
    enum cd_err err;

    if (r->app->guard == NULL || r->app->rules_dir == NULL)
        return cd_err_set(CD_ERR_BUSY, "no guard rules are loaded on this server");
    if ((err = cd_guard_reload(r->app->guard, r->app->rules_dir)) != CD_OK)
        return err; /* the previous rules stay in force; the detail names file:line and rule */
    r->resp_json = json_pack("{s:s,s:I}", "status", "reloaded", "rules",
                             (json_int_t)cd_guard_rule_count(r->app->guard));
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}
