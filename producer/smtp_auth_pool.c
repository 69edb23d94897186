#include "smtp_auth_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "mailbox.h"
#include "smtp_auth.h"
#include "util.h"

/* State of a job, guarded by the pool's lock. */
enum smtp_auth_pool_job_state {
    SMTP_AUTH_POOL_WAITING,     /* in the queue */
    SMTP_AUTH_POOL_RUNNING,     /* a thread computes the hash */
    SMTP_AUTH_POOL_FINISHED     /* posted to its loop, or being handed */
};

struct smtp_auth_pool_job {
    TAILQ_ENTRY(smtp_auth_pool_job) entry;
    struct mailbox_item             item;       /* the hand back */
    struct smtp_auth_pool          *pool;
    struct mailbox                 *mailbox;    /* of the submitting loop */
    enum smtp_auth_pool_job_state   state;
    bool                            cancelled;  /* its loop's thread only */
    bool                            match;
    char                           *password;
    size_t                          password_len;
    char                           *hash;
    smtp_auth_pool_done_fn          done;
    void                           *arg;
};

TAILQ_HEAD(smtp_auth_pool_job_list, smtp_auth_pool_job);

struct smtp_auth_pool {
    smtp_auth_pool_verify_fn        verify;
    pthread_t                      *threads;
    int                             nthreads;   /* started */
    size_t                          queue_max;

    pthread_mutex_t                 lock;
    pthread_cond_t                  wake;
    struct smtp_auth_pool_job_list  waiting;
    size_t                          nwaiting;
    struct smtp_auth_pool_job_list  finished;   /* posted, not yet run */
    bool                            stopping;
};

static void *smtp_auth_pool_main(void *arg);
static void smtp_auth_pool_on_finished(struct mailbox_item *item);
static void smtp_auth_pool_job_free(struct smtp_auth_pool_job *job);
static void smtp_auth_pool_free_list(struct smtp_auth_pool_job_list *list);


struct smtp_auth_pool *
smtp_auth_pool_new(int threads, size_t queue_max,
                   smtp_auth_pool_verify_fn verify, char *err, size_t errlen)
{
    struct smtp_auth_pool *pool = xcalloc(1, sizeof(*pool));
    int                    rc = 0;

    pool->verify = verify;
    pool->queue_max = queue_max;
    pool->threads = xcalloc((size_t)threads, sizeof(*pool->threads));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    TAILQ_INIT(&pool->waiting);
    TAILQ_INIT(&pool->finished);

    for (; pool->nthreads < threads; pool->nthreads++) {
        rc = util_thread_start(&pool->threads[pool->nthreads],
                               smtp_auth_pool_main, pool);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot start AUTH thread %d of %d: %s",
                 pool->nthreads + 1, threads, strerror(rc));
        goto fail;
    }
    return pool;

fail:
    smtp_auth_pool_free(pool);
    return NULL;
}


void
smtp_auth_pool_free(struct smtp_auth_pool *pool)
{
    if (pool == NULL)
        return;

    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);

    smtp_auth_pool_free_list(&pool->waiting);
    smtp_auth_pool_free_list(&pool->finished);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}


struct smtp_auth_pool_job *
smtp_auth_pool_submit(struct smtp_auth_pool *pool, struct mailbox *mailbox,
                      const char *password, const char *hash,
                      smtp_auth_pool_done_fn done, void *arg)
{
    struct smtp_auth_pool_job *job;

    pthread_mutex_lock(&pool->lock);
    if (pool->nwaiting >= pool->queue_max) {
        pthread_mutex_unlock(&pool->lock);
        return NULL;
    }

    job = xcalloc(1, sizeof(*job));
    job->item.run = smtp_auth_pool_on_finished;
    job->pool = pool;
    job->mailbox = mailbox;
    job->state = SMTP_AUTH_POOL_WAITING;
    job->password_len = strlen(password);
    job->password = xstrdup(password);
    job->hash = xstrdup(hash);
    job->done = done;
    job->arg = arg;
    TAILQ_INSERT_TAIL(&pool->waiting, job, entry);
    pool->nwaiting++;
    pthread_cond_signal(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    return job;
}


void
smtp_auth_pool_cancel(struct smtp_auth_pool *pool,
                      struct smtp_auth_pool_job *job)
{
    pthread_mutex_lock(&pool->lock);
    if (job->state == SMTP_AUTH_POOL_WAITING) {
        TAILQ_REMOVE(&pool->waiting, job, entry);
        pool->nwaiting--;
        pthread_mutex_unlock(&pool->lock);
        smtp_auth_pool_job_free(job);
        return;
    }

    /*
     * A thread is running the job, or it is posted to this loop, which
     * frees it when it runs the job's item.
     */
    job->cancelled = true;
    pthread_mutex_unlock(&pool->lock);
}


size_t
smtp_auth_pool_waiting(struct smtp_auth_pool *pool)
{
    size_t n;

    pthread_mutex_lock(&pool->lock);
    n = pool->nwaiting;
    pthread_mutex_unlock(&pool->lock);
    return n;
}


/* Runs checks from the queue until the pool stops. */
static void *
smtp_auth_pool_main(void *arg)
{
    struct smtp_auth_pool     *pool = arg;
    struct smtp_auth_pool_job *job;
    bool                       match;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->stopping && TAILQ_EMPTY(&pool->waiting))
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->stopping)
            break;

        job = TAILQ_FIRST(&pool->waiting);
        TAILQ_REMOVE(&pool->waiting, job, entry);
        pool->nwaiting--;
        job->state = SMTP_AUTH_POOL_RUNNING;
        pthread_mutex_unlock(&pool->lock);

        /* Only this thread touches the job's strings while it runs. */
        match = pool->verify(job->password, job->hash);
        smtp_auth_wipe(job->password, job->password_len);

        pthread_mutex_lock(&pool->lock);
        job->match = match;
        job->state = SMTP_AUTH_POOL_FINISHED;
        TAILQ_INSERT_TAIL(&pool->finished, job, entry);
        mailbox_post(job->mailbox, &job->item);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}


/* Hands a finished check to its callback, on its loop's thread. */
static void
smtp_auth_pool_on_finished(struct mailbox_item *item)
{
    struct smtp_auth_pool_job *job =
        MAILBOX_OWNER(item, struct smtp_auth_pool_job, item);
    struct smtp_auth_pool     *pool = job->pool;

    pthread_mutex_lock(&pool->lock);
    TAILQ_REMOVE(&pool->finished, job, entry);
    pthread_mutex_unlock(&pool->lock);

    /* A cancelled job only waited for its thread to let go of it. */
    if (!job->cancelled)
        job->done(job->arg, job->match);
    smtp_auth_pool_job_free(job);
}


static void
smtp_auth_pool_job_free(struct smtp_auth_pool_job *job)
{
    smtp_auth_wipe(job->password, job->password_len);
    free(job->password);
    free(job->hash);
    free(job);
}


static void
smtp_auth_pool_free_list(struct smtp_auth_pool_job_list *list)
{
    struct smtp_auth_pool_job *job;

    while ((job = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, job, entry);
        smtp_auth_pool_job_free(job);
    }
}
