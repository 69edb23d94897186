#include "control.h"

#include <stdio.h>
#include <string.h>

#include "control.pb-c.h"
#include "util.h"

static unsigned char *control_pack(const Ferry__ControlRecord *rec,
                                   size_t *len);
static int control_copy_region(char *dst, size_t size, const char *src);

static const char *const control_state_names[] = {
    NULL, "PRIMARY", "DRAINING_PRIMARY", "SECONDARY", "DRAINING_SECONDARY"
};

static const char *const control_command_names[] = {
    NULL, "force-failover", "force-failback", "hold", "release"
};

#define CONTROL_NSTATES   4
#define CONTROL_NCOMMANDS 4


const char *
control_state_name(enum control_state state)
{
    if ((int)state < 1 || (int)state > CONTROL_NSTATES)
        return "UNKNOWN";
    return control_state_names[state];
}


const char *
control_command_name(enum control_command_kind kind)
{
    if ((int)kind < 1 || (int)kind > CONTROL_NCOMMANDS)
        return "unknown";
    return control_command_names[kind];
}


int
control_command_parse(const char *name, enum control_command_kind *kind)
{
    for (int i = 1; i <= CONTROL_NCOMMANDS; i++) {
        if (strcmp(name, control_command_names[i]) == 0) {
            *kind = (enum control_command_kind)i;
            return 0;
        }
    }
    return -1;
}


int
control_command_key(const char *region, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s%s", region, CONTROL_COMMAND_SUFFIX);

    return n < 0 || (size_t)n >= size ? -1 : 0;
}


unsigned char *
control_encode(const struct control *c, size_t *len)
{
    Ferry__ControlRecord rec = FERRY__CONTROL_RECORD__INIT;
    Ferry__ControlState  pb = FERRY__CONTROL_STATE__INIT;

    pb.region = (char *)c->region;
    pb.state = (Ferry__FailoverState)c->state;
    pb.epoch = c->epoch;
    pb.since_ms = c->since_ms;
    pb.reason = (char *)c->reason;
    pb.controller_id = (char *)c->controller_id;
    pb.hold = c->hold;
    pb.command_offset = c->command_offset;
    rec.body_case = FERRY__CONTROL_RECORD__BODY_STATE;
    rec.state = &pb;
    return control_pack(&rec, len);
}


unsigned char *
control_command_encode(const struct control_command *cmd, size_t *len)
{
    Ferry__ControlRecord  rec = FERRY__CONTROL_RECORD__INIT;
    Ferry__ControlCommand pb = FERRY__CONTROL_COMMAND__INIT;

    pb.region = (char *)cmd->region;
    pb.kind = (Ferry__CommandKind)cmd->kind;
    pb.issued_ms = cmd->issued_ms;
    pb.issued_by = (char *)cmd->issued_by;
    pb.reason = (char *)cmd->reason;
    rec.body_case = FERRY__CONTROL_RECORD__BODY_COMMAND;
    rec.command = &pb;
    return control_pack(&rec, len);
}


int
control_decode(const void *buf, size_t len, enum control_record_kind *kind,
               struct control *c, struct control_command *cmd)
{
    Ferry__ControlRecord *rec = ferry__control_record__unpack(NULL, len, buf);
    int                   rc = -1;

    if (rec == NULL)
        return -1;

    if (rec->body_case == FERRY__CONTROL_RECORD__BODY_STATE) {
        const Ferry__ControlState *pb = rec->state;

        if ((int)pb->state < 1 || (int)pb->state > CONTROL_NSTATES)
            goto out;
        memset(c, 0, sizeof(*c));
        if (control_copy_region(c->region, sizeof(c->region),
                                pb->region) == -1)
            goto out;
        c->state = (enum control_state)pb->state;
        c->epoch = pb->epoch;
        c->since_ms = pb->since_ms;
        snprintf(c->reason, sizeof(c->reason), "%s", pb->reason);
        snprintf(c->controller_id, sizeof(c->controller_id), "%s",
                 pb->controller_id);
        c->hold = pb->hold;
        c->command_offset = pb->command_offset;
        *kind = CONTROL_RECORD_STATE;
        rc = 0;
    } else if (rec->body_case == FERRY__CONTROL_RECORD__BODY_COMMAND) {
        const Ferry__ControlCommand *pb = rec->command;

        if ((int)pb->kind < 1 || (int)pb->kind > CONTROL_NCOMMANDS)
            goto out;
        memset(cmd, 0, sizeof(*cmd));
        if (control_copy_region(cmd->region, sizeof(cmd->region),
                                pb->region) == -1)
            goto out;
        cmd->kind = (enum control_command_kind)pb->kind;
        cmd->issued_ms = pb->issued_ms;
        snprintf(cmd->issued_by, sizeof(cmd->issued_by), "%s",
                 pb->issued_by);
        snprintf(cmd->reason, sizeof(cmd->reason), "%s", pb->reason);
        *kind = CONTROL_RECORD_COMMAND;
        rc = 0;
    }

out:
    ferry__control_record__free_unpacked(rec, NULL);
    return rc;
}


static unsigned char *
control_pack(const Ferry__ControlRecord *rec, size_t *len)
{
    unsigned char *buf;

    *len = ferry__control_record__get_packed_size(rec);
    buf = xmalloc(*len > 0 ? *len : 1);
    ferry__control_record__pack(rec, buf);
    return buf;
}


/* A region name is the record key, so an empty or cut one is invalid. */
static int
control_copy_region(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n == 0 || n >= size)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}
