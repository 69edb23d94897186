/*
 * health: a ferry.health record, one delivery worker's SES outcome counts
 * for one region and interval, and its wire codec (proto/health.proto,
 * which describes how the failover controller reads these records).
 */
#ifndef FERRY_HEALTH_H
#define FERRY_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#define HEALTH_TOPIC "ferry.health"

struct health {
    char     region[64];
    char     worker_id[128];        /* "host:pid" */
    int64_t  interval_start_ms;     /* wall clock */
    int64_t  interval_ms;
    uint64_t delivered;
    uint64_t throttled;
    uint64_t transient;
    uint64_t region_down;
    uint64_t local_fault;
    uint64_t rejected;
    int64_t  clock_offset_ms;
    char     stop_class[32];        /* "" while sending */
    double   send_rate;             /* recipients per second */
    double   max_send_rate;         /* 0 while unknown */
    int64_t  clock_measured_offset_ms;  /* SES minus local, estimated */
    int      clock_measured;            /* 0: no Date header seen yet */
};

/* Returns a malloc'd buffer the caller frees, and its length in *len. */
unsigned char *health_encode(const struct health *h, size_t *len);

/* Returns -1 when buf is not a Health record. */
int health_decode(const void *buf, size_t len, struct health *h);

#endif
