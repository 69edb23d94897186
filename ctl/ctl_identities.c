#include "ctl_identities.h"

#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "ctl.h"
#include "ctl_dns.h"
#include "ctl_table.h"
#include "ses.h"
#include "util.h"

/* The SPF include and DKIM CNAME domain of Amazon SES. */
#define IDENTITIES_SES_DOMAIN "amazonses.com"

static const char identities_usage[] =
    "usage: ferryctl identities check -c FILE [--resolver HOST[:PORT]] "
    "[--json]\n"
    "  check      for every organization and every region it sends from\n"
    "             (its home region, and controller.secondary_region when\n"
    "             its mail may fail over), check that each of its domains\n"
    "             is a verified identity in SES there and that the DNS\n"
    "             records for sending through SES exist:\n"
    "               spf           a TXT record \"v=spf1 ...\" with\n"
    "                             include:amazonses.com at the MAIL FROM\n"
    "                             domain (the custom one, else the domain)\n"
    "               dkim          the Easy DKIM CNAME records\n"
    "                             TOKEN._domainkey.DOMAIN, with the tokens\n"
    "                             from GetEmailIdentity\n"
    "               mail-from-mx  with a custom MAIL FROM domain, its MX\n"
    "                             record feedback-smtp.REGION.amazonses.com\n"
    "  -c, --config FILE        the Ferry configuration (required)\n"
    "  --resolver HOST[:PORT]   DNS server to ask, an IPv4 address (port "
    "53 by\n"
    "                           default); default: those of "
    "/etc/resolv.conf\n"
    "  --json                   print JSON instead of a table\n"
    "AWS credentials come from the environment, as for ferry-deliver.\n"
    "Exit codes: 0 everything is in place, 1 something is missing or a "
    "check\nfailed, 64 usage error.\n";

enum identities_status {
    IDENTITIES_OK,
    IDENTITIES_MISSING,         /* no identity, or no such record */
    IDENTITIES_UNVERIFIED,      /* the identity is not verified */
    IDENTITIES_WRONG,           /* a record exists with the wrong value */
    IDENTITIES_ERROR            /* the request or the lookup failed */
};

static const char *const identities_status_names[] = {
    "ok", "missing", "unverified", "wrong", "error"
};

/* One line of the output. */
struct identities_row {
    const char            *org;
    const char            *region;
    const char            *domain;
    const char            *check;       /* identity, spf, dkim, ... */
    char                   record[300]; /* the DNS name, or "-" */
    enum identities_status status;
    char                   detail[600];
};

struct identities_run {
    const struct config   *cfg;
    struct ses_credentials creds;
    struct ses_client    **clients;     /* per cfg->regions entry */
    struct ctl_dns        *dns;
    struct identities_row *rows;
    size_t                 nrows, cap;
};

/* The outcome of one GetEmailIdentity request. */
struct identities_reply {
    bool   done;
    long   http_status;
    int    result;                  /* enum ses_result */
    char   error_type[128];
    char   reason[512];
    char  *body;
};

static void identities_check_region(struct identities_run *run,
                                    const struct org *org,
                                    const char *region);
static void identities_check_domain(struct identities_run *run,
                                    const struct org *org,
                                    const struct region *reg,
                                    struct ses_client *client,
                                    const char *domain);
static int identities_get(struct ses_client *client, const char *domain,
                          struct identities_reply *reply);
static void identities_on_ses(void *opaque,
                              const struct ses_outcome *outcome);
static void identities_check_spf(struct identities_run *run,
                                 struct identities_row *base,
                                 const char *name);
static void identities_check_dkim(struct identities_run *run,
                                  struct identities_row *base,
                                  const struct ctl_identity_info *info);
static void identities_check_mx(struct identities_run *run,
                                struct identities_row *base,
                                const char *name);
