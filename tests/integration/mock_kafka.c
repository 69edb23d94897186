/*
 * ferry-mock-kafka: librdkafka's mock cluster on loopback, for the
 * integration tests that inject broker faults.
 *
 * It prints one line, "bootstrap HOST:PORT,...", then reads commands from
 * standard input, one per line, and replies to each with "ok" or with
 * "error: " and the reason:
 *
 *   topic NAME PARTITIONS            create a topic
 *   errors BROKER API COUNT ERROR... the next COUNT requests of API that
 *                                    BROKER receives fail with ERROR in
 *                                    turn (the last one repeats)
 *   pending BROKER API               replies "ok N": how many errors
 *                                    queued on BROKER for API are left
 *   down BROKER | up BROKER          a broker drops its connections and
 *                                    refuses new ones, or serves again
 *   leader TOPIC PARTITION BROKER    move a partition's leader
 *   coordinator GROUP BROKER         move a group's coordinator
 *
 * BROKER is a broker id, 1 to BROKERS. API is a request name such as
 * Produce, Fetch or OffsetCommit; ERROR is a broker error name such as
 * NOT_ENOUGH_REPLICAS, or NO_ERROR to let one request through. A line
 * longer than 1022 bytes is discarded with one error reply. The cluster
 * stops at the end of its input or on SIGTERM. The mock cluster lacks
 * CreateTopics, DescribeConfigs and DescribeGroups, so the tests create
 * topics here.
 *
 * NOTE: librdkafka 2.0.2 creates a missing topic on "leader", with
 * PARTITION + 1 partitions, so a misspelt topic there is not an error.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MOCK_MAX_ERRORS 16
/* Room for a command line, its newline and the terminating NUL. */
#define MOCK_LINE_MAX   1024

static const struct {
    const char *name;
    int16_t     key;
} mock_apis[] = {
    { "Produce", 0 },
    { "Fetch", 1 },
    { "ListOffsets", 2 },
    { "Metadata", 3 },
    { "OffsetCommit", 8 },
    { "OffsetFetch", 9 },
    { "FindCoordinator", 10 },
    { "JoinGroup", 11 },
    { "Heartbeat", 12 },
    { "LeaveGroup", 13 },
    { "SyncGroup", 14 },
    { "InitProducerId", 22 },
};

static int mock_api_key(const char *name);
static int mock_error_code(const char *name, rd_kafka_resp_err_t *code);
static const char *mock_command(rd_kafka_mock_cluster_t *mc, int32_t brokers,
                                char *line, char *reply, size_t replylen,
                                char *err, size_t errlen);
static long mock_number(const char *word, long min, long max);


/* Returns the key of the request named name, or -1. */
static int
mock_api_key(const char *name)
{
    for (size_t i = 0; i < sizeof(mock_apis) / sizeof(mock_apis[0]); i++) {
        if (strcasecmp(mock_apis[i].name, name) == 0)
            return mock_apis[i].key;
    }
    return -1;
}


/* Finds the error named name (as rd_kafka_err2name spells it). */
static int
mock_error_code(const char *name, rd_kafka_resp_err_t *code)
{
    const struct rd_kafka_err_desc *descs;
    size_t                          n;

    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name != NULL && strcmp(descs[i].name, name) == 0) {
            *code = descs[i].code;
            return 0;
        }
    }
    return -1;
}


/* Returns word as a number in [min, max], or -1 when it is not one. */
static long
mock_number(const char *word, long min, long max)
{
    char *end;
    long  n;

    if (word == NULL)
        return -1;
    n = strtol(word, &end, 10);
    if (end == word || *end != '\0' || n < min || n > max)
        return -1;
    return n;
}


/*
 * Runs one command on a cluster whose brokers have the ids 1 to brokers.
 * Returns NULL and writes what follows "ok" to reply, or returns the
 * reason it failed.
 */
