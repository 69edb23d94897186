#include "controller.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "failover.h"
#include "health.h"
#include "kafka.h"
#include "log.h"
#include "offsets.h"
#include "probe.h"
#include "status.h"
#include "util.h"
#include "verdict.h"

#define CONTROLLER_POLL_MS     100
#define CONTROLLER_PUBLISH_MS  10000
#define CONTROLLER_LOAD_MS     30000
#define CONTROLLER_STATUS_MS   1000

/* One primary region: its machine, probe, worker reports and command. */
struct controller_slot {
    struct failover         f;
    bool                    stored;         /* a record is in ferry.control */
    struct probe           *probe;
    struct verdict_workers *workers;
    enum failover_health    last_health;
    bool                    ready;
    char                    not_ready[1024];
    bool                    have_command;
    struct control_command  command;
    int64_t                 command_offset;
    int64_t                 next_drain_check_ms;
};

struct controller {
    const struct config          *cfg;
    const struct ses_credentials *creds;
    char                          id[128];
    rd_kafka_t                   *producer;
    rd_kafka_t                   *reader;       /* ferry.control, health */
    rd_kafka_t                   *lease;
    rd_kafka_resp_err_t           delivery_err;
    int                           delivery_done;
    struct probe                 *secondary;
    struct controller_slot       *slots;
    size_t                        nslots;
    bool                          active;
    int64_t                       control_next;  /* next offset to read */
    int64_t                       control_target; /* read up to here first */
    int64_t                       next_probe_ms;
    int64_t                       next_readiness_ms;
    int64_t                       next_status_ms;
};

static rd_kafka_t *controller_client_new(const struct controller *c,
                                         rd_kafka_type_t type,
                                         const char *group, char *err,
                                         size_t errlen);
static int controller_assign(struct controller *c, char *err, size_t errlen);
static void controller_on_delivery(rd_kafka_t *rk,
                                   const rd_kafka_message_t *msg,
                                   void *opaque);
static void controller_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                    rd_kafka_topic_partition_list_t *parts,
                                    void *opaque);
static void controller_read(struct controller *c, int timeout_ms);
static void controller_on_control(struct controller *c,
                                  const rd_kafka_message_t *msg);
static struct controller_slot *controller_slot(struct controller *c,
                                               const char *region);
static int controller_publish(struct controller *c, struct control *rec);
static void controller_step(struct controller *c,
                            struct controller_slot *s,
                            const struct failover_event *ev);
static void controller_tick(struct controller *c, struct controller_slot *s,
                            int64_t now_ms);
static void controller_drain(struct controller *c, struct controller_slot *s,
                             int64_t now_ms);
static void controller_check_readiness(struct controller *c);
static void controller_report_status(struct controller *c);
static void controller_fill_event(const struct controller_slot *s,
                                  struct failover_event *ev,
                                  enum failover_event_kind kind,
                                  int64_t now_ms);


int
controller_check(const struct config *cfg, char *err, size_t errlen)
{
    if (config_region(cfg, cfg->controller_secondary_region) == NULL) {
        snprintf(err, errlen, "%s: key 'controller.secondary_region': "
                 "region '%s' is not listed under 'regions'", cfg->path,
                 cfg->controller_secondary_region);
        return -1;
    }
    if (cfg->nregions < 2) {
        snprintf(err, errlen, "%s: key 'regions': the controller needs a "
                 "primary region besides secondary region %s", cfg->path,
                 cfg->controller_secondary_region);
        return -1;
    }
    return 0;
}


