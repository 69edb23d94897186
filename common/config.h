/*
 * config: the YAML configuration shared by every Ferry daemon.
 *
 * config_load() reads and checks the whole file; on error it returns NULL
 * and writes one line into err naming the file, the line and the key.
 * The example file deploy/config/ferry.example.yaml explains every key.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum integration_mode {
    INTEGRATION_SMTP,
    INTEGRATION_M365_API,
    INTEGRATION_JOURNALING
};

enum durability_mode {
    DURABILITY_STRICT,
    DURABILITY_RELAXED
};

struct cidr {
    int           family;       /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned      prefix;
};

struct org {
    char                 *name;
    char                 *home_region;
    char                **domains;
    size_t                ndomains;
    struct cidr          *networks;
    size_t                nnetworks;
    bool                  multi_region;
    enum integration_mode integration;
};

/* One line of ingress.credentials_file: a user allowed to send by AUTH. */
struct credential {
    char             *user;
    const struct org *org;      /* the organization it may send for */
    char             *hash;     /* crypt(3) string, "$y$..." or "$6$..." */
};

struct region {
    char *name;
    char *ses_endpoint;         /* base URL, no trailing slash */
};

struct kafka_property {
    char *name;
    char *value;
};

struct config {
    char                  *path;
    char                  *log_level;

    char                  *bootstrap_servers;
    struct kafka_property *kafka_properties;
    size_t                 nkafka_properties;

    char                  *ingress_listen;          /* host:port */
    char                  *ingress_hostname;
    char                  *ingress_tls_certificate; /* PEM; "" no TLS */
    char                  *ingress_tls_key;         /* PEM */
    char                 **ingress_regions;         /* home regions served */
    size_t                 ningress_regions;
    int64_t                ingress_max_message_size;
    int64_t                ingress_chunk_size;      /* message octets/record */
    int64_t                ingress_max_recipients;
    int64_t                ingress_ack_timeout_ms;
    enum durability_mode   ingress_durability;
    int64_t                ingress_durability_check_interval; /* s, 0 off */
    int64_t                ingress_command_timeout;           /* seconds */
    int64_t                ingress_data_initiation_timeout;   /* seconds */
    int64_t                ingress_data_block_timeout;        /* seconds */
    int64_t                ingress_data_termination_timeout;  /* seconds */
    int64_t                ingress_max_connections;
    int64_t                ingress_max_connections_per_client;
    int64_t                ingress_max_commands;     /* per session */
    int64_t                ingress_max_errors;       /* per session */
    char                  *ingress_http_listen;     /* host:port; "" off */
    char                  *ingress_credentials_file; /* "": no AUTH */
    int64_t                ingress_threads;          /* event loops; 0: CPUs */
    int64_t                ingress_auth_threads;     /* password checks */
    int64_t                ingress_max_auth_queue;   /* checks waiting */
    int                    ingress_proxy_protocol;  /* 1: header required */
    struct cidr           *ingress_proxy_networks;  /* who may send it */
    size_t                 ningress_proxy_networks;
    struct credential     *ingress_credentials;
    size_t                 ningress_credentials;

    char                  *deliver_region;          /* may be NULL */
    int64_t                deliver_max_in_flight;
    int64_t                deliver_retry_initial_ms;
    int64_t                deliver_retry_max_ms;
    int64_t                deliver_request_timeout_ms;
    int64_t                deliver_max_send_rate;   /* recipients/s, 0:
                                                       from GetAccount */
    int64_t                deliver_health_interval_ms;
    char                  *deliver_dsn_from;        /* "": no DSNs */
    char                  *deliver_http_listen;     /* host:port; "" off */
    int64_t                deliver_delivered_lookback_seconds; /* 0 off */

    char                  *controller_id;           /* "": host:pid */
    char                  *controller_secondary_region;
    int64_t                controller_probe_interval_ms;
    int64_t                controller_probe_timeout_ms;
    int64_t                controller_probe_failure_seconds;
    int64_t                controller_health_window_seconds;
    int64_t                controller_health_failure_percent;
    int64_t                controller_failback_dwell_seconds;
    int64_t                controller_readiness_interval_seconds;
    int64_t                controller_drain_check_interval_ms;
    int64_t                controller_command_max_age_seconds;
    char                  *controller_http_listen;  /* host:port; "" off */

    struct region         *regions;
    size_t                 nregions;
    struct org            *orgs;
    size_t                 norgs;
};

struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *cfg);

const struct region *config_region(const struct config *cfg,
                                   const char *name);
bool config_serves_region(const struct config *cfg, const char *name);

/*
 * Reads ingress.credentials_file again, for SIGHUP. On failure the old
 * credentials stay and err contains the reason.
 */
int config_reload_credentials(struct config *cfg, char *err, size_t errlen);

/* Finds the credential of an AUTH user name (case-sensitive), or NULL. */
const struct credential *config_credential(const struct config *cfg,
                                           const char *user);

/* Finds the organization that owns a sender domain (case-insensitive). */
const struct org *config_org_by_domain(const struct config *cfg,
                                       const char *domain);

bool org_allows_address(const struct org *org, const struct sockaddr *sa);

/* True when the organization's mail must stay in its home region. */
bool org_is_pinned(const struct org *org);

/* Writes "mail.R" or "mail.R.pinned" for the organization. */
int org_topic(const struct org *org, char *buf, size_t size);

const char *integration_mode_name(enum integration_mode mode);
int cidr_parse(const char *text, struct cidr *out);
bool cidr_contains(const struct cidr *net, const struct sockaddr *sa);

#endif
