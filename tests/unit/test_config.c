/* Unit tests of the configuration loader and the organization helpers. */
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
#include <unistd.h>

#include "config.h"

#define EXAMPLE "deploy/config/ferry.example.yaml"

static const char *base_yaml =
    "kafka:\n"
    "  bootstrap_servers: 127.0.0.1:19092\n"
    "regions:\n"
    "  us-east-1:\n"
    "    ses_endpoint: http://127.0.0.1:4581/\n"
    "  eu-west-1:\n"
    "organizations:\n"
    "  - name: acme\n"
    "    home_region: us-east-1\n"
    "    domains: [acme.example]\n"
    "    networks: [10.0.0.0/8]\n"
    "    multi_region: true\n";


static char *
write_temp(const char *text)
{
    char *path = strdup("/tmp/ferry-config-test-XXXXXX");
    int   fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}


static struct config *
load_text(const char *text, char *err, size_t errlen)
{
    char          *path = write_temp(text);
    struct config *cfg = config_load(path, err, errlen);

    unlink(path);
    free(path);
    return cfg;
}


static void
example_file_loads(void **state)
{
    char           err[512] = "";
    struct config *cfg = config_load(EXAMPLE, err, sizeof(err));

    (void)state;
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->norgs, 2);
    assert_int_equal(cfg->nregions, 3);
    assert_int_equal(cfg->ingress_durability, DURABILITY_RELAXED);
    assert_int_equal(cfg->ingress_max_recipients, 50);
    assert_string_equal(cfg->controller_secondary_region, "us-west-2");
    assert_int_equal(cfg->controller_failback_dwell_seconds, 600);
    config_free(cfg);
}


static void
defaults_apply(void **state)
{
    char           err[512] = "";
    struct config *cfg = load_text(base_yaml, err, sizeof(err));

    (void)state;
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_string_equal(cfg->ingress_listen, "127.0.0.1:2525");
    assert_int_equal(cfg->ingress_max_message_size, 31453184);
    assert_int_equal(cfg->ingress_chunk_size, 524288);
    assert_int_equal(cfg->ingress_ack_timeout_ms, 30000);
    assert_int_equal(cfg->ingress_max_recipients, 50);
    assert_int_equal(cfg->ingress_durability, DURABILITY_STRICT);
    assert_int_equal(cfg->ingress_durability_check_interval, 60);
    assert_int_equal(cfg->ingress_command_timeout, 300);
    assert_int_equal(cfg->ingress_data_initiation_timeout, 120);
    assert_int_equal(cfg->ingress_data_block_timeout, 180);
    assert_int_equal(cfg->ingress_data_termination_timeout, 600);
    assert_int_equal(cfg->ingress_max_connections, 500);
    assert_int_equal(cfg->ingress_max_connections_per_client, 50);
    assert_int_equal(cfg->ingress_max_commands, 10000);
    assert_int_equal(cfg->ingress_max_errors, 20);
    assert_int_equal(cfg->ingress_auth_threads, 2);
    assert_int_equal(cfg->ingress_max_auth_queue, 64);
    assert_int_equal(cfg->deliver_max_in_flight, 16);
    assert_int_equal(cfg->deliver_max_send_rate, 0);
    assert_int_equal(cfg->deliver_health_interval_ms, 2000);
    assert_string_equal(cfg->deliver_dsn_from, "");
    assert_string_equal(cfg->controller_id, "");
    assert_string_equal(cfg->ingress_http_listen, "");
    assert_string_equal(cfg->deliver_http_listen, "");
    assert_string_equal(cfg->controller_http_listen, "");
    assert_string_equal(cfg->controller_secondary_region, "us-west-2");
    assert_int_equal(cfg->controller_probe_interval_ms, 1000);
    assert_int_equal(cfg->controller_probe_timeout_ms, 3000);
    assert_int_equal(cfg->controller_probe_failure_seconds, 6);
    assert_int_equal(cfg->controller_health_window_seconds, 10);
    assert_int_equal(cfg->controller_health_failure_percent, 50);
    assert_int_equal(cfg->controller_failback_dwell_seconds, 600);
    assert_int_equal(cfg->controller_readiness_interval_seconds, 60);
    assert_int_equal(cfg->controller_drain_check_interval_ms, 1000);
    assert_int_equal(cfg->controller_command_max_age_seconds, 900);
    assert_string_equal(cfg->regions[0].ses_endpoint,
                        "http://127.0.0.1:4581");
    assert_string_equal(cfg->regions[1].ses_endpoint,
                        "https://email.eu-west-1.amazonaws.com");
    assert_int_equal(cfg->ningress_regions, 2);
    config_free(cfg);
}