struct controller *
controller_new(const struct config *cfg, const struct ses_credentials *creds,
               char *err, size_t errlen)
{
    struct controller *c = xcalloc(1, sizeof(*c));
    char               host[64], group[128];

    c->cfg = cfg;
    c->creds = creds;
    if (cfg->controller_id[0] != '\0') {
        snprintf(c->id, sizeof(c->id), "%s", cfg->controller_id);
    } else {
        if (gethostname(host, sizeof(host)) == -1)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(c->id, sizeof(c->id), "%s:%ld", host, (long)getpid());
    }

    /* A probe per region, a slot per primary region. */
    c->slots = xcalloc(cfg->nregions, sizeof(*c->slots));
    for (size_t i = 0; i < cfg->nregions; i++) {
        const struct region    *reg = &cfg->regions[i];
        struct probe           *p = probe_new(cfg, reg, creds, err, errlen);
        struct controller_slot *s;

        if (p == NULL)
            goto fail;
        if (strcmp(reg->name, cfg->controller_secondary_region) == 0) {
            c->secondary = p;
            continue;
        }
        s = &c->slots[c->nslots++];
        s->probe = p;
        s->workers = xcalloc(1, sizeof(*s->workers));
        s->command_offset = -1;
        snprintf(s->f.rec.region, sizeof(s->f.rec.region), "%s", reg->name);
        snprintf(s->not_ready, sizeof(s->not_ready), "not checked yet");
    }

    /* Kafka: a producer, a reader that is only assigned, the lease. */
    snprintf(group, sizeof(group), "ferry-controller.reader.%ld",
             (long)getpid());
    if ((c->producer = controller_client_new(c, RD_KAFKA_PRODUCER, NULL, err,
                                             errlen)) == NULL ||
        (c->reader = controller_client_new(c, RD_KAFKA_CONSUMER, group, err,
                                           errlen)) == NULL ||
        controller_assign(c, err, errlen) == -1)
        goto fail;

    /* The stored state, before anything else happens. */
    controller_read(c, CONTROLLER_LOAD_MS);
    if (c->control_next < c->control_target) {
        snprintf(err, errlen, "reading %s timed out at offset %lld of %lld",
                 CONTROL_TOPIC, (long long)c->control_next,
                 (long long)c->control_target);
        goto fail;
    }
    for (size_t i = 0; i < c->nslots; i++) {
        struct controller_slot *s = &c->slots[i];
        struct control          stored = s->f.rec;

        failover_init(&s->f, stored.region, s->stored ? &stored : NULL,
                      c->id, cfg->controller_failback_dwell_seconds * 1000,
                      util_now_ms());
        log_info(NULL, "loaded", "region=%s state=%s epoch=%llu hold=%d "
                 "stored=%d", s->f.rec.region,
                 control_state_name(s->f.rec.state),
                 (unsigned long long)s->f.rec.epoch, (int)s->f.rec.hold,
                 (int)s->stored);
    }

    if ((c->lease = controller_client_new(c, RD_KAFKA_CONSUMER,
                                          CONTROLLER_LEASE_GROUP, err,
                                          errlen)) == NULL)
        goto fail;
    {
        rd_kafka_topic_partition_list_t *topics =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_resp_err_t kerr;

        rd_kafka_topic_partition_list_add(topics, CONTROLLER_LEASE_TOPIC,
                                          RD_KAFKA_PARTITION_UA);
        kerr = rd_kafka_subscribe(c->lease, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "subscribing to %s: %s",
                     CONTROLLER_LEASE_TOPIC, rd_kafka_err2str(kerr));
            goto fail;
        }
    }
    log_info(NULL, "started", "id=%s secondary=%s regions=%zu", c->id,
             cfg->controller_secondary_region, c->nslots);
    return c;

fail:
    controller_free(c);
    return NULL;
}


void
controller_free(struct controller *c)
{
    if (c == NULL)
        return;
    if (c->lease != NULL) {
        rd_kafka_consumer_close(c->lease);
        rd_kafka_destroy(c->lease);
    }
    if (c->reader != NULL) {
        rd_kafka_consumer_close(c->reader);
        rd_kafka_destroy(c->reader);
    }
    if (c->producer != NULL) {
        rd_kafka_flush(c->producer, CONTROLLER_PUBLISH_MS);
        rd_kafka_destroy(c->producer);
    }
    for (size_t i = 0; i < c->nslots; i++) {
        probe_free(c->slots[i].probe);
        free(c->slots[i].workers);
    }
    free(c->slots);
    probe_free(c->secondary);
    free(c);
}


