#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "util.h"

/*
 * Scalar keys, declared as tables of name, default and bounds. A key with
 * a NULL default is required when its section is present.
 */
enum config_type {
    CONFIG_STRING,
    CONFIG_INT,
    CONFIG_ENUM
};

struct config_key {
    const char        *name;
    enum config_type   type;
    size_t             offset;
    const char        *fallback;
    int64_t            min;
    int64_t            max;
    const char *const *choices;     /* CONFIG_ENUM: index is the value */
};

static const char *const config_durability_names[] = {
    "strict", "relaxed", NULL
};
static const char *const config_integration_names[] = {
    "smtp", "m365_api", "journaling", NULL
};
static const char *const config_bool_names[] = {
    "false", "true", NULL
};
static const char *const config_log_level_names[] = {
    "trace", "debug", "info", "warn", "error", NULL
};

#define KEY(n, t, field, d, lo, hi, c) \
    { n, t, offsetof(struct config, field), d, lo, hi, c }

static const struct config_key config_top_keys[] = {
    KEY("log_level", CONFIG_ENUM, log_level, "info", 0, 0,
        config_log_level_names),
};

static const struct config_key config_kafka_keys[] = {
    KEY("bootstrap_servers", CONFIG_STRING, bootstrap_servers, NULL, 0, 0,
        NULL),
};

/*
 * The default message size is the largest raw message SES v2 accepts,
 * 40 MiB after base64 or 31457280 octets, minus 4096 octets for the
 * Received header the ingress adds. A message is written as Kafka records
 * of at most chunk_size message octets each, so the default of 512 KiB
 * fits, with the envelope fields, under the broker's default record limit
 * (message.max.bytes 1048588 in Kafka 4.1).
 */
static const struct config_key config_ingress_keys[] = {
    KEY("listen", CONFIG_STRING, ingress_listen, "127.0.0.1:2525", 0, 0,
        NULL),
    KEY("hostname", CONFIG_STRING, ingress_hostname, "", 0, 0, NULL),
    KEY("tls_certificate", CONFIG_STRING, ingress_tls_certificate, "", 0, 0,
        NULL),
    KEY("tls_key", CONFIG_STRING, ingress_tls_key, "", 0, 0, NULL),
    KEY("max_message_size", CONFIG_INT, ingress_max_message_size,
        "31453184", 1024, 31453184, NULL),
    KEY("chunk_size", CONFIG_INT, ingress_chunk_size, "524288", 1024,
        16777216, NULL),
    KEY("max_recipients", CONFIG_INT, ingress_max_recipients, "50", 1, 50,
        NULL),
    KEY("ack_timeout_ms", CONFIG_INT, ingress_ack_timeout_ms, "30000", 100,
        600000, NULL),
    KEY("durability", CONFIG_ENUM, ingress_durability, "strict", 0, 0,
        config_durability_names),
    KEY("durability_check_interval_seconds", CONFIG_INT,
        ingress_durability_check_interval, "60", 0, 86400, NULL),

    /*
     * Server timeouts of RFC 5321 section 4.5.3.2: 5 minutes for a
     * command (the greeting's reply included), 2 minutes from the 354
     * reply to the first octet of text, 3 minutes between reads of text,
     * 10 minutes for the reply to the final dot.
     */
    KEY("command_timeout_seconds", CONFIG_INT, ingress_command_timeout,
        "300", 1, 3600, NULL),
    KEY("data_initiation_timeout_seconds", CONFIG_INT,
        ingress_data_initiation_timeout, "120", 1, 3600, NULL),
    KEY("data_block_timeout_seconds", CONFIG_INT, ingress_data_block_timeout,
        "180", 1, 3600, NULL),
    KEY("data_termination_timeout_seconds", CONFIG_INT,
        ingress_data_termination_timeout, "600", 1, 3600, NULL),
    KEY("max_connections", CONFIG_INT, ingress_max_connections, "500", 1,
        100000, NULL),
    KEY("max_connections_per_client", CONFIG_INT,
        ingress_max_connections_per_client, "50", 1, 100000, NULL),
    KEY("max_commands", CONFIG_INT, ingress_max_commands, "10000", 10,
        10000000, NULL),
    KEY("max_errors", CONFIG_INT, ingress_max_errors, "20", 1, 10000, NULL),
    KEY("http_listen", CONFIG_STRING, ingress_http_listen, "", 0, 0, NULL),
    KEY("credentials_file", CONFIG_STRING, ingress_credentials_file, "", 0,
        0, NULL),
    KEY("threads", CONFIG_INT, ingress_threads, "0", 0, 256, NULL),
    KEY("auth_threads", CONFIG_INT, ingress_auth_threads, "2", 1, 64, NULL),
    KEY("max_auth_queue", CONFIG_INT, ingress_max_auth_queue, "64", 1,
        100000, NULL),
    KEY("proxy_protocol", CONFIG_ENUM, ingress_proxy_protocol, "false", 0, 0,
        config_bool_names),
};

static const struct config_key config_deliver_keys[] = {
    KEY("region", CONFIG_STRING, deliver_region, "", 0, 0, NULL),
    KEY("max_in_flight", CONFIG_INT, deliver_max_in_flight, "16", 1, 1024,
        NULL),
    KEY("retry_initial_ms", CONFIG_INT, deliver_retry_initial_ms, "500", 10,
        600000, NULL),
    KEY("retry_max_ms", CONFIG_INT, deliver_retry_max_ms, "30000", 10,
        3600000, NULL),
    KEY("request_timeout_ms", CONFIG_INT, deliver_request_timeout_ms,
        "30000", 100, 600000, NULL),
    KEY("max_send_rate", CONFIG_INT, deliver_max_send_rate, "0", 0, 1000000,
        NULL),
    KEY("health_interval_ms", CONFIG_INT, deliver_health_interval_ms, "2000",
        100, 600000, NULL),
    KEY("dsn_from", CONFIG_STRING, deliver_dsn_from, "", 0, 0, NULL),
    KEY("http_listen", CONFIG_STRING, deliver_http_listen, "", 0, 0, NULL),
    KEY("delivered_lookback_seconds", CONFIG_INT,
        deliver_delivered_lookback_seconds, "900", 0, 604800, NULL),
};

