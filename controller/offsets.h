/*
 * offsets: consumer-group work of a hand-over, through librdkafka's Admin
 * API: whether a group has members, and copying one group's committed
 * offsets of a topic to another group. Every call blocks for at most
 * OFFSETS_TIMEOUT_MS per broker request.
 */
#ifndef FERRY_OFFSETS_H
#define FERRY_OFFSETS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#define OFFSETS_TIMEOUT_MS 10000

/* Sets *members to the group's member count (0 for an unknown group). */
int offsets_group_members(rd_kafka_t *rk, const char *group, size_t *members,
                          char *err, size_t errlen);

/*
 * Commits to group to, for every partition of topic, the offset that group
 * from has committed. A partition that from never committed gets the low
 * watermark, the earliest offset still retained. Reads to's offsets back
 * to check them. Both groups must be empty, because the broker rejects
 * the commit otherwise. Writes "p0=12 p1=40 ..." into summary.
 */
int offsets_copy(rd_kafka_t *rk, const char *topic, const char *from,
                 const char *to, char *summary, size_t summarylen, char *err,
                 size_t errlen);

#endif