static struct identities_row *identities_add(
    struct identities_run *run, const struct identities_row *base,
    const char *check, const char *record, enum identities_status status,
    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static struct ses_client *identities_client(struct identities_run *run,
                                            const struct region *reg,
                                            char *err, size_t errlen);
static void identities_print_table(const struct identities_run *run);
static void identities_print_json(const struct identities_run *run);
static void identities_copy(char *dst, size_t size, json_t *value);


int
ctl_identities_parse(int argc, char **argv,
                     struct ctl_identities_args *args, char *err,
                     size_t errlen)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "resolver", required_argument, NULL, CTL_OPT_RESOLVER },
        { "json", no_argument, NULL, CTL_OPT_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    char     host[64];
    unsigned port;
    int      opt;

    memset(args, 0, sizeof(*args));
    optind = 0;                 /* glibc: reinitialise getopt */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': args->config_path = optarg; break;
        case CTL_OPT_RESOLVER: args->resolver = optarg; break;
        case CTL_OPT_JSON: args->json = true; break;
        case 'h': args->help = true; return 0;
        case ':':
            snprintf(err, errlen, "option '%s' needs a value",
                     argv[optind - 1]);
            return -1;
        default:
            snprintf(err, errlen, "unknown option '%s'", argv[optind - 1]);
            return -1;
        }
    }

    if (optind == argc) {
        snprintf(err, errlen, "missing the action: check");
        return -1;
    }
    if (strcmp(argv[optind], "check") != 0) {
        snprintf(err, errlen, "unknown action '%s': expected check",
                 argv[optind]);
        return -1;
    }
    if (optind + 1 < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind + 1]);
        return -1;
    }
    if (args->config_path == NULL) {
        snprintf(err, errlen, "missing -c FILE, the Ferry configuration");
        return -1;
    }
    if (args->resolver != NULL &&
        ctl_dns_parse_server(args->resolver, host, sizeof(host), &port, err,
                             errlen) == -1)
        return -1;
    return 0;
}


int
ctl_identities_parse_identity(const char *body, size_t len,
                              struct ctl_identity_info *info, char *err,
                              size_t errlen)
{
    json_t      *root, *dkim, *mail_from, *tokens, *token;
    json_error_t jerr;
    size_t       i;

    memset(info, 0, sizeof(*info));
    root = body != NULL ? json_loadb(body, len, 0, &jerr) : NULL;
    if (root == NULL || !json_is_object(root)) {
        snprintf(err, errlen, "GetEmailIdentity response is not a JSON "
                 "object");
        json_decref(root);
        return -1;
    }

    info->verified = json_is_true(json_object_get(root,
                                                  "VerifiedForSendingStatus"));
    identities_copy(info->verification_status,
                    sizeof(info->verification_status),
                    json_object_get(root, "VerificationStatus"));

    dkim = json_object_get(root, "DkimAttributes");
    identities_copy(info->dkim_origin, sizeof(info->dkim_origin),
                    json_object_get(dkim, "SigningAttributesOrigin"));
    identities_copy(info->dkim_status, sizeof(info->dkim_status),
                    json_object_get(dkim, "Status"));
    tokens = json_object_get(dkim, "Tokens");
    json_array_foreach(tokens, i, token) {
        if (info->ntokens == CTL_IDENTITY_MAX_TOKENS)
            break;
        if (!json_is_string(token) || json_string_length(token) == 0 ||
            json_string_length(token) >= sizeof(info->tokens[0]))
            continue;
        identities_copy(info->tokens[info->ntokens++],
                        sizeof(info->tokens[0]), token);
    }

    mail_from = json_object_get(root, "MailFromAttributes");
    identities_copy(info->mail_from_domain, sizeof(info->mail_from_domain),
                    json_object_get(mail_from, "MailFromDomain"));
    json_decref(root);
    return 0;
}


bool
ctl_identities_is_spf(const char *txt)
{
    return strncasecmp(txt, "v=spf1", 6) == 0 &&
           (txt[6] == '\0' || txt[6] == ' ');
}


bool
ctl_identities_spf_allows_ses(const char *txt)
{
    static const char include[] = "include:" IDENTITIES_SES_DOMAIN;
    const char       *term = txt;

    if (!ctl_identities_is_spf(txt))
        return false;
    /* Terms are separated by spaces (RFC 7208 section 4.6.1). */
    while (*term != '\0') {
        size_t len = strcspn(term, " ");

        if (*term == '+') {
            term++;
            len--;
        }
        if (len == sizeof(include) - 1 &&
            strncasecmp(term, include, len) == 0)
            return true;
        term += len;
        term += strspn(term, " ");
    }
    return false;
}