/*
 * The failover controller. A failover needs both its own probes and the
 * workers' ferry.health records to find SES down. The defaults wait 6 s
 * of failing probes (one a second) and look at 10 s of records, which is
 * 5 of each worker's records at deliver.health_interval_ms 2000. With the
 * hand-over of the group, the first delivery through the secondary
 * region came 10.7 to 12.7 s after an outage in scripts/bench-failover
 * on a 2-core machine.
 */
static const struct config_key config_controller_keys[] = {
    KEY("id", CONFIG_STRING, controller_id, "", 0, 0, NULL),
    KEY("secondary_region", CONFIG_STRING, controller_secondary_region,
        "us-west-2", 0, 0, NULL),
    KEY("probe_interval_ms", CONFIG_INT, controller_probe_interval_ms,
        "1000", 100, 600000, NULL),
    KEY("probe_timeout_ms", CONFIG_INT, controller_probe_timeout_ms, "3000",
        100, 600000, NULL),
    KEY("probe_failure_seconds", CONFIG_INT,
        controller_probe_failure_seconds, "6", 1, 3600, NULL),
    KEY("health_window_seconds", CONFIG_INT,
        controller_health_window_seconds, "10", 1, 3600, NULL),
    KEY("health_failure_percent", CONFIG_INT,
        controller_health_failure_percent, "50", 1, 100, NULL),
    KEY("failback_dwell_seconds", CONFIG_INT,
        controller_failback_dwell_seconds, "600", 0, 604800, NULL),
    KEY("readiness_interval_seconds", CONFIG_INT,
        controller_readiness_interval_seconds, "60", 1, 86400, NULL),
    KEY("drain_check_interval_ms", CONFIG_INT,
        controller_drain_check_interval_ms, "1000", 100, 600000, NULL),
    KEY("command_max_age_seconds", CONFIG_INT,
        controller_command_max_age_seconds, "900", 1, 604800, NULL),
    KEY("http_listen", CONFIG_STRING, controller_http_listen, "", 0, 0,
        NULL),
};

#undef KEY

#define NKEYS(t) (sizeof(t) / sizeof(*(t)))

struct config_reader {
    const char    *path;
    yaml_document_t doc;
    char          *err;
    size_t         errlen;
};

