/*
 * lag: the consumer lag of Ferry's groups, read from the brokers every
 * LAG_INTERVAL_MS by a thread with its own Kafka client, so a slow or
 * unreachable broker never holds up the controller's loop.
 *
 * For every configured region R whose topic mail.R exists, the groups are
 * ferry-deliver.R (mail.R), ferry-deliver.R.pinned (mail.R.pinned) and
 * ferry-takeover.R (mail.R). Lag is the end offset minus the committed
 * offset, so a partition that its worker paused keeps growing, and a
 * group that never committed counts from the low watermark.
 */
#ifndef FERRY_LAG_H
#define FERRY_LAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

#define LAG_INTERVAL_MS 3000

/* One partition of one group, as of the last pass. */
struct lag_row {
    char    group[160];
    char    topic[160];
    int32_t partition;
    int64_t committed;      /* KAFKA_GROUP_NO_OFFSET: never committed */
    int64_t end;
    int64_t oldest;         /* offset of the oldest record not committed */
    int64_t lag;            /* messages */
    double  age_seconds;    /* of the oldest record not committed; 0 */
    size_t  members;        /* of the group */
};

struct lag_monitor;

/*
 * Creates the client and starts the thread, which sets the
 * ferry_consumer_group_* families of reg after every pass.
 */
struct lag_monitor *lag_start(const struct config *cfg, struct metrics *reg,
                              char *err, size_t errlen);

void lag_stop(struct lag_monitor *m);

/*
 * Copies the rows of the last pass into a malloc'd array the caller frees
 * and returns their number. *connected is true when the last pass reached
 * the brokers; otherwise why holds the error.
 */
size_t lag_snapshot(struct lag_monitor *m, struct lag_row **rows,
                    bool *connected, char *why, size_t whylen);

#endif
