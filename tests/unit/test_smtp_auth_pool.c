/*
 * Unit tests of the AUTH check pool: results come back through the event
 * loop, the queue bound holds, and cancelled checks never call back. A
 * fake check that waits at a gate keeps a thread busy for as long as a
 * test needs, so no test depends on how fast a hash is computed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "mailbox.h"
#include "smtp_auth.h"
#include "smtp_auth_pool.h"
#include "util.h"

#define JOBS_MAX    8

/* How long a test waits for a thread or a callback before failing. */
#define WAIT_MS     10000

/* alice's password "correct horse" as in tests/smtp/credentials. */
#define ALICE_HASH \
    "$6$dialoguesalt$OZDUdfIPfjHgmVwXqaC.xExtGTDVs6WgO0XOJ4hcG8Z0FRbVVBOs" \
    "jmka8/FPfKYl/CNefMMQSrgYou92DlWrg/"

/* The fake check's gate, shared with the pool's threads. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  gate_cond = PTHREAD_COND_INITIALIZER;
static bool            gate_open;
static int             gate_entered;   /* checks that reached the gate */

/* The mailbox of the test's loop, made by pool_new(). */
static struct mailbox *mailbox;

/* Outcome of one submitted check, as on_done() records it. */
struct job_result {
    int  calls;
    bool match;
};


/* Waits at the gate, then matches when password equals hash. */
static bool
gated_verify(const char *password, const char *hash)
{
    pthread_mutex_lock(&gate_lock);
    gate_entered++;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return strcmp(password, hash) == 0;
}


static void
gate_set(bool open)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = open;
    if (!open)
        gate_entered = 0;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}


/* Waits until n checks have reached the gate. */
static void
gate_wait_entered(int n)
{
    int64_t deadline = util_monotonic_ms() + WAIT_MS;

    pthread_mutex_lock(&gate_lock);
    while (gate_entered < n) {
        struct timespec ts;

        pthread_mutex_unlock(&gate_lock);
        assert_true(util_monotonic_ms() < deadline);
        ts.tv_sec = 0;
        ts.tv_nsec = 1000000;
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&gate_lock);
    }
    pthread_mutex_unlock(&gate_lock);
}


static void
on_done(void *arg, bool match)
{
    struct job_result *r = arg;

    r->calls++;
    r->match = match;
}


