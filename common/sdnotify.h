/*
 * sdnotify: the systemd service notification protocol without libsystemd.
 *
 * A daemon started by a unit with Type=notify finds the address of the
 * service manager's datagram socket in $NOTIFY_SOCKET: a file system path,
 * or an abstract socket name written with a leading '@'. It sends
 * newline-separated KEY=VALUE assignments there (sd_notify(3)). Without
 * $NOTIFY_SOCKET every function does nothing, so the daemons call them
 * unconditionally.
 */
#ifndef FERRY_SDNOTIFY_H
#define FERRY_SDNOTIFY_H

/*
 * Sends state, for example "READY=1", to $NOTIFY_SOCKET. Returns 1 when
 * sent, 0 when $NOTIFY_SOCKET is unset or empty, and -1 with errno set
 * when the address is invalid (EINVAL for a relative path or a vsock
 * address, ENAMETOOLONG) or the send failed.
 */
int sdnotify_send(const char *state);

/* Startup is complete: the daemon serves. */
int sdnotify_ready(void);

/*
 * A reload began; sdnotify_ready() ends it. Carries MONOTONIC_USEC, which
 * Type=notify-reload requires.
 */
int sdnotify_reloading(void);

/* Shutdown began: the daemon drains and exits. */
int sdnotify_stopping(void);

#endif
