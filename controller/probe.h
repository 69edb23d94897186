/*
 * probe: the controller's own view of SES in every region. GetAccount
 * runs on a ses_client per region, without blocking. The readiness check
 * of the secondary region also calls GetEmailIdentity for every sending
 * domain that would move there, one blocking request at a time.
 */
#ifndef FERRY_PROBE_H
#define FERRY_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ses.h"
#include "verdict.h"

struct probe {
    char                  region[64];
    struct ses_client    *client;
    struct verdict_probes verdict;
    bool                  in_flight;
    char                  last_reason[512];
    enum ses_result       last_result;  /* of the last answer logged */
    long                  last_status;
};

/* Creates the probe of one region; NULL and err when the client fails. */
struct probe *probe_new(const struct config *cfg, const struct region *reg,
                        const struct ses_credentials *creds, char *err,
                        size_t errlen);
void probe_free(struct probe *p);

/* Starts GetAccount unless one is still in flight. */
void probe_start(struct probe *p);

/* Runs the client without waiting and notes the outcomes that came. */
void probe_run(struct probe *p);

/* Maps one GetAccount outcome to a probe outcome for the verdict. */
enum verdict_probe_outcome probe_classify(const struct ses_outcome *out);

/*
 * Asks SES in region whether identity may send (GetEmailIdentity,
 * VerifiedForSendingStatus). Returns 1 when it may, 0 when it is missing
 * or not verified, -1 when the request failed; why is filled for 0 and -1.
 */
int probe_identity_verified(const struct region *reg,
                            const struct ses_credentials *creds,
                            const char *identity, long timeout_ms,
                            char *why, size_t whylen);

#endif