bool
ctl_identities_dkim_target_ok(const char *target, const char *token,
                              const char *region)
{
    char expected[300], regional[300];

    /*
     * NOTE: TOKEN.dkim.amazonses.com is the target of the usual regions.
     * The regional form is accepted too, in case a region uses it; this
     * was not checked against the SES documentation.
     */
    snprintf(expected, sizeof(expected), "%s.dkim.%s", token,
             IDENTITIES_SES_DOMAIN);
    snprintf(regional, sizeof(regional), "%s.dkim.%s.%s", token, region,
             IDENTITIES_SES_DOMAIN);
    return strcasecmp(target, expected) == 0 ||
           strcasecmp(target, regional) == 0;
}


int
ctl_identities_main(int argc, char **argv)
{
    struct ctl_identities_args args;
    struct identities_run      run;
    struct config             *cfg;
    char                       err[1024];
    size_t                     failed = 0;

    if (ctl_identities_parse(argc, argv, &args, err, sizeof(err)) == -1)
        ctl_usage_error("identities", "%s", err);
    if (args.help) {
        fputs(identities_usage, stdout);
        return CTL_EXIT_OK;
    }
    if ((cfg = config_load(args.config_path, err, sizeof(err))) == NULL)
        ctl_usage_error("identities", "%s", err);

    memset(&run, 0, sizeof(run));
    run.cfg = cfg;
    if (ses_credentials_from_env(&run.creds, err, sizeof(err)) == -1) {
        ctl_error("identities", "no AWS credentials: %s", err);
        config_free(cfg);
        return CTL_EXIT_FAILURE;
    }
    if ((run.dns = ctl_dns_new(args.resolver, err, sizeof(err))) == NULL) {
        ctl_error("identities", "%s", err);
        ses_credentials_fini(&run.creds);
        config_free(cfg);
        return CTL_EXIT_FAILURE;
    }
    run.clients = xcalloc(cfg->nregions + 1, sizeof(*run.clients));

    for (size_t o = 0; o < cfg->norgs && !ctl_interrupted; o++) {
        const struct org *org = &cfg->orgs[o];
        const char       *secondary = cfg->controller_secondary_region;

        identities_check_region(&run, org, org->home_region);
        /* The controller moves only unpinned organizations' mail. */
        if (!org_is_pinned(org) && secondary != NULL &&
            secondary[0] != '\0' && strcmp(secondary, org->home_region) != 0)
            identities_check_region(&run, org, secondary);
    }

    if (args.json)
        identities_print_json(&run);
    else
        identities_print_table(&run);
    for (size_t i = 0; i < run.nrows; i++)
        if (run.rows[i].status != IDENTITIES_OK)
            failed++;
    if (failed > 0)
        ctl_error("identities", "%zu of %zu checks failed", failed,
                  run.nrows);

    for (size_t r = 0; r < cfg->nregions; r++)
        ses_client_free(run.clients[r]);
    free(run.clients);
    free(run.rows);
    ctl_dns_free(run.dns);
    ses_credentials_fini(&run.creds);
    config_free(cfg);
    if (ctl_interrupted)
        return CTL_EXIT_FAILURE;
    return failed > 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}


/* Checks every domain of org for sending from region. */
static void
identities_check_region(struct identities_run *run, const struct org *org,
                        const char *region)
{
    const struct region *reg = config_region(run->cfg, region);
    struct ses_client   *client = NULL;
    char                 err[512] = "";

    if (reg != NULL)
        client = identities_client(run, reg, err, sizeof(err));
    else
        snprintf(err, sizeof(err), "region %s is not under 'regions' in "
                 "%s", region, run->cfg->path);

    for (size_t d = 0; d < org->ndomains && !ctl_interrupted; d++) {
        if (client == NULL) {
            struct identities_row base = {
                .org = org->name, .region = region,
                .domain = org->domains[d]
            };

            identities_add(run, &base, "identity", "-", IDENTITIES_ERROR,
                           "%s", err);
            continue;
        }
        identities_check_domain(run, org, reg, client, org->domains[d]);
    }
}


