/*
 * status: the controller's metrics (ferry_controller_active and the
 * ferry_failover_* families), its readiness, and the HTML status page at
 * / of controller.http_listen. The controller's loop hands over a view
 * of its state once a second; everything here runs on that thread.
 */
#ifndef FERRY_STATUS_H
#define FERRY_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"
#include "failover.h"
#include "httpd.h"
#include "lag.h"
#include "metrics.h"

/* How many transitions the page lists. */
#define STATUS_TRANSITIONS 20

/* The state of one primary region, copied from the controller's loop. */
struct status_region {
    const struct control *rec;
    enum failover_health  probes;
    enum failover_health  workers;
    bool                  secondary_ready;
    const char           *not_ready;        /* why not, or "" */
};

struct status_view {
    const char                 *id;
    bool                        active;     /* holds the lease */
    const char                 *secondary;
    const struct status_region *regions;
    size_t                      nregions;
};

/* httpd and lag may be NULL. */
void status_init(struct metrics *reg, struct httpd *httpd,
                 struct lag_monitor *lag);

/* Counts and remembers a state change this replica published. */
void status_transition(const struct control *rec, enum control_state from);

/*
 * Sets the gauges, marks the loop alive, reports readiness (ready while
 * the lag monitor reaches the brokers) and renders the page.
 */
void status_update(const struct status_view *view);

#endif