/* Runs the event loop until *calls reaches n, or fails after WAIT_MS. */
static void
loop_until(struct event_base *base, const int *calls, int n)
{
    int64_t        deadline = util_monotonic_ms() + WAIT_MS;
    struct timeval tick = { 0, 10000 };

    while (*calls < n) {
        assert_true(util_monotonic_ms() < deadline);
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
}


static struct mailbox *
mailbox_or_fail(struct event_base *base)
{
    char            err[256] = "";
    struct mailbox *mb = mailbox_new(base, err, sizeof(err));

    if (mb == NULL)
        fail_msg("mailbox_new: %s", err);
    return mb;
}


static struct smtp_auth_pool *
pool_new(struct event_base *base, int threads, size_t queue_max,
         smtp_auth_pool_verify_fn verify)
{
    char                   err[256] = "";
    struct smtp_auth_pool *pool = smtp_auth_pool_new(threads, queue_max,
                                                     verify, err,
                                                     sizeof(err));

    if (pool == NULL)
        fail_msg("smtp_auth_pool_new: %s", err);
    mailbox = mailbox_or_fail(base);
    return pool;
}


/* Frees the pool, then the mailbox its threads post to. */
static void
pool_free(struct smtp_auth_pool *pool)
{
    smtp_auth_pool_free(pool);
    mailbox_free(mailbox);
    mailbox = NULL;
}


/* A loop on a thread of its own, as the ingress runs them. */
struct side_loop {
    struct event_base *base;
    struct mailbox    *mailbox;
    pthread_t          thread;
    pthread_t          ran_on;     /* thread of the last callback */
    int                calls;
    bool               match;
};


static void
on_side_done(void *arg, bool match)
{
    struct side_loop *side = arg;

    side->ran_on = pthread_self();
    side->match = match;
    side->calls++;
    event_base_loopbreak(side->base);
}


static void *
side_main(void *arg)
{
    struct side_loop *side = arg;

    event_base_dispatch(side->base);
    return NULL;
}


static void
results_reach_callbacks(void **state)
{
    static const struct {
        const char *password;
        const char *hash;
        bool        match;
    } cases[] = {
        { "correct horse", ALICE_HASH, true },
        { "correct horse ", ALICE_HASH, false },
        { "wrong", ALICE_HASH, false },
        { "", ALICE_HASH, false },
        { "correct horse", "$6$othersalt$notahash", false },
    };
    enum { NCASES = sizeof(cases) / sizeof(*cases) };
    struct event_base     *base = event_base_new();
    struct smtp_auth_pool *pool = pool_new(base, 2, NCASES,
                                           smtp_auth_verify);
    struct job_result      results[NCASES];
    int                    done = 0;

    memset(results, 0, sizeof(results));
    for (size_t i = 0; i < NCASES; i++)
        assert_non_null(smtp_auth_pool_submit(pool, mailbox, cases[i].password,
                                              cases[i].hash, on_done,
                                              &results[i]));

    for (int64_t deadline = util_monotonic_ms() + WAIT_MS; done < NCASES;) {
        struct timeval tick = { 0, 10000 };

        assert_true(util_monotonic_ms() < deadline);
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
        done = 0;
        for (size_t i = 0; i < NCASES; i++)
            done += results[i].calls;
    }
    for (size_t i = 0; i < NCASES; i++) {
        assert_int_equal(results[i].calls, 1);
        assert_int_equal(results[i].match, cases[i].match);
    }

    pool_free(pool);
    event_base_free(base);
}


static void
queue_full_refuses_submit(void **state)
{
    struct event_base     *base = event_base_new();
    struct smtp_auth_pool *pool;
    struct job_result      results[JOBS_MAX];
    int                    calls = 0;

    memset(results, 0, sizeof(results));
    gate_set(false);
    pool = pool_new(base, 1, 2, gated_verify);

    /* The first check occupies the only thread; two more may wait. */
    assert_non_null(smtp_auth_pool_submit(pool, mailbox, "a", "a", on_done,
                                          &results[0]));
    gate_wait_entered(1);
    assert_non_null(smtp_auth_pool_submit(pool, mailbox, "b", "x", on_done,
                                          &results[1]));
    assert_non_null(smtp_auth_pool_submit(pool, mailbox, "c", "c", on_done,
                                          &results[2]));
    assert_int_equal(smtp_auth_pool_waiting(pool), 2);
    assert_null(smtp_auth_pool_submit(pool, mailbox, "d", "d", on_done,
                                      &results[3]));
    assert_int_equal(smtp_auth_pool_waiting(pool), 2);

    gate_set(true);
    for (int64_t deadline = util_monotonic_ms() + WAIT_MS; calls < 3;) {
        struct timeval tick = { 0, 10000 };

        assert_true(util_monotonic_ms() < deadline);
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
        calls = results[0].calls + results[1].calls + results[2].calls;
    }
    assert_int_equal(results[0].calls, 1);
    assert_true(results[0].match);
    assert_int_equal(results[1].calls, 1);
    assert_false(results[1].match);
    assert_int_equal(results[2].calls, 1);
    assert_true(results[2].match);
    assert_int_equal(results[3].calls, 0);

    /* Room again once the queue has drained. */
    assert_int_equal(smtp_auth_pool_waiting(pool), 0);
    assert_non_null(smtp_auth_pool_submit(pool, mailbox, "e", "e", on_done,
                                          &results[4]));
    loop_until(base, &results[4].calls, 1);

    pool_free(pool);
    event_base_free(base);
}


static void
cancelled_checks_never_call_back(void **state)
{
    struct event_base         *base = event_base_new();
    struct smtp_auth_pool     *pool;
    struct smtp_auth_pool_job *running, *waiting, *finished;
    struct job_result          results[JOBS_MAX];

    memset(results, 0, sizeof(results));
    gate_set(false);
    pool = pool_new(base, 1, 4, gated_verify);

    running = smtp_auth_pool_submit(pool, mailbox, "a", "a", on_done, &results[0]);
    assert_non_null(running);
    gate_wait_entered(1);
    waiting = smtp_auth_pool_submit(pool, mailbox, "b", "b", on_done, &results[1]);
    assert_non_null(waiting);
    assert_int_equal(smtp_auth_pool_waiting(pool), 1);

    /* A waiting check leaves the queue at once. */
    smtp_auth_pool_cancel(pool, waiting);
    assert_int_equal(smtp_auth_pool_waiting(pool), 0);

    /* A running one finishes, and its result is dropped. */
    smtp_auth_pool_cancel(pool, running);
    gate_set(true);

    /* A check that finished but was not handed back yet is dropped too. */
    finished = smtp_auth_pool_submit(pool, mailbox, "c", "c", on_done, &results[2]);
    assert_non_null(finished);
    gate_wait_entered(2);
    assert_non_null(smtp_auth_pool_submit(pool, mailbox, "d", "d", on_done,
                                          &results[3]));
    gate_wait_entered(3);
    smtp_auth_pool_cancel(pool, finished);

    /* The single thread runs checks in order, so d comes back last. */
    loop_until(base, &results[3].calls, 1);
    assert_int_equal(results[0].calls, 0);
    assert_int_equal(results[1].calls, 0);
    assert_int_equal(results[2].calls, 0);
    assert_int_equal(results[3].calls, 1);
    assert_true(results[3].match);

    pool_free(pool);
    event_base_free(base);
}


static void
free_with_checks_left(void **state)
{
    struct event_base     *base = event_base_new();
    struct smtp_auth_pool *pool;
    struct job_result      results[JOBS_MAX];

    memset(results, 0, sizeof(results));
    gate_set(false);
    pool = pool_new(base, 2, 4, gated_verify);
    for (int i = 0; i < 2; i++)
        assert_non_null(smtp_auth_pool_submit(pool, mailbox, "p", "p", on_done,
                                              &results[i]));
    gate_wait_entered(2);
    for (int i = 2; i < 6; i++)
        assert_non_null(smtp_auth_pool_submit(pool, mailbox, "p", "p", on_done,
                                              &results[i]));
    assert_int_equal(smtp_auth_pool_waiting(pool), 4);

    /*
     * The threads finish their current checks and stop. Every job left,
     * waiting or finished, is freed without a callback.
     */
    gate_set(true);
    pool_free(pool);
    for (int i = 0; i < 6; i++)
        assert_int_equal(results[i].calls, 0);
    event_base_free(base);
}


/*
 * Two loops share one pool, as the ingress's loops do: each check's
 * callback runs on the thread of the loop that submitted it.
 */
static void
result_reaches_submitting_loop(void **state)
{
    struct event_base     *base = event_base_new();
    struct smtp_auth_pool *pool = pool_new(base, 2, 4, smtp_auth_verify);
    struct side_loop       side = { 0 };
    struct job_result      here = { 0, false };

    (void)state;
    side.base = event_base_new();
    side.mailbox = mailbox_or_fail(side.base);

    /* Submitted before the side loop runs: it gets it when it starts. */
    assert_non_null(smtp_auth_pool_submit(pool, side.mailbox, "wrong",
                                          ALICE_HASH, on_side_done, &side));
    assert_int_equal(pthread_create(&side.thread, NULL, side_main, &side),
                     0);
    assert_non_null(smtp_auth_pool_submit(pool, mailbox, "correct horse",
                                          ALICE_HASH, on_done, &here));
    loop_until(base, &here.calls, 1);
    assert_int_equal(pthread_join(side.thread, NULL), 0);

    assert_int_equal(here.calls, 1);
    assert_true(here.match);
    assert_int_equal(side.calls, 1);
    assert_false(side.match);
    assert_true(pthread_equal(side.ran_on, side.thread));

    pool_free(pool);
    mailbox_free(side.mailbox);
    event_base_free(side.base);
    event_base_free(base);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(results_reach_callbacks),
        cmocka_unit_test(queue_full_refuses_submit),
        cmocka_unit_test(result_reaches_submitting_loop),
        cmocka_unit_test(cancelled_checks_never_call_back),
        cmocka_unit_test(free_with_checks_left),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
