/*
 * ctl_replay: "ferryctl replay", which re-publishes the records of a time
 * window [from, to] of a topic (usually mail.R.dead) to the delivery
 * topic. The window applies to record timestamps, which for Ferry's
 * topics are CreateTime values set by the producer: ferry-ingress for
 * mail.R, ferry-deliver when it dead-letters to mail.R.dead.
 */
#ifndef FERRY_CTL_REPLAY_H
#define FERRY_CTL_REPLAY_H

#include <stddef.h>

/*
 * Writes into buf the topic a record of a dead-letter topic goes back to:
 * the ferry-source-topic header when it names mail.R or mail.R.pinned of
 * the same region, else mail.R. source_header may be NULL. Returns -1
 * when dead_topic is not mail.R.dead or buf is too small.
 */
int ctl_replay_target(const char *dead_topic, const char *source_header,
                      char *buf, size_t size);

int ctl_replay_main(int argc, char **argv);

#endif