static void
identities_check_domain(struct identities_run *run, const struct org *org,
                        const struct region *reg, struct ses_client *client,
                        const char *domain)
{
    struct identities_row    base = {
        .org = org->name, .region = reg->name, .domain = domain
    };
    struct identities_reply  reply;
    struct ctl_identity_info info;
    char                     err[512];
    bool                     have_info = false;

    memset(&info, 0, sizeof(info));
    if (identities_get(client, domain, &reply) == -1) {
        identities_add(run, &base, "identity", "-", IDENTITIES_ERROR, "%s",
                       reply.reason);
    } else if (reply.http_status == 404 ||
               strcmp(reply.error_type, "NotFoundException") == 0) {
        identities_add(run, &base, "identity", "-", IDENTITIES_MISSING,
                       "not an identity in SES %s (GetEmailIdentity: "
                       "NotFoundException)", reg->name);
    } else if (reply.result != SES_OK) {
        identities_add(run, &base, "identity", "-", IDENTITIES_ERROR,
                       "GetEmailIdentity failed: %s", reply.reason);
    } else if (ctl_identities_parse_identity(reply.body, strlen(reply.body),
                                             &info, err,
                                             sizeof(err)) == -1) {
        identities_add(run, &base, "identity", "-", IDENTITIES_ERROR, "%s",
                       err);
    } else {
        have_info = true;
        if (info.verified)
            identities_add(run, &base, "identity", "-", IDENTITIES_OK,
                           "verified for sending");
        else
            identities_add(run, &base, "identity", "-",
                           IDENTITIES_UNVERIFIED,
                           "not verified for sending (VerificationStatus "
                           "%s)", info.verification_status[0] != '\0'
                                      ? info.verification_status
                                      : "absent");
    }
    free(reply.body);

    /* The SPF record is checked even without an identity to read. */
    if (have_info && info.mail_from_domain[0] != '\0') {
        identities_check_spf(run, &base, info.mail_from_domain);
        identities_check_mx(run, &base, info.mail_from_domain);
    } else {
        identities_check_spf(run, &base, domain);
    }
    if (have_info)
        identities_check_dkim(run, &base, &info);
}


/* Sends GetEmailIdentity and waits for its outcome. */
static int
identities_get(struct ses_client *client, const char *domain,
               struct identities_reply *reply)
{
    memset(reply, 0, sizeof(*reply));
    if (ses_client_get_email_identity(client, domain, reply, reply->reason,
                                      sizeof(reply->reason)) == -1)
        return -1;
    /* The client's own timeout ends the request, so this loop ends. */
    while (!reply->done) {
        if (ctl_interrupted) {
            ses_client_cancel(client, reply);
            snprintf(reply->reason, sizeof(reply->reason), "interrupted");
            return -1;
        }
        if (ses_client_run(client, -1, 200) == -1) {
            ses_client_cancel(client, reply);
            snprintf(reply->reason, sizeof(reply->reason),
                     "libcurl failed while waiting for GetEmailIdentity");
            return -1;
        }
    }
    return 0;
}


static void
identities_on_ses(void *opaque, const struct ses_outcome *outcome)
{
    struct identities_reply *reply = opaque;

    reply->done = true;
    reply->http_status = outcome->http_status;
    reply->result = outcome->result;
    snprintf(reply->error_type, sizeof(reply->error_type), "%s",
             outcome->error_type);
    snprintf(reply->reason, sizeof(reply->reason), "%s", outcome->reason);
    reply->body = xstrdup(outcome->body != NULL ? outcome->body : "");
}


static void
identities_check_spf(struct identities_run *run,
                     struct identities_row *base, const char *name)
{
    struct ctl_dns_answer *answer = xcalloc(1, sizeof(*answer));
    const char            *spf = NULL;
    size_t                 nspf = 0;
    char                   err[512];

    switch (ctl_dns_lookup(run->dns, name, CTL_DNS_TXT, answer, err,
                           sizeof(err))) {
    case CTL_DNS_FAILED:
        identities_add(run, base, "spf", name, IDENTITIES_ERROR, "%s", err);
        goto out;
    case CTL_DNS_NO_RECORD:
        identities_add(run, base, "spf", name, IDENTITIES_MISSING,
                       "no TXT record; expected \"v=spf1 include:%s ...\"",
                       IDENTITIES_SES_DOMAIN);
        goto out;
    case CTL_DNS_FOUND:
        break;
    }