static int config_fail(struct config_reader *r, const yaml_node_t *node,
                       const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *config_scalar(struct config_reader *r, yaml_node_t *node,
                                 const char *key);
static int config_set_key(struct config_reader *r, struct config *cfg,
                          const struct config_key *k, const char *section,
                          const char *text, const yaml_node_t *node);
static int config_read_section(struct config_reader *r, struct config *cfg,
                               yaml_node_t *map, const char *section,
                               const struct config_key *keys, size_t nkeys);
static int config_read_string_list(struct config_reader *r, yaml_node_t *node,
                                   const char *key, char ***out, size_t *n);
static int config_read_kafka(struct config_reader *r, struct config *cfg,
                             yaml_node_t *map);
static int config_read_ingress(struct config_reader *r, struct config *cfg,
                               yaml_node_t *map);
static int config_read_networks(struct config_reader *r, yaml_node_t *node,
                                const char *key, struct cidr **out,
                                size_t *n);
static int config_read_regions(struct config_reader *r, struct config *cfg,
                               yaml_node_t *map);
static int config_read_org(struct config_reader *r, struct config *cfg,
                           yaml_node_t *map, size_t index);
static int config_read_orgs(struct config_reader *r, struct config *cfg,
                            yaml_node_t *seq);
static int config_read_credentials(struct config_reader *r,
                                   struct config *cfg);
static void config_free_credentials(struct credential *list, size_t n);
static int config_check(struct config_reader *r, struct config *cfg);
static int config_is_address(const char *text);
static int config_is_host_port(const char *text);
static void config_defaults(struct config *cfg);


static int
config_fail(struct config_reader *r, const yaml_node_t *node,
            const char *fmt, ...)
{
    char    msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (node != NULL)
        snprintf(r->err, r->errlen, "%s:%zu: %s", r->path,
                 (size_t)node->start_mark.line + 1, msg);
    else
        snprintf(r->err, r->errlen, "%s: %s", r->path, msg);
    return -1;
}


static const char *
config_scalar(struct config_reader *r, yaml_node_t *node, const char *key)
{
    if (node->type != YAML_SCALAR_NODE) {
        config_fail(r, node, "key '%s': expected a single value", key);
        return NULL;
    }
    return (const char *)node->data.scalar.value;
}


static int
config_set_key(struct config_reader *r, struct config *cfg,
               const struct config_key *k, const char *section,
               const char *text, const yaml_node_t *node)
{
    char     *field = (char *)cfg + k->offset;
    char     *end;
    long long v;
    char      full[128];

    snprintf(full, sizeof(full), "%s%s%s", section, section[0] ? "." : "",
             k->name);

    switch (k->type) {
    case CONFIG_STRING:
        free(*(char **)field);
        *(char **)field = xstrdup(text);
        return 0;

    case CONFIG_INT:
        errno = 0;
        v = strtoll(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0')
            return config_fail(r, node, "key '%s': '%s' is not an integer",
                               full, text);
        if (v < k->min || v > k->max)
            return config_fail(r, node,
                               "key '%s': %lld is out of range "
                               "[%lld, %lld]", full, v,
                               (long long)k->min, (long long)k->max);
        *(int64_t *)field = v;
        return 0;

    case CONFIG_ENUM:
        for (int i = 0; k->choices[i] != NULL; i++) {
            if (strcmp(text, k->choices[i]) == 0) {
                if (k->offset == offsetof(struct config, log_level)) {
                    free(cfg->log_level);
                    cfg->log_level = xstrdup(text);
                } else {
                    *(int *)(void *)field = i;
                }
                return 0;
            }
        }
        return config_fail(r, node, "key '%s': invalid value '%s'", full,
                           text);
    }
    return -1;
}


static void
config_defaults(struct config *cfg)
{
    static const struct {
        const struct config_key *keys;
        size_t                   n;
    } tables[] = {
        { config_top_keys, NKEYS(config_top_keys) },
        { config_kafka_keys, NKEYS(config_kafka_keys) },
        { config_ingress_keys, NKEYS(config_ingress_keys) },
        { config_deliver_keys, NKEYS(config_deliver_keys) },
        { config_controller_keys, NKEYS(config_controller_keys) },
    };
    struct config_reader r = { .path = "", .err = NULL, .errlen = 0 };
    char                 scratch[256];

    r.err = scratch;
    r.errlen = sizeof(scratch);
    for (size_t t = 0; t < NKEYS(tables); t++) {
        for (size_t i = 0; i < tables[t].n; i++) {
            const struct config_key *k = &tables[t].keys[i];

            /* A default outside its own bounds is a bug in the tables. */
            if (k->fallback != NULL &&
                config_set_key(&r, cfg, k, "", k->fallback, NULL) == -1)
                abort();
        }
    }
}


static int
config_read_section(struct config_reader *r, struct config *cfg,
                    yaml_node_t *map, const char *section,
                    const struct config_key *keys, size_t nkeys)
{
    yaml_node_pair_t *pair;

    if (map->type != YAML_MAPPING_NODE)
        return config_fail(r, map, "key '%s': expected a mapping", section);

    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(&r->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(&r->doc, pair->value);
        const char  *name = config_scalar(r, kn, section);
        const char  *text;
        size_t       i;

        if (name == NULL)
            return -1;
        for (i = 0; i < nkeys; i++)
            if (strcmp(keys[i].name, name) == 0)
                break;
        if (i == nkeys)
            continue;       /* the section reader handles the other keys */
        if ((text = config_scalar(r, vn, name)) == NULL)
            return -1;
        if (config_set_key(r, cfg, &keys[i], section, text, vn) == -1)
            return -1;
    }
    return 0;
}


static int
config_read_string_list(struct config_reader *r, yaml_node_t *node,
                        const char *key, char ***out, size_t *n)
{
    yaml_node_item_t *item;
    size_t            count;

    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(r, node, "key '%s': expected a list", key);

    count = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
    *out = xcalloc(count + 1, sizeof(char *));
    *n = 0;
    for (item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        yaml_node_t *vn = yaml_document_get_node(&r->doc, *item);
        const char  *text = config_scalar(r, vn, key);

        if (text == NULL)
            return -1;
        if (text[0] == '\0')
            return config_fail(r, vn, "key '%s': empty list entry", key);
        (*out)[(*n)++] = xstrdup(text);
    }
    return 0;
}


/* Rejects a key of the mapping that is not in the known list. */
static int
config_only_keys(struct config_reader *r, yaml_node_t *map,
                 const char *section, const char *const *known)
{
    yaml_node_pair_t *pair;

    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(&r->doc, pair->key);
        const char  *name = config_scalar(r, kn, section);
        size_t       i;

        if (name == NULL)
            return -1;
        for (i = 0; known[i] != NULL; i++)
            if (strcmp(known[i], name) == 0)
                break;
        if (known[i] == NULL)
            return config_fail(r, kn, "unknown key '%s%s%s'", section,
                               section[0] ? "." : "", name);
    }
    return 0;
}


static int
config_read_kafka(struct config_reader *r, struct config *cfg,
                  yaml_node_t *map)
{
    static const char *const known[] = {
        "bootstrap_servers", "properties", NULL
    };
    yaml_node_pair_t *pair;

    if (config_read_section(r, cfg, map, "kafka", config_kafka_keys,
                            NKEYS(config_kafka_keys)) == -1 ||
        config_only_keys(r, map, "kafka", known) == -1)
        return -1;

    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t      *kn = yaml_document_get_node(&r->doc, pair->key);
        yaml_node_t      *vn = yaml_document_get_node(&r->doc, pair->value);
        yaml_node_pair_t *p;
        size_t            count;

        if (strcmp((const char *)kn->data.scalar.value, "properties") != 0)
            continue;
        if (vn->type != YAML_MAPPING_NODE)
            return config_fail(r, vn,
                               "key 'kafka.properties': expected a mapping");

        count = (size_t)(vn->data.mapping.pairs.top -
                         vn->data.mapping.pairs.start);
        cfg->kafka_properties = xcalloc(count + 1, sizeof(*cfg->kafka_properties));
        for (p = vn->data.mapping.pairs.start;
             p < vn->data.mapping.pairs.top; p++) {
            yaml_node_t *pk = yaml_document_get_node(&r->doc, p->key);
            yaml_node_t *pv = yaml_document_get_node(&r->doc, p->value);
            const char  *name = config_scalar(r, pk, "kafka.properties");
            const char  *value;

            if (name == NULL ||
                (value = config_scalar(r, pv, name)) == NULL)
                return -1;
            cfg->kafka_properties[cfg->nkafka_properties].name =
                xstrdup(name);
            cfg->kafka_properties[cfg->nkafka_properties].value =
                xstrdup(value);
            cfg->nkafka_properties++;
        }
    }
    return 0;
}


