/*
 * smtp_auth_pool: worker threads that compute AUTH password hashes off
 * the event loop, so a check of about 50 ms (yescrypt) stalls no other
 * session.
 *
 * An event loop submits a password, the hash to compare it with and its
 * mailbox. A worker thread runs the check and posts the job back to that
 * mailbox, and the loop calls the job's callback. Several loops may share
 * a pool; a job is cancelled only from the loop that submitted it. The
 * queue of checks waiting for a thread is bounded: beyond it
 * smtp_auth_pool_submit() fails, and the caller replies with a temporary
 * error instead.
 *
 * A caller that no longer wants the result (client gone, timeout,
 * shutdown) cancels the job. A waiting job is freed at once; a running
 * one is freed by the loop once its thread is done with it, without the
 * callback. The pool wipes its copy of each password as soon as the
 * check has run, or when a waiting job is cancelled or freed.
 */
#ifndef FERRY_SMTP_AUTH_POOL_H
#define FERRY_SMTP_AUTH_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "mailbox.h"

struct smtp_auth_pool;
struct smtp_auth_pool_job;

/* Password check run on a worker thread, such as smtp_auth_verify(). */
typedef bool (*smtp_auth_pool_verify_fn)(const char *password,
                                         const char *hash);

/* Callback that receives the outcome of a check, on the loop thread. */
typedef void (*smtp_auth_pool_done_fn)(void *arg, bool match);

/*
 * Creates a pool of `threads` worker threads. At most queue_max checks
 * wait for a thread at a time. Returns NULL and fills err when a thread
 * cannot be created.
 */
struct smtp_auth_pool *smtp_auth_pool_new(int threads, size_t queue_max,
                                          smtp_auth_pool_verify_fn verify,
                                          char *err, size_t errlen);

/*
 * Stops the threads after their current check and frees every job left,
 * without callbacks. The loops must have stopped: their mailboxes may
 * still hold jobs, which are freed here.
 */
void smtp_auth_pool_free(struct smtp_auth_pool *pool);

/*
 * Queues a check of password against hash; both are copied. done(arg,
 * match) is called once from the loop of mailbox, unless the job is
 * cancelled first. Returns NULL when queue_max checks are waiting already.
 */
struct smtp_auth_pool_job *smtp_auth_pool_submit(struct smtp_auth_pool *pool,
                                                 struct mailbox *mailbox,
                                                 const char *password,
                                                 const char *hash,
                                                 smtp_auth_pool_done_fn done,
                                                 void *arg);

/*
 * Cancels the callback of job. The caller must not use job afterwards,
 * and must not cancel a job whose callback has run.
 */
void smtp_auth_pool_cancel(struct smtp_auth_pool *pool,
                           struct smtp_auth_pool_job *job);

/* Returns how many checks wait for a thread now. */
size_t smtp_auth_pool_waiting(struct smtp_auth_pool *pool);

#endif
