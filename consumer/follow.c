#include "follow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

/* Records taken from ferry.control in one loop turn. */
#define FOLLOW_POLL_BATCH 64

static int follow_take(struct deliver *d, const rd_kafka_message_t *msg);
static void follow_apply(struct deliver *d);
static struct follow_region *follow_find(struct follow *f,
                                         const char *region);


int
follow_start(struct deliver *d, int64_t wait_ms, char *err, size_t errlen)
{
    struct follow                   *f = &d->follow;
    rd_kafka_conf_t                 *conf;
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_queue_t                *q;
    rd_kafka_resp_err_t              kerr;
    char                             group[128];
    int64_t                          deadline;
    int                              at_end = 0;

    f->regions = xcalloc(d->nsources, sizeof(*f->regions));
    f->nregions = 0;
    for (size_t i = 0; i < d->nsources; i++) {
        const struct deliver_source *src = &d->sources[i];

        if (!src->follows ||
            follow_find(f, src->owner) != NULL)
            continue;
        snprintf(f->regions[f->nregions].name,
                 sizeof(f->regions[f->nregions].name), "%s", src->owner);
        f->regions[f->nregions].state = CONTROL_PRIMARY;
        f->regions[f->nregions].epoch = 0;
        f->nregions++;
    }

    snprintf(group, sizeof(group), "ferry-deliver.%s.control.%ld",
             d->region, (long)getpid());
    if ((conf = kafka_conf_new(d->cfg, err, errlen)) == NULL ||
        (f->rk = kafka_reader_new(conf, group, err, errlen)) == NULL)
        return -1;

    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, CONTROL_TOPIC, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    kerr = rd_kafka_assign(f->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot assign %s: %s", CONTROL_TOPIC,
                 rd_kafka_err2str(kerr));
        return -1;
    }

    /* Read to the end before any mail group is joined. */
    deadline = util_monotonic_ms() + wait_ms;
    while (!at_end && util_monotonic_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(f->rk, 100);

        if (msg == NULL)
            continue;
        at_end = follow_take(d, msg);
        rd_kafka_message_destroy(msg);
    }
    f->loaded = at_end;
    if (!at_end)
        log_warn(NULL, "control-unread", "topic=%s reason=\"end not "
                 "reached in %lld ms\" effect=\"no multi-region topic is "
                 "consumed until it is\"", CONTROL_TOPIC,
                 (long long)wait_ms);
    for (size_t i = 0; i < f->nregions; i++)
        log_info(NULL, "control-loaded", "region=%s state=%s epoch=%llu",
                 f->regions[i].name,
                 control_state_name(f->regions[i].state),
                 (unsigned long long)f->regions[i].epoch);

    /* From here on the loop's wake pipe covers this consumer too. */
    q = rd_kafka_queue_get_consumer(f->rk);
    rd_kafka_queue_io_event_enable(q, d->wake[1], "1", 1);
    rd_kafka_queue_destroy(q);
    return 0;
}


void
follow_poll(struct deliver *d)
{
    struct follow *f = &d->follow;

    if (f->rk == NULL)
        return;
    for (int i = 0; i < FOLLOW_POLL_BATCH; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(f->rk, 0);

        if (msg == NULL)
            break;
        if (follow_take(d, msg) && !f->loaded) {
            f->loaded = 1;
            log_info(NULL, "control-loaded", "topic=%s reason=\"end "
                     "reached\"", CONTROL_TOPIC);
        }
        rd_kafka_message_destroy(msg);
    }
    follow_apply(d);
}


int
follow_wants(const struct follow *f, const struct deliver_source *src)
{
    return !src->follows ||
           (f->loaded && follow_state(f, src->owner) == src->consume_state);
}


enum control_state
follow_state(const struct follow *f, const char *region)
{
    const struct follow_region *r = follow_find((struct follow *)f, region);

    return r != NULL ? r->state : CONTROL_PRIMARY;
}


void
follow_fini(struct follow *f)
{
    free(f->regions);
    f->regions = NULL;
    f->nregions = 0;
    if (f->rk == NULL)
        return;
    rd_kafka_consumer_close(f->rk);
    rd_kafka_destroy(f->rk);
    f->rk = NULL;
}


static struct follow_region *
follow_find(struct follow *f, const char *region)
{
    for (size_t i = 0; i < f->nregions; i++)
        if (strcmp(f->regions[i].name, region) == 0)
            return &f->regions[i];
    return NULL;
}


/*
 * Adopts the state record of msg when its region is followed and it is
 * newer than the last one. Returns 1 at the end of the partition.
 */
static int
follow_take(struct deliver *d, const rd_kafka_message_t *msg)
{
    struct follow           *f = &d->follow;
    struct follow_region    *r;
    struct control           rec;
    struct control_command   cmd;
    enum control_record_kind kind;

    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return 1;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn(NULL, "control-error", "topic=%s reason=\"%s\"",
                 CONTROL_TOPIC, rd_kafka_message_errstr(msg));
        return 0;
    }
    if (msg->payload == NULL)
        return 0;
    if (control_decode(msg->payload, msg->len, &kind, &rec, &cmd) == -1) {
        log_warn(NULL, "control-invalid", "topic=%s offset=%lld",
                 CONTROL_TOPIC, (long long)msg->offset);
        return 0;
    }
    if (kind != CONTROL_RECORD_STATE ||
        (r = follow_find(f, rec.region)) == NULL || rec.epoch <= r->epoch)
        return 0;
    if (rec.state != r->state)
        log_info(NULL, "control-state", "region=%s from=%s to=%s "
                 "epoch=%llu", r->name, control_state_name(r->state),
                 control_state_name(rec.state),
                 (unsigned long long)rec.epoch);
    r->state = rec.state;
    r->epoch = rec.epoch;
    return 0;
}


/* Joins or leaves the groups of following sources to match the states. */
static void
follow_apply(struct deliver *d)
{
    /* During shutdown deliver_drain() closes the consumers anyway. */
    if (d->stopping)
        return;
    for (size_t i = 0; i < d->nsources; i++) {
        struct deliver_source *src = &d->sources[i];
        int                    want = follow_wants(&d->follow, src);
        const struct follow_region *r;

        if (want == src->subscribed)
            continue;
        if (want) {
            deliver_subscribe(src);
            continue;
        }

        /*
         * The revocation that unsubscribe() starts runs group_release()
         * from the next consumer poll: it lets sends in flight end,
         * commits the finished offsets and then the consumer leaves the
         * group.
         */
        if (rd_kafka_unsubscribe(src->rk) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_warn(NULL, "unsubscribe-failed", "topic=%s group=%s",
                     src->topic, src->group);
            continue;
        }
        src->subscribed = 0;
        r = follow_find(&d->follow, src->owner);
        log_info(NULL, "group-left", "topic=%s group=%s state=%s "
                 "epoch=%llu", src->topic, src->group,
                 control_state_name(r->state),
                 (unsigned long long)r->epoch);
    }
}
