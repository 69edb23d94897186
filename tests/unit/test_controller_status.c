/*
 * Unit tests of the controller's status page and failover gauges, read
 * through a monitoring listener on 127.0.0.1.
 */
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
#include "status.h"


/* Returns the response to GET path; the caller frees it. */
static char *
get(int port, const char *path)
{
    struct sockaddr_in sa;
    char              *buf = calloc(1, 65536);
    char               request[256];
    size_t             used = 0;
    ssize_t            n;
    int                fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(request, sizeof(request),
             "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(write(fd, request, strlen(request)),
                     (ssize_t)strlen(request));
    while (used < 65535 && (n = read(fd, buf + used, 65535 - used)) > 0)
        used += (size_t)n;
    close(fd);
    return buf;
}


/*
 * One test, because status keeps its families and transitions in
 * process-wide state that status_init() sets once.
 */
static void
page_and_gauges_follow_view(void **state)
{
    struct metrics      *reg = metrics_new();
    struct httpd        *h;
    struct control       rec;
    struct status_region region;
    struct status_view   view;
    char                 err[256], *resp;

    (void)state;
    h = httpd_start("127.0.0.1:0", reg, err, sizeof(err));
    assert_non_null(h);
    status_init(reg, h, NULL);

    memset(&rec, 0, sizeof(rec));
    snprintf(rec.region, sizeof(rec.region), "us-east-1");
    snprintf(rec.reason, sizeof(rec.reason), "<script>alert(1)</script> & co");
    rec.state = CONTROL_SECONDARY;
    rec.epoch = 7;
    rec.since_ms = 1764866000000;
    memset(&region, 0, sizeof(region));
    region.rec = &rec;
    region.probes = FAILOVER_HEALTH_DOWN;
    region.workers = FAILOVER_HEALTH_UP;
    region.secondary_ready = true;
    region.not_ready = "";
    view.id = "ctl-a";
    view.active = true;
    view.secondary = "us-west-2";
    view.regions = &region;
    view.nregions = 1;
    status_transition(&rec, CONTROL_DRAINING_PRIMARY);
    status_update(&view);

    resp = get(httpd_port(h), "/");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(resp, "<tr data-region=\"us-east-1\">"));
    assert_non_null(strstr(resp, "<td class=\"state\">SECONDARY</td>"));
    assert_non_null(strstr(resp, "<td class=\"epoch\">7</td>"));
    assert_non_null(strstr(resp, "<span id=\"role\">active</span>"));
    assert_non_null(strstr(resp, "&lt;script&gt;alert(1)&lt;/script&gt; "
                                 "&amp; co"));
    assert_null(strstr(resp, "<script>"));
    assert_non_null(strstr(resp, "<td>DRAINING_PRIMARY</td><td>SECONDARY"
                                 "</td><td>7</td>"));
    free(resp);

    resp = get(httpd_port(h), "/metrics");
    assert_non_null(strstr(resp, "ferry_controller_active 1\n"));
    assert_non_null(strstr(resp, "ferry_failover_state{region=\"us-east-1\","
                                 "state=\"SECONDARY\"} 1\n"));
    assert_non_null(strstr(resp, "ferry_failover_state{region=\"us-east-1\","
                                 "state=\"PRIMARY\"} 0\n"));
    assert_non_null(strstr(resp, "ferry_failover_epoch{region=\"us-east-1\"} "
                                 "7\n"));
    assert_non_null(strstr(resp, "ferry_failover_state_since_seconds{region="
                                 "\"us-east-1\"} 1764866000\n"));
    assert_non_null(strstr(resp, "ferry_failover_transitions_total{region="
                                 "\"us-east-1\",from=\"DRAINING_PRIMARY\","
                                 "to=\"SECONDARY\"} 1\n"));
    assert_non_null(strstr(resp, "ferry_region_healthy{region=\"us-east-1\","
                                 "source=\"probe\"} 0\n"));
    assert_non_null(strstr(resp, "ferry_region_healthy{region=\"us-east-1\","
                                 "source=\"workers\"} 1\n"));
    assert_non_null(strstr(resp, "ferry_secondary_ready 1\n"));
    free(resp);

    /* Without a lag monitor there is no Kafka connection to report. */
    resp = get(httpd_port(h), "/readyz");
    assert_non_null(strstr(resp, "HTTP/1.1 503 "));
    assert_non_null(strstr(resp, "not connected to Kafka"));
    free(resp);
    resp = get(httpd_port(h), "/healthz");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    free(resp);

    httpd_stop(h);
    metrics_free(reg);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(page_and_gauges_follow_view),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
