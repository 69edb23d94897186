/*
 * ctl_failover: "ferryctl failover", which shows the failover state of
 * every primary region from ferry.control and writes operator commands
 * (force, failback, hold, release) for the failover controller to carry
 * out.
 */
#ifndef FERRY_CTL_FAILOVER_H
#define FERRY_CTL_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>

#include "control.h"

enum ctl_failover_action {
    CTL_FAILOVER_STATUS,
    CTL_FAILOVER_COMMAND        /* see ctl_failover_args.command */
};

/* The parsed command line of "ferryctl failover". */
struct ctl_failover_args {
    enum ctl_failover_action  action;
    enum control_command_kind command;      /* CTL_FAILOVER_COMMAND only */
    const char               *region;       /* NULL: every region */
    const char               *reason;       /* NULL: none given */
    const char               *config_path;
    const char               *bootstrap;
    bool                      help;
};

/*
 * Parses argv (argv[0] is "failover") into args. Returns -1 and fills err
 * on a usage error: a missing or unknown action, a missing --region for a
 * command, a region name that does not fit a control record, or an
 * unknown option. Resets getopt's state first, so it can run repeatedly.
 */
int ctl_failover_parse(int argc, char **argv, struct ctl_failover_args *args,
                       char *err, size_t errlen);

int ctl_failover_main(int argc, char **argv);

#endif
