/*
 * sdnotify: systemd service notifications over $NOTIFY_SOCKET.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sdnotify.h"


int
sdnotify_send(const char *state)
{
    const char        *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun;
    socklen_t          len;
    size_t             path_len;
    ssize_t            sent;
    int                fd;
    int                saved;

    if (path == NULL || path[0] == '\0')
        return 0;

    /* An absolute path, or '@' for the abstract namespace (Linux). */
    if (path[0] != '/' && path[0] != '@') {
        errno = EINVAL;
        return -1;
    }
    path_len = strlen(path);
    if (path_len > sizeof(sun.sun_path) - 1) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, path_len);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
    if (path[0] == '/')
        len++;                  /* the terminating NUL */

    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
        return -1;
    sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                  (const struct sockaddr *)&sun, len);
    saved = errno;
    close(fd);
    if (sent == -1) {
        errno = saved;
        return -1;
    }
    return 1;
}


int
sdnotify_ready(void)
{
    return sdnotify_send("READY=1");
}


int
sdnotify_reloading(void)
{
    struct timespec ts;
    char            state[64];

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL +
                 (unsigned long long)ts.tv_nsec / 1000ULL);
    return sdnotify_send(state);
}


int
sdnotify_stopping(void)
{
    return sdnotify_send("STOPPING=1");
}
