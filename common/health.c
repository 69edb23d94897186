#include "health.h"

#include <stdio.h>
#include <string.h>

#include "health.pb-c.h"
#include "util.h"


unsigned char *
health_encode(const struct health *h, size_t *len)
{
    Ferry__Health  pb = FERRY__HEALTH__INIT;
    unsigned char *buf;

    pb.region = (char *)h->region;
    pb.worker_id = (char *)h->worker_id;
    pb.interval_start_ms = h->interval_start_ms;
    pb.interval_ms = h->interval_ms;
    pb.delivered = h->delivered;
    pb.throttled = h->throttled;
    pb.transient = h->transient;
    pb.region_down = h->region_down;
    pb.local_fault = h->local_fault;
    pb.rejected = h->rejected;
    pb.clock_offset_ms = h->clock_offset_ms;
    pb.clock_measured_offset_ms = h->clock_measured_offset_ms;
    pb.clock_measured = h->clock_measured != 0;
    pb.stop_class = (char *)h->stop_class;
    pb.send_rate = h->send_rate;
    pb.max_send_rate = h->max_send_rate;

    *len = ferry__health__get_packed_size(&pb);
    buf = xmalloc(*len > 0 ? *len : 1);
    ferry__health__pack(&pb, buf);
    return buf;
}


int
health_decode(const void *buf, size_t len, struct health *h)
{
    Ferry__Health *pb = ferry__health__unpack(NULL, len, buf);

    if (pb == NULL)
        return -1;
    memset(h, 0, sizeof(*h));
    snprintf(h->region, sizeof(h->region), "%s", pb->region);
    snprintf(h->worker_id, sizeof(h->worker_id), "%s", pb->worker_id);
    h->interval_start_ms = pb->interval_start_ms;
    h->interval_ms = pb->interval_ms;
    h->delivered = pb->delivered;
    h->throttled = pb->throttled;
    h->transient = pb->transient;
    h->region_down = pb->region_down;
    h->local_fault = pb->local_fault;
    h->rejected = pb->rejected;
    h->clock_offset_ms = pb->clock_offset_ms;
    h->clock_measured_offset_ms = pb->clock_measured_offset_ms;
    h->clock_measured = pb->clock_measured;
    snprintf(h->stop_class, sizeof(h->stop_class), "%s", pb->stop_class);
    h->send_rate = pb->send_rate;
    h->max_send_rate = pb->max_send_rate;
    ferry__health__free_unpacked(pb, NULL);
    return 0;
}