static rd_kafka_t *
controller_client_new(const struct controller *c, rd_kafka_type_t type,
                      const char *group, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kafka_conf_new(c->cfg, err, errlen);
    rd_kafka_t      *rk;
    char             why[512];
    int              ok = conf != NULL;

    if (ok && type == RD_KAFKA_PRODUCER) {
        ok = kafka_conf_set(conf, "enable.idempotence", "true", err,
                            errlen) == 0 &&
             kafka_conf_set(conf, "acks", "all", err, errlen) == 0;
        rd_kafka_conf_set_dr_msg_cb(conf, controller_on_delivery);
    } else if (ok) {
        ok = kafka_conf_set(conf, "group.id", group, err, errlen) == 0 &&
             kafka_conf_set(conf, "enable.auto.commit", "false", err,
                            errlen) == 0 &&
             kafka_conf_set(conf, "enable.partition.eof", "true", err,
                            errlen) == 0;
    }
    /* The lease moves 10 s after its holder stopped heartbeating. */
    if (ok && group != NULL && strcmp(group, CONTROLLER_LEASE_GROUP) == 0) {
        ok = kafka_conf_set(conf, "session.timeout.ms", "10000", err,
                            errlen) == 0 &&
             kafka_conf_set(conf, "heartbeat.interval.ms", "1000", err,
                            errlen) == 0 &&
             kafka_conf_set(conf, "partition.assignment.strategy", "range",
                            err, errlen) == 0;
        rd_kafka_conf_set_rebalance_cb(conf, controller_on_rebalance);
    }
    if (!ok) {
        if (conf != NULL)
            rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, (void *)c);

    /* On success rd_kafka_new() owns conf. */
    if ((rk = rd_kafka_new(type, conf, why, sizeof(why))) == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "creating a Kafka client failed: %s", why);
        return NULL;
    }
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}


/*
 * Assigns ferry.control from its start and ferry.health from the start of
 * the health window, and sets control_target to ferry.control's end.
 */
static int
controller_assign(struct controller *c, char *err, size_t errlen)
{
    const struct rd_kafka_metadata  *md = NULL;
    rd_kafka_topic_t                *rkt;
    rd_kafka_topic_partition_list_t *health, *all;
    rd_kafka_resp_err_t              kerr;
    int64_t                          low, high;
    int                              count = 0, rc = -1;

    kerr = rd_kafka_query_watermark_offsets(c->reader, CONTROL_TOPIC, 0, &low,
                                            &high, OFFSETS_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "reading the end of %s: %s", CONTROL_TOPIC,
                 rd_kafka_err2str(kerr));
        return -1;
    }
    c->control_target = high;

    rkt = rd_kafka_topic_new(c->reader, HEALTH_TOPIC, NULL);
    kerr = rd_kafka_metadata(c->reader, 0, rkt, &md, OFFSETS_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 ||
        md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "metadata of topic %s: %s", HEALTH_TOPIC,
                 rd_kafka_err2str(kerr != 0 ? kerr : md->topics[0].err));
        goto out;
    }
    count = md->topics[0].partition_cnt;

    health = rd_kafka_topic_partition_list_new(count);
    for (int p = 0; p < count; p++)
        rd_kafka_topic_partition_list_add(health, HEALTH_TOPIC, p)->offset =
            util_now_ms() - c->cfg->controller_health_window_seconds * 1000;
    kerr = rd_kafka_offsets_for_times(c->reader, health, OFFSETS_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "finding the window's start in %s: %s",
                 HEALTH_TOPIC, rd_kafka_err2str(kerr));
        rd_kafka_topic_partition_list_destroy(health);
        goto out;
    }

    all = rd_kafka_topic_partition_list_new(count + 1);
    rd_kafka_topic_partition_list_add(all, CONTROL_TOPIC, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    for (int p = 0; p < count; p++)
        rd_kafka_topic_partition_list_add(all, HEALTH_TOPIC, p)->offset =
            health->elems[p].offset >= 0 ? health->elems[p].offset
                                         : RD_KAFKA_OFFSET_END;
    kerr = rd_kafka_assign(c->reader, all);
    rd_kafka_topic_partition_list_destroy(all);
    rd_kafka_topic_partition_list_destroy(health);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "assigning %s and %s: %s", CONTROL_TOPIC,
                 HEALTH_TOPIC, rd_kafka_err2str(kerr));
        goto out;
    }
    rc = 0;