static int
config_read_ingress(struct config_reader *r, struct config *cfg,
                    yaml_node_t *map)
{
    static const char *const known[] = {
        "listen", "hostname", "tls_certificate", "tls_key", "regions",
        "max_message_size", "chunk_size",
        "max_recipients", "ack_timeout_ms", "durability",
        "durability_check_interval_seconds", "command_timeout_seconds",
        "data_initiation_timeout_seconds", "data_block_timeout_seconds",
        "data_termination_timeout_seconds", "max_connections",
        "max_connections_per_client", "max_commands", "max_errors",
        "http_listen", "credentials_file", "threads", "auth_threads",
        "max_auth_queue", "proxy_protocol", "proxy_networks", NULL
    };
    yaml_node_pair_t *pair;

    if (config_read_section(r, cfg, map, "ingress", config_ingress_keys,
                            NKEYS(config_ingress_keys)) == -1 ||
        config_only_keys(r, map, "ingress", known) == -1)
        return -1;

    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(&r->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(&r->doc, pair->value);

        if (strcmp((const char *)kn->data.scalar.value, "regions") == 0 &&
            config_read_string_list(r, vn, "ingress.regions",
                                    &cfg->ingress_regions,
                                    &cfg->ningress_regions) == -1)
            return -1;
        if (strcmp((const char *)kn->data.scalar.value, "proxy_networks") ==
                0 &&
            config_read_networks(r, vn, "ingress.proxy_networks",
                                 &cfg->ingress_proxy_networks,
                                 &cfg->ningress_proxy_networks) == -1)
            return -1;
    }
    return 0;
}


/* Reads a list of addresses and CIDR networks. */
static int
config_read_networks(struct config_reader *r, yaml_node_t *node,
                     const char *key, struct cidr **out, size_t *n)
{
    char  **nets = NULL;
    size_t  nnets = 0;
    int     rc = -1;

    if (config_read_string_list(r, node, key, &nets, &nnets) == -1)
        goto out;
    *out = xcalloc(nnets + 1, sizeof(**out));
    for (size_t i = 0; i < nnets; i++) {
        if (cidr_parse(nets[i], &(*out)[i]) == -1) {
            config_fail(r, node, "key '%s': '%s' is not an address or CIDR "
                        "network", key, nets[i]);
            goto out;
        }
    }
    *n = nnets;
    rc = 0;

out:
    for (size_t i = 0; i < nnets; i++)
        free(nets[i]);
    free(nets);
    return rc;
}


static int
config_read_regions(struct config_reader *r, struct config *cfg,
                    yaml_node_t *map)
{
    static const char *const known[] = { "ses_endpoint", NULL };
    yaml_node_pair_t *pair;
    size_t            count;

    if (map->type != YAML_MAPPING_NODE)
        return config_fail(r, map, "key 'regions': expected a mapping");

    count = (size_t)(map->data.mapping.pairs.top -
                     map->data.mapping.pairs.start);
    cfg->regions = xcalloc(count + 1, sizeof(*cfg->regions));

    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t   *kn = yaml_document_get_node(&r->doc, pair->key);
        yaml_node_t   *vn = yaml_document_get_node(&r->doc, pair->value);
        const char    *name = config_scalar(r, kn, "regions");
        struct region *reg = &cfg->regions[cfg->nregions];
        char           key[128];

        if (name == NULL)
            return -1;
        if (config_region(cfg, name) != NULL)
            return config_fail(r, kn, "key 'regions.%s': duplicate region",
                               name);
        reg->name = xstrdup(name);
        cfg->nregions++;

        if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0)
            continue;       /* "us-east-1:" with no settings */
        snprintf(key, sizeof(key), "regions.%s", name);
        if (vn->type != YAML_MAPPING_NODE)
            return config_fail(r, vn, "key '%s': expected a mapping", key);
        if (config_only_keys(r, vn, key, known) == -1)
            return -1;

        for (yaml_node_pair_t *p = vn->data.mapping.pairs.start;
             p < vn->data.mapping.pairs.top; p++) {
            yaml_node_t *pv = yaml_document_get_node(&r->doc, p->value);
            const char  *url = config_scalar(r, pv, "ses_endpoint");
            size_t       len;

            if (url == NULL)
                return -1;
            if (strncmp(url, "http://", 7) != 0 &&
                strncmp(url, "https://", 8) != 0)
                return config_fail(r, pv,
                                   "key '%s.ses_endpoint': '%s' is not an "
                                   "http:// or https:// URL", key, url);
            reg->ses_endpoint = xstrdup(url);
            len = strlen(reg->ses_endpoint);
            while (len > 0 && reg->ses_endpoint[len - 1] == '/')
                reg->ses_endpoint[--len] = '\0';
        }
    }
    return 0;
}


