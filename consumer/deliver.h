/*
 * deliver: the delivery worker of one region R.
 *
 * A primary worker has two consumers: mail.R in group ferry-deliver.R and
 * mail.R.pinned in group ferry-deliver.R.pinned. mail.R is consumed only
 * while the region's failover state in ferry.control is PRIMARY
 * (follow.h). A takeover worker runs in the secondary region S and has
 * one consumer per primary region P: mail.P in group ferry-takeover.P,
 * consumed only while P's state is SECONDARY. Pinned topics never reach a
 * takeover worker.
 *
 * Every message goes to SES in the worker's region. A message is done
 * when SES accepted it and its ferry.delivered record is acknowledged, or
 * when SES rejected it for good and the records of the dead topic of its
 * source (mail.P.dead) are acknowledged. Offsets are committed per
 * partition only up to the first message not yet done (see window.h).
 *
 * One application thread runs everything. It waits in ses_client_run() on
 * the SES sockets and on a pipe that librdkafka writes to when one of its
 * queues gets an event, then serves the Kafka queues without blocking.
 *
 * deliver.c creates the Kafka clients and runs the loop, group.c handles
 * rebalances, pauses and commits, schedule.c decides what is sent next,
 * and outbound.c follows one message's way to SES and to its outcome
 * record.
 */
#ifndef FERRY_DELIVER_H
#define FERRY_DELIVER_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "account.h"
#include "config.h"
#include "dedup.h"
#include "follow.h"
#include "outbound.h"
#include "pacing.h"
#include "report.h"
#include "ses.h"
#include "window.h"

/* An assigned partition and the messages consumed from it. */
struct deliver_partition {
    struct deliver_source    *src;
    struct deliver_partition *next;
    int32_t                   partition;
    struct window             window;
    struct outbound          *head;         /* oldest message not done */
    struct outbound          *tail;
    int                       paused;       /* as last set in librdkafka */
    int                       revoking;     /* being handed over */
    int64_t                   committed;    /* last committed, or -1 */
    char                     *committed_done;   /* its metadata */
};

/* One consumer: a topic and its group. */
struct deliver_source {
    struct deliver           *d;
    rd_kafka_t               *rk;
    char                      topic[256];
    char                      group[256];
    char                      owner[64];    /* region whose mail it is */
    char                      dead_topic[256];  /* mail.<owner>.dead */
    int                       follows;      /* consumed only while the
                                               owner's failover state is
                                               consume_state */
    enum control_state        consume_state;
    struct deliver_partition *parts;
    int                       subscribed;   /* as last requested */
};

struct deliver {
    const struct config   *cfg;
    char                   region[64];      /* where SES is called */
    int                    takeover;        /* a takeover worker */
    char                   hostname[256];   /* Reporting-MTA of DSNs */
    struct deliver_source *sources;
    size_t                 nsources;
    rd_kafka_t            *producer;
    rd_kafka_topic_t      *delivered_topic; /* ferry.delivered, from start */
    struct ses_client     *ses;
    struct dedup          *delivered_ids;   /* SES accepted them from
                                               this process */
    int                    wake[2];         /* pipe librdkafka writes to */
    size_t                 in_progress;     /* messages not yet done */
    int                    flow_paused;     /* in_progress reached its
                                               high mark */
    int                    stopping;        /* shutdown: no new sends */
    int                    fatal;           /* librdkafka fatal error */
    int                    region_stopped;  /* REGION_DOWN or LOCAL_FAULT */
    enum ses_result        stop_result;     /* which of the two */
    int64_t                next_probe_ms;   /* when stopped: next attempt */
    int64_t                hold_until_ms;   /* throttled: no sends before */
    int64_t                next_commit_ms;
    int                    committed_idle;  /* committed since in_progress
                                               last reached 0 */
    struct pacing          pacing;          /* send rate of the region */
    struct account         account;         /* where the rate comes from */
    struct report          report;          /* ferry.health counts */
    struct outbound       *orphans;         /* dropped, reports pending */
    struct follow          follow;          /* failover state of region */
};

/* Exit statuses of ferry-deliver (sysexits.h values). */
#define DELIVER_EXIT_USAGE  64
#define DELIVER_EXIT_CONFIG 78

/*
 * Checks that the configuration can run a worker for region (NULL: the
 * configured deliver.region, or for a takeover worker
 * controller.secondary_region) and fills err when not.
 */
int deliver_check(const struct config *cfg, const char *region,
                  int takeover, char *err, size_t errlen);

struct deliver *deliver_new(const struct config *cfg, const char *region,
                            int takeover,
                            const struct ses_credentials *creds, char *err,
                            size_t errlen);

/*
 * Subscribes src to its topic. Returns -1 and logs when librdkafka
 * rejects the subscription.
 */
int deliver_subscribe(struct deliver_source *src);

/* Runs until *stop is set; returns 0, or -1 after a fatal Kafka error. */
int deliver_run(struct deliver *d, volatile sig_atomic_t *stop);

/*
 * Stops fetching, lets the requests in flight end within grace_ms,
 * commits and leaves every group.
 */
void deliver_drain(struct deliver *d, int64_t grace_ms);

void deliver_free(struct deliver *d);

#endif
