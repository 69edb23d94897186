#include "delivered.h"

#include <stdio.h>
#include <string.h>

#include "delivered.pb-c.h"
#include "util.h"


unsigned char *
delivered_encode(const struct delivered *d, size_t *len)
{
    Ferry__Delivered pb = FERRY__DELIVERED__INIT;
    unsigned char   *buf;

    pb.envelope_id = (char *)d->envelope_id;
    pb.source_topic = (char *)d->source_topic;
    pb.source_partition = d->source_partition;
    pb.source_offset = d->source_offset;
    pb.region = (char *)d->region;
    pb.ses_message_id = (char *)d->ses_message_id;
    pb.delivered_at_ms = d->delivered_at_ms;

    *len = ferry__delivered__get_packed_size(&pb);
    buf = xmalloc(*len);
    ferry__delivered__pack(&pb, buf);
    return buf;
}


int
delivered_decode(const void *buf, size_t len, struct delivered *d)
{
    Ferry__Delivered *pb = ferry__delivered__unpack(NULL, len, buf);

    if (pb == NULL)
        return -1;
    memset(d, 0, sizeof(*d));
    snprintf(d->envelope_id, sizeof(d->envelope_id), "%s", pb->envelope_id);
    snprintf(d->source_topic, sizeof(d->source_topic), "%s",
             pb->source_topic);
    d->source_partition = pb->source_partition;
    d->source_offset = pb->source_offset;
    snprintf(d->region, sizeof(d->region), "%s", pb->region);
    snprintf(d->ses_message_id, sizeof(d->ses_message_id), "%s",
             pb->ses_message_id);
    d->delivered_at_ms = pb->delivered_at_ms;
    ferry__delivered__free_unpacked(pb, NULL);
    return 0;
}