static int
config_read_org(struct config_reader *r, struct config *cfg,
                yaml_node_t *map, size_t index)
{
    static const char *const known[] = {
        "name", "home_region", "domains", "networks", "multi_region",
        "integration", NULL
    };
    struct org       *org = &cfg->orgs[index];
    yaml_node_pair_t *pair;
    char              key[160];
    char            **nets = NULL;
    size_t            nnets = 0;
    int               rc = -1;

    snprintf(key, sizeof(key), "organizations[%zu]", index);
    if (map->type != YAML_MAPPING_NODE)
        return config_fail(r, map, "key '%s': expected a mapping", key);
    if (config_only_keys(r, map, key, known) == -1)
        return -1;

    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(&r->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(&r->doc, pair->value);
        const char  *name = (const char *)kn->data.scalar.value;
        const char  *text;
        char         full[200];

        snprintf(full, sizeof(full), "%s.%s", key, name);
        if (strcmp(name, "domains") == 0) {
            if (config_read_string_list(r, vn, full, &org->domains,
                                        &org->ndomains) == -1)
                goto out;
            continue;
        }
        if (strcmp(name, "networks") == 0) {
            if (config_read_string_list(r, vn, full, &nets, &nnets) == -1)
                goto out;
            org->networks = xcalloc(nnets + 1, sizeof(*org->networks));
            for (size_t i = 0; i < nnets; i++) {
                if (cidr_parse(nets[i], &org->networks[i]) == -1) {
                    config_fail(r, vn, "key '%s': '%s' is not an address "
                                "or CIDR network", full, nets[i]);
                    goto out;
                }
            }
            org->nnetworks = nnets;
            continue;
        }

        if ((text = config_scalar(r, vn, full)) == NULL)
            goto out;
        if (strcmp(name, "name") == 0) {
            org->name = xstrdup(text);
        } else if (strcmp(name, "home_region") == 0) {
            org->home_region = xstrdup(text);
        } else if (strcmp(name, "multi_region") == 0) {
            if (strcmp(text, "true") == 0)
                org->multi_region = true;
            else if (strcmp(text, "false") == 0)
                org->multi_region = false;
            else {
                config_fail(r, vn, "key '%s': expected true or false, "
                            "got '%s'", full, text);
                goto out;
            }
        } else if (strcmp(name, "integration") == 0) {
            int i;

            for (i = 0; config_integration_names[i] != NULL; i++)
                if (strcmp(text, config_integration_names[i]) == 0)
                    break;
            if (config_integration_names[i] == NULL) {
                config_fail(r, vn, "key '%s': invalid value '%s' (expected "
                            "smtp, m365_api or journaling)", full, text);
                goto out;
            }
            org->integration = (enum integration_mode)i;
        }
    }

    if (org->name == NULL) {
        config_fail(r, map, "key '%s.name' is missing", key);
        goto out;
    }
    if (org->home_region == NULL) {
        config_fail(r, map, "key '%s.home_region' is missing", key);
        goto out;
    }
    if (config_region(cfg, org->home_region) == NULL) {
        config_fail(r, map, "key '%s.home_region': region '%s' is not "
                    "listed under 'regions'", key, org->home_region);
        goto out;
    }
    if (org->ndomains == 0) {
        config_fail(r, map, "key '%s.domains' is missing or empty", key);
        goto out;
    }
    for (size_t i = 0; i < org->ndomains; i++) {
        const struct org *owner = config_org_by_domain(cfg, org->domains[i]);

        if (owner != NULL && owner != org) {
            config_fail(r, map, "key '%s.domains': domain '%s' already "
                        "belongs to organization '%s'", key,
                        org->domains[i], owner->name);
            goto out;
        }
    }
    rc = 0;

out:
    for (size_t i = 0; i < nnets; i++)
        free(nets[i]);
    free(nets);
    return rc;
}


static int
config_read_orgs(struct config_reader *r, struct config *cfg,
                 yaml_node_t *seq)
{
    yaml_node_item_t *item;
    size_t            count;

    if (seq->type != YAML_SEQUENCE_NODE)
        return config_fail(r, seq, "key 'organizations': expected a list");

    count = (size_t)(seq->data.sequence.items.top -
                     seq->data.sequence.items.start);
    cfg->orgs = xcalloc(count + 1, sizeof(*cfg->orgs));
    for (item = seq->data.sequence.items.start;
         item < seq->data.sequence.items.top; item++) {
        yaml_node_t *vn = yaml_document_get_node(&r->doc, *item);

        /* Counted first, so config_org_by_domain() finds earlier orgs. */
        cfg->norgs++;
        if (config_read_org(r, cfg, vn, cfg->norgs - 1) == -1)
            return -1;
    }
    return 0;
}


/*
 * True for a plain ASCII address local@domain, with no blank, angle
 * bracket, quote or control character, as a From header and SES take it.
 */
static int
config_is_address(const char *text)
{
    const char *at = strchr(text, '@');

    if (at == NULL || at == text || at[1] == '\0' ||
        strchr(at + 1, '@') != NULL)
        return 0;
    for (const char *p = text; *p != '\0'; p++)
        if (*p <= ' ' || *p > '~' || strchr("<>\"(),;:[]\\", *p) != NULL)
            return 0;
    return 1;
}


/*
 * True for host:port or [IPv6]:port with a port from 1 to 65535, as the
 * HTTP listeners take it.
 */
static int
config_is_host_port(const char *text)
{
    const char *colon = strrchr(text, ':');
    char       *end;
    long        port;

    if (colon == NULL || colon == text || colon[1] == '\0')
        return 0;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && port >= 1 && port <= 65535;
}