static const char *
mock_command(rd_kafka_mock_cluster_t *mc, int32_t brokers, char *line,
             char *reply, size_t replylen, char *err, size_t errlen)
{
    char               *words[4 + MOCK_MAX_ERRORS];
    char               *save = NULL;
    size_t              n = 0;
    rd_kafka_resp_err_t kerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    long                a, b;

    for (char *w = strtok_r(line, " \t\r\n", &save); w != NULL;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == sizeof(words) / sizeof(words[0]))
            return "too many words";
        words[n++] = w;
    }
    reply[0] = '\0';
    if (n == 0)
        return "empty command";

    if (strcmp(words[0], "topic") == 0 && n == 3) {
        if ((a = mock_number(words[2], 1, 1000)) < 0)
            return "PARTITIONS must be 1 to 1000";
        kerr = rd_kafka_mock_topic_create(mc, words[1], (int)a, 1);
    } else if (strcmp(words[0], "errors") == 0 && n >= 5) {
        rd_kafka_resp_err_t codes[MOCK_MAX_ERRORS];
        int                 key = mock_api_key(words[2]);
        size_t              ncodes = n - 4;

        if ((b = mock_number(words[1], 1, brokers)) < 0)
            return "BROKER must be a broker id";
        if (key < 0)
            return "unknown request name";
        if ((a = mock_number(words[3], 1, 10000)) < 0)
            return "COUNT must be 1 to 10000";
        for (size_t i = 0; i < ncodes; i++) {
            if (mock_error_code(words[4 + i], &codes[i]) == -1) {
                snprintf(err, errlen, "unknown error name %s", words[4 + i]);
                return err;
            }
            /* A broker never sends a local error, whose name starts with _. */
            if (codes[i] < 0) {
                snprintf(err, errlen, "%s is a local error, not a broker "
                         "error", words[4 + i]);
                return err;
            }
        }
        for (long i = 0; i < a && kerr == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
            rd_kafka_resp_err_t code = codes[(size_t)i < ncodes ? (size_t)i
                                                                : ncodes - 1];

            kerr = rd_kafka_mock_broker_push_request_error_rtts(
                mc, (int32_t)b, (int16_t)key, 1, code, 0);
        }
    } else if (strcmp(words[0], "pending") == 0 && n == 3) {
        int    key = mock_api_key(words[2]);
        size_t left = 0;

        if ((b = mock_number(words[1], 1, brokers)) < 0 || key < 0)
            return "usage: pending BROKER API";
        kerr = rd_kafka_mock_broker_error_stack_cnt(mc, (int32_t)b,
                                                    (int16_t)key, &left);
        snprintf(reply, replylen, " %zu", left);
    } else if ((strcmp(words[0], "down") == 0 ||
                strcmp(words[0], "up") == 0) && n == 2) {
        if ((a = mock_number(words[1], 1, brokers)) < 0)
            return "BROKER must be a broker id";
        kerr = words[0][0] == 'd'
                   ? rd_kafka_mock_broker_set_down(mc, (int32_t)a)
                   : rd_kafka_mock_broker_set_up(mc, (int32_t)a);
    } else if (strcmp(words[0], "leader") == 0 && n == 4) {
        if ((a = mock_number(words[2], 0, 1000)) < 0 ||
            (b = mock_number(words[3], 1, brokers)) < 0)
            return "usage: leader TOPIC PARTITION BROKER";
        kerr = rd_kafka_mock_partition_set_leader(mc, words[1], (int32_t)a,
                                                  (int32_t)b);
    } else if (strcmp(words[0], "coordinator") == 0 && n == 3) {
        /* librdkafka 2.0.2 takes any id as a coordinator, so check it here. */
        if ((a = mock_number(words[2], 1, brokers)) < 0)
            return "BROKER must be a broker id";
        kerr = rd_kafka_mock_coordinator_set(mc, "group", words[1],
                                             (int32_t)a);
    } else {
        return "unknown command or wrong number of words";
    }
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "%s", rd_kafka_err2str(kerr));
        return err;
    }
    return NULL;
}


int
main(int argc, char **argv)
{
    rd_kafka_conf_t         *conf;
    rd_kafka_t              *rk;
    rd_kafka_mock_cluster_t *mc;
    char                     line[MOCK_LINE_MAX];
    char                     reply[64];
    char                     err[512];
    const char              *failed;
    long                     brokers;

    if (argc != 2 || (brokers = mock_number(argv[1], 1, 16)) < 0) {
        fprintf(stderr, "usage: ferry-mock-kafka BROKERS (1 to 16)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* The mock cluster runs on the threads of a client instance. */
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "ferry-mock-kafka: %s\n", err);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
    if (mc == NULL) {
        fprintf(stderr, "ferry-mock-kafka: cannot start the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    while (fgets(line, sizeof(line), stdin) != NULL) {
        /*
         * A line that does not fit is discarded up to its newline and
         * gets one error, so that its tail never runs as a command.
         */
        if (strchr(line, '\n') == NULL && !feof(stdin)) {
            int c;

            while ((c = getchar()) != EOF && c != '\n')
                ;
            printf("error: line longer than %d bytes\n",
                   MOCK_LINE_MAX - 2);
            fflush(stdout);
            continue;
        }
        failed = mock_command(mc, (int32_t)brokers, line, reply,
                              sizeof(reply), err, sizeof(err));
        if (failed == NULL)
            printf("ok%s\n", reply);
        else
            printf("error: %s\n", failed);
        fflush(stdout);
    }

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
