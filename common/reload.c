#include "reload.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"

struct reload_watch {
    const char *path;
    const char *daemon;
};

static struct reload_watch reload_watch;

static void *reload_main(void *arg);


int
reload_watch_start(const char *path, const char *daemon, char *err,
                   size_t errlen)
{
    pthread_t thread;
    sigset_t  set;
    int       rc;

    reload_watch.path = path;
    reload_watch.daemon = daemon;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    if ((rc = pthread_sigmask(SIG_BLOCK, &set, NULL)) != 0 ||
        (rc = pthread_create(&thread, NULL, reload_main,
                             &reload_watch)) != 0) {
        snprintf(err, errlen, "cannot watch for SIGHUP: %s", strerror(rc));
        return -1;
    }
    pthread_detach(thread);
    return 0;
}


static void *
reload_main(void *arg)
{
    const struct reload_watch *w = arg;
    sigset_t                   set;
    int                        sig;

    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    for (;;) {
        struct config *cfg;
        char           err[1024], quoted[1100];

        if (sigwait(&set, &sig) != 0)
            continue;
        if ((cfg = config_load(w->path, err, sizeof(err))) == NULL) {
            log_error(NULL, "reload-failed", "file=%s reason=%s "
                      "effect=\"keeps the configuration it started with\"",
                      w->path, log_quote(quoted, sizeof(quoted), err));
            continue;
        }
        config_free(cfg);
        log_warn(NULL, "reload-not-applied", "file=%s reason=\"the file is "
                 "valid, but %s applies a changed configuration only when "
                 "it starts; restart it\"", w->path, w->daemon);
    }
    return NULL;
}