/* True for a crypt(3) string of a method the ingress accepts. */
static bool
config_is_password_hash(const char *hash)
{
    if (strncmp(hash, "$y$", 3) != 0 && strncmp(hash, "$6$", 3) != 0)
        return false;
    return strspn(hash, "$./=0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "abcdefghijklmnopqrstuvwxyz") == strlen(hash);
}


/*
 * Reads ingress.credentials_file: one user per line as "user organization
 * hash", separated by blanks, with '#' comments and blank lines. Errors
 * name the configuration key and the line of the credentials file.
 */
static int
config_read_credentials(struct config_reader *r, struct config *cfg)
{
    const char *path = cfg->ingress_credentials_file;
    FILE       *f;
    char       *line = NULL;
    size_t      cap = 0;
    size_t      lineno = 0;
    int         rc = -1;

    if ((f = fopen(path, "r")) == NULL)
        return config_fail(r, NULL, "key 'ingress.credentials_file': cannot "
                           "open '%s': %s", path, strerror(errno));

    while (getline(&line, &cap, f) != -1) {
        char              *fields[4] = { NULL, NULL, NULL, NULL };
        char              *save = NULL;
        size_t             n = 0;
        const struct org  *org = NULL;
        struct credential *cred;

        lineno++;
        for (char *tok = strtok_r(line, " \t\r\n", &save);
             tok != NULL && n < 4; tok = strtok_r(NULL, " \t\r\n", &save))
            fields[n++] = tok;
        if (n == 0 || fields[0][0] == '#')
            continue;
        if (n != 3) {
            config_fail(r, NULL, "key 'ingress.credentials_file': %s:%zu: "
                        "expected 'user organization hash'", path, lineno);
            goto out;
        }
        for (size_t i = 0; i < cfg->norgs; i++)
            if (strcmp(cfg->orgs[i].name, fields[1]) == 0)
                org = &cfg->orgs[i];
        if (org == NULL) {
            config_fail(r, NULL, "key 'ingress.credentials_file': %s:%zu: "
                        "organization '%s' is not listed under "
                        "'organizations'", path, lineno, fields[1]);
            goto out;
        }
        if (!config_is_password_hash(fields[2])) {
            config_fail(r, NULL, "key 'ingress.credentials_file': %s:%zu: "
                        "the hash of user '%s' is not a yescrypt ($y$) or "
                        "SHA-512 ($6$) crypt string; make one with "
                        "ferry-ingress --hash-password", path, lineno,
                        fields[0]);
            goto out;
        }
        if (strlen(fields[0]) > 255) {
            config_fail(r, NULL, "key 'ingress.credentials_file': %s:%zu: "
                        "user name longer than 255 characters", path,
                        lineno);
            goto out;
        }
        if (config_credential(cfg, fields[0]) != NULL) {
            config_fail(r, NULL, "key 'ingress.credentials_file': %s:%zu: "
                        "user '%s' is listed twice", path, lineno,
                        fields[0]);
            goto out;
        }

        cfg->ingress_credentials =
            xrealloc(cfg->ingress_credentials,
                     (cfg->ningress_credentials + 1) *
                         sizeof(*cfg->ingress_credentials));
        cred = &cfg->ingress_credentials[cfg->ningress_credentials++];
        cred->user = xstrdup(fields[0]);
        cred->org = org;
        cred->hash = xstrdup(fields[2]);
    }
    if (ferror(f)) {
        config_fail(r, NULL, "key 'ingress.credentials_file': cannot read "
                    "'%s': %s", path, strerror(errno));
        goto out;
    }
    if (cfg->ningress_credentials == 0) {
        config_fail(r, NULL, "key 'ingress.credentials_file': '%s' lists "
                    "no user", path);
        goto out;
    }
    rc = 0;

out:
    free(line);
    fclose(f);
    return rc;
}


static void
config_free_credentials(struct credential *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].user);
        /* A hash is not the password, but it need not linger either. */
        explicit_bzero(list[i].hash, strlen(list[i].hash));
        free(list[i].hash);
    }
    free(list);
}


int
config_reload_credentials(struct config *cfg, char *err, size_t errlen)
{
    struct config_reader r = { .path = cfg->path, .err = err,
                               .errlen = errlen };
    struct credential   *old = cfg->ingress_credentials;
    size_t               nold = cfg->ningress_credentials;

    cfg->ingress_credentials = NULL;
    cfg->ningress_credentials = 0;
    if (config_read_credentials(&r, cfg) == -1) {
        config_free_credentials(cfg->ingress_credentials,
                                cfg->ningress_credentials);
        cfg->ingress_credentials = old;
        cfg->ningress_credentials = nold;
        return -1;
    }
    config_free_credentials(old, nold);
    return 0;
}


