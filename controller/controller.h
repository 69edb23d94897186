/*
 * controller: the ferry-controller daemon's loop. It reads ferry.control
 * and ferry.health and probes SES in every region. The replica that is
 * assigned partition 0 of ferry.controller.lease in consumer group
 * ferry-controller holds the lease; only it runs the failover state
 * machine of every primary region and carries out its actions.
 */
#ifndef FERRY_CONTROLLER_H
#define FERRY_CONTROLLER_H

#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "ses.h"

#define CONTROLLER_LEASE_TOPIC "ferry.controller.lease"
#define CONTROLLER_LEASE_GROUP "ferry-controller"

struct controller;

/*
 * Checks what only the controller needs of the configuration: a listed
 * secondary region and at least one primary region.
 */
int controller_check(const struct config *cfg, char *err, size_t errlen);

/*
 * Connects to Kafka and SES and loads the stored state from ferry.control.
 * Returns NULL and fills err on failure.
 */
struct controller *controller_new(const struct config *cfg,
                                  const struct ses_credentials *creds,
                                  char *err, size_t errlen);

/* Runs until *stop is set; returns 0, or -1 after a fatal error. */
int controller_run(struct controller *c, volatile sig_atomic_t *stop);

/* Leaves the lease group, so another replica takes over, and frees c. */
void controller_free(struct controller *c);

#endif