out:
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    return rc;
}


static void
controller_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                       void *opaque)
{
    struct controller *c = opaque;

    c->delivery_err = msg->err;
    c->delivery_done = 1;
}


/* The replica assigned partition 0 of the lease topic is the active one. */
static void
controller_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct controller *c = opaque;
    bool               was = c->active;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        c->active = rd_kafka_topic_partition_list_find(
                        parts, CONTROLLER_LEASE_TOPIC, 0) != NULL;
    } else {
        rd_kafka_assign(rk, NULL);
        c->active = false;
    }
    if (c->active && !was) {
        int64_t low, high;

        /* Act only on the newest stored state: read up to today's end. */
        if (rd_kafka_query_watermark_offsets(c->reader, CONTROL_TOPIC, 0,
                                             &low, &high,
                                             OFFSETS_TIMEOUT_MS) == 0)
            c->control_target = high;
        else
            c->active = false;
    }
    if (c->active != was)
        log_info(NULL, c->active ? "lease-acquired" : "lease-lost",
                 "id=%s", c->id);
}


static struct controller_slot *
controller_slot(struct controller *c, const char *region)
{
    for (size_t i = 0; i < c->nslots; i++)
        if (strcmp(c->slots[i].f.rec.region, region) == 0)
            return &c->slots[i];
    return NULL;
}


/* Consumes what ferry.control and ferry.health have, for up to timeout. */
static void
controller_read(struct controller *c, int timeout_ms)
{
    int64_t deadline = util_monotonic_ms() + timeout_ms;

    do {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(
            c->reader, c->control_next < c->control_target ? 100 : 0);

        if (msg == NULL) {
            if (c->control_next >= c->control_target)
                return;
            continue;
        }
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (strcmp(rd_kafka_topic_name(msg->rkt), CONTROL_TOPIC) == 0 &&
                msg->offset > c->control_next)
                c->control_next = msg->offset;
        } else if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_warn(NULL, "kafka-error", "error=\"%s\"",
                     rd_kafka_message_errstr(msg));
        } else if (strcmp(rd_kafka_topic_name(msg->rkt),
                          CONTROL_TOPIC) == 0) {
            controller_on_control(c, msg);
            c->control_next = msg->offset + 1;
        } else {
            struct health           h;
            struct controller_slot *s;

            if (health_decode(msg->payload, msg->len, &h) == 0 &&
                (s = controller_slot(c, h.region)) != NULL)
                verdict_workers_add(s->workers, &h);
        }
        rd_kafka_message_destroy(msg);
    } while (util_monotonic_ms() < deadline);
}


static void
controller_on_control(struct controller *c, const rd_kafka_message_t *msg)
{
    struct control           rec;
    struct control_command   cmd;
    enum control_record_kind kind;
    struct controller_slot  *s;

    if (control_decode(msg->payload, msg->len, &kind, &rec, &cmd) == -1) {
        log_warn(NULL, "control-invalid", "offset=%lld",
                 (long long)msg->offset);
        return;
    }
    if (kind == CONTROL_RECORD_COMMAND) {
        if ((s = controller_slot(c, cmd.region)) == NULL)
            return;
        s->have_command = true;
        s->command = cmd;
        s->command_offset = msg->offset;
        return;
    }
    if ((s = controller_slot(c, rec.region)) == NULL)
        return;

    /* Our own records come back with our epoch; adopt only newer ones. */
    if (!s->stored || rec.epoch > s->f.rec.epoch) {
        if (s->stored && c->active)
            log_warn(NULL, "control-adopted", "region=%s epoch=%llu by=%s "
                     "reason=\"newer record of another controller\"",
                     rec.region, (unsigned long long)rec.epoch,
                     rec.controller_id);
        s->f.rec = rec;
        s->f.copy_requested = false;
        s->stored = true;
    }
}