static int
config_check(struct config_reader *r, struct config *cfg)
{
    char host[256];

    if (cfg->bootstrap_servers == NULL || cfg->bootstrap_servers[0] == '\0')
        return config_fail(r, NULL, "key 'kafka.bootstrap_servers' is "
                           "missing");
    if (cfg->nregions == 0)
        return config_fail(r, NULL, "key 'regions' is missing or empty");
    for (size_t i = 0; i < cfg->ningress_regions; i++)
        if (config_region(cfg, cfg->ingress_regions[i]) == NULL)
            return config_fail(r, NULL, "key 'ingress.regions': region "
                               "'%s' is not listed under 'regions'",
                               cfg->ingress_regions[i]);
    if (cfg->deliver_region[0] != '\0' &&
        config_region(cfg, cfg->deliver_region) == NULL)
        return config_fail(r, NULL, "key 'deliver.region': region '%s' is "
                           "not listed under 'regions'", cfg->deliver_region);
    if ((cfg->ingress_tls_certificate[0] == '\0') !=
        (cfg->ingress_tls_key[0] == '\0'))
        return config_fail(r, NULL, "keys 'ingress.tls_certificate' and "
                           "'ingress.tls_key' must be set together");
    if (cfg->ingress_credentials_file[0] != '\0') {
        /* AUTH is offered only under TLS, so it needs a certificate. */
        if (cfg->ingress_tls_certificate[0] == '\0')
            return config_fail(r, NULL, "key 'ingress.credentials_file' "
                               "needs 'ingress.tls_certificate' and "
                               "'ingress.tls_key', because AUTH is offered "
                               "only after STARTTLS");
        if (config_read_credentials(r, cfg) == -1)
            return -1;
    }
    if (cfg->ingress_proxy_protocol && cfg->ningress_proxy_networks == 0)
        return config_fail(r, NULL, "key 'ingress.proxy_networks' is missing "
                           "or empty, but 'ingress.proxy_protocol' is true: "
                           "list the addresses of the load balancers");
    if (cfg->ingress_ack_timeout_ms >=
        cfg->ingress_data_termination_timeout * 1000)
        return config_fail(r, NULL, "key 'ingress.ack_timeout_ms' must be "
                           "below 'ingress.data_termination_timeout_seconds' "
                           "(%lld s), so the final-dot reply comes before "
                           "the client gives up",
                           (long long)cfg->ingress_data_termination_timeout);
    if (cfg->ingress_max_connections_per_client >
        cfg->ingress_max_connections)
        return config_fail(r, NULL, "key 'ingress.max_connections_per_client'"
                           " is larger than 'ingress.max_connections'");
    if (cfg->deliver_dsn_from[0] != '\0' &&
        !config_is_address(cfg->deliver_dsn_from))
        return config_fail(r, NULL, "key 'deliver.dsn_from': '%s' is not "
                           "an address of the form local@domain",
                           cfg->deliver_dsn_from);
    if (cfg->deliver_retry_max_ms < cfg->deliver_retry_initial_ms)
        return config_fail(r, NULL, "key 'deliver.retry_max_ms' is smaller "
                           "than 'deliver.retry_initial_ms'");

    {
        static const char *const keys[] = {
            "ingress.http_listen", "deliver.http_listen",
            "controller.http_listen"
        };
        const char *values[] = {
            cfg->ingress_http_listen, cfg->deliver_http_listen,
            cfg->controller_http_listen
        };

        for (size_t i = 0; i < 3; i++)
            if (values[i][0] != '\0' && !config_is_host_port(values[i]))
                return config_fail(r, NULL, "key '%s': '%s' is not of the "
                                   "form host:port with a port from 1 to "
                                   "65535", keys[i], values[i]);
    }

    /* Without ingress.regions a node serves every region listed. */
    if (cfg->ningress_regions == 0) {
        cfg->ingress_regions = xcalloc(cfg->nregions + 1, sizeof(char *));
        for (size_t i = 0; i < cfg->nregions; i++)
            cfg->ingress_regions[i] = xstrdup(cfg->regions[i].name);
        cfg->ningress_regions = cfg->nregions;
    }

    for (size_t i = 0; i < cfg->nregions; i++) {
        if (cfg->regions[i].ses_endpoint == NULL) {
            char url[256];

            snprintf(url, sizeof(url), "https://email.%s.amazonaws.com",
                     cfg->regions[i].name);
            cfg->regions[i].ses_endpoint = xstrdup(url);
        }
    }

    if (cfg->ingress_hostname[0] == '\0') {
        if (gethostname(host, sizeof(host)) == -1)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        free(cfg->ingress_hostname);
        cfg->ingress_hostname = xstrdup(host);
    }
    return 0;
}


struct config *
config_load(const char *path, char *err, size_t errlen)
{
    static const char *const known[] = {
        "log_level", "kafka", "ingress", "deliver", "controller", "regions",
        "organizations", NULL
    };
    struct config_reader r = { .path = path, .err = err, .errlen = errlen };
    struct config       *cfg = NULL;
    yaml_parser_t        parser;
    yaml_node_t         *root;
    FILE                *f = NULL;
    int                  have_doc = 0;

    if ((f = fopen(path, "rb")) == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &r.doc)) {
        snprintf(err, errlen, "%s:%zu: invalid YAML: %s", path,
                 (size_t)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "parse error");
        goto fail;
    }
    have_doc = 1;

    cfg = xcalloc(1, sizeof(*cfg));
    cfg->path = xstrdup(path);
    config_defaults(cfg);

    root = yaml_document_get_root_node(&r.doc);
    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        config_fail(&r, root, "expected a mapping at the top level");
        goto fail;
    }
    if (config_only_keys(&r, root, "", known) == -1 ||
        config_read_section(&r, cfg, root, "", config_top_keys,
                            NKEYS(config_top_keys)) == -1)
        goto fail;

    /* Regions first: organizations and sections refer to them. */
    for (int pass = 0; pass < 2; pass++) {
        for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
             pair < root->data.mapping.pairs.top; pair++) {
            yaml_node_t *kn = yaml_document_get_node(&r.doc, pair->key);
            yaml_node_t *vn = yaml_document_get_node(&r.doc, pair->value);
            const char  *name = (const char *)kn->data.scalar.value;
            int          rc = 0;

            if (pass == 0) {
                if (strcmp(name, "regions") == 0)
                    rc = config_read_regions(&r, cfg, vn);
            } else if (strcmp(name, "kafka") == 0) {
                rc = config_read_kafka(&r, cfg, vn);
            } else if (strcmp(name, "ingress") == 0) {
                rc = config_read_ingress(&r, cfg, vn);
            } else if (strcmp(name, "deliver") == 0) {
                static const char *const dk[] = {
                    "region", "max_in_flight", "retry_initial_ms",
                    "retry_max_ms", "request_timeout_ms", "max_send_rate",
                    "health_interval_ms", "dsn_from", "http_listen",
                    "delivered_lookback_seconds", NULL
                };

                rc = config_read_section(&r, cfg, vn, "deliver",
                                         config_deliver_keys,
                                         NKEYS(config_deliver_keys));
                if (rc == 0)
                    rc = config_only_keys(&r, vn, "deliver", dk);
            } else if (strcmp(name, "controller") == 0) {
                static const char *const ck[] = {
                    "id", "secondary_region", "probe_interval_ms",
                    "probe_timeout_ms", "probe_failure_seconds",
                    "health_window_seconds", "health_failure_percent",
                    "failback_dwell_seconds", "readiness_interval_seconds",
                    "drain_check_interval_ms", "command_max_age_seconds",
                    "http_listen", NULL
                };

                rc = config_read_section(&r, cfg, vn, "controller",
                                         config_controller_keys,
                                         NKEYS(config_controller_keys));
                if (rc == 0)
                    rc = config_only_keys(&r, vn, "controller", ck);
            } else if (strcmp(name, "organizations") == 0) {
                rc = config_read_orgs(&r, cfg, vn);
            }
            if (rc == -1)
                goto fail;
        }
    }

    if (config_check(&r, cfg) == -1)
        goto fail;

    yaml_document_delete(&r.doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return cfg;

fail:
    if (have_doc)
        yaml_document_delete(&r.doc);
    yaml_parser_delete(&parser);
    fclose(f);
    config_free(cfg);
    return NULL;
}


