/*
 * control: the records of topic ferry.control and their wire codec
 * (proto/control.proto, which also describes how workers read them).
 *
 * A state record carries the failover state of one primary region and is
 * keyed by the region name. A command record carries an operator's
 * request for one region and is keyed by "REGION/command", so compaction
 * keeps the newest state and the newest command of every region.
 */
#ifndef FERRY_CONTROL_H
#define FERRY_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONTROL_TOPIC         "ferry.control"
#define CONTROL_COMMAND_SUFFIX "/command"

/* Values are the proto enum's numbers; 0 is never a valid state. */
enum control_state {
    CONTROL_PRIMARY = 1,
    CONTROL_DRAINING_PRIMARY = 2,
    CONTROL_SECONDARY = 3,
    CONTROL_DRAINING_SECONDARY = 4
};

enum control_command_kind {
    CONTROL_FORCE_FAILOVER = 1,
    CONTROL_FORCE_FAILBACK = 2,
    CONTROL_HOLD = 3,
    CONTROL_RELEASE = 4
};

enum control_record_kind {
    CONTROL_RECORD_STATE,
    CONTROL_RECORD_COMMAND
};

/* The state of one primary region. */
struct control {
    char               region[64];
    enum control_state state;
    uint64_t           epoch;
    int64_t            since_ms;            /* wall clock */
    char               reason[256];
    char               controller_id[128];  /* "host:pid" */
    bool               hold;
    int64_t            command_offset;      /* -1: no command handled */
};

/* An operator's command for one primary region. */
struct control_command {
    char                      region[64];
    enum control_command_kind kind;
    int64_t                   issued_ms;    /* wall clock */
    char                      issued_by[128];
    char                      reason[256];
};

/* Both return a malloc'd buffer the caller frees, and its length in *len. */
unsigned char *control_encode(const struct control *c, size_t *len);
unsigned char *control_command_encode(const struct control_command *cmd,
                                      size_t *len);

/*
 * Decodes a ControlRecord into c or cmd and sets *kind to its type.
 * Returns -1 when buf is not a ControlRecord, or when it names no region,
 * a region longer than 63 bytes, or a state or command kind this version
 * does not know.
 * Strings longer than the struct's fields are truncated.
 */
int control_decode(const void *buf, size_t len, enum control_record_kind *kind,
                   struct control *c, struct control_command *cmd);

/* Writes the record key of a region's commands, "REGION/command". */
int control_command_key(const char *region, char *buf, size_t size);

/* "PRIMARY", "DRAINING_PRIMARY", ...; "UNKNOWN" for other values. */
const char *control_state_name(enum control_state state);

/* "force-failover", "force-failback", "hold", "release". */
const char *control_command_name(enum control_command_kind kind);
int control_command_parse(const char *name, enum control_command_kind *kind);

#endif
