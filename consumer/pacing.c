#include "pacing.h"

#include <jansson.h>
#include <string.h>

static double pacing_capacity(const struct pacing *p);
static double pacing_floor(const struct pacing *p);
static void pacing_refill(struct pacing *p, int64_t now_ms);


void
pacing_init(struct pacing *p, int64_t now_ms)
{
    memset(p, 0, sizeof(*p));
    p->rate = PACING_UNKNOWN_RATE;
    p->tokens = pacing_capacity(p);
    p->refilled_ms = now_ms;
    p->changed_ms = now_ms;
}


/* One second of the current rate, and at least one token. */
static double
pacing_capacity(const struct pacing *p)
{
    return p->rate > 1.0 ? p->rate : 1.0;
}


static double
pacing_floor(const struct pacing *p)
{
    if (p->account_rate > 0 && p->account_rate < PACING_MIN_RATE)
        return p->account_rate;
    return PACING_MIN_RATE;
}


static void
pacing_refill(struct pacing *p, int64_t now_ms)
{
    double capacity = pacing_capacity(p);

    if (now_ms > p->refilled_ms)
        p->tokens += (double)(now_ms - p->refilled_ms) * p->rate / 1000.0;
    p->refilled_ms = now_ms;
    if (p->tokens > capacity)
        p->tokens = capacity;
}


void
pacing_set_account_rate(struct pacing *p, double rate, int64_t now_ms)
{
    if (!(rate > 0))
        return;
    pacing_refill(p, now_ms);
    if (p->account_rate <= 0 || p->rate > rate) {
        p->rate = rate;
        p->changed_ms = now_ms;
    }
    p->account_rate = rate;
    if (p->tokens > pacing_capacity(p))
        p->tokens = pacing_capacity(p);
}


int64_t
pacing_wait_ms(struct pacing *p, int64_t now_ms)
{
    double  wait;
    int64_t ms;

    pacing_refill(p, now_ms);
    if (p->tokens >= 1.0)
        return 0;
    wait = (1.0 - p->tokens) * 1000.0 / p->rate;
    ms = (int64_t)wait;

    /* Rounded up, so the wait never ends a fraction of a token short. */
    return ms < wait ? ms + 1 : ms;
}


void
pacing_take(struct pacing *p, size_t recipients, int64_t now_ms)
{
    pacing_refill(p, now_ms);
    p->tokens -= (double)(recipients > 0 ? recipients : 1);
}


int
pacing_on_throttle(struct pacing *p, int64_t now_ms)
{
    double lowered;

    /*
     * The responses to sends already in flight come back throttled too;
     * one decrease per interval keeps them from halving the rate again.
     */
    if (p->decreased && now_ms - p->decreased_ms < PACING_INTERVAL_MS)
        return 0;
    lowered = p->rate / 2;
    if (lowered < pacing_floor(p))
        lowered = pacing_floor(p);
    pacing_refill(p, now_ms);

    /* Drop the saved burst too, because SES reported the rate as too high. */
    if (p->tokens > 0)
        p->tokens = 0;
    p->changed_ms = now_ms;
    p->decreased_ms = now_ms;
    p->decreased = 1;
    if (lowered == p->rate)
        return 0;
    p->rate = lowered;
    return 1;
}


int
pacing_on_success(struct pacing *p, int64_t now_ms)
{
    double raised;

    if (p->account_rate <= 0 || p->rate >= p->account_rate ||
        now_ms - p->changed_ms < PACING_INTERVAL_MS)
        return 0;
    pacing_refill(p, now_ms);
    raised = p->rate + p->account_rate * PACING_STEP_FRACTION;
    p->rate = raised < p->account_rate ? raised : p->account_rate;
    p->changed_ms = now_ms;
    return 1;
}


int
pacing_parse_account(const char *body, double *rate)
{
    json_t      *root;
    json_t      *value;
    json_error_t jerr;
    int          rc = -1;

    if (body == NULL || (root = json_loads(body, 0, &jerr)) == NULL)
        return -1;
    value = json_object_get(json_object_get(root, "SendQuota"),
                            "MaxSendRate");
    if (json_is_number(value) && json_number_value(value) > 0) {
        *rate = json_number_value(value);
        rc = 0;
    }
    json_decref(root);
    return rc;
}