static void
config_free_strings(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}


void
config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;

    free(cfg->path);
    free(cfg->log_level);
    free(cfg->bootstrap_servers);
    for (size_t i = 0; i < cfg->nkafka_properties; i++) {
        free(cfg->kafka_properties[i].name);
        free(cfg->kafka_properties[i].value);
    }
    free(cfg->kafka_properties);
    free(cfg->ingress_listen);
    free(cfg->ingress_hostname);
    free(cfg->ingress_tls_certificate);
    free(cfg->ingress_tls_key);
    config_free_strings(cfg->ingress_regions, cfg->ningress_regions);
    free(cfg->deliver_region);
    free(cfg->ingress_http_listen);
    free(cfg->ingress_credentials_file);
    config_free_credentials(cfg->ingress_credentials,
                            cfg->ningress_credentials);
    free(cfg->ingress_proxy_networks);
    free(cfg->deliver_dsn_from);
    free(cfg->deliver_http_listen);
    free(cfg->controller_id);
    free(cfg->controller_http_listen);
    free(cfg->controller_secondary_region);
    for (size_t i = 0; i < cfg->nregions; i++) {
        free(cfg->regions[i].name);
        free(cfg->regions[i].ses_endpoint);
    }
    free(cfg->regions);
    for (size_t i = 0; i < cfg->norgs; i++) {
        free(cfg->orgs[i].name);
        free(cfg->orgs[i].home_region);
        config_free_strings(cfg->orgs[i].domains, cfg->orgs[i].ndomains);
        free(cfg->orgs[i].networks);
    }
    free(cfg->orgs);
    free(cfg);
}


const struct region *
config_region(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nregions; i++)
        if (strcmp(cfg->regions[i].name, name) == 0)
            return &cfg->regions[i];
    return NULL;
}


bool
config_serves_region(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->ningress_regions; i++)
        if (strcmp(cfg->ingress_regions[i], name) == 0)
            return true;
    return false;
}


const struct credential *
config_credential(const struct config *cfg, const char *user)
{
    for (size_t i = 0; i < cfg->ningress_credentials; i++)
        if (strcmp(cfg->ingress_credentials[i].user, user) == 0)
            return &cfg->ingress_credentials[i];
    return NULL;
}


const struct org *
config_org_by_domain(const struct config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->norgs; i++)
        for (size_t j = 0; j < cfg->orgs[i].ndomains; j++)
            if (strcasecmp(cfg->orgs[i].domains[j], domain) == 0)
                return &cfg->orgs[i];
    return NULL;
}


bool
org_allows_address(const struct org *org, const struct sockaddr *sa)
{
    for (size_t i = 0; i < org->nnetworks; i++)
        if (cidr_contains(&org->networks[i], sa))
            return true;
    return false;
}


bool
org_is_pinned(const struct org *org)
{
    /* Microsoft 365 API connections and journaling never leave home. */
    return !org->multi_region || org->integration != INTEGRATION_SMTP;
}


int
org_topic(const struct org *org, char *buf, size_t size)
{
    int n = snprintf(buf, size, "mail.%s%s", org->home_region,
                     org_is_pinned(org) ? ".pinned" : "");

    return n < 0 || (size_t)n >= size ? -1 : 0;
}


const char *
integration_mode_name(enum integration_mode mode)
{
    return config_integration_names[mode];
}


int
cidr_parse(const char *text, struct cidr *out)
{
    char          addr[64];
    const char   *slash = strchr(text, '/');
    size_t        len = slash ? (size_t)(slash - text) : strlen(text);
    unsigned      maxbits;
    char         *end;
    unsigned long prefix;

    if (len == 0 || len >= sizeof(addr))
        return -1;
    memcpy(addr, text, len);
    addr[len] = '\0';

    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        maxbits = 128;
    } else {
        return -1;
    }

    out->prefix = maxbits;
    if (slash != NULL) {
        if (!isdigit((unsigned char)slash[1]))
            return -1;
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0' || prefix > maxbits)
            return -1;
        out->prefix = (unsigned)prefix;
    }
    return 0;
}


bool
cidr_contains(const struct cidr *net, const struct sockaddr *sa)
{
    const unsigned char *a;
    unsigned char        mapped[4];
    unsigned             bits = net->prefix;

    if (sa->sa_family == AF_INET) {
        a = (const unsigned char *)
            &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        if (net->family != AF_INET)
            return false;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 =
            &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

        if (net->family == AF_INET6) {
            a = in6->s6_addr;
        } else if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(mapped, in6->s6_addr + 12, 4);
            a = mapped;
        } else {
            return false;
        }
    } else {
        return false;
    }

    for (unsigned i = 0; bits > 0; i++, bits = bits >= 8 ? bits - 8 : 0) {
        unsigned char mask = bits >= 8 ? 0xff
                                       : (unsigned char)(0xff << (8 - bits));

        if ((a[i] & mask) != (net->addr[i] & mask))
            return false;
    }
    return true;
}
