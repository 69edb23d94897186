#include "account.h"

#include <jansson.h>

#include "deliver.h"
#include "log.h"
#include "schedule.h"
#include "util.h"


void
account_init(struct account *a, struct deliver *d)
{
    a->job = DELIVER_JOB_ACCOUNT;
    a->d = d;
    a->in_flight = 0;
    a->next_ms = util_monotonic_ms();
    a->fixed = d->cfg->deliver_max_send_rate > 0;
    if (a->fixed)
        pacing_set_account_rate(&d->pacing,
                                (double)d->cfg->deliver_max_send_rate,
                                a->next_ms);
}


int64_t
account_due_ms(const struct account *a)
{
    return a->fixed || a->in_flight ? INT64_MAX : a->next_ms;
}


void
account_start_due(struct account *a)
{
    struct deliver *d = a->d;
    char            err[256];

    if (util_monotonic_ms() < account_due_ms(a) ||
        ses_client_in_flight(d->ses) >=
            (size_t)d->cfg->deliver_max_in_flight)
        return;
    if (ses_client_get_account(d->ses, a, err, sizeof(err)) == -1) {
        log_warn(NULL, "get-account-failed", "region=%s reason=\"%s\"",
                 d->region, err);
        a->next_ms = util_monotonic_ms() + ACCOUNT_RETRY_MS;
        return;
    }
    a->in_flight = 1;
}


int
account_probe(struct account *a)
{
    struct deliver *d = a->d;
    char            err[256];

    if (a->in_flight)
        return -1;
    if (ses_client_get_account(d->ses, a, err, sizeof(err)) == -1) {
        log_warn(NULL, "get-account-failed", "region=%s reason=\"%s\"",
                 d->region, err);
        return -1;
    }
    a->in_flight = 1;
    a->probing = 1;
    return 0;
}


/* True when a GetAccount body does not say that sending is disabled. */
static int
account_sending_enabled(const char *body)
{
    json_t      *root;
    json_error_t jerr;
    int          enabled;

    if (body == NULL || (root = json_loads(body, 0, &jerr)) == NULL)
        return 0;
    enabled = !json_is_false(json_object_get(root, "SendingEnabled"));
    json_decref(root);
    return enabled;
}


void
account_on_ses(struct account *a, const struct ses_outcome *outcome)
{
    struct deliver *d = a->d;
    int64_t         now = util_monotonic_ms();
    double          rate;
    char            quoted[600];

    a->in_flight = 0;
    if (a->probing) {
        a->probing = 0;
        if (outcome->result == SES_OK &&
            account_sending_enabled(outcome->body))
            schedule_resume_region(d);
        else
            log_info(NULL, "region-probe-failed", "region=%s class=%s",
                     d->region, ses_result_name(outcome->result));
        if (a->fixed)
            return;
    }
    if (outcome->result != SES_OK ||
        pacing_parse_account(outcome->body, &rate) == -1) {
        log_warn(NULL, "get-account-failed", "region=%s class=%s "
                 "reason=%s retry_in_ms=%d send_rate=%.2f", d->region,
                 ses_result_name(outcome->result),
                 log_quote(quoted, sizeof(quoted),
                           outcome->result == SES_OK
                               ? "no SendQuota.MaxSendRate in the response"
                               : outcome->reason),
                 ACCOUNT_RETRY_MS, d->pacing.rate);
        a->next_ms = now + ACCOUNT_RETRY_MS;
        return;
    }
    if (rate != d->pacing.account_rate)
        log_info(NULL, "account-send-rate", "region=%s max_send_rate=%.2f "
                 "previous=%.2f", d->region, rate, d->pacing.account_rate);
    pacing_set_account_rate(&d->pacing, rate, now);
    a->next_ms = now + ACCOUNT_REFRESH_MS;
}