/* Produces rec and waits for its acknowledgement. */
static int
controller_publish(struct controller *c, struct control *rec)
{
    unsigned char      *buf;
    size_t              len;
    rd_kafka_resp_err_t kerr;

    snprintf(rec->controller_id, sizeof(rec->controller_id), "%s", c->id);
    buf = control_encode(rec, &len);
    c->delivery_done = 0;
    kerr = rd_kafka_producev(c->producer, RD_KAFKA_V_TOPIC(CONTROL_TOPIC),
                             RD_KAFKA_V_KEY(rec->region, strlen(rec->region)),
                             RD_KAFKA_V_VALUE(buf, len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END);
    free(buf);
    if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_flush(c->producer, CONTROLLER_PUBLISH_MS);
        kerr = c->delivery_done ? c->delivery_err
                                : RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error(NULL, "publish-failed", "region=%s epoch=%llu error=\"%s\"",
                  rec->region, (unsigned long long)rec->epoch,
                  rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}


static void
controller_fill_event(const struct controller_slot *s,
                      struct failover_event *ev,
                      enum failover_event_kind kind, int64_t now_ms)
{
    memset(ev, 0, sizeof(*ev));
    ev->kind = kind;
    ev->now_ms = now_ms;
    ev->primary = s->last_health;
    ev->secondary_ready = s->ready;
    ev->not_ready_reason = s->not_ready;
}


/* Feeds one event and carries out the actions; logs every transition. */
static void
controller_step(struct controller *c, struct controller_slot *s,
                const struct failover_event *ev)
{
    struct failover        before = s->f;
    struct failover_result res;
    char                   quoted[600];
    char                   summary[1024], err[512];

    failover_step(&s->f, ev, &res);
    if (res.actions & FAILOVER_ALERT)
        log_error(NULL, "alert", "region=%s reason=%s", s->f.rec.region,
                  log_quote(quoted, sizeof(quoted), res.reason));
    if (res.actions & FAILOVER_ALERT_CLEAR)
        log_info(NULL, "alert-cleared", "region=%s", s->f.rec.region);

    if (res.actions & FAILOVER_PUBLISH) {
        if (controller_publish(c, &s->f.rec) == -1) {
            s->f = before;
            s->f.copy_requested = false;
            return;
        }
        s->stored = true;
        if (s->f.rec.state != res.from)
            status_transition(&s->f.rec, res.from);
        log_info(NULL, s->f.rec.state != res.from ? "transition" : "published",
                 "region=%s from=%s to=%s epoch=%llu hold=%d reason=%s",
                 s->f.rec.region, control_state_name(res.from),
                 control_state_name(s->f.rec.state),
                 (unsigned long long)s->f.rec.epoch, (int)s->f.rec.hold,
                 log_quote(quoted, sizeof(quoted), s->f.rec.reason));
    }

    if (res.actions & FAILOVER_COPY_OFFSETS) {
        char from[128], to[128], topic[128];
        struct failover_event copied;

        snprintf(topic, sizeof(topic), "mail.%s", s->f.rec.region);
        snprintf(from, sizeof(from), "%s%s",
                 failover_source_group_prefix(s->f.rec.state),
                 s->f.rec.region);
        snprintf(to, sizeof(to), "%s%s",
                 failover_target_group_prefix(s->f.rec.state),
                 s->f.rec.region);
        if (offsets_copy(c->lease, topic, from, to, summary, sizeof(summary),
                         err, sizeof(err)) == -1) {
            log_error(NULL, "offsets-copy-failed", "region=%s from=%s to=%s "
                      "error=%s", s->f.rec.region, from, to,
                      log_quote(quoted, sizeof(quoted), err));
            s->f.copy_requested = false;
            return;
        }
        log_info(NULL, "offsets-copied", "region=%s topic=%s from=%s to=%s "
                 "offsets=%s", s->f.rec.region, topic, from, to,
                 log_quote(quoted, sizeof(quoted), summary));
        controller_fill_event(s, &copied, FAILOVER_EVENT_OFFSETS_COPIED,
                              ev->now_ms);
        controller_step(c, s, &copied);
    }
}


static void
controller_tick(struct controller *c, struct controller_slot *s,
                int64_t now_ms)
{
    const struct config  *cfg = c->cfg;
    enum failover_health  probes, workers, combined;
    struct failover_event ev;

    probes = verdict_probes_health(&s->probe->verdict, util_monotonic_ms(),
                                   cfg->controller_probe_failure_seconds *
                                       1000);
    workers = verdict_workers_health(s->workers, now_ms,
                                     cfg->controller_health_window_seconds *
                                         1000,
                                     cfg->controller_health_failure_percent);
    combined = failover_health_combine(probes, workers);
    if (combined != s->last_health)
        log_info(NULL, "health", "region=%s probes=%s workers=%s health=%s",
                 s->f.rec.region, failover_health_name(probes),
                 failover_health_name(workers),
                 failover_health_name(combined));
    s->last_health = combined;

    controller_fill_event(s, &ev, FAILOVER_EVENT_TICK, now_ms);
    controller_step(c, s, &ev);

    /* An operator command not yet handled. */
    if (s->have_command && s->command_offset > s->f.rec.command_offset) {
        s->have_command = false;
        if (now_ms - s->command.issued_ms >
            cfg->controller_command_max_age_seconds * 1000) {
            log_warn(NULL, "command-ignored", "region=%s command=%s "
                     "offset=%lld reason=\"older than "
                     "controller.command_max_age_seconds\"",
                     s->f.rec.region, control_command_name(s->command.kind),
                     (long long)s->command_offset);
            return;
        }
        log_info(NULL, "command", "region=%s command=%s offset=%lld by=%s",
                 s->f.rec.region, control_command_name(s->command.kind),
                 (long long)s->command_offset, s->command.issued_by);
        controller_fill_event(s, &ev, FAILOVER_EVENT_COMMAND, now_ms);
        ev.command = s->command.kind;
        ev.command_offset = s->command_offset;
        controller_step(c, s, &ev);
    }
}


/* In a draining state: are both groups empty yet? */
static void
controller_drain(struct controller *c, struct controller_slot *s,
                 int64_t now_ms)
{
    enum control_state    state = s->f.rec.state;
    struct failover_event ev;
    char                  source[128], target[128], err[512], quoted[600];
    size_t                nsource = 0, ntarget = 0;

    if ((state != CONTROL_DRAINING_PRIMARY &&
         state != CONTROL_DRAINING_SECONDARY) ||
        now_ms < s->next_drain_check_ms)
        return;
    s->next_drain_check_ms = now_ms + c->cfg->controller_drain_check_interval_ms;

    snprintf(source, sizeof(source), "%s%s",
             failover_source_group_prefix(state), s->f.rec.region);
    snprintf(target, sizeof(target), "%s%s",
             failover_target_group_prefix(state), s->f.rec.region);
    if (offsets_group_members(c->lease, source, &nsource, err,
                              sizeof(err)) == -1 ||
        offsets_group_members(c->lease, target, &ntarget, err,
                              sizeof(err)) == -1) {
        log_warn(NULL, "group-check-failed", "region=%s error=%s",
                 s->f.rec.region, log_quote(quoted, sizeof(quoted), err));
        return;
    }
    if (nsource > 0 || ntarget > 0) {
        log_debug(NULL, "draining", "region=%s source=%s members=%zu "
                  "target=%s members=%zu", s->f.rec.region, source, nsource,
                  target, ntarget);
        return;
    }
    controller_fill_event(s, &ev, FAILOVER_EVENT_GROUPS_EMPTY, now_ms);
    controller_step(c, s, &ev);
}


/*
 * The secondary region is ready for a primary region when its GetAccount
 * succeeds with sending enabled and every domain of the primary's
 * multi-region organizations is a verified identity there.
 */
static void
controller_check_readiness(struct controller *c)
{
    const struct config *cfg = c->cfg;
    const struct region *sec = config_region(cfg,
                                             cfg->controller_secondary_region);
    enum failover_health health;
    char                 quoted[1100];

    health = verdict_probes_health(&c->secondary->verdict,
                                   util_monotonic_ms(),
                                   cfg->controller_probe_failure_seconds *
                                       1000);
    for (size_t i = 0; i < c->nslots; i++) {
        struct controller_slot *s = &c->slots[i];
        bool                    was = s->ready;
        char                    why[1024] = "";
        int                     verified = 1;

        if (health != FAILOVER_HEALTH_UP) {
            snprintf(why, sizeof(why), "SES in %s is %s: %s", sec->name,
                     failover_health_name(health),
                     c->secondary->last_reason[0] != '\0'
                         ? c->secondary->last_reason : "no probe yet");
            verified = 0;
        }
        for (size_t o = 0; verified == 1 && o < cfg->norgs; o++) {
            const struct org *org = &cfg->orgs[o];

            if (org_is_pinned(org) ||
                strcmp(org->home_region, s->f.rec.region) != 0)
                continue;
            for (size_t d = 0; verified == 1 && d < org->ndomains; d++)
                verified = probe_identity_verified(
                    sec, c->creds, org->domains[d],
                    (long)cfg->controller_probe_timeout_ms, why, sizeof(why));
        }
        s->ready = verified == 1;
        snprintf(s->not_ready, sizeof(s->not_ready), "%s",
                 s->ready ? "" : why);
        if (s->ready != was)
            log_info(NULL, "readiness", "region=%s secondary=%s ready=%d "
                     "reason=%s", s->f.rec.region, sec->name, (int)s->ready,
                     log_quote(quoted, sizeof(quoted),
                               s->ready ? "ready" : why));
    }
}


int
controller_run(struct controller *c, volatile sig_atomic_t *stop)
{
    const struct config *cfg = c->cfg;

    while (!*stop) {
        int64_t             mono = util_monotonic_ms();
        rd_kafka_message_t *msg;

        controller_report_status(c);

        /* The lease: poll serves the rebalance callback. */
        if ((msg = rd_kafka_consumer_poll(c->lease, 0)) != NULL)
            rd_kafka_message_destroy(msg);

        /* Records, then probes. */
        controller_read(c, CONTROLLER_POLL_MS);
        if (mono >= c->next_probe_ms) {
            c->next_probe_ms = mono + cfg->controller_probe_interval_ms;
            probe_start(c->secondary);
            for (size_t i = 0; i < c->nslots; i++)
                probe_start(c->slots[i].probe);
        }
        probe_run(c->secondary);
        for (size_t i = 0; i < c->nslots; i++)
            probe_run(c->slots[i].probe);

        /* Only the lease holder acts, and only on the newest state. */
        if (!c->active || c->control_next < c->control_target)
            continue;
        if (mono >= c->next_readiness_ms) {
            c->next_readiness_ms =
                mono + cfg->controller_readiness_interval_seconds * 1000;
            controller_check_readiness(c);
        }
        for (size_t i = 0; i < c->nslots && !*stop; i++) {
            struct controller_slot *s = &c->slots[i];
            int64_t                 now = util_now_ms();

            if (!s->stored) {
                log_info(NULL, "initial-state", "region=%s state=%s",
                         s->f.rec.region, control_state_name(s->f.rec.state));
                if (controller_publish(c, &s->f.rec) == -1)
                    continue;
                s->stored = true;
            }
            controller_tick(c, s, now);
            controller_drain(c, s, now);
        }
    }
    return 0;
}


/* Hands the state of every region to status, at most once a second. */
static void
controller_report_status(struct controller *c)
{
    const struct config  *cfg = c->cfg;
    struct status_region *regions;
    struct status_view    view;
    int64_t               mono = util_monotonic_ms();

    if (mono < c->next_status_ms)
        return;
    c->next_status_ms = mono + CONTROLLER_STATUS_MS;

    regions = xcalloc(c->nslots + 1, sizeof(*regions));
    for (size_t i = 0; i < c->nslots; i++) {
        const struct controller_slot *s = &c->slots[i];

        regions[i].rec = &s->f.rec;
        regions[i].probes = verdict_probes_health(
            &s->probe->verdict, mono,
            cfg->controller_probe_failure_seconds * 1000);
        regions[i].workers = verdict_workers_health(
            s->workers, util_now_ms(),
            cfg->controller_health_window_seconds * 1000,
            cfg->controller_health_failure_percent);
        regions[i].secondary_ready = s->ready;
        regions[i].not_ready = s->not_ready;
    }
    view.id = c->id;
    view.active = c->active;
    view.secondary = cfg->controller_secondary_region;
    view.regions = regions;
    view.nregions = c->nslots;
    status_update(&view);
    free(regions);
}
