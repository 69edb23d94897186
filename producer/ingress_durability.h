/*
 * ingress_durability: checks that the topics this node writes to keep an
 * acknowledged record when a broker fails.
 *
 * With acks=all a record is acknowledged once every in-sync replica has
 * it. It survives the loss of a broker only when the topic keeps at least
 * two in-sync replicas (min.insync.replicas >= 2, replication factor >= 3)
 * and a replica that fell out of sync can never become leader
 * (unclean.leader.election.enable=false). Otherwise a record that got a
 * 250 reply can be truncated away after a leader change.
 */
#ifndef FERRY_INGRESS_DURABILITY_H
#define FERRY_INGRESS_DURABILITY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define INGRESS_DURABILITY_MIN_REPLICAS 3
#define INGRESS_DURABILITY_MIN_ISR      2

/*
 * Checks mail.R and mail.R.pinned of every region the node serves,
 * blocking for up to timeout_ms. Returns 0 when all pass. Otherwise
 * returns -1 and writes every problem found, or why the check could not
 * run, into err. Either way *record_max gets the smallest
 * max.message.bytes of those topics, or -1 when none could be read.
 */
int ingress_durability_check(const struct config *cfg, int timeout_ms,
                             int64_t *record_max, char *err,
                             size_t errlen);

#endif
