/* Unit tests of the monitoring listener, over real sockets on 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd.h"
#include "metrics.h"

struct fixture {
    struct metrics *reg;
    struct metric  *sent;
    struct httpd   *h;
};


/* Sends request and returns the whole response; the caller frees it. */
static char *
exchange(int port, const char *request)
{
    struct sockaddr_in sa;
    char              *buf = calloc(1, 65536);
    size_t             used = 0;
    ssize_t            n;
    int                fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, request, strlen(request)),
                     (ssize_t)strlen(request));
    while (used < 65535 && (n = read(fd, buf + used, 65535 - used)) > 0)
        used += (size_t)n;
    close(fd);
    return buf;
}


static char *
get(struct fixture *f, const char *path)
{
    char request[512];

    snprintf(request, sizeof(request),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    return exchange(httpd_port(f->h), request);
}


static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char            err[256];

    f->reg = metrics_new();
    f->sent = metrics_counter(f->reg, "ferry_sent_total", "Sent.", "region");
    f->h = httpd_start("127.0.0.1:0", f->reg, err, sizeof(err));
    assert_non_null(f->h);
    assert_true(httpd_port(f->h) > 0);
    *state = f;
    return 0;
}


static int
teardown(void **state)
{
    struct fixture *f = *state;

    httpd_stop(f->h);
    metrics_free(f->reg);
    free(f);
    return 0;
}


static void
metrics_serves_registry(void **state)
{
    struct fixture *f = *state;
    char           *resp;

    metric_add(f->sent, 3, "eu-west-1");
    resp = get(f, "/metrics");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(resp, "ferry_sent_total{region=\"eu-west-1\"} 3\n"));
    free(resp);
}


static void
healthz_follows_alive_mark(void **state)
{
    struct fixture *f = *state;
    char           *resp;

    resp = get(f, "/healthz");
    assert_non_null(strstr(resp, "HTTP/1.1 503 "));
    free(resp);

    httpd_set_alive(f->h);
    resp = get(f, "/healthz");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    free(resp);
}


static void
readyz_reports_reason(void **state)
{
    struct fixture *f = *state;
    char           *resp;

    resp = get(f, "/readyz");
    assert_non_null(strstr(resp, "HTTP/1.1 503 "));
    assert_non_null(strstr(resp, "\r\n\r\nnot ready: starting\n"));
    free(resp);

    httpd_set_ready(f->h, "broker\nunreachable");
    resp = get(f, "/readyz");
    assert_non_null(strstr(resp, "HTTP/1.1 503 "));
    assert_non_null(strstr(resp, "\r\n\r\nnot ready: broker unreachable\n"));
    free(resp);

    httpd_set_ready(f->h, NULL);
    resp = get(f, "/readyz");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(resp, "\r\n\r\nready\n"));
    free(resp);
}


static void
page_served_only_when_set(void **state)
{
    struct fixture *f = *state;
    char           *resp;

    resp = get(f, "/");
    assert_non_null(strstr(resp, "HTTP/1.1 404 "));
    free(resp);

    httpd_set_page(f->h, "<html><body>PRIMARY</body></html>");
    resp = get(f, "/?refresh=1");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(resp, "Content-Type: text/html"));
    assert_non_null(strstr(resp, "<body>PRIMARY</body>"));
    free(resp);
}


static void
unknown_path_is_404(void **state)
{
    struct fixture *f = *state;
    char           *resp = get(f, "/metrics/extra");

    assert_non_null(strstr(resp, "HTTP/1.1 404 "));
    free(resp);
}


static void
post_is_rejected(void **state)
{
    struct fixture *f = *state;
    char           *resp;

    resp = exchange(httpd_port(f->h), "POST /metrics HTTP/1.1\r\n"
                    "Host: x\r\nContent-Length: 2\r\nConnection: close\r\n"
                    "\r\nab");
    /* libevent 2.1 rejects a method outside the allowed set with 501. */
    assert_non_null(strstr(resp, "HTTP/1.1 501 "));
    free(resp);
}


static void
garbage_request_leaves_server_up(void **state)
{
    struct fixture *f = *state;
    char            huge[20000];
    char           *resp;

    resp = exchange(httpd_port(f->h), "\x01\x02 nonsense\r\n\r\n");
    free(resp);
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    memcpy(huge, "GET /", 5);
    resp = exchange(httpd_port(f->h), huge);
    free(resp);

    resp = get(f, "/metrics");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    free(resp);
}


static void
invalid_listen_fails(void **state)
{
    struct metrics *reg = metrics_new();
    char            err[256];

    (void)state;
    assert_null(httpd_start("localhost", reg, err, sizeof(err)));
    assert_non_null(strstr(err, "'localhost'"));
    metrics_free(reg);
}


static void
null_server_is_ignored(void **state)
{
    (void)state;
    httpd_set_alive(NULL);
    httpd_set_ready(NULL, "x");
    httpd_set_page(NULL, "x");
    httpd_stop(NULL);
    assert_int_equal(httpd_port(NULL), 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(metrics_serves_registry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(healthz_follows_alive_mark, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(readyz_reports_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(page_served_only_when_set, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unknown_path_is_404, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(post_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_request_leaves_server_up,
                                        setup, teardown),
        cmocka_unit_test(invalid_listen_fails),
        cmocka_unit_test(null_server_is_ignored),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