    for (size_t i = 0; i < answer->count; i++) {
        if (ctl_identities_is_spf(answer->records[i])) {
            spf = answer->records[i];
            nspf++;
        }
    }
    if (nspf == 0)
        identities_add(run, base, "spf", name, IDENTITIES_MISSING,
                       "no TXT record starting with v=spf1; expected "
                       "\"v=spf1 include:%s ...\"", IDENTITIES_SES_DOMAIN);
    else if (nspf > 1)
        /* RFC 7208 section 4.5: more than one SPF record is an error. */
        identities_add(run, base, "spf", name, IDENTITIES_WRONG,
                       "%zu TXT records start with v=spf1; receivers "
                       "treat that as a permanent error", nspf);
    else if (!ctl_identities_spf_allows_ses(spf))
        identities_add(run, base, "spf", name, IDENTITIES_WRONG,
                       "SPF record lacks include:%s: \"%.200s\"",
                       IDENTITIES_SES_DOMAIN, spf);
    else
        identities_add(run, base, "spf", name, IDENTITIES_OK,
                       "SPF record includes %s", IDENTITIES_SES_DOMAIN);

out:
    free(answer);
}


static void
identities_check_dkim(struct identities_run *run,
                      struct identities_row *base,
                      const struct ctl_identity_info *info)
{
    struct ctl_dns_answer *answer;
    char                   name[300], err[512];

    if (strcmp(info->dkim_origin, "EXTERNAL") == 0) {
        identities_add(run, base, "dkim", "-", IDENTITIES_OK,
                       "own DKIM keys (BYODKIM); their selector records "
                       "are not checked");
        return;
    }
    if (info->ntokens == 0) {
        identities_add(run, base, "dkim", "-", IDENTITIES_MISSING,
                       "Easy DKIM is not set up in SES (no DkimAttributes."
                       "Tokens, Status %s)", info->dkim_status[0] != '\0'
                                                  ? info->dkim_status
                                                  : "absent");
        return;
    }

    answer = xcalloc(1, sizeof(*answer));
    for (size_t i = 0; i < info->ntokens; i++) {
        const char *token = info->tokens[i];

        snprintf(name, sizeof(name), "%s._domainkey.%s", token,
                 base->domain);
        switch (ctl_dns_lookup(run->dns, name, CTL_DNS_CNAME, answer, err,
                               sizeof(err))) {
        case CTL_DNS_FAILED:
            identities_add(run, base, "dkim", name, IDENTITIES_ERROR, "%s",
                           err);
            break;
        case CTL_DNS_NO_RECORD:
            identities_add(run, base, "dkim", name, IDENTITIES_MISSING,
                           "no CNAME record; expected %s.dkim.%s", token,
                           IDENTITIES_SES_DOMAIN);
            break;
        case CTL_DNS_FOUND:
            if (ctl_identities_dkim_target_ok(answer->records[0], token,
                                              base->region))
                identities_add(run, base, "dkim", name, IDENTITIES_OK,
                               "CNAME %s", answer->records[0]);
            else
                identities_add(run, base, "dkim", name, IDENTITIES_WRONG,
                               "CNAME points to %s; expected %s.dkim.%s",
                               answer->records[0], token,
                               IDENTITIES_SES_DOMAIN);
            break;
        }
    }
    free(answer);
}


/* A custom MAIL FROM domain needs an MX record for SES's feedback. */
static void
identities_check_mx(struct identities_run *run,
                    struct identities_row *base, const char *name)
{
    struct ctl_dns_answer *answer = xcalloc(1, sizeof(*answer));
    char                   expected[300], err[512];

