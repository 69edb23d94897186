/* Unit tests of the systemd notification sender. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

/* A datagram socket standing in for the service manager's. */
struct listener {
    int  fd;
    char dir[64];
    char path[108];
};


/* Binds a socket in a fresh directory and points NOTIFY_SOCKET at it. */
static void
listener_open_path(struct listener *l)
{
    struct sockaddr_un sun;

    snprintf(l->dir, sizeof(l->dir), "/tmp/ferry-sdnotify-XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    snprintf(l->path, sizeof(l->path), "%s/notify", l->dir);
    l->fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(l->fd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, l->path);
    assert_int_equal(bind(l->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", l->path, 1), 0);
}


/* Binds an abstract socket and points NOTIFY_SOCKET at "@name". */
static void
listener_open_abstract(struct listener *l)
{
    struct sockaddr_un sun;
    socklen_t          len;
    char               name[64];

    l->dir[0] = '\0';
    snprintf(name, sizeof(name), "ferry-sdnotify-test-%ld", (long)getpid());
    l->fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(l->fd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path + 1, name, strlen(name));
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                      strlen(name));
    assert_int_equal(bind(l->fd, (struct sockaddr *)&sun, len), 0);
    snprintf(l->path, sizeof(l->path), "@%s", name);
    assert_int_equal(setenv("NOTIFY_SOCKET", l->path, 1), 0);
}


/* Reads one datagram without waiting; "" when none is queued. */
static void
listener_read(struct listener *l, char *buf, size_t size)
{
    ssize_t n = recv(l->fd, buf, size - 1, MSG_DONTWAIT);

    if (n < 0)
        n = 0;
    buf[n] = '\0';
}


static void
listener_close(struct listener *l)
{
    close(l->fd);
    if (l->dir[0] != '\0') {
        unlink(l->path);
        rmdir(l->dir);
    }
    unsetenv("NOTIFY_SOCKET");
}


static void
ready_and_stopping_reach_path_socket(void **state)
{
    struct listener l;
    char            buf[256];

    (void)state;
    listener_open_path(&l);

    assert_int_equal(sdnotify_ready(), 1);
    listener_read(&l, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1");

    assert_int_equal(sdnotify_stopping(), 1);
    listener_read(&l, buf, sizeof(buf));
    assert_string_equal(buf, "STOPPING=1");

    listener_close(&l);
}


static void
reloading_carries_monotonic_time(void **state)
{
    struct listener    l;
    char               buf[256];
    unsigned long long usec = 0;
    char               rest = '\0';

    (void)state;
    listener_open_path(&l);

    assert_int_equal(sdnotify_reloading(), 1);
    listener_read(&l, buf, sizeof(buf));
    assert_int_equal(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27), 0);
    assert_int_equal(sscanf(buf + 27, "%llu%c", &usec, &rest), 1);
    assert_true(usec > 0);

    listener_close(&l);
}


static void
abstract_socket_receives(void **state)
{
    struct listener l;
    char            buf[256];

    (void)state;
    listener_open_abstract(&l);

    assert_int_equal(sdnotify_send("READY=1\nSTATUS=serving"), 1);
    listener_read(&l, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1\nSTATUS=serving");

    listener_close(&l);
}


static void
unset_socket_sends_nothing(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sdnotify_ready(), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
    assert_int_equal(sdnotify_stopping(), 0);
    unsetenv("NOTIFY_SOCKET");
}


static void
invalid_addresses_fail(void **state)
{
    char long_path[200];

    (void)state;
    assert_int_equal(setenv("NOTIFY_SOCKET", "relative/notify", 1), 0);
    errno = 0;
    assert_int_equal(sdnotify_ready(), -1);
    assert_int_equal(errno, EINVAL);

    assert_int_equal(setenv("NOTIFY_SOCKET", "vsock:2:1234", 1), 0);
    errno = 0;
    assert_int_equal(sdnotify_ready(), -1);
    assert_int_equal(errno, EINVAL);

    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    assert_int_equal(setenv("NOTIFY_SOCKET", long_path, 1), 0);
    errno = 0;
    assert_int_equal(sdnotify_ready(), -1);
    assert_int_equal(errno, ENAMETOOLONG);

    /* A path where nothing listens: the send fails, nothing crashes. */
    assert_int_equal(setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1), 0);
    assert_int_equal(sdnotify_ready(), -1);
    unsetenv("NOTIFY_SOCKET");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ready_and_stopping_reach_path_socket),
        cmocka_unit_test(reloading_carries_monotonic_time),
        cmocka_unit_test(abstract_socket_receives),
        cmocka_unit_test(unset_socket_sends_nothing),
        cmocka_unit_test(invalid_addresses_fail),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