/* Each broken file must fail with a message naming file, line and key. */
static void
errors_name_the_key(void **state)
{
    static const struct {
        const char *append;
        const char *expected;
    } cases[] = {
        { "ingress:\n  max_message_size: lots\n",
          ":14: key 'ingress.max_message_size': 'lots' is not an integer" },
        { "ingress:\n  max_message_size: 31457280\n",
          "key 'ingress.max_message_size': 31457280 is out of range "
          "[1024, 31453184]" },
        { "ingress:\n  chunk_size: 512\n",
          "key 'ingress.chunk_size': 512 is out of range [1024, 16777216]" },
        { "ingress:\n  tls_certificate: /etc/ferry/cert.pem\n",
          "keys 'ingress.tls_certificate' and 'ingress.tls_key' must be "
          "set together" },
        { "ingress:\n  max_recipients: 51\n",
          "key 'ingress.max_recipients': 51 is out of range [1, 50]" },
        { "ingress:\n  durabilty: strict\n",
          "unknown key 'ingress.durabilty'" },
        { "ingress:\n  durability: maybe\n",
          "key 'ingress.durability': invalid value 'maybe'" },
        { "ingress:\n  regions: [ap-south-1]\n",
          "region 'ap-south-1' is not listed under 'regions'" },
        { "deliver:\n  max_send_rate: -1\n",
          "key 'deliver.max_send_rate': -1 is out of range [0, 1000000]" },
        { "deliver:\n  health_interval_ms: 10\n",
          "key 'deliver.health_interval_ms': 10 is out of range "
          "[100, 600000]" },
        { "deliver:\n  dsn_from: postmaster\n",
          "key 'deliver.dsn_from': 'postmaster' is not an address" },
        { "deliver:\n  dsn_from: \"Bounce <b@acme.example>\"\n",
          "key 'deliver.dsn_from': 'Bounce <b@acme.example>' is not an "
          "address" },
        { "controller:\n  failback_dwell_seconds: -5\n",
          "key 'controller.failback_dwell_seconds': -5 is out of range "
          "[0, 604800]" },
        { "controller:\n  health_failure_percent: 101\n",
          "key 'controller.health_failure_percent': 101 is out of range "
          "[1, 100]" },
        { "controller:\n  dwell: 5\n", "unknown key 'controller.dwell'" },
        { "controller:\n  http_listen: \"0.0.0.0\"\n",
          "key 'controller.http_listen': '0.0.0.0' is not of the form "
          "host:port" },
        { "deliver:\n  http_listen: \"127.0.0.1:70000\"\n",
          "key 'deliver.http_listen': '127.0.0.1:70000' is not of the form "
          "host:port" },
        { "deliver:\n  region: mars-1\n",
          "key 'deliver.region': region 'mars-1' is not listed" },
        { "  - name: dup\n    home_region: eu-west-1\n"
          "    domains: [ACME.example]\n",
          "domain 'ACME.example' already belongs to organization 'acme'" },
        { "  - name: far\n    home_region: mars-1\n    domains: [f.example]\n",
          "key 'organizations[1].home_region': region 'mars-1'" },
        { "  - name: badnet\n    home_region: eu-west-1\n"
          "    domains: [b.example]\n    networks: [10.0.0.0/33]\n",
          "'10.0.0.0/33' is not an address or CIDR network" },
        { "  - name: mode\n    home_region: eu-west-1\n"
          "    domains: [m.example]\n    integration: fax\n",
          "key 'organizations[1].integration': invalid value 'fax'" },
        { "ingress:\n  command_timeout_seconds: 0\n",
          "key 'ingress.command_timeout_seconds': 0 is out of range "
          "[1, 3600]" },
        { "ingress:\n  data_block_timeout_seconds: 3601\n",
          "key 'ingress.data_block_timeout_seconds': 3601 is out of range" },
        { "ingress:\n  ack_timeout_ms: 60000\n"
          "  data_termination_timeout_seconds: 60\n",
          "key 'ingress.ack_timeout_ms' must be below "
          "'ingress.data_termination_timeout_seconds' (60 s)" },
        { "ingress:\n  max_connections: 10\n"
          "  max_connections_per_client: 11\n",
          "key 'ingress.max_connections_per_client' is larger than "
          "'ingress.max_connections'" },
        { "ingress:\n  max_connections: 0\n",
          "key 'ingress.max_connections': 0 is out of range" },
        { "ingress:\n  max_errors: 0\n",
          "key 'ingress.max_errors': 0 is out of range [1, 10000]" },
        { "ingress:\n  auth_threads: 0\n",
          "key 'ingress.auth_threads': 0 is out of range [1, 64]" },
        { "ingress:\n  auth_threads: 65\n",
          "key 'ingress.auth_threads': 65 is out of range [1, 64]" },
        { "ingress:\n  max_auth_queue: 0\n",
          "key 'ingress.max_auth_queue': 0 is out of range [1, 100000]" },
        { "ingress:\n  max_commands: 9\n",
          "key 'ingress.max_commands': 9 is out of range" },
        { "ingress:\n  durability_check_interval_seconds: -1\n",
          "key 'ingress.durability_check_interval_seconds': -1 is out of "
          "range [0, 86400]" },
        { "ingress:\n  proxy_protocol: yes\n",
          "key 'ingress.proxy_protocol': invalid value 'yes'" },
        { "ingress:\n  proxy_protocol: true\n",
          "key 'ingress.proxy_networks' is missing or empty, but "
          "'ingress.proxy_protocol' is true" },
        { "ingress:\n  proxy_protocol: true\n  proxy_networks: []\n",
          "key 'ingress.proxy_networks' is missing or empty" },
        { "ingress:\n  proxy_networks: [10.0.0.0/8, lb.example]\n",
          ":14: key 'ingress.proxy_networks': 'lb.example' is not an address "
          "or CIDR network" },
        { "bogus: 1\n", "unknown key 'bogus'" },
        { "kafka: [\n", "invalid YAML" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char           text[2048];
        char           err[512] = "";
        struct config *cfg;

        snprintf(text, sizeof(text), "%s%s", base_yaml, cases[i].append);
        cfg = load_text(text, err, sizeof(err));
        if (cfg != NULL)
            fail_msg("case %zu loaded but should fail", i);
        if (strstr(err, cases[i].expected) == NULL)
            fail_msg("case %zu: '%s' does not contain '%s'", i, err,
                     cases[i].expected);
        assert_non_null(strstr(err, "/tmp/ferry-config-test-"));
    }
}


/* Loads base_yaml with TLS set and credentials_file naming credentials. */
static struct config *
load_credentials(const char *credentials, char *err, size_t errlen)
{
    char          *cred_path = write_temp(credentials);
    char           text[2048];
    struct config *cfg;

    snprintf(text, sizeof(text), "%singress:\n"
             "  tls_certificate: /etc/ferry/cert.pem\n"
             "  tls_key: /etc/ferry/key.pem\n"
             "  credentials_file: %s\n", base_yaml, cred_path);
    cfg = load_text(text, err, errlen);
    unlink(cred_path);
    free(cred_path);
    return cfg;
}


static void
proxy_networks_load(void **state)
{
    char           text[2048];
    char           err[512] = "";
    struct config *cfg;

    (void)state;
    snprintf(text, sizeof(text), "%singress:\n  proxy_protocol: true\n"
             "  proxy_networks: [10.1.0.0/16, \"2001:db8::7\"]\n",
             base_yaml);
    cfg = load_text(text, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->ingress_proxy_protocol, 1);
    assert_int_equal(cfg->ningress_proxy_networks, 2);
    assert_int_equal(cfg->ingress_proxy_networks[0].prefix, 16);
    assert_int_equal(cfg->ingress_proxy_networks[1].family, AF_INET6);
    config_free(cfg);

    /* Off by default, with no networks needed. */
    cfg = load_text(base_yaml, err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(cfg->ingress_proxy_protocol, 0);
    config_free(cfg);
}


static void
credentials_file_loads(void **state)
{
    char           err[512] = "";
    struct config *cfg = load_credentials(
        "# user org hash\n"
        "\n"
        "alice acme $6$salt$abc./XYZ\n"
        "  bob\tacme   $y$j9T$salt$hash  \n", err, sizeof(err));

    (void)state;
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->ningress_credentials, 2);
    assert_non_null(config_credential(cfg, "alice"));
    assert_string_equal(config_credential(cfg, "bob")->hash,
                        "$y$j9T$salt$hash");
    assert_string_equal(config_credential(cfg, "bob")->org->name, "acme");
    assert_null(config_credential(cfg, "Alice"));
    config_free(cfg);
}


static void
credentials_file_errors(void **state)
{
    static const struct {
        const char *credentials;
        const char *expected;
    } cases[] = {
        { "alice acme\n", ":1: expected 'user organization hash'" },
        { "# c\nalice acme $6$s$h extra\n",
          ":2: expected 'user organization hash'" },
        { "alice globex $6$s$h\n",
          ":1: organization 'globex' is not listed" },
        { "alice acme secret\n",
          ":1: the hash of user 'alice' is not a yescrypt ($y$) or SHA-512 "
          "($6$) crypt string" },
        { "alice acme $1$md5$h\n", "is not a yescrypt" },
        { "alice acme $6$s$h\nalice acme $6$s$h\n",
          ":2: user 'alice' is listed twice" },
        { "# nobody\n", "lists no user" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char           err[512] = "";
        struct config *cfg = load_credentials(cases[i].credentials, err,
                                              sizeof(err));

        if (cfg != NULL)
            fail_msg("case %zu loaded but should fail", i);
        if (strstr(err, cases[i].expected) == NULL)
            fail_msg("case %zu: '%s' does not contain '%s'", i, err,
                     cases[i].expected);
        assert_non_null(strstr(err, "key 'ingress.credentials_file'"));
    }
}


static void
credentials_reload_keeps_old_on_error(void **state)
{
    char          *cred_path = write_temp("alice acme $6$s$h\n");
    char           text[2048];
    char           err[512] = "";
    struct config *cfg;
    FILE          *f;

    (void)state;
    snprintf(text, sizeof(text), "%singress:\n"
             "  tls_certificate: c.pem\n  tls_key: k.pem\n"
             "  credentials_file: %s\n", base_yaml, cred_path);
    cfg = load_text(text, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);

    f = fopen(cred_path, "w");
    fputs("alice acme $6$s$h\nbob acme $y$j9T$s$h\n", f);
    fclose(f);
    assert_int_equal(config_reload_credentials(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->ningress_credentials, 2);
    assert_non_null(config_credential(cfg, "bob"));

    f = fopen(cred_path, "w");
    fputs("carol nowhere $6$s$h\n", f);
    fclose(f);
    assert_int_equal(config_reload_credentials(cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "organization 'nowhere' is not listed"));
    assert_int_equal(cfg->ningress_credentials, 2);
    assert_non_null(config_credential(cfg, "alice"));
    assert_non_null(config_credential(cfg, "bob"));
    assert_null(config_credential(cfg, "carol"));

    config_free(cfg);
    unlink(cred_path);
    free(cred_path);
}


static void
credentials_file_needs_tls(void **state)
{
    char           text[2048];
    char           err[512] = "";
    struct config *cfg;

    (void)state;
    snprintf(text, sizeof(text), "%singress:\n"
             "  credentials_file: /nonexistent\n", base_yaml);
    cfg = load_text(text, err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "key 'ingress.credentials_file' needs "
                                "'ingress.tls_certificate'"));

    cfg = load_credentials("", err, sizeof(err));
    assert_null(cfg);
    snprintf(text, sizeof(text), "%singress:\n"
             "  tls_certificate: c.pem\n  tls_key: k.pem\n"
             "  credentials_file: /nonexistent/credentials\n", base_yaml);
    cfg = load_text(text, err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "key 'ingress.credentials_file': cannot "
                                "open '/nonexistent/credentials'"));
}


static void
missing_file_is_named(void **state)
{
    char err[512] = "";

    (void)state;
    assert_null(config_load("/nonexistent/ferry.yaml", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ferry.yaml: cannot open"));
}


static void
org_topic_by_mode(void **state)
{
    static const struct {
        bool                  multi_region;
        enum integration_mode mode;
        const char           *topic;
    } cases[] = {
        { true, INTEGRATION_SMTP, "mail.us-east-1" },
        { false, INTEGRATION_SMTP, "mail.us-east-1.pinned" },
        { true, INTEGRATION_M365_API, "mail.us-east-1.pinned" },
        { true, INTEGRATION_JOURNALING, "mail.us-east-1.pinned" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct org org = { .home_region = "us-east-1" };
        char       topic[64];

        org.multi_region = cases[i].multi_region;
        org.integration = cases[i].mode;
        assert_int_equal(org_topic(&org, topic, sizeof(topic)), 0);
        assert_string_equal(topic, cases[i].topic);
    }
}


static void
cidr_matches(void **state)
{
    static const struct {
        const char *net;
        const char *addr;
        bool        inside;
    } cases[] = {
        { "10.0.0.0/8", "10.200.1.1", true },
        { "10.0.0.0/8", "11.0.0.1", false },
        { "192.168.1.7", "192.168.1.7", true },
        { "192.168.1.7", "192.168.1.8", false },
        { "192.168.1.0/25", "192.168.1.127", true },
        { "192.168.1.0/25", "192.168.1.128", false },
        { "0.0.0.0/0", "203.0.113.9", true },
        { "::1/128", "::1", true },
        { "2001:db8::/32", "2001:db8:ffff::1", true },
        { "2001:db8::/32", "2001:db9::1", false },
        { "127.0.0.0/8", "::ffff:127.0.0.1", true },
        { "::1/128", "127.0.0.1", false },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct cidr             net;
        struct sockaddr_storage ss;

        memset(&ss, 0, sizeof(ss));
        assert_int_equal(cidr_parse(cases[i].net, &net), 0);
        if (inet_pton(AF_INET, cases[i].addr,
                      &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
            ss.ss_family = AF_INET;
        } else {
            assert_int_equal(inet_pton(AF_INET6, cases[i].addr,
                             &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
            ss.ss_family = AF_INET6;
        }
        if (cidr_contains(&net, (struct sockaddr *)&ss) != cases[i].inside)
            fail_msg("case %zu: %s in %s should be %d", i, cases[i].addr,
                     cases[i].net, cases[i].inside);
    }
}


static void
cidr_rejects_garbage(void **state)
{
    static const char *const bad[] = {
        "", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1", "300.0.0.1",
        "example.com", "::1/129", "/8",
    };
    struct cidr net;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (cidr_parse(bad[i], &net) != -1)
            fail_msg("'%s' parsed as a network", bad[i]);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(example_file_loads),
        cmocka_unit_test(defaults_apply),
        cmocka_unit_test(errors_name_the_key),
        cmocka_unit_test(missing_file_is_named),
        cmocka_unit_test(proxy_networks_load),
        cmocka_unit_test(credentials_file_loads),
        cmocka_unit_test(credentials_file_errors),
        cmocka_unit_test(credentials_file_needs_tls),
        cmocka_unit_test(credentials_reload_keeps_old_on_error),
        cmocka_unit_test(org_topic_by_mode),
        cmocka_unit_test(cidr_matches),
        cmocka_unit_test(cidr_rejects_garbage),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