    snprintf(expected, sizeof(expected), "feedback-smtp.%s.%s",
             base->region, IDENTITIES_SES_DOMAIN);
    switch (ctl_dns_lookup(run->dns, name, CTL_DNS_MX, answer, err,
                           sizeof(err))) {
    case CTL_DNS_FAILED:
        identities_add(run, base, "mail-from-mx", name, IDENTITIES_ERROR,
                       "%s", err);
        break;
    case CTL_DNS_NO_RECORD:
        identities_add(run, base, "mail-from-mx", name, IDENTITIES_MISSING,
                       "no MX record; expected %s", expected);
        break;
    case CTL_DNS_FOUND:
        for (size_t i = 0; i < answer->count; i++) {
            if (strcmp(answer->records[i], expected) == 0) {
                identities_add(run, base, "mail-from-mx", name,
                               IDENTITIES_OK, "MX %s", expected);
                goto out;
            }
        }
        identities_add(run, base, "mail-from-mx", name, IDENTITIES_WRONG,
                       "MX is %s; expected %s", answer->records[0],
                       expected);
        break;
    }

out:
    free(answer);
}


static struct identities_row *
identities_add(struct identities_run *run,
               const struct identities_row *base, const char *check,
               const char *record, enum identities_status status,
               const char *fmt, ...)
{
    struct identities_row *row;
    va_list                ap;

    if (run->nrows == run->cap) {
        run->cap = run->cap == 0 ? 32 : run->cap * 2;
        run->rows = xrealloc(run->rows, run->cap * sizeof(*run->rows));
    }
    row = &run->rows[run->nrows++];
    *row = *base;
    row->check = check;
    row->status = status;
    snprintf(row->record, sizeof(row->record), "%s", record);
    va_start(ap, fmt);
    vsnprintf(row->detail, sizeof(row->detail), fmt, ap);
    va_end(ap);
    return row;
}


/* Returns the region's SES client, created on first use. */
static struct ses_client *
identities_client(struct identities_run *run, const struct region *reg,
                  char *err, size_t errlen)
{
    struct ses_client_options opts;
    size_t                    r = (size_t)(reg - run->cfg->regions);

    if (run->clients[r] != NULL)
        return run->clients[r];
    memset(&opts, 0, sizeof(opts));
    opts.region = reg->name;
    opts.endpoint = reg->ses_endpoint;
    opts.creds = &run->creds;
    opts.timeout_ms = CTL_REQUEST_TIMEOUT_MS;
    opts.max_in_flight = 1;
    opts.done = identities_on_ses;
    run->clients[r] = ses_client_new(&opts, err, errlen);
    return run->clients[r];
}


static void
identities_print_table(const struct identities_run *run)
{
    static const char *const headers[] = {
        "ORG", "REGION", "DOMAIN", "CHECK", "RECORD", "STATUS", "DETAIL"
    };
    static const bool        right[7] = { false };
    struct ctl_table        *t = ctl_table_new(headers, right, 7);

    for (size_t i = 0; i < run->nrows; i++) {
        const struct identities_row *row = &run->rows[i];

        ctl_table_row(t);
        ctl_table_cell(t, "%s", row->org);
        ctl_table_cell(t, "%s", row->region);
        ctl_table_cell(t, "%s", row->domain);
        ctl_table_cell(t, "%s", row->check);
        ctl_table_cell(t, "%s", row->record);
        ctl_table_cell(t, "%s", identities_status_names[row->status]);
        ctl_table_cell(t, "%s", row->detail);
    }
    if (run->nrows == 0)
        printf("(no organizations in the configuration)\n");
    else
        ctl_table_print(t, stdout);
    ctl_table_free(t);
}


static void
identities_print_json(const struct identities_run *run)
{
    json_t *root = json_object(), *checks = json_array();
    bool    ok = true;
    char   *text;

    for (size_t i = 0; i < run->nrows; i++) {
        const struct identities_row *row = &run->rows[i];

        json_array_append_new(checks, json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "organization", row->org,
            "region", row->region, "domain", row->domain, "check",
            row->check, "record", row->record, "status",
            identities_status_names[row->status], "detail", row->detail));
        if (row->status != IDENTITIES_OK)
            ok = false;
    }
    json_object_set_new(root, "ok", json_boolean(ok));
    json_object_set_new(root, "checks", checks);
    text = json_dumps(root, JSON_INDENT(2));
    puts(text);
    free(text);
    json_decref(root);
}


/* Copies a JSON string into dst, or "" for anything else. */
static void
identities_copy(char *dst, size_t size, json_t *value)
{
    const char *text = json_string_value(value);

    snprintf(dst, size, "%s", text != NULL ? text : "");
}
