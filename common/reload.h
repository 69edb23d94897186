/*
 * reload: SIGHUP for a daemon that applies its configuration only at
 * start (ferry-deliver, ferry-controller).
 *
 * On SIGHUP the daemon reads its configuration file again and logs the
 * outcome: reload-failed, naming the file, line and key, when the file no
 * longer loads, or reload-not-applied when it loads, since the running
 * daemon keeps the configuration it started with either way. A restart
 * applies a valid file. Without this, SIGHUP's default action would end
 * the process.
 *
 * A thread of its own waits for the signal with sigwait(), so the loops
 * need no change. reload_watch_start() blocks SIGHUP in the calling
 * thread, and every thread created after it inherits the block, so it
 * must run before any other thread (librdkafka's included) is created.
 */
#ifndef FERRY_RELOAD_H
#define FERRY_RELOAD_H

#include <stddef.h>

/*
 * Starts the thread that handles SIGHUP for the daemon named daemon, which
 * reads path. Returns -1 and fills err when the thread cannot start.
 */
int reload_watch_start(const char *path, const char *daemon, char *err,
                       size_t errlen);

#endif
