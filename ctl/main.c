/*
 * ferryctl: the operator's tool for Ferry. Subcommands: lag, replay,
 * trace, failover, identities; each takes --help.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "ctl_failover.h"
#include "ctl_identities.h"
#include "ctl_lag.h"
#include "ctl_replay.h"
#include "ctl_trace.h"

struct ctl_command {
    const char *name;
    int       (*main)(int argc, char **argv);
    const char *summary;
};

static const struct ctl_command ctl_commands[] = {
    { "lag", ctl_lag_main,
      "consumer lag per group, topic and partition" },
    { "replay", ctl_replay_main,
      "re-publish the records of a time window, dry run by default" },
    { "trace", ctl_trace_main,
      "find a message by envelope id or Message-ID and show its state" },
    { "failover", ctl_failover_main,
      "show the failover state or send the controller a command" },
    { "identities", ctl_identities_main,
      "check SES identities and DNS records of every organization" },
};

static void ctl_on_signal(int sig);
static void ctl_print_usage(FILE *out);


int
main(int argc, char **argv)
{
    struct sigaction sa;

    if (argc < 2)
        ctl_usage_error(NULL, "missing subcommand");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        ctl_print_usage(stdout);
        return CTL_EXIT_OK;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ctl_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]);
         i++)
        if (strcmp(argv[1], ctl_commands[i].name) == 0)
            return ctl_commands[i].main(argc - 1, argv + 1);
    ctl_usage_error(NULL, "unknown subcommand '%s'", argv[1]);
}


static void
ctl_on_signal(int sig)
{
    ctl_interrupted = 1;
}


static void
ctl_print_usage(FILE *out)
{
    fputs("usage: ferryctl SUBCOMMAND [OPTIONS]\n\nSubcommands:\n", out);
    for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]);
         i++)
        fprintf(out, "  %-10s %s\n", ctl_commands[i].name,
                ctl_commands[i].summary);
    fputs("\nEvery subcommand takes -c FILE (the Ferry configuration) and "
          "--help; those\nthat read Kafka also take --bootstrap HOST:PORT. "
          "Exit codes: 0 success,\n1 failure, 2 not found (trace), 64 usage "
          "error.\n", out);
}
